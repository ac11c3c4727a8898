"""Helpers for the device layer tests: the real daemon in-process next to the emulated window bus."""

from __future__ import annotations

import threading
import time
from bisect import insort
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device_profiles import load_profile
from hall_controller.bus.client import HallClient
from hall_controller.bus.topics import ALL_EVENTS
from hall_controller.clock import Clock
from hall_controller.config import load_config
from hall_controller.daemon import DaemonOptions, HallDaemon
from hall_controller.service import Actor
from hw_emulators.hall import EmulatedHall

from .daemonkit import (
    init_hall,
    passwords,
    wait_until,  # noqa: F401 - re-exported for the tests
)

KIOSK = Actor("kiosk-1", "kiosk")
WINDOWS = (3, 6)  # the windows whose LED screens and keypads the tests keep on the bus
REPEAT_GUARD_S = load_profile("dory-keypad").quirks["repeat_guard_ms"] / 1000 + 0.05
BUS_DEVICES = ("bus-1", *(f"{kind}-{n}" for kind in ("led", "keypad") for n in WINDOWS))


def two_windows(data: dict[str, Any]) -> None:
    """Keep the LED screens and keypads of windows 3 and 6 only: restores stay short on the wire."""
    keep = {"bus-1", *BUS_DEVICES}
    data["devices"] = [d for d in data["devices"] if d["kind"] not in ("led", "keypad") or d["id"] in keep]
    for window in data["windows"]:
        window["devices"] = [d for d in window["devices"] if d in keep]


class DeviceHall:
    """An initialised hall folder, its emulated devices and the daemon, with every event recorded."""

    def __init__(self, tmp_path: Path, link: str = "tcp", *, urls: bool = True,
                 mutate: Callable[[dict[str, Any]], None] | None = None, clock: Clock | None = None) -> None:
        def prepare(data: dict[str, Any]) -> None:
            two_windows(data)
            if mutate:
                mutate(data)

        self.config_path = init_hall(tmp_path, prepare)
        self.config = load_config(self.config_path)
        self.emu = EmulatedHall(self.config.devices, link=link)
        self.emu.start()
        device_urls = {k: v for k, v in self.emu.device_urls().items() if v} if urls else {}
        self._options = DaemonOptions(db_url=f"sqlite:///{tmp_path}/h.db", mqtt_listen="127.0.0.1:0",
                                      device_urls=device_urls)
        self._clock = clock
        self.events: list[dict[str, Any]] = []  # in seq order
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._clients: list[HallClient] = []
        self._last_press: dict[int, tuple[tuple[str, str], float]] = {}
        self._start_daemon()

    def _start_daemon(self) -> None:
        self.daemon = HallDaemon(self.config, self._options, clock=self._clock, config_path=str(self.config_path))
        self.daemon.start()
        assert self.daemon.service is not None
        self.service = self.daemon.service
        self.service.subscribe(self._record)
        # The device links start inside daemon.start(): what they logged before we subscribed is in
        # the event log (a race with the subscription is settled by the event id).
        for event in self.service.store.iter_events():
            self._record(event)

    def _record(self, event: dict[str, Any]) -> None:
        with self._lock:
            if event["event_id"] in self._seen:
                return
            self._seen.add(event["event_id"])
            insort(self.events, event, key=lambda e: e["seq"])

    def restart(self) -> None:
        """Stop the daemon cleanly (what it held in memory is gone) and start a new one on the same
        database, devices and clock."""
        self.daemon.stop()
        self._start_daemon()

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.daemon.stop()
        self.emu.stop()

    # -- views ----------------------------------------------------------------------------------
    def led(self, window: int) -> str:
        return self.emu.led(window).text

    def led_history(self, window: int) -> list[str]:
        return [entry["text"] for entry in self.emu.led(window).view()["history"]]

    def keypad_display(self, window: int) -> str:
        return self.emu.keypad(window).display

    def device_events(self, kind: str, device: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["type"] == kind and device in (None, e["device"])]

    def devices_online(self) -> bool:
        devices = self.service.snapshot()["devices"]
        return all(devices.get(d, {}).get("online") for d in BUS_DEVICES)

    def wait_online(self, timeout: float = 5.0) -> None:
        wait_until(self.devices_online, timeout, "every bus device online")

    def wait_led(self, window: int, text: str, timeout: float = 3.0) -> None:
        wait_until(lambda: self.led(window) == text, timeout, f"LED {window} to show {text!r}")

    def wait_keypad(self, window: int, text: str, timeout: float = 3.0) -> None:
        wait_until(lambda: self.keypad_display(window) == text, timeout, f"keypad {window} to show {text!r}")

    # -- acting -----------------------------------------------------------------------------------
    def issue(self, service: str = "consult") -> str:
        return self.service.execute(KIOSK, "issue_ticket", {"service": service})["ticket"]["number"]

    def press(self, window: int, key: str, digits: str = "") -> None:
        """Press a key; the same key again is held back until the driver no longer takes it for a
        retransmission (the keypad profile's repeat guard)."""
        last = self._last_press.get(window)
        if last is not None and last[0] == (key, digits):
            time.sleep(max(0.0, last[1] + REPEAT_GUARD_S - time.monotonic()))
        self._last_press[window] = ((key, digits), time.monotonic())
        result = self.emu.keypad(window).press(key, digits)
        assert result.acked, f"keypad {window}: {digits}{key} not acknowledged"

    def client(self, client_id: str, role: str) -> HallClient:
        assert self.daemon.mqtt_address is not None
        host, port = self.daemon.mqtt_address
        client = HallClient(client_id, passwords(self.config_path)[client_id], host, port,
                            self.config.hall_id, role=role, events=ALL_EVENTS if role == "display" else None)
        client.connect(timeout=10)
        self._clients.append(client)
        return client
