"""The window bus driver over a real pty pair, over loop:// and over a scripted fake transport."""

from __future__ import annotations

import os
import queue
import select
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_profiles import load_profile
from drivers.codecs.window_bus import (
    KeypadFrame,
    LedDecoder,
    LedFraming,
    decode_led_text,
    encode_keypad,
    key_press_frame,
    keypad_framing,
    led_framing,
)
from drivers.transport import Transport, TransportIOError, TransportTimeout, open_transport
from drivers.window_bus import BusClosed, WindowBus, open_window_bus

from .harness import wait_until

# Literal vectors; the checksums are worked by hand in tests/test_drivers_codecs.py.
NEXT_3 = bytes.fromhex("FF 68 03 03 68 03 01 0C 10 16")  # CS = 03+01+0C = 10
NEXT_3_DIGITS_12 = bytes.fromhex("FF 68 05 05 68 03 01 01 02 0C 13 16")  # CS = 03+01+01+02+0C = 13
RECALL_3 = bytes.fromhex("FF 68 03 03 68 03 01 0D 11 16")  # CS = 03+01+0D = 11
DISPLAY_2_A001 = bytes.fromhex("FF 68 06 06 68 02 02 41 30 30 31 D6 16")  # CS = 02+02+41+30+30+31 = D6
A001_TO_1 = bytes.fromhex("A0 90 01 A5 00 08 41 01 30 01 30 01 31 01 DC")
PAUSED_BROADCAST = bytes.fromhex("A0 90 FF A5 00 0C D4 DD 01 CD A3 01 B7 FE 01 CE F1 01 47")




