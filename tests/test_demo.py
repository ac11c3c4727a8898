"""`hallctl demo`: the whole hall on embedded defaults, driven the way IT staff would try it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import urllib.request

import pytest
import yaml

from hall_controller.bus.client import HallClient
from hall_controller.config import load_config

from .harness import DemoProcess, wait_until


def _http(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_demo_runs_the_hall_on_emulated_devices(tmp_path):
    demo = DemoProcess(tmp_path, "--no-ui")
    try:
        summary = demo.summary(60)
        control = summary["emulator_control"].rstrip("/")
        host, port = summary["mqtt"].rsplit(":", 1)
        passwords = yaml.safe_load((tmp_path / "hall" / "client-passwords.yaml").read_text())

        devices = _http("GET", f"{control}/devices")
        assert {"led-3", "keypad-3", "bus-1"} <= {d["id"] for d in devices}
        kiosk = HallClient("kiosk-1", passwords["kiosk-1"], host, int(port), "demo", role="kiosk")
        kiosk.connect(timeout=10)
        number = kiosk.request("issue_ticket", service="consult")["ticket"]["number"]
        kiosk.close()

        # The clerk at window 3 logs in with job number 1003 and presses "next" on the keypad.
        wait_until(lambda: _http("GET", f"{control}/led/3")["text"], 10, "LED 3 initialised")
        assert _http("POST", f"{control}/keypad/3/press", {"key": "function", "digits": "1003"})["acked"]
        assert _http("POST", f"{control}/keypad/3/press", {"key": "next"})["acked"]
        wait_until(lambda: _http("GET", f"{control}/led/3")["text"] == number, 10, f"LED 3 showing {number}")

        # The visit reaches the management-system emulator once finished and rated.
        assert _http("POST", f"{control}/keypad/3/press", {"key": "start"})["acked"]
        tablet = HallClient("tablet-3", passwords["tablet-3"], host, int(port), "demo", role="tablet", window=3)
        tablet.connect(timeout=10)
        assert _http("POST", f"{control}/keypad/3/press", {"key": "next"})["acked"]     # finishes it
        asked = tablet.wait_for_event(lambda e: e["type"] == "rating_requested"
                                      and e["ticket"]["number"] == number, timeout=10)
        tablet.request("rate", ticket=asked["ticket"]["id"], score=5)
        tablet.close()
        mgmt = summary["management_system"].rstrip("/")
        received = wait_until(lambda: _http("GET", f"{mgmt}/_received/service-records"), 15, "record upstream")
        assert received[0]["body"]["ticket_number"] == number and received[0]["body"]["rating"]["score"] == 5

        # hall.yaml names the management system and its token, as a real hall's does, and is no one
        # else's to read; so `hallctl doctor --config` checks the running demo whole (the test stands
        # in for the app PCs: every app client but hall-web's, which the demo runs, connects).
        config_file = tmp_path / "hall" / "hall.yaml"
        config = load_config(config_file)
        assert config.upstream_url == mgmt and config.upstream_token
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
        web_running = "hall-web pid" in summary["visitor_pages"]
        stand_ins = [HallClient(c.id, passwords[c.id], host, int(port), "demo", role=c.role, window=c.window)
                     for c in config.clients if c.role not in ("daemon", "admin") and not (c.id == "web-1" and web_running)]
        try:
            for client in stand_ins:
                client.connect(timeout=10)
            doctor = subprocess.run([sys.executable, "-m", "hall_controller.cli", "--log-level", "ERROR", "doctor",
                                     "--config", str(config_file)], capture_output=True, text=True, timeout=60)
        finally:
            for client in stand_ins:
                client.close()
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "✔ 上级系统 / upstream" in doctor.stdout and "✔ 上级系统令牌" in doctor.stdout
        assert config.upstream_token not in doctor.stdout + doctor.stderr
    finally:
        assert demo.stop(20) == 0



def _try_http(method: str, url: str, body: dict | None = None) -> dict | None:
    try:
        return _http(method, url, body)
    except OSError:         # URLError: not listening (yet)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_demo_restarts_the_emulator_and_an_app_that_die(tmp_path):
    """kill -9 of the device emulator and of the hall display: the demo says so in Chinese and restarts
    them; the emulator comes back on the same ports, so the daemon's devices return with their state."""
    demo = DemoProcess(tmp_path, env={"QT_QPA_PLATFORM": "offscreen"})   # the apps too, without a screen
    lines = demo.lines
    children: list[int] = []
    try:
        summary = demo.summary(90)
        assert summary["logins"] == "工号 1001–1008，PIN 1234（示范数据）"
        control = summary["emulator_control"].rstrip("/")
        emulator_pid = int(summary["emulator"].rsplit(" ", 1)[1])
        app_pids = [int(p) for p in summary["apps"].rsplit("pids ", 1)[1].split(", ")]
        display_pid = app_pids[1]
        children += [emulator_pid, *app_pids]
        urls = {d["id"]: d["url"] for d in _http("GET", f"{control}/devices")}

        wait_until(lambda: _http("GET", f"{control}/led/3")["text"], 20, "LED 3 initialised")
        assert _http("POST", f"{control}/keypad/3/press", {"key": "function", "digits": "1003"})["acked"]
        wait_until(lambda: _http("GET", f"{control}/led/3")["text"] not in ("", "暂停服务"), 10, "window 3 open")
        shown = _http("GET", f"{control}/led/3")["text"]

        os.kill(emulator_pid, signal.SIGKILL)
        wait_until(lambda: "hall-emu 已退出（代码 -9），3 秒后重启" in lines, 10, "emulator exit said")
        restarted = wait_until(lambda: [ln for ln in lines if ln.startswith("hall-emu 已重启（进程 ")], 30, "emulator back")
        children.append(int(restarted[0].split("进程 ")[1].rstrip("）")))
        served = wait_until(lambda: _try_http("GET", f"{control}/devices"), 30, "emulator control API back")
        assert {d["id"]: d["url"] for d in served} == urls     # same control port, same device ports
        # The new emulator's LED starts blank; the daemon reconnects and restores what window 3 showed.
        wait_until(lambda: _http("GET", f"{control}/led/3")["text"] == shown, 30, "LED 3 restored")

        os.kill(display_pid, signal.SIGKILL)
        wait_until(lambda: "hall-display 已退出（代码 -9），3 秒后重启" in lines, 10, "display exit said")
        restarted = wait_until(lambda: [ln for ln in lines if ln.startswith("hall-display 已重启（进程 ")], 30,
                               "display back")
        children.append(int(restarted[0].split("进程 ")[1].rstrip("）")))
        # the restarted display is online again (the daemon sees its client status)
        wait_until(lambda: demo.log_path.read_text().count("client display-1 is online") >= 2, 60,
                   "display online again")
    finally:
        assert demo.stop(30) == 0
    assert not [pid for pid in children if _alive(pid)], "children left running"


