"""Shared fixtures for the Qt app tests: a real daemon (`hallctl run` with its embedded broker) and
QtHallBus clients of it, driven offscreen with pytest-qt.

Use from a test module:

    from . import uikit

    hall_template, hall_daemon, ui_bus = uikit.hall_template, uikit.hall_daemon, uikit.ui_bus  # fixtures

    def test_x(qtbot, hall_daemon, ui_bus):
        bus = ui_bus("kiosk-1", role="kiosk")      # started, online
        ...
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk_ui.qtbus import QtHallBus

from .daemonkit import DaemonProcess, free_port, init_hall, passwords
from .test_bus_flow_support import no_devices

ONLINE_TIMEOUT_MS = 15_000


@pytest.fixture(scope="session")
def hall_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised sample hall (no devices) per session; tests run on copies (init hashes every
    password and PIN, which takes seconds)."""
    return init_hall(tmp_path_factory.mktemp("hall-template"), no_devices).parent


@pytest.fixture
def hall_daemon(tmp_path: Path, hall_template: Path) -> Iterator[DaemonProcess]:
    """A fresh copy of the sample hall served by a real daemon process on an ephemeral port."""
    folder = tmp_path / "hall"
    shutil.copytree(hall_template, folder)
    daemon = DaemonProcess(folder / "hall.yaml", free_port())
    daemon.start()
    yield daemon
    daemon.kill()


def make_bus(daemon: DaemonProcess, client_id: str, role: str, *, window: int | None = None,
             events: Any = None) -> QtHallBus:
    """A QtHallBus for a client of the daemon's hall (not started)."""
    from hall_controller.bus.client import HallClient

    client = HallClient(client_id, passwords(daemon.config)[client_id], "127.0.0.1", daemon.port, "demo",
                        role=role, window=window, events=events, reconnect_min_delay=0.1,
                        reconnect_max_delay=0.5)
    return QtHallBus(client, poll_ms=50)


@pytest.fixture
def ui_bus(qtbot, hall_daemon: DaemonProcess) -> Iterator[Callable[..., QtHallBus]]:
    """Factory: `ui_bus(client_id, role=..., window=..., events=..., online=True)` -> a started bus
    (waited until online unless `online=False`); all are closed at the end of the test."""
    made: list[QtHallBus] = []

    def factory(client_id: str, *, role: str, window: int | None = None, events: Any = None,
                online: bool = True) -> QtHallBus:
        bus = make_bus(hall_daemon, client_id, role, window=window, events=events)
        made.append(bus)
        bus.start()
        if online:
            wait_online(qtbot, bus)
        return bus

    yield factory
    for bus in made:
        bus.close()


def wait_online(qtbot, bus: QtHallBus, online: bool = True, timeout: int = ONLINE_TIMEOUT_MS) -> None:
    qtbot.waitUntil(lambda: bus.online is online, timeout=timeout)


def window_client(daemon: DaemonProcess, number: int, staff: str | None = None):
    """A plain HallClient for window N (logged in as `staff` when given), to call numbers in tests."""
    client = daemon.client(f"window-{number}", role="window", window=number)
    if staff:
        client.request("login", staff_id=staff, pin="1234")
    return client