class FakeTransport(Transport):
    """Scripted transport: the test feeds reads, records timed writes and can hold the writer."""

    def __init__(self, timeout: float = 0.02) -> None:
        super().__init__("fake://bus")
        self.timeout = timeout
        self.incoming: queue.Queue[bytes | Exception] = queue.Queue()
        self.writes: list[tuple[float, bytes]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.write_error: Exception | None = None
        self.closed = False

    @property
    def is_open(self) -> bool:
        return not self.closed

    def read(self, max_bytes: int = 256) -> bytes:
        try:
            item = self.incoming.get(timeout=self.timeout)
        except queue.Empty:
            return b""
        if isinstance(item, Exception):
            raise item
        return item

    def write(self, data: bytes) -> None:
        self.entered.set()
        self.gate.wait(5)
        if self.write_error is not None:
            raise self.write_error
        self.writes.append((time.perf_counter(), bytes(data)))

    def close(self) -> None:
        self.closed = True

    def written(self) -> list[bytes]:
        return [data for _, data in self.writes]

    def texts(self) -> list[tuple[int, str]]:
        """(address, text) of every LED frame written."""
        decoder = LedDecoder()
        return [(f.addr, decode_led_text(f.data)[0]) for _, d in self.writes for f in decoder.feed(d)]


class Recorder:
    def __init__(self) -> None:
        self.keys: list[tuple[int, str, str]] = []
        self.errors: list[Exception] = []

    def on_key(self, addr: int, key: str, digits: str) -> None:
        self.keys.append((addr, key, digits))

    def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def fake_bus(fake: FakeTransport, rec: Recorder) -> Iterator[WindowBus]:
    bus = WindowBus(
        fake,
        LedFraming(),
        keypad_framing(load_profile("dory-keypad")),
        9600,
        on_key=rec.on_key,
        on_error=rec.on_error,
    )
    bus.open()
    yield bus
    fake.gate.set()
    bus.close()


def hold_writer(fake: FakeTransport, bus: WindowBus) -> None:
    """Block the writer inside write() of a first frame (screen 9, "X")."""
    fake.gate.clear()
    bus.show_text(9, "X")
    assert fake.entered.wait(2)


# ------------------------------------------------------------------------------------- pty pair


@pytest.fixture
def pty_bus(rec: Recorder) -> Iterator[tuple[int, WindowBus]]:
    master, slave = os.openpty()
    tty.setraw(master)
    transport = open_transport(os.ttyname(slave), baudrate=9600, timeout=0.05)
    bus = WindowBus(
        transport,
        LedFraming(),
        keypad_framing(load_profile("dory-keypad")),
        9600,
        on_key=rec.on_key,
        on_error=rec.on_error,
    )
    bus.open()
    yield master, bus
    bus.close()
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def read_master(master: int, size: int, timeout: float = 2.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size and select.select([master], [], [], max(0.0, deadline - time.monotonic()))[0]:
        data += os.read(master, size - len(data))
    return data


def test_pty_key_press_is_echoed_and_reported(pty_bus: tuple[int, WindowBus], rec: Recorder) -> None:
    master, bus = pty_bus
    os.write(master, NEXT_3_DIGITS_12[:4])  # arrives in two pieces
    time.sleep(0.01)
    os.write(master, NEXT_3_DIGITS_12[4:])
    assert read_master(master, len(NEXT_3_DIGITS_12)) == NEXT_3_DIGITS_12  # echo = acknowledgement
    wait_until(lambda: rec.keys == [(3, "next", "12")], 2.0, 'rec.keys == [(3, "next", "12")]')
    assert bus.drain()  # the stats are updated just after write() returns
    assert bus.stats.acks_sent == 1
    assert bus.stats.frames_received == 1


def test_pty_led_and_keypad_display_bytes(pty_bus: tuple[int, WindowBus]) -> None:
    master, bus = pty_bus
    bus.show_text(1, "A001")
    assert read_master(master, len(A001_TO_1)) == A001_TO_1
    bus.broadcast_text("暂停服务")
    assert read_master(master, len(PAUSED_BROADCAST)) == PAUSED_BROADCAST
    bus.show_keypad_number(2, "A001")
    assert read_master(master, len(DISPLAY_2_A001)) == DISPLAY_2_A001
    assert bus.drain()
    assert bus.stats.frames_sent == 3
    assert bus.stats.bytes_sent == len(A001_TO_1) + len(PAUSED_BROADCAST) + len(DISPLAY_2_A001)
    assert bus.stats.last_write_end is not None and bus.stats.last_write_end <= time.perf_counter()


def test_pty_hangup_is_reported_once(pty_bus: tuple[int, WindowBus], rec: Recorder) -> None:
    master, bus = pty_bus
    os.close(master)
    wait_until(lambda: len(rec.errors) == 1, 2.0, 'len(rec.errors) == 1')
    time.sleep(0.2)
    assert len(rec.errors) == 1
    assert isinstance(rec.errors[0], TransportIOError)
    assert bus.failed is rec.errors[0]
    with pytest.raises(BusClosed):
        bus.show_text(1, "A001")
    assert not bus.drain(0.1)


# ------------------------------------------------------------------------------------------ loop


def test_loop_with_local_echo_does_not_hear_itself(rec: Recorder) -> None:
    transport = open_transport("loop://", timeout=0.02)
    with WindowBus(
        transport,
        LedFraming(),
        keypad_framing(load_profile("dory-keypad")),
        9600,
        on_key=rec.on_key,
        on_error=rec.on_error,
        local_echo=True,
    ) as bus:
        transport.write(NEXT_3)  # a keypad talking on the bus
        wait_until(lambda: bus.stats.acks_sent == 1, 2.0, 'bus.stats.acks_sent == 1')
        bus.show_text(1, "A001")
        bus.show_keypad_number(3, "A001")
        assert bus.drain()
        time.sleep(0.2)  # our echo of the ack comes back and must not count as a new key press
        assert rec.keys == [(3, "next", "")]
        assert bus.stats.frames_received == 1
        assert bus.stats.acks_sent == 1
    assert rec.errors == []
    assert not transport.is_open


# --------------------------------------------------------------------------------- write queue


def test_newer_text_for_a_screen_replaces_the_unsent_one(fake: FakeTransport, fake_bus: WindowBus) -> None:
    hold_writer(fake, fake_bus)
    fake_bus.show_text(1, "A001")
    fake_bus.show_text(2, "B001")
    fake_bus.show_text(1, "A002")
    assert fake_bus.pending == 3  # X being written, B001, A002
    fake.gate.set()
    assert fake_bus.drain()
    assert fake.texts() == [(9, "X"), (2, "B001"), (1, "A002")]
    assert fake_bus.stats.replaced == 1


def test_replacement_keeps_broadcast_order_right(fake: FakeTransport, fake_bus: WindowBus) -> None:
    hold_writer(fake, fake_bus)
    fake_bus.show_text(3, "A001")
    fake_bus.broadcast_text("暂停服务")
    fake_bus.show_text(3, "A002")  # newer than the broadcast: must be sent after it
    fake.gate.set()
    assert fake_bus.drain()
    assert fake.texts() == [(9, "X"), (0xFF, "暂停服务"), (3, "A002")]


def test_keypad_display_replaces_too(fake: FakeTransport, fake_bus: WindowBus) -> None:
    hold_writer(fake, fake_bus)
    fake_bus.show_keypad_number(2, "A000")
    fake_bus.show_keypad_number(2, "A001")
    fake.gate.set()
    assert fake_bus.drain()
    assert fake.written()[1:] == [DISPLAY_2_A001]


def test_acknowledgement_jumps_the_queue(fake: FakeTransport, fake_bus: WindowBus) -> None:
    hold_writer(fake, fake_bus)
    fake_bus.show_text(1, "A001")
    fake_bus.show_text(2, "B001")
    fake.incoming.put(NEXT_3)
    wait_until(lambda: fake_bus.pending == 4, 2.0, 'fake_bus.pending == 4')  # X being written, the ack, A001, B001
    fake.gate.set()
    assert fake_bus.drain()
    assert fake.written()[1] == NEXT_3
    assert fake.texts()[1:] == [(1, "A001"), (2, "B001")]


def test_full_queue_drops_the_oldest(fake: FakeTransport, rec: Recorder) -> None:
    bus = WindowBus(fake, queue_size=2, on_error=rec.on_error)
    bus.open()
    hold_writer(fake, bus)
    for addr in (1, 2, 3):
        bus.show_text(addr, "A001")
    fake.gate.set()
    assert bus.drain()
    bus.close()
    assert [addr for addr, _ in fake.texts()] == [9, 2, 3]
    assert bus.stats.dropped == 1


def test_overlong_text_is_cut_to_the_screen(
    fake: FakeTransport, fake_bus: WindowBus, caplog: pytest.LogCaptureFixture
) -> None:
    fake_bus.show_text(1, "请A001号到3号窗口")
    assert fake_bus.drain()
    assert fake.texts() == [(1, "请A001号")]
    assert "cannot show" in caplog.text


# ------------------------------------------------------------------------------------- timing


def test_inter_frame_gap_follows_the_baud_rate(fake: FakeTransport) -> None:
    bus = WindowBus(fake, baudrate=9600)
    bus.open()
    assert bus.char_time == pytest.approx(10 / 9600)
    assert bus.gap == pytest.approx(3.5 * 10 / 9600)  # 3.65 ms
    for addr in range(1, 6):
        bus.show_text(addr, "A001")
    assert bus.drain()
    bus.close()
    for (t0, frame), (t1, _) in zip(fake.writes, fake.writes[1:], strict=False):
        on_wire = len(frame) * bus.char_time  # 15 bytes: 15.6 ms
        assert t1 - t0 >= on_wire + bus.gap - 0.0005
        assert t1 - t0 < on_wire + bus.gap + 0.1


def test_gap_is_at_least_one_millisecond(fake: FakeTransport) -> None:
    bus = WindowBus(fake, baudrate=115200)
    bus.open()
    assert bus.gap == pytest.approx(0.001)  # 3.5 chars would be 0.3 ms
    bus.close()


# -------------------------------------------------------------------------------------- reader


def test_repeated_key_event_within_guard_is_acked_but_not_repeated(
    fake: FakeTransport, rec: Recorder
) -> None:
    now = [100.0]
    bus = WindowBus(fake, on_key=rec.on_key, clock=lambda: now[0], repeat_guard=0.5)
    bus.open()
    fake.incoming.put(NEXT_3)
    wait_until(lambda: bus.stats.acks_sent == 1, 2.0, 'bus.stats.acks_sent == 1')
    now[0] = 100.3  # the keypad repeats because it missed our echo
    fake.incoming.put(NEXT_3)
    wait_until(lambda: bus.stats.acks_sent == 2, 2.0, 'bus.stats.acks_sent == 2')
    fake.incoming.put(RECALL_3)  # a different key is never suppressed
    wait_until(lambda: bus.stats.acks_sent == 3, 2.0, 'bus.stats.acks_sent == 3')
    now[0] = 101.0
    fake.incoming.put(NEXT_3)
    wait_until(lambda: bus.stats.acks_sent == 4, 2.0, 'bus.stats.acks_sent == 4')
    bus.close()
    assert rec.keys == [(3, "next", ""), (3, "recall", ""), (3, "next", "")]
    assert bus.stats.repeats_ignored == 1


def test_invalid_key_event_is_acked_not_reported(
    fake: FakeTransport, fake_bus: WindowBus, rec: Recorder
) -> None:
    bad = encode_keypad(KeypadFrame(3, 0x01, b"\x20"))
    fake.incoming.put(bad + encode_keypad(KeypadFrame(3, 0x02, b"A001")))  # + a non-key frame: ignored
    wait_until(lambda: fake_bus.stats.acks_sent == 1, 2.0, 'fake_bus.stats.acks_sent == 1')
    time.sleep(0.05)
    assert fake.written() == [bad]
    assert rec.keys == []


def test_failing_on_key_does_not_stop_the_reader(fake: FakeTransport, rec: Recorder) -> None:
    def on_key(addr: int, key: str, digits: str) -> None:
        rec.on_key(addr, key, digits)
        if key == "next":
            raise RuntimeError("service down")

    with WindowBus(fake, on_key=on_key, on_error=rec.on_error) as bus:
        fake.incoming.put(NEXT_3)
        fake.incoming.put(RECALL_3)
        wait_until(lambda: len(rec.keys) == 2, 2.0, 'len(rec.keys) == 2')
        assert bus.failed is None
    assert rec.errors == []


def test_partial_frame_is_dropped_when_the_line_goes_idle(
    fake: FakeTransport, fake_bus: WindowBus, rec: Recorder
) -> None:
    # A false start announcing 32 bytes would hold the real frame back until the line goes quiet.
    fake.incoming.put(bytes.fromhex("68 20 20 68 01") + NEXT_3)
    wait_until(lambda: rec.keys == [(3, "next", "")], 2.0, 'rec.keys == [(3, "next", "")]')


# ------------------------------------------------------------------------------------- failure


def test_write_failure_is_reported_once(fake: FakeTransport, fake_bus: WindowBus, rec: Recorder) -> None:
    fake.write_error = TransportTimeout("写入超时")
    fake_bus.show_text(1, "A001")
    wait_until(lambda: len(rec.errors) == 1, 2.0, 'len(rec.errors) == 1')
    fake.incoming.put(TransportIOError("读取失败"))  # the reader fails too: not reported again
    time.sleep(0.1)
    assert rec.errors == [fake.write_error]
    with pytest.raises(BusClosed):
        fake_bus.show_keypad_number(1, "A001")


def test_close_sends_what_is_queued_then_closes(fake: FakeTransport, rec: Recorder) -> None:
    bus = WindowBus(fake, on_error=rec.on_error)
    bus.open()
    for addr in (1, 2, 3):
        bus.show_text(addr, "A001")
    bus.close()
    bus.close()
    assert [addr for addr, _ in fake.texts()] == [1, 2, 3]
    assert fake.closed
    assert rec.errors == []
    with pytest.raises(BusClosed):
        bus.broadcast_text("暂停服务")


def test_close_from_inside_on_error_does_not_deadlock(fake: FakeTransport) -> None:
    buses: list[WindowBus] = []
    bus = WindowBus(fake, on_error=lambda exc: buses[0].close())
    bus.open()
    buses.append(bus)
    fake.incoming.put(TransportIOError("拔线"))
    wait_until(lambda: fake.closed, 2.0, 'fake.closed')


# ------------------------------------------------------------------------------------- factory


def test_open_window_bus_from_profiles(rec: Recorder) -> None:
    profiles = [load_profile(n) for n in ("dory-controller", "dory-led-375-4", "dory-keypad")]
    bus = open_window_bus("loop://", profiles, on_key=rec.on_key, on_error=rec.on_error)
    bus.open()
    try:
        assert bus.led_framing == led_framing(profiles[1])
        assert bus.keypad_framing == keypad_framing(profiles[2])
        assert bus.char_time == pytest.approx(10 / 9600)
        assert bus.gap == pytest.approx(3.5 * 10 / 9600)
        assert bus.url == "loop://"
    finally:
        bus.close()


def test_open_window_bus_other_led_model() -> None:
    bus = open_window_bus("loop://", [load_profile("generic-led-8")])
    bus.open()
    try:
        assert bus.char_time == pytest.approx(10 / 19200)
        assert bus.led_framing.broadcast == 0x00
        assert bus.led_framing.colour == 0x02
        assert bus.led_framing.max_chars == 8
    finally:
        bus.close()


def test_open_window_bus_with_an_echoing_adapter(tmp_path: Path, rec: Recorder) -> None:
    (tmp_path / "dory-controller.yaml").write_text(
        "extends: dory-controller\nquirks:\n  local_echo: true\n", encoding="utf-8"
    )
    profiles = [load_profile("dory-controller", tmp_path), load_profile("dory-keypad")]
    bus = open_window_bus("loop://", profiles, on_key=rec.on_key)
    bus.open()
    try:
        bus.transport.write(encode_keypad(key_press_frame(5, "pause")))
        wait_until(lambda: bus.stats.acks_sent == 1, 2.0, 'bus.stats.acks_sent == 1')
        time.sleep(0.15)
        assert rec.keys == [(5, "pause", "")]
        assert bus.stats.acks_sent == 1  # the echo of our ack was not taken for a new key event
    finally:
        bus.close()


def test_open_window_bus_rejects_bad_profile_sets() -> None:
    with pytest.raises(ValueError):
        open_window_bus("loop://", [])
    with pytest.raises(ValueError):
        open_window_bus("loop://", [load_profile("dory-led-375-4"), load_profile("generic-led-8")])