def test_the_banner_names_the_demo_logins_but_no_pin_a_hall_chose(sample_config):
    from dataclasses import replace

    from hall_controller.config import hash_pin
    from hall_demo.hall import login_note

    assert login_note(sample_config) == "工号 1001–1008，PIN 1234（示范数据）"
    changed = replace(sample_config, staff=tuple(replace(s, pin_hash=hash_pin("8642", iterations=1000))
                                                 for s in sample_config.staff))
    assert login_note(changed) == "工号 1001–1008（PIN 已由本大厅设定）"
    assert "8642" not in login_note(changed)
    partly = replace(sample_config, staff=(*changed.staff[:2], *sample_config.staff[2:5]))
    assert login_note(partly) == "工号 1003–1005，PIN 1234（示范数据）"     # only those still on the demo PIN


def test_the_demo_writes_its_upstream_into_hall_yaml_privately(tmp_path):
    """The management-system emulator's URL and token and the emulator's control API go into hall.yaml
    (the rest of the file and its comments kept); a file others could read is closed to them."""
    from hall_controller.config import sample_config_text
    from hall_demo.hall import write_links

    config_file = tmp_path / "hall.yaml"
    config_file.write_text(sample_config_text().replace("  token: null", "  token: null\n  report_day: 20"),
                           encoding="utf-8")
    config_file.chmod(0o644)
    write_links(config_file, {"url": "http://127.0.0.1:8701", "token": "t0ken-abc"}, "127.0.0.1:8791")
    config = load_config(config_file)
    assert (config.upstream_url, config.upstream_token, config.upstream_report_day) == (
        "http://127.0.0.1:8701", "t0ken-abc", 20)
    assert config.emulator_control == "127.0.0.1:8791"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o640        # group-readable stays, others never
    text = config_file.read_text(encoding="utf-8")
    assert "upstream:   # hallctl demo" in text and "# MQTT client passwords" in text
    before = config_file.stat().st_mtime_ns
    write_links(config_file, {"url": "http://127.0.0.1:8701", "token": "t0ken-abc"}, "127.0.0.1:8791")
    assert config_file.stat().st_mtime_ns == before                # unchanged: not rewritten
