"""Three real hall daemons for `hall-city --demo`: each a `hallctl init` folder (the sample config without
devices, its own embedded broker, `city:` pointing at the demo's city broker with its own account) run by
`hallctl run`, with a little traffic driven over its bus as its apps would: tickets taken at kiosk-1,
window 3 calling and serving, the visit rated at tablet-3 — one of them badly (a 差评 on the 大屏).
"""

from __future__ import annotations

import logging
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from hall_controller.bus.client import BusError, HallClient
from hall_controller.bus.credentials import write_private
from hall_controller.config import sample_config_text

log = logging.getLogger(__name__)

PIN = "1234"          # the sample config's demo staff PIN
STAFF = "S003"
WINDOW = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealHall:
    """One hall daemon in `folder`, reporting to the city broker at `city_port` as `username`."""

    def __init__(self, folder: Path, hall: str, name: str, code: str, district: str, city_port: int,
                 username: str, password: str) -> None:
        self.folder, self.hall = folder, hall
        folder.mkdir(parents=True, exist_ok=True)
        data = yaml.safe_load(sample_config_text())
        data["hall"].update(id=hall, name=name, code=code)
        data["devices"] = []
        for window in data["windows"]:
            window["devices"] = []
        self.port = _free_port()
        data["mqtt"] = {"listen": f"127.0.0.1:{self.port}"}
        data["web"]["listen"] = f"127.0.0.1:{_free_port()}"
        data["city"] = {"url": f"mqtt://127.0.0.1:{city_port}", "district": district, "username": username,
                        "password_file": "city-password"}
        self.config = folder / "hall.yaml"
        self.config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        write_private(folder / "city-password", password + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = folder / "daemon.log"

    def start(self) -> None:
        hallctl = [sys.executable, "-m", "hall_controller.cli", "--log-level", "WARNING"]
        if not (self.folder / "client-passwords.yaml").exists():
            subprocess.run([*hallctl, "init", "--config", str(self.config)], check=True, capture_output=True)
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen([*hallctl, "run", "--config", str(self.config)], stdout=out, stderr=out)

    def client(self, client_id: str, role: str, window: int | None = None) -> HallClient:
        passwords = yaml.safe_load((self.folder / "client-passwords.yaml").read_text(encoding="utf-8"))
        client = HallClient(client_id, passwords[client_id], "127.0.0.1", self.port, self.hall, role=role,
                            window=window)
        client.connect(timeout=30)
        return client

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Traffic:
    """A visitor every few seconds at kiosk-1, window 3 serving them, tablet-3 rating (badly when told)."""

    def __init__(self, hall: RealHall, stop: threading.Event, *, bad_first: bool = False, seed: int = 0) -> None:
        self.hall, self.stop, self.bad_next = hall, stop, bad_first
        self.rng = random.Random(seed)

    def run(self) -> None:
        clients: list[HallClient] = []
        try:
            kiosk = self.hall.client("kiosk-1", "kiosk")
            window = self.hall.client(f"window-{WINDOW}", "window", WINDOW)
            tablet = self.hall.client(f"tablet-{WINDOW}", "tablet", WINDOW)
            clients += [kiosk, window, tablet]
            window.request("login", staff_id=STAFF, pin=PIN)
            for _ in range(4 + self.rng.randrange(6)):
                kiosk.request("issue_ticket", service="consult")
            while not self.stop.is_set():
                self._serve_one(window, tablet)
                kiosk.request("issue_ticket", service="consult")
                self.stop.wait(2.0 + self.rng.random() * 3)
        except (BusError, OSError) as exc:
            if not self.stop.is_set():
                log.warning("demo hall %s: traffic stopped (%s)", self.hall.hall, exc)
        finally:
            for client in clients:          # before the daemon stops: no reconnect warnings at the end
                client.close()

    def _serve_one(self, window: HallClient, tablet: HallClient) -> None:
        called: dict[str, Any] = window.request("call_next").get("ticket") or {}
        if not called:
            return
        window.request("start")
        self.stop.wait(1.0)
        window.request("finish")
        score = 1 if self.bad_next else 5
        self.bad_next = False
        tablet.request("rate", ticket=called["id"], score=score)


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the demo hall's broker on port {port} did not come up")
