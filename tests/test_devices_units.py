"""Device layer pieces without the daemon: screen texts, key mapping, backoff, retry bookkeeping."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from typing import Any

import pytest

from hall_controller.backoff import Backoff
from hall_controller.config import parse_config
from hall_controller.devices import DeviceManager
from hall_controller.devices.keypad import key_command
from hall_controller.devices.screens import (
    KEYPAD_ERROR_CODES,
    keypad_error_code,
    keypad_text,
    led_text,
)
from hall_controller.domain import DomainError

from .conftest import sample_data
from .harness import wait_until

A007 = {"number": "A007"}


@pytest.mark.parametrize(("status", "ticket", "options", "led", "keypad"), [
    ("calling", A007, {}, "A007", "A007"),
    ("serving", A007, {}, "A007", "A007"),
    ("paused", None, {}, "暂停服务", "PAUS"),
    ("idle", None, {}, "欢迎光临", "----"),
    ("idle", None, {"idle_text": "请稍候"}, "请稍候", "----"),
    ("closed", None, {}, "暂停服务", ""),
    ("closed", None, {"closed_text": ""}, "", ""),
])
def test_screen_texts_follow_the_window_state(status, ticket, options, led, keypad):
    view = {"status": status, "ticket": ticket}
    assert led_text(view, options) == led
    assert keypad_text(view) == keypad


def test_keypad_error_codes_are_short_and_distinct():
    codes = list(KEYPAD_ERROR_CODES.values())
    assert len(set(codes)) == len(codes) and all(len(c) <= 4 and c.isascii() for c in codes)
    assert keypad_error_code("not_logged_in") == "E1" and keypad_error_code("internal") == "E9"


@pytest.mark.parametrize(("key", "digits", "status", "expected"), [
    ("next", "", "idle", ("call_next", {"finish_current": True})),
    ("next", "12", "idle", ("call_number", {"number": "A012"})),
    ("next", "1234", "idle", ("call_number", {"number": "A1234"})),
    ("recall", "", "calling", ("recall", {})),
    ("start", "", "calling", ("start", {})),
    ("evaluate", "", "serving", ("request_rating", {})),
    ("pause", "", "idle", ("pause", {"finish_current": True})),
    ("pause", "", "serving", ("pause", {"finish_current": True})),
    ("pause", "", "paused", ("resume", {})),
    ("transfer", "6", "serving", ("transfer", {"window": 6})),
    ("cancel", "", "calling", ("skip", {})),
    ("function", "1003", "closed", ("login", {"staff_id": "1003"})),
    ("function", "", "idle", ("logout", {})),
])
def test_keys_map_to_window_ops(key, digits, status, expected):
    assert key_command(key, digits, status, "A") == expected


def test_transfer_without_a_window_number_is_a_bad_request():
    with pytest.raises(DomainError) as info:
        key_command("transfer", "", "serving", "A")
    assert info.value.code == "bad_request"


def test_backoff_doubles_with_jitter_and_stays_under_the_cap():
    backoff, rng = Backoff(base=0.2, cap=4.0), random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(1, 12)]
    assert 0.16 <= delays[0] <= 0.24 and 0.32 <= delays[1] <= 0.48
    assert all(d <= backoff.cap for d in delays) and delays[-1] >= backoff.cap * 0.8


class RecordingService:
    """What DeviceManager needs of HallService, recording device state reports."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.reports: list[tuple[str, bool]] = []
        self.lock = threading.Lock()

    def subscribe(self, callback: Any) -> Any:
        self.callback = callback
        return lambda: None

    def device_status(self, device_id: str, online: bool, profile: str, error: str | None = None) -> None:
        with self.lock:
            self.reports.append((device_id, online))

    def snapshot(self) -> dict[str, Any]:
        return {"windows": {}}


def refusing_server() -> tuple[socket.socket, list[float]]:
    """A serial server with nothing behind it: accepts each connection and resets it at once."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[float] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted


def test_a_bus_that_drops_every_connection_is_offline_once_and_retried_with_backoff(tmp_path):
    server, accepted = refusing_server()
    data = sample_data()
    # The bus alone: the other kinds' handlers need the whole service, not this recording stand-in.
    data["devices"] = [d for d in data["devices"] if d["kind"] in ("controller", "led", "keypad")]
    data["devices"][0]["url"] = f"socket://127.0.0.1:{server.getsockname()[1]}"
    config = parse_config(data, "sample.yaml", tmp_path)
    service = RecordingService(config)
    manager = DeviceManager(config, service)
    manager.start()
    try:
        wait_until(lambda: len(accepted) >= 4, 3, "four connection attempts")
    finally:
        began = time.monotonic()
        manager.stop()
        server.close()
    assert time.monotonic() - began < 1.0
    bus_devices = {d.id for d in config.devices if d.kind in ("controller", "led", "keypad")}
    # Never online (no connection lasted), offline once per device despite the retries.
    assert sorted(service.reports) == sorted((d, False) for d in bus_devices)
    # Backing off (pyserial's socket close adds a fixed 0.3 s to some gaps, hence first vs last).
    assert accepted[-1] - accepted[-2] > accepted[1] - accepted[0]
