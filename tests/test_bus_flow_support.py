"""The real hall daemon in-process, on the embedded broker or on a private Mosquitto, with HallClients.

Shared by tests/test_bus_flow_e2e.py and tests/test_bus_flow_restart.py (no tests in here).
The sample hall runs without devices, so nothing but MQTT clients drives the queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hall_controller.bus.client import CommandError, HallClient
from hall_controller.bus.credentials import DAEMON_CLIENT_ID, CredentialStore
from hall_controller.bus.mosquitto import write_mosquitto_config
from hall_controller.bus.topics import ALL_EVENTS
from hall_controller.config import HallConfig, load_config
from hall_controller.daemon import DaemonOptions, HallDaemon

from .daemonkit import (
    init_hall,
    passwords,
    wait_until,  # noqa: F401 - re-exported for the tests
)
from .test_bus_support import Mosquitto, free_port, have_mosquitto

BROKERS = ["embedded", pytest.param("mosquitto", marks=[
    pytest.mark.mosquitto, pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")])]
FAST_RECONNECT = {"reconnect_min_delay": 0.05, "reconnect_max_delay": 0.3}
PIN = "1234"


def no_devices(data: dict[str, Any]) -> None:
    """Keep the daemon away from emulated devices: the queue is driven over MQTT only."""
    data["devices"] = []
    for window in data["windows"]:
        window["devices"] = []


def error_code(call: Callable[[], Any]) -> str:
    """The `error.code` of a request that must fail with `ok: false`."""
    with pytest.raises(CommandError) as info:
        call()
    return info.value.code


class EventLog:
    """Everything a client receives on `event/#`, in arrival order."""

    def __init__(self, client: HallClient) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        client.subscribe_events(self._add)

    def _add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def of(self, event_type: str, ticket_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == event_type
                and (ticket_id is None or (e.get("ticket") or {}).get("id") == ticket_id)]


class StateLog:
    """Every retained-state change a client sees: (section, key, value) in arrival order."""

    def __init__(self, client: HallClient) -> None:
        self._lock = threading.Lock()
        self._changes: list[tuple[str, Any, Any]] = []
        client.add_state_listener(self._add)

    def _add(self, section: str, key: Any, value: Any) -> None:
        with self._lock:
            self._changes.append((section, key, value))

    def window_statuses(self, number: int) -> list[str]:
        """The window's status as published, consecutive repeats collapsed."""
        with self._lock:
            statuses = [v["status"] for s, k, v in self._changes if s == "window" and k == number and v]
        return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


class FlowHall:
    """Sample hall (no devices) + HallDaemon in this process, MQTT on `broker`:

    - `embedded`: the daemon starts its own broker (`mqtt_listen="127.0.0.1:0"`);
    - `mosquitto`: a private Mosquitto on an ephemeral port, configured from the generated password
      file and ACL, and the daemon connecting to it `--mqtt-url` style.
    """

    def __init__(self, tmp_path: Path, broker: str) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.config_path = init_hall(tmp_path, no_devices)
        self.config: HallConfig = load_config(self.config_path)
        self.passwords = passwords(self.config_path)
        self.roles = {c.id: (c.role, c.window) for c in self.config.clients}
        self.clients: list[HallClient] = []
        self.mosquitto: Mosquitto | None = None
        if broker == "embedded":
            options = DaemonOptions(mqtt_listen="127.0.0.1:0")
        elif broker == "mosquitto":
            # The daemon's password must be in the store before the Mosquitto password file is written.
            daemon_password = CredentialStore(self.config.credentials_path).add_or_reset(DAEMON_CLIENT_ID, "daemon")
            self.port = free_port()
            files = write_mosquitto_config(tmp_path / "mosquitto", self.config.hall_id,
                                           CredentialStore(self.config.credentials_path),
                                           port=self.port, bind_address="127.0.0.1",
                                           scan_max_bytes=self.config.scan_max_bytes)
            self.mosquitto = Mosquitto(tmp_path, files.conf_file.read_text())  # adds `user root` as root
            self.mosquitto.start(self.port)
            options = DaemonOptions(mqtt_url=f"mqtt://{DAEMON_CLIENT_ID}:{daemon_password}@127.0.0.1:{self.port}")
        else:
            raise ValueError(broker)
        self.daemon = HallDaemon(self.config, options, config_path=str(self.config_path))
        self._daemon_stopped = False
        try:
            self.daemon.start()
            assert self.daemon.bridge is not None and self.daemon.bridge.connected, "bridge not connected"
        except BaseException:
            self.close()
            raise
        assert self.daemon.mqtt_address is not None
        self.port = self.daemon.mqtt_address[1]

    @property
    def service(self) -> Any:
        assert self.daemon.service is not None
        return self.daemon.service

    def client(self, client_id: str, *, connect: bool = True) -> HallClient:
        role, window = self.roles[client_id]
        client = HallClient(client_id, self.passwords[client_id], "127.0.0.1", self.port, self.config.hall_id,
                            role=role, window=window, events=ALL_EVENTS if role == "display" else None,
                            **FAST_RECONNECT)
        self.clients.append(client)
        if connect:
            client.connect(timeout=10)
        return client

    def login(self, client: HallClient, staff_id: str) -> dict[str, Any]:
        return client.request("login", staff_id=staff_id, pin=PIN)

    def stop_daemon(self) -> None:
        if not self._daemon_stopped:
            self._daemon_stopped = True
            self.daemon.stop()

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.stop_daemon()
        if self.mosquitto is not None:
            self.mosquitto.stop()
