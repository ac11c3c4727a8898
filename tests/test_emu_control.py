"""The emulator control API (DESIGN §9) over real HTTP on an ephemeral port, and ``hall-emu``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from hw_emulators import cli
from hw_emulators.hall import EmulatedHall

from .harness import wait_until

REPO = Path(__file__).resolve().parents[1]
DEVICES = [
    {"id": "bus-1", "kind": "controller", "profile": "dory-controller", "url": "emulated"},
    {"id": "bus-2", "kind": "controller", "profile": "dory-controller", "url": "emulated"},
    {"id": "led-3", "kind": "led", "profile": "dory-led-375-4", "bus": "bus-1", "address": 3, "window": 3},
    {"id": "keypad-3", "kind": "keypad", "profile": "dory-keypad", "bus": "bus-1", "address": 3, "window": 3},
    {"id": "keypad-9", "kind": "keypad", "profile": "dory-keypad", "bus": "bus-1", "address": 9, "window": 9},
    {"id": "keypad-9b", "kind": "keypad", "profile": "dory-keypad", "bus": "bus-2", "address": 9, "window": 10},
    {"id": "card-reader-1", "kind": "card_reader", "profile": "dory-dl6009-card-reader", "url": "emulated",
     "kiosk": "kiosk-1"},
]
# Keypad 3 "next", no digits: L = 3, CS = 03+01+0C = 0x10.
KEYPAD3_NEXT = bytes.fromhex("FF 68 03 03 68 03 01 0C 10 16")
# LED 3 "A001": XOR = 03^A5^00^08^41^01^30^01^30^01^31^01 = 0xDE.
LED3_A001 = bytes.fromhex("A0 90 03 A5 00 08 41 01 30 01 30 01 31 01 DE")
# Keypad 3 display "A001": CS = 03+02+41+30+30+31 = 0xD7.
KEYPAD3_SHOW_A001 = bytes.fromhex("FF 68 06 06 68 03 02 41 30 30 31 D7 16")


class Api:
    def __init__(self, host: str, port: int) -> None:
        self.base = f"http://{host}:{port}"

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                status, payload, ctype = resp.status, resp.read(), resp.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            status, payload, ctype = exc.code, exc.read(), exc.headers["Content-Type"]
        return status, json.loads(payload) if ctype.startswith("application/json") else payload.decode()


@pytest.fixture
def hall() -> Iterator[EmulatedHall]:
    with EmulatedHall(DEVICES, link="tcp") as h:
        yield h


@pytest.fixture
def api(hall: EmulatedHall) -> Api:
    return Api(*hall.serve_control("127.0.0.1", 0))


@pytest.fixture
def host(hall: EmulatedHall) -> Iterator[serial.Serial]:
    port = serial.serial_for_url(hall.device_urls()["bus-1"], timeout=0.05)
    wait_until(lambda: hall.device("bus-1").link.host_connected, 2, "the host to connect to bus-1")
    yield port
    port.close()


def read(port: serial.Serial, size: int, timeout: float = 2.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < size and time.monotonic() < deadline:
        out += port.read(size - len(out))
    return out


def test_devices_lists_urls_and_addresses(hall: EmulatedHall, api: Api) -> None:
    status, devices = api.call("GET", "/devices")
    assert status == 200
    by_id = {d["id"]: d for d in devices}
    bus_url = by_id["bus-1"]["url"]
    assert bus_url.startswith("socket://127.0.0.1:") and bus_url == hall.device_urls()["bus-1"]
    assert by_id["led-3"] == {"id": "led-3", "kind": "led", "url": bus_url, "address": 3, "window": 3,
                              "bus": "bus-1"}
    assert by_id["keypad-9b"]["url"] == by_id["bus-2"]["url"] != bus_url
    reader = by_id["card-reader-1"]
    assert (reader["kind"], reader["kiosk"]) == ("card_reader", "kiosk-1")
    assert reader["url"].startswith("socket://127.0.0.1:") and reader["url"] not in (bus_url, by_id["bus-2"]["url"])


def test_a_kind_without_an_emulator_is_listed_and_answers_501(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until a kind's emulator lands, operators see it listed without a url, and its routes say so."""
    from hw_emulators import registry

    registry.emulator_for("card_reader")  # load the built-ins before hiding one
    monkeypatch.setattr(registry.REGISTRY, "classes", {k: v for k, v in registry.REGISTRY.classes.items()
                                                       if k != "card_reader"})
    with EmulatedHall(DEVICES, link="memory") as pending_hall:
        api = Api(*pending_hall.serve_control("127.0.0.1", 0))
        by_id = {d["id"]: d for d in api.call("GET", "/devices")[1]}
        assert by_id["card-reader-1"] == {"id": "card-reader-1", "kind": "card_reader", "kiosk": "kiosk-1",
                                          "url": None}
        status, payload = api.call("POST", "/card-reader/card-reader-1/fault", {"mode": "silent"})
        assert status == 501 and "暂未仿真" in payload["error"]["message"]


