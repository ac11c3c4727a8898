"""Broken hardware: an unplugged and replugged bus, line noise, garbage, an emulator that starts late."""

from __future__ import annotations

import logging
import time

import pytest

from drivers.codecs.window_bus import encode_keypad, key_press_frame
from hall_controller.devices.screens import DEFAULT_IDLE_TEXT, KEYPAD_PAUSED, PAUSED_TEXT
from hall_controller.service import Actor

from .harness import BUS_DEVICES, device_hall, free_port, wait_until

KEYPAD_3 = Actor("keypad-3", "device", 3)


def _retries_logged(caplog: pytest.LogCaptureFixture, device_id: str) -> int:
    """How many reconnect attempts of `device_id`'s link have failed so far (its supervisor's log)."""
    return sum(1 for r in caplog.records
               if r.name == "hall_controller.devices.link" and r.getMessage().startswith(f"{device_id}: device link "
                                                                                         "unavailable"))


@pytest.mark.slow
@pytest.mark.parametrize("link", ["tcp", "pty"])
def test_unplugged_bus_goes_offline_once_and_comes_back_showing_the_current_state(tmp_path, link, caplog):
    caplog.set_level(logging.DEBUG, logger="hall_controller.devices.link")   # every retry is logged
    hall = device_hall(tmp_path, link)
    try:
        hall.wait_online()
        hall.service.execute(KEYPAD_3, "login", {"staff_id": "1003"})
        hall.wait_led(3, DEFAULT_IDLE_TEXT)
        number = hall.issue()
        controller = hall.emu.device("bus-1")

        controller.set_fault("disconnect")
        wait_until(lambda: len(hall.device_events("device_offline")) == len(BUS_DEVICES), 3,
                   "every bus device offline")
        # The window moves on while its screen is unplugged.
        hall.service.execute(KEYPAD_3, "call_next")
        # Wait for two more failed reconnect attempts: none of them may report the bus offline again.
        failed = _retries_logged(caplog, "bus-1")
        wait_until(lambda: _retries_logged(caplog, "bus-1") >= failed + 2, 5, "two more failed reconnects")
        assert len(hall.device_events("device_offline")) == len(BUS_DEVICES)
        assert hall.led(3) == DEFAULT_IDLE_TEXT

        cleared = time.monotonic()
        controller.clear_fault()
        hall.wait_online(timeout=5.0)
        assert time.monotonic() - cleared < 5.0
        hall.wait_led(3, number)
        hall.wait_keypad(3, number)

        # Events are published once their commit is durable, which may trail the live snapshot.
        wait_until(lambda: all(len(hall.device_events("device_online", d)) == 2 for d in BUS_DEVICES), 3,
                   "every bus device online again")
        for device in BUS_DEVICES:
            assert len(hall.device_events("device_offline", device)) == 1, device
            assert len(hall.device_events("device_online", device)) == 2, device  # start + replug
        offline = hall.device_events("device_offline", "led-3")[0]
        assert offline["profile"] == "dory-led-375-4" and offline["error"]
        # The other kinds (card readers, printers, the speaker) have links of their own: untouched.
        assert all(e["device"] in BUS_DEVICES for e in hall.device_events("device_offline"))
        # The keypad works again after the replug.
        hall.press(3, "recall")
        wait_until(lambda: any(e["type"] == "ticket_recalled" for e in hall.events), 3, "recall")
    finally:
        hall.close()


def test_noise_and_garbage_do_not_crash_the_manager(tmp_path):
    hall = device_hall(tmp_path)
    try:
        hall.wait_online()
        hall.service.execute(KEYPAD_3, "login", {"staff_id": "1003"})
        number = hall.issue()
        controller = hall.emu.device("bus-1")
        keypad = hall.emu.keypad(3)

        # Line noise on the keypad's frames: the checksum fails, the host drops them, nothing acks.
        keypad.set_fault("corrupt")
        assert not keypad.press("next", attempts=2, ack_timeout=0.2).acked
        keypad.clear_fault()
        # Noise on what the LED hears from now on: a frame it hears corrupted it must drop. (The
        # emulator corrupts one byte per chunk read off the line, so a frame that shares its chunk
        # with another may come through intact: the screen then shows it, never anything else.)
        hall.emu.led(3).set_fault("corrupt")
        # Raw garbage, a truncated frame, a valid frame with an unknown key code, a key from a keypad
        # at no window: each is dropped or ignored.
        framing = keypad.framing
        unknown_key = encode_keypad(key_press_frame(3, "next", "", framing), framing).replace(
            bytes([0x0C, 0x10]), bytes([0x30, 0x34]))
        for junk in (bytes(range(256)), b"\xff\x68\x05\x05\x68\x03\x01", unknown_key,
                     encode_keypad(key_press_frame(9, "next", "", framing), framing)):
            controller.link.send(junk)
        # A valid key behind the junk on the same line: once its effect shows, the junk has been
        # handled. Pausing redraws LED 3 first, then keypad 3: once the keypad shows PAUS, the LED
        # has heard its frame too.
        hall.press(3, "pause")
        hall.wait_keypad(3, KEYPAD_PAUSED)
        assert hall.service.snapshot()["windows"]["3"]["status"] == "paused"
        assert not [e for e in hall.events if e["type"] == "ticket_called"], "the junk called a ticket"
        assert set(hall.led_history(3)) <= {DEFAULT_IDLE_TEXT, PAUSED_TEXT}, hall.led_history(3)
        hall.emu.led(3).clear_fault()
        hall.service.execute(KEYPAD_3, "resume")
        hall.wait_led(3, DEFAULT_IDLE_TEXT)                  # the manager carries on

        hall.press(3, "next")
        hall.wait_led(3, number)
        hall.wait_keypad(3, number)
        assert not hall.device_events("device_offline")
    finally:
        hall.close()


def test_emulated_bus_is_found_through_the_control_api_once_it_is_up(tmp_path):
    port = free_port()

    def control_here(data):
        data["emulator"]["control"] = f"127.0.0.1:{port}"

    hall = device_hall(tmp_path, urls=False, mutate=control_here)
    try:
        wait_until(lambda: hall.device_events("device_offline", "bus-1"), 3, "bus offline while no emulator")
        hall.emu.serve_control("127.0.0.1", port)
        hall.wait_online(timeout=10.0)  # the link retries at most every 4 s
        assert len(hall.device_events("device_offline", "led-3")) == 1
        assert hall.daemon.devices.handler("bus-1").link.driver.url == hall.emu.device_urls()["bus-1"]
    finally:
        hall.close()
