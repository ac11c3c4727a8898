"""`hallctl demo`: the whole hall on embedded defaults, driven the way IT staff would try it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest
import yaml

from hall_controller.bus.client import HallClient

from .daemonkit import wait_until


def _http(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_demo_runs_the_hall_on_emulated_devices(tmp_path):
    # The log goes to its own file: on a shared pipe a log line can land inside the summary lines.
    log = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "hall_controller.cli", "demo", "--dir", str(tmp_path / "hall"),
                             "--no-ui"], stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(line.rstrip()) for line in proc.stdout], daemon=True).start()
    try:
        wait_until(lambda: any(line.startswith("Ctrl-C") for line in lines), 60, "demo ready")
        summary = dict(line.split(None, 1) for line in lines if line.startswith("  ") and len(line.split(None, 1)) == 2)
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
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        log.close()

