"""Command size by role (issue 17.7): only a window's attach_scan may carry megabytes.

Every other command above 16 KiB is refused by the bridge before it is parsed, with a Chinese reply;
a packet over the broker's limit (the largest command a role may send, from ``scans.max_mb``) is
cut off by the broker and never reaches the daemon — with the embedded broker (amqtt behind our
connection gate) and with a real Mosquitto 2.0 from the generated config.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from hall_controller.bus import bridge as bridge_module
from hall_controller.bus.broker import PacketTooLarge, _PacketSizes
from hall_controller.bus.client import BusUnavailable, CommandError
from hall_controller.bus.limits import (
    MQTT_OVERHEAD,
    SMALL_COMMAND_BYTES,
    broker_packet_limit,
    command_limit,
    leading_op,
)
from hall_controller.cli import main as hallctl
from hall_controller.scans import command_payload_limit

from .harness import Hall, have_mosquitto, init_hall, no_devices, wait_until

MARK = "载荷标记-PAYLOAD-MARK-"   # a payload must never be logged: this string is looked for in the log
BIG = 100 * 1024


# ---------------------------------------------------------------------------------------------- the rules
def test_the_limit_follows_role_op_and_window() -> None:
    large = command_payload_limit(10 * 1024 * 1024)
    assert command_limit("window", "attach_scan", 3, large) == large == 14_046_552
    assert command_limit("window", "attach_scan", None, large) == SMALL_COMMAND_BYTES   # a supervisor
    for role, op in [("window", "finish"), ("window", None), ("kiosk", "attach_scan"), ("tablet", "rate"),
                     ("display", "status"), ("admin", "add_appointment")]:
        assert command_limit(role, op, 3, large) == SMALL_COMMAND_BYTES, (role, op)
    assert broker_packet_limit(10 * 1024 * 1024) == large + MQTT_OVERHEAD
    assert broker_packet_limit(2 * 1024 * 1024) == command_payload_limit(2 * 1024 * 1024) + MQTT_OVERHEAD


def test_16_kib_holds_the_largest_small_command_twice() -> None:
    """resolve_bad_rating with its 1000-character note, as HallClient sends it and \\u-escaped."""
    command = {"id": "0f6b8f5e-8a53-4c4e-9a55-3f3c2d1a0b9c", "op": "resolve_bad_rating",
               "ticket": "0f6b8f5e-8a53-4c4e-9a55-3f3c2d1a0b9c", "note": "已电话回访群众，说明情况并致歉。" * 62}
    assert len(command["note"]) <= 1000
    utf8 = json.dumps(command, ensure_ascii=False).encode()
    escaped = json.dumps(command).encode()
    assert len(utf8) < 3200 and len(escaped) < 6200 < SMALL_COMMAND_BYTES // 2


def test_the_op_is_read_from_the_start_only() -> None:
    assert leading_op(b'{"id": "abc", "op": "attach_scan", "image": "..."}') == "attach_scan"
    assert leading_op(b'{"op":"finish","id":"abc"}') == "finish"
    assert leading_op(b'{"id": "abc", "image": "...", "op": "attach_scan"}') is None   # not first: too large
    assert leading_op(b'{"id": "a\\"b", "op": "attach_scan"}') is None
    assert leading_op(b'[{"op": "attach_scan"}]') is None


def test_packet_sizes_follow_headers_split_anywhere() -> None:
    sizes = _PacketSizes(200)
    ping, publish = bytes([0xC0, 0x00]), bytes([0x30, 0xC8, 0x01]) + b"x" * 200    # 0 and 200 bytes of body
    stream = ping + publish + ping
    for i in range(len(stream)):    # one byte at a time, as amqtt reads headers, and in odd pieces
        sizes.feed(stream[i:i + 1])
    for i in range(0, len(stream), 7):
        sizes.feed(stream[i:i + 7])
    with pytest.raises(PacketTooLarge) as exc:
        sizes.feed(bytes([0x30, 0xC9, 0x01]))   # announces 201 bytes: refused before any of them
    assert (exc.value.size, exc.value.limit) == (201, 200)


def test_hallctl_mqtt_config_writes_the_limit_of_the_halls_scans(tmp_path: Path) -> None:
    config = init_hall(tmp_path, lambda data: data.setdefault("scans", {}).update(max_mb=4))
    assert hallctl(["--log-level", "WARNING", "mqtt-config", "--config", str(config), str(tmp_path / "mq")]) == 0
    conf = (tmp_path / "mq" / "hall.conf").read_text()
    assert f"max_packet_size {broker_packet_limit(4 * 1024 * 1024)}\n" in conf


# ---------------------------------------------------------------------------------------------- a hall
def _png(approx_bytes: int) -> bytes:
    """A PNG of noise (it does not compress) of about ``approx_bytes``."""
    side = int((approx_bytes / 3) ** 0.5)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=0)
    return out.getvalue()


def _refused(client: Any, op: str, **args: Any) -> tuple[CommandError, float]:
    started = time.monotonic()
    with pytest.raises(CommandError) as err:
        client.request(op, timeout=10, **args)
    return err.value, time.monotonic() - started


BROKERS = ["embedded", pytest.param("mosquitto", marks=[
    pytest.mark.mosquitto, pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")])]


@pytest.mark.parametrize("broker", BROKERS)
def test_command_size_by_role_on_a_real_broker(tmp_path: Path, broker: str, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    parsed: list[int] = []      # sizes of the payloads the bridge parsed
    arrived: list[int] = []     # sizes of the messages that reached the bridge at all
    parse = bridge_module.parse_command
    monkeypatch.setattr(bridge_module, "parse_command",
                        lambda payload, limit: (parsed.append(len(payload)), parse(payload, limit))[1])
    on_message = bridge_module.MqttBridge._on_message
    monkeypatch.setattr(bridge_module.MqttBridge, "_on_message",
                        lambda self, c, u, message: (arrived.append(len(message.payload)),
                                                     on_message(self, c, u, message))[1])
    hall = Hall(tmp_path, mutate=no_devices, broker=broker)
    try:
        kiosk, window, tablet, display, supervisor = (hall.client(c) for c in (
            "kiosk-1", "window-3", "tablet-3", "display-1", "supervisor"))
        hall.login(window, "S003")
        kiosk.request("issue_ticket", service="consult")
        ticket = window.request("call_next")["ticket"]
        big = (MARK * (BIG // len(MARK.encode()) + 1))

        # 100 KB from every role but for a window's scan: refused at once, in Chinese, never parsed
        for client, op, args in [(kiosk, "issue_ticket", {"service": "consult", "note": big}),
                                 (tablet, "rate", {"ticket": ticket["id"], "score": 5, "comment": big}),
                                 (display, "status", {"note": big}),
                                 (window, "finish", {"note": big}),
                                 (kiosk, "attach_scan", {"ticket": ticket["id"], "image": big})]:
            error, took = _refused(client, op, **args)
            assert error.code == "bad_request" and took < 3, (client.client_id, op, took)
            if op == "attach_scan":
                assert "本终端不能上传扫描件" in error.message
            else:
                assert "过大" in error.message and "上限16 KB" in error.message and "请缩短" in error.message
        assert all(size <= SMALL_COMMAND_BYTES for size in parsed), parsed

        # a window's scan of about 3 MB goes through and is stored; a supervisor's is refused
        png = _png(3 * 1024 * 1024)
        image = base64.b64encode(png).decode()
        assert 3_000_000 < len(png) < 3_400_000
        scan = window.request("attach_scan", timeout=60, ticket=ticket["id"], image=image)["scan"]
        assert scan["size"] == len(png) and scan["type"] == "image/png"
        assert max(parsed) > 4_000_000
        error, _ = _refused(supervisor, "attach_scan", ticket=ticket["id"], image=image)
        assert "本终端不能上传扫描件" in error.message

        # over the broker's limit: the broker cuts the window off; the daemon never sees the message
        limit = broker_packet_limit(hall.config.scan_max_bytes)
        with pytest.raises(BusUnavailable):
            window.request("attach_scan", timeout=60, ticket=ticket["id"], image="/9j/" + "A" * limit)
        assert max(arrived) < limit
        wait_until(lambda: window.connected, 20, "the window reconnected")

        # the daemon kept serving everybody
        assert kiosk.request("issue_ticket", service="consult")["ticket"]["number"] == "A002"
        assert window.request("finish", note="已办结")["ticket"]["status"] == "finished"
    finally:
        hall.close()
    refusals = [r.getMessage() for r in caplog.records if "over its limit" in r.getMessage()]
    assert len(refusals) == 6 and all(str(BIG // 1000) in line for line in refusals[:4])
    assert MARK not in caplog.text and "AAAAAAAA" not in caplog.text


def test_the_bridge_without_role_limits_would_parse_them(tmp_path: Path, monkeypatch) -> None:
    """Positive control: with the role check off, a kiosk's 100 KB command is parsed and executed."""
    monkeypatch.setattr(bridge_module.MqttBridge, "_refused_as_too_large", lambda self, *a, **k: False)
    hall = Hall(tmp_path, mutate=no_devices, broker="embedded")
    try:
        kiosk = hall.client("kiosk-1")
        result = kiosk.request("issue_ticket", timeout=10, service="consult", note=MARK * 5000)
        assert result["ticket"]["number"] == "A001"
    finally:
        hall.close()


@pytest.mark.parametrize("broker", BROKERS)
def test_positive_control_a_broker_without_the_limit_lets_it_through(tmp_path: Path, broker: str,
                                                                       monkeypatch) -> None:
    """With the brokers' limit at MQTT's maximum, the same message reaches the daemon's bridge."""
    from hall_controller.bus import limits, mosquitto

    arrived: list[int] = []
    on_message = bridge_module.MqttBridge._on_message
    monkeypatch.setattr(bridge_module.MqttBridge, "_on_message",
                        lambda self, c, u, message: (arrived.append(len(message.payload)),
                                                     on_message(self, c, u, message))[1])
    for module in (limits, mosquitto):
        monkeypatch.setattr(module, "broker_packet_limit", lambda scan_max_bytes: 268_435_455)
    hall = Hall(tmp_path, mutate=no_devices, broker=broker)
    try:
        window = hall.client("window-3")
        limit = broker_packet_limit(hall.config.scan_max_bytes)
        error, _ = _refused(window, "attach_scan", ticket="x", image="/9j/" + "A" * limit)
        assert error.code == "bad_request" and "扫描件过大" in error.message
        assert max(arrived) > limit
    finally:
        hall.close()