def test_press_waits_for_the_host_echo(api: Api, host: serial.Serial) -> None:
    def echo() -> None:
        frame = read(host, len(KEYPAD3_NEXT))
        if frame == KEYPAD3_NEXT:
            host.write(frame)

    thread = threading.Thread(target=echo)
    thread.start()
    status, body = api.call("POST", "/keypad/3/press", {"key": "next"})
    thread.join(3)
    assert status == 200
    assert body == {"id": "keypad-3", "acked": True, "attempts": 1, "frame": "ff 68 03 03 68 03 01 0c 10 16"}


def test_press_without_echo_reports_unacknowledged(api: Api, host: serial.Serial) -> None:
    status, body = api.call("POST", "/keypad/3/press", {"key": "transfer", "digits": "5"})
    assert status == 200 and body["acked"] is False and body["attempts"] == 3
    # 3 attempts of FF 68 04 04 68 03 01 05 13 CS 16 with CS = 03+01+05+13 = 0x1C
    assert read(host, 33) == bytes.fromhex("FF 68 04 04 68 03 01 05 13 1C 16") * 3


def test_led_and_keypad_views(api: Api, host: serial.Serial) -> None:
    host.write(LED3_A001 + KEYPAD3_SHOW_A001)
    wait_until(lambda: api.call("GET", "/keypad/3")[1]["display"] == "A001", 2, "keypad 3 to show A001",
               interval=0.02)
    status, led = api.call("GET", "/led/3")
    assert status == 200 and led["text"] == "A001"
    assert [h["text"] for h in led["history"]] == ["A001"] and "T" in led["history"][0]["at"]
    assert api.call("GET", "/keypad/3") == (200, {"display": "A001"})


def test_bus_query_picks_among_buses(api: Api) -> None:
    status, body = api.call("GET", "/keypad/9")
    assert status == 400 and "bus" in body["error"]["message"]
    assert api.call("GET", "/keypad/9?bus=bus-2") == (200, {"display": ""})
    status, body = api.call("POST", "/keypad/9/press?bus=bus-2", {"key": "next", "digits": "x"})
    assert status == 400


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/led/7", None, 404),
    ("GET", "/led/abc", None, 400),
    ("POST", "/keypad/3/press", {"key": "explode"}, 400),
    ("POST", "/keypad/3/press", {}, 400),
    ("POST", "/keypad/3/press", {"key": "next", "digits": 12}, 400),
    ("POST", "/keypad/42/press", {"key": "next"}, 404),
    ("POST", "/led/led-3/fault", {"mode": "meltdown"}, 400),
    ("POST", "/led/led-3/fault", {"mode": "delay"}, 400),
    ("POST", "/led/led-3/fault", {"mode": "delay", "ms": -5}, 400),
    ("POST", "/led/keypad-3/fault", {"mode": "silent"}, 404),
    ("POST", "/keypad/nobody/fault", {"mode": "silent"}, 404),
    ("DELETE", "/controller/nobody/fault", None, 404),
    ("GET", "/nowhere", None, 404),
    ("DELETE", "/devices", None, 405),
])
def test_errors_are_json(api: Api, method: str, path: str, body: Any, status: int) -> None:
    got, payload = api.call(method, path, body)
    assert got == status
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]


def test_malformed_json_is_400(api: Api) -> None:
    status, payload = api.call("POST", "/keypad/3/press", raw=b"{not json")
    assert status == 400 and "JSON" in payload["error"]["message"]


