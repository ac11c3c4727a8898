"""Contract tests: the emulated window bus, seen from the host side, over every link kind.

The host side here is what a driver does: open the url with pyserial, write frames, read bytes,
decode them with the codec. The wire bytes are written out literally (checksums worked by hand in
the comments) so that a bug shared by the codec and the emulator cannot make the tests pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from drivers.codecs.window_bus import KeypadDecoder, KeypadFrame, encode_led, led_text_frame
from hw_emulators.dory import PressResult
from hw_emulators.hall import EmulatedHall

from .harness import wait_until

DEVICES = [
    {"id": "bus-1", "kind": "controller", "profile": "dory-controller", "url": "emulated"},
    {"id": "led-3", "kind": "led", "profile": "dory-led-375-4", "bus": "bus-1", "address": 3, "window": 3},
    {"id": "led-4", "kind": "led", "profile": "dory-led-375-4", "bus": "bus-1", "address": 4, "window": 4},
    {"id": "keypad-3", "kind": "keypad", "profile": "dory-keypad", "bus": "bus-1", "address": 3, "window": 3},
    {"id": "keypad-4", "kind": "keypad", "profile": "dory-keypad", "bus": "bus-1", "address": 4, "window": 4},
]

# LED 3, CMD A5 show "A001": DATA = 41 01 30 01 30 01 31 01 (each char + colour 01), LEN = 00 08.
# XOR 03^A5=A6 ^00=A6 ^08=AE ^41=EF ^01=EE ^30=DE ^01=DF ^30=EF ^01=EE ^31=DF ^01=DE
LED3_A001 = bytes.fromhex("A0 90 03 A5 00 08 41 01 30 01 30 01 31 01 DE")
# LED 3 "暂停服务" in GBK: 暂 D4DD 停 CDA3 服 B7FE 务 CEF1, each + colour 01, LEN = 00 0C.
# XOR 03^A5=A6 ^00=A6 ^0C=AA ^D4=7E ^DD=A3 ^01=A2 ^CD=6F ^A3=CC ^01=CD ^B7=7A ^FE=84 ^01=85
#     ^CE=4B ^F1=BA ^01=BB
LED3_PAUSED = bytes.fromhex("A0 90 03 A5 00 0C D4 DD 01 CD A3 01 B7 FE 01 CE F1 01 BB")
# Keypad 3 types 1 2 then "next" (0C): L = len(03 01 01 02 0C) = 5, CS = 03+01+01+02+0C = 0x13.
KEYPAD3_12_NEXT = bytes.fromhex("FF 68 05 05 68 03 01 01 02 0C 13 16")
# Keypad 3 "recall" (0D), no digits: L = 3, CS = 03+01+0D = 0x11.
KEYPAD3_RECALL = bytes.fromhex("FF 68 03 03 68 03 01 0D 11 16")
# Host -> keypad 3 FUNC 02 display "A001": L = 6, CS = 03+02+41+30+30+31 = 0xD7.
KEYPAD3_SHOW_A001 = bytes.fromhex("FF 68 06 06 68 03 02 41 30 30 31 D7 16")

LINKS = ["pty", "tcp", "memory"]


class Host:
    """The host end of the controller link, as a driver sees it."""

    def __init__(self, hall: EmulatedHall, bus: str = "bus-1") -> None:
        self.hall = hall
        self.url = hall.device_urls()[bus]
        if hall.link_kind == "memory":
            self.port: Any = hall.host_port(bus, timeout=0.05)
        else:
            self.port = serial.serial_for_url(self.url, baudrate=9600, timeout=0.05)
        if hall.link_kind == "tcp":  # bytes the device sends before it accepted us are lost
            wait_until(lambda: hall.device(bus).link.host_connected, 2.0, 'hall.device(bus).link.host_connected')

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read(self, size: int, timeout: float = 2.0) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < size and time.monotonic() < deadline:
            out += self.port.read(size - len(out))
        return out

    def close(self) -> None:
        self.port.close()




def press_async(hall: EmulatedHall, address: int, key: str, digits: str = "", **kw: Any) -> tuple[threading.Thread, dict]:
    box: dict[str, PressResult] = {}
    thread = threading.Thread(target=lambda: box.update(result=hall.keypad(address).press(key, digits, **kw)))
    thread.start()
    return thread, box


@pytest.fixture(params=LINKS)
def hall(request: pytest.FixtureRequest) -> Iterator[EmulatedHall]:
    with EmulatedHall(DEVICES, link=request.param) as h:
        yield h


@pytest.fixture
def host(hall: EmulatedHall) -> Iterator[Host]:
    h = Host(hall)
    yield h
    h.close()


def test_led_shows_gbk_and_ascii_text(hall: EmulatedHall, host: Host) -> None:
    host.write(LED3_PAUSED)
    wait_until(lambda: hall.led(3).text == "暂停服务", 2.0, 'hall.led(3).text == "暂停服务"')
    host.write(LED3_A001)
    wait_until(lambda: hall.led(3).text == "A001", 2.0, 'hall.led(3).text == "A001"')
    assert [h["text"] for h in hall.led(3).view()["history"]] == ["暂停服务", "A001"]
    assert hall.led(4).text == ""  # addressed to 3 only


def test_led_accepts_codec_frames_broadcast_and_cuts_overflow(hall: EmulatedHall, host: Host) -> None:
    host.write(encode_led(led_text_frame(0xFF, "欢迎")))
    wait_until(lambda: hall.led(3).text == "欢迎" and hall.led(4).text == "欢迎", 2.0, 'hall.led(3).text == "欢迎" and hall.led(4).text == "欢迎"')
    host.write(encode_led(led_text_frame(4, "请A001号到3号窗口")))  # 4 Chinese = 8 half-width cells
    wait_until(lambda: hall.led(4).text == "请A001号", 2.0, 'hall.led(4).text == "请A001号"')
    assert hall.led(3).text == "欢迎"


def test_led_drops_stale_partial_frame_after_idle_gap(hall: EmulatedHall, host: Host) -> None:
    host.write(bytes.fromhex("A0 90 03 A5 03 00 41"))  # claims 768 data bytes, then the line goes idle
    time.sleep(hall.device("bus-1").idle_s + 0.05)
    host.write(LED3_A001)
    wait_until(lambda: hall.led(3).text == "A001", 1.0, 'hall.led(3).text == "A001"')


def test_keypad_press_sends_exact_bytes_and_waits_for_echo(hall: EmulatedHall, host: Host) -> None:
    thread, box = press_async(hall, 3, "next", "12", ack_timeout=0.2, attempts=3)
    first = host.read(len(KEYPAD3_12_NEXT))
    assert first == KEYPAD3_12_NEXT
    # No echo yet: the keypad repeats the frame after its ack timeout.
    assert host.read(len(KEYPAD3_12_NEXT)) == KEYPAD3_12_NEXT
    host.write(KEYPAD3_12_NEXT)  # the host's acknowledgement: the frame echoed byte for byte
    thread.join(3)
    assert box["result"].acked and box["result"].attempts == 2
    assert host.read(1, timeout=0.3) == b""  # acknowledged: no further repeats


def test_keypad_ignores_echo_for_another_keypad(hall: EmulatedHall, host: Host) -> None:
    thread, box = press_async(hall, 3, "recall", ack_timeout=0.15, attempts=2)
    assert host.read(len(KEYPAD3_RECALL)) == KEYPAD3_RECALL
    host.write(bytes.fromhex("FF 68 03 03 68 04 01 0D 12 16"))  # keypad 4's recall: CS = 04+01+0D = 0x12
    thread.join(3)
    assert box["result"] == PressResult(False, 2, KEYPAD3_RECALL)


def test_keypad_shows_host_display_frame(hall: EmulatedHall, host: Host) -> None:
    host.write(KEYPAD3_SHOW_A001)
    wait_until(lambda: hall.keypad(3).display == "A001", 2.0, 'hall.keypad(3).display == "A001"')
    assert hall.keypad(4).display == ""


def test_unknown_key_and_bad_digits_are_rejected(hall: EmulatedHall) -> None:
    with pytest.raises(ValueError):
        hall.keypad(3).press("explode")
    with pytest.raises(ValueError):
        hall.keypad(3).press("next", "1a")


def test_corrupt_fault_host_decoder_discards_and_resyncs(hall: EmulatedHall, host: Host) -> None:
    decoder = KeypadDecoder()
    hall.device("bus-1").set_fault("corrupt")
    thread, box = press_async(hall, 3, "next", "12", ack_timeout=0.1, attempts=1)
    garbled = host.read(len(KEYPAD3_12_NEXT))
    thread.join(3)
    assert len(garbled) == len(KEYPAD3_12_NEXT) and garbled != KEYPAD3_12_NEXT
    assert decoder.feed(garbled) == [] and decoder.discarded > 0
    assert not box["result"].acked

    hall.device("bus-1").clear_fault()
    thread, box = press_async(hall, 3, "recall", ack_timeout=0.5, attempts=1)
    clean = host.read(len(KEYPAD3_RECALL))
    assert decoder.feed(clean) == [KeypadFrame(3, 0x01, b"\x0d")]
    host.write(clean)
    thread.join(3)
    assert box["result"].acked


def test_corrupt_fault_on_led_drops_frames(hall: EmulatedHall, host: Host) -> None:
    hall.device("led-3").set_fault("corrupt")
    host.write(LED3_A001)
    time.sleep(0.2)
    assert hall.led(3).text == ""
    hall.device("led-3").clear_fault()
    host.write(LED3_PAUSED)
    wait_until(lambda: hall.led(3).text == "暂停服务", 2.0, 'hall.led(3).text == "暂停服务"')


def test_silent_fault_answers_nothing_and_hears_nothing(hall: EmulatedHall, host: Host) -> None:
    hall.device("bus-1").set_fault("silent")
    thread, box = press_async(hall, 3, "recall", ack_timeout=0.15, attempts=2)
    host.write(KEYPAD3_RECALL)  # even an echo sent blindly is swallowed
    host.write(LED3_A001)
    thread.join(3)
    assert host.read(1, timeout=0.2) == b""
    assert not box["result"].acked
    assert hall.led(3).text == ""
    assert not hall.device("keypad-3").online

    hall.device("bus-1").clear_fault()
    host.write(LED3_A001)
    wait_until(lambda: hall.led(3).text == "A001", 2.0, 'hall.led(3).text == "A001"')


def test_silent_keypad_does_not_send(hall: EmulatedHall, host: Host) -> None:
    hall.device("keypad-3").set_fault("silent")
    result = hall.keypad(3).press("next", ack_timeout=0.05, attempts=2)
    assert not result.acked
    assert host.read(1, timeout=0.1) == b""
    assert hall.keypad(4).online


def test_delay_fault_holds_answers_and_display(hall: EmulatedHall, host: Host) -> None:
    hall.device("bus-1").set_fault("delay", 300)
    started = time.monotonic()
    thread, box = press_async(hall, 3, "recall", ack_timeout=0.5, attempts=1)
    assert host.read(len(KEYPAD3_RECALL)) == KEYPAD3_RECALL
    assert time.monotonic() - started >= 0.29
    host.write(KEYPAD3_RECALL)
    thread.join(3)
    assert box["result"].acked
    hall.device("bus-1").clear_fault()

    hall.device("led-3").set_fault("delay", 300)
    host.write(LED3_A001)
    time.sleep(0.1)
    assert hall.led(3).text == ""
    wait_until(lambda: hall.led(3).text == "A001", 1.0, 'hall.led(3).text == "A001"')
    hall.device("led-3").clear_fault()
    host.write(LED3_PAUSED)  # after clearing, no delay
    wait_until(lambda: hall.led(3).text == "暂停服务", 0.2, 'hall.led(3).text == "暂停服务"')


def _check_bus_works(hall: EmulatedHall, host: Host) -> None:
    host.write(LED3_PAUSED)
    wait_until(lambda: hall.led(3).text == "暂停服务", 2.0, 'hall.led(3).text == "暂停服务"')
    thread, box = press_async(hall, 3, "recall", ack_timeout=0.5, attempts=1)
    assert host.read(len(KEYPAD3_RECALL)) == KEYPAD3_RECALL
    host.write(KEYPAD3_RECALL)
    thread.join(3)
    assert box["result"].acked


def test_disconnect_over_tcp_then_clear() -> None:
    with EmulatedHall(DEVICES, link="tcp") as hall:
        host = Host(hall)
        controller = hall.device("bus-1")
        wait_until(lambda: controller.link.host_connected, 2.0, 'controller.link.host_connected')
        controller.set_fault("disconnect")
        with pytest.raises(serial.SerialException):
            host.read(1, timeout=1.0)  # the connection is reset
        host.close()
        # New connections are accepted at TCP level and reset at once: a driver cannot use them.
        with pytest.raises(serial.SerialException):
            serial.serial_for_url(host.url, timeout=1.0).read(1)
        assert not controller.online and not hall.device("led-3").online
        assert not hall.keypad(3).press("next", ack_timeout=0.05, attempts=1).acked

        controller.clear_fault()
        host = Host(hall)  # same url as before
        _check_bus_works(hall, host)
        host.close()


def test_newer_tcp_connection_replaces_older() -> None:
    with EmulatedHall(DEVICES, link="tcp") as hall:
        old = Host(hall)
        new = serial.serial_for_url(old.url, timeout=1.0)
        with pytest.raises(serial.SerialException):
            old.read(1, timeout=1.0)
        new.write(LED3_A001)
        wait_until(lambda: hall.led(3).text == "A001", 2.0, 'hall.led(3).text == "A001"')
        new.close()
        old.close()


def test_disconnect_over_pty_unplugs_and_replugs_at_same_url() -> None:
    with EmulatedHall(DEVICES, link="pty") as hall:
        host = Host(hall)
        url = host.url
        hall.device("bus-1").set_fault("disconnect")
        with pytest.raises(serial.SerialException):
            host.read(1, timeout=1.0)
        with pytest.raises(serial.SerialException):
            host.write(b"\x00")
        host.close()
        assert not Path(url).exists()
        with pytest.raises(serial.SerialException):
            serial.serial_for_url(url, timeout=0.1)

        hall.device("bus-1").clear_fault()
        host = Host(hall)
        assert host.url == url
        _check_bus_works(hall, host)
        host.close()


def test_disconnect_in_process() -> None:
    with EmulatedHall(DEVICES, link="memory") as hall:
        host = Host(hall)
        hall.device("bus-1").set_fault("disconnect")
        with pytest.raises(ConnectionError):
            host.read(1)
        with pytest.raises(ConnectionError):
            hall.host_port("bus-1")
        hall.device("bus-1").clear_fault()
        _check_bus_works(hall, Host(hall))


def test_local_echo_quirk_from_site_profile(tmp_path: Path) -> None:
    (tmp_path / "dory-controller.yaml").write_text(
        "extends: dory-controller\nquirks: {local_echo: true}\n", encoding="utf-8")
    with EmulatedHall(DEVICES, link="tcp", site_dir=tmp_path) as hall:
        host = Host(hall)
        host.write(LED3_A001)
        assert host.read(len(LED3_A001)) == LED3_A001  # the adapter hears its own transmission
        wait_until(lambda: hall.led(3).text == "A001", 2.0, 'hall.led(3).text == "A001"')
        host.close()