def test_fault_inject_and_clear(api: Api, hall: EmulatedHall) -> None:
    status, body = api.call("POST", "/led/led-3/fault", {"mode": "delay", "ms": 250})
    assert status == 200 and body["fault"]["mode"] == "delay" and body["fault"]["ms"] == 250
    state = {d["id"]: d for d in api.call("GET", "/state")[1]["devices"]}
    assert state["led-3"]["fault"]["mode"] == "delay" and state["led-3"]["online"] is True
    assert state["bus-2"]["fault"] is None
    assert api.call("DELETE", "/led/led-3/fault") == (200, {"id": "led-3", "fault": None})
    assert hall.device("led-3").fault is None


def test_controller_disconnect_over_http(api: Api, hall: EmulatedHall, host: serial.Serial) -> None:
    assert api.call("POST", "/controller/bus-1/fault", {"mode": "disconnect"})[0] == 200
    with pytest.raises(serial.SerialException):
        read(host, 1, timeout=1.0)
    state = {d["id"]: d for d in api.call("GET", "/state")[1]["devices"]}
    assert state["bus-1"]["online"] is False and state["keypad-3"]["online"] is False
    assert state["keypad-9b"]["online"] is True  # the other bus is unaffected
    assert api.call("DELETE", "/controller/bus-1/fault")[0] == 200
    fresh = serial.serial_for_url(hall.device_urls()["bus-1"], timeout=0.05)
    fresh.write(LED3_A001)
    wait_until(lambda: hall.led(3).text == "A001", 2, "LED 3 to show A001 on the fresh connection")
    fresh.close()


def test_dashboard_page(api: Api) -> None:
    status, page = api.call("GET", "/")
    assert status == 200
    for word in ("设备", "在线", "窗口屏", "呼叫器", "/state", "fault"):
        assert word in page


def test_hall_from_loaded_config_devices(loaded_config: Any) -> None:
    with EmulatedHall(loaded_config.devices, link="memory") as hall:
        urls = hall.device_urls()
        assert urls["led-5"] == urls["keypad-5"] == urls["bus-1"] == "memory://bus-1"
        assert urls["card-reader-1"] == "memory://card-reader-1"
        assert hall.led(5).window == 5


def test_mgmt_subcommand_is_delegated(monkeypatch: pytest.MonkeyPatch) -> None:
    import hw_emulators.mgmt

    seen: list[list[str]] = []
    monkeypatch.setattr(hw_emulators.mgmt, "main_mgmt", lambda argv: seen.append(list(argv)) or 7)
    assert cli.main(["mgmt", "--listen", "127.0.0.1:0"]) == 7
    assert seen == [["--listen", "127.0.0.1:0"]]


def test_run_with_bad_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "hall.yaml"
    path.write_text("devices:\n  - {id: led-1, kind: led, profile: dory-led-375-4, bus: nope, address: 1}\n",
                    encoding="utf-8")
    assert cli.main(["run", "--config", str(path), "--control", "127.0.0.1:0"]) == 2


@pytest.mark.parametrize("link", ["tcp", "pty"])
def test_hall_emu_run_serves_sample_hall_and_stops_on_sigterm(config_file: Path, link: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hw_emulators.cli import main; sys.exit(main())",
         "run", "--config", str(config_file), "--control", "127.0.0.1:0", "--link", link],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if " ready http://" in line:
                break
        ready = [ln for ln in lines if " ready http://" in ln]
        assert ready, "".join(lines)
        host, port = ready[0].rsplit("http://", 1)[1].strip().rstrip("/").rsplit(":", 1)
        status, devices = Api(host, int(port)).call("GET", "/devices")
        assert status == 200
        by_id = {d["id"]: d for d in devices}
        assert {f"led-{n}" for n in range(1, 9)} <= by_id.keys()
        assert by_id["keypad-8"]["url"] == by_id["bus-1"]["url"]
        assert by_id["printer-1"]["url"] not in (None, by_id["bus-1"]["url"])
        bus_url = by_id["bus-1"]["url"]
        if link == "pty":
            assert Path(bus_url).exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        if link == "pty":
            assert not Path(bus_url).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
