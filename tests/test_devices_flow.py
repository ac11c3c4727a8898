"""End to end: emulated keypads and LED screens on a real window bus link, the daemon in-process.

Keys go keypad emulator → TCP or pty → window bus driver → DeviceManager → HallService; what the
screens show comes back the same way. A HallClient with the display role sees the events on MQTT.
"""

from __future__ import annotations

import pytest

from hall_controller.devices.screens import DEFAULT_IDLE_TEXT, PAUSED_TEXT
from hall_controller.service import Actor

from .harness import device_hall, wait_until


@pytest.fixture(params=["tcp", "pty"])
def hall(request, tmp_path):
    h = device_hall(tmp_path, request.param)
    try:
        yield h
    finally:
        h.close()


def test_keypad_drives_the_window_and_the_screens_follow(hall):
    hall.wait_online()
    hall.wait_led(3, PAUSED_TEXT)  # closed: nobody logged in
    display = hall.client("display-1", "display")
    for expected in ("A001", "A002", "A003"):
        assert hall.issue() == expected

    # Keypad login by job number; the screens switch from closed to idle.
    hall.press(3, "function", "1003")
    hall.wait_led(3, DEFAULT_IDLE_TEXT)
    hall.wait_keypad(3, "----")
    assert hall.service.snapshot()["windows"]["3"]["staff"]["id"] == "S003"

    # next → call_next: the LED and the keypad show the number, the display app gets the event.
    hall.press(3, "next")
    hall.wait_led(3, "A001")
    hall.wait_keypad(3, "A001")
    called = display.wait_for_event(lambda e: e["type"] == "ticket_called" and e["ticket"]["number"] == "A001")
    assert called["window"] == 3

    # recall: the event goes out again and the screen shows the number once more.
    shown = hall.led_history(3).count("A001")
    hall.press(3, "recall")
    display.wait_for_event(lambda e: e["type"] == "ticket_recalled" and e["ticket"]["number"] == "A001")
    wait_until(lambda: hall.led_history(3).count("A001") > shown, 3, "the recalled number on LED 3")

    # A number typed while a ticket is open is refused: the keypad shows the error code.
    hall.press(3, "next", "3")
    hall.wait_keypad(3, "E2")
    assert hall.led(3) == "A001"

    # 6 + transfer: the ticket waits for window 6, window 3 is free again.
    hall.press(3, "transfer", "6")
    moved = display.wait_for_event(lambda e: e["type"] == "ticket_transferred" and e["ticket"]["number"] == "A001")
    assert moved["ticket"]["target_window"] == 6
    hall.wait_led(3, DEFAULT_IDLE_TEXT)
    hall.wait_keypad(3, "----")
    # … and window 6 calls it first (from its own keypad).
    hall.service.execute(Actor("keypad-6", "device", 6), "login", {"staff_id": "1006"})
    hall.press(6, "next")
    hall.wait_led(6, "A001")
    hall.wait_keypad(6, "A001")

    # pause / pause again = resume.
    hall.press(3, "pause")
    display.wait_for_event(lambda e: e["type"] == "window_paused" and e["window"] == 3)
    hall.wait_led(3, PAUSED_TEXT)
    hall.wait_keypad(3, "PAUS")
    hall.press(3, "pause")
    display.wait_for_event(lambda e: e["type"] == "window_resumed" and e["window"] == 3)
    hall.wait_led(3, DEFAULT_IDLE_TEXT)

    # 3 + next → call_number A003 (prefix of the window's first service, zero-padded).
    hall.press(3, "next", "3")
    display.wait_for_event(lambda e: e["type"] == "ticket_called" and e["ticket"]["number"] == "A003")
    hall.wait_led(3, "A003")
    hall.wait_keypad(3, "A003")

    # start, then cancel is refused once serving (skip only works on a called ticket) …
    hall.press(3, "start")
    display.wait_for_event(lambda e: e["type"] == "service_started" and e["ticket"]["number"] == "A003")
    hall.press(3, "evaluate")
    display.wait_for_event(lambda e: e["type"] == "rating_requested" and e["ticket"]["number"] == "A003")
    hall.press(3, "cancel")
    hall.wait_keypad(3, "E2")
    # … and next finishes A003 and calls A002.
    hall.press(3, "next")
    display.wait_for_event(lambda e: e["type"] == "service_finished" and e["ticket"]["number"] == "A003")
    hall.wait_led(3, "A002")
    hall.wait_keypad(3, "A002")

    # cancel = skip (no-show): back to idle; next on an empty queue shows E0.
    hall.press(3, "cancel")
    display.wait_for_event(lambda e: e["type"] == "ticket_skipped" and e["ticket"]["number"] == "A002")
    hall.wait_led(3, DEFAULT_IDLE_TEXT)
    hall.press(3, "next")
    hall.wait_keypad(3, "E0")

    # function without digits = logout: the window is closed again.
    hall.press(3, "function")
    display.wait_for_event(lambda e: e["type"] == "staff_logout" and e["window"] == 3)
    hall.wait_led(3, PAUSED_TEXT)
    hall.wait_keypad(3, "")
    # A key on a closed window needs a login first.
    hall.press(3, "recall")
    hall.wait_keypad(3, "E1")


def test_keypad_pause_after_the_last_visit_finishes_it_and_pauses(hall):
    """A keypad-only window: next → LED shows the number → pause → LED shows 暂停服务, visit finished."""
    hall.wait_online()
    display = hall.client("display-1", "display")
    number = hall.issue()
    hall.press(3, "function", "1003")
    hall.wait_led(3, DEFAULT_IDLE_TEXT)
    hall.press(3, "next")
    hall.wait_led(3, number)
    hall.press(3, "start")
    display.wait_for_event(lambda e: e["type"] == "service_started" and e["ticket"]["number"] == number)

    hall.press(3, "pause")
    finished = display.wait_for_event(lambda e: e["type"] == "service_finished")
    assert finished["ticket"]["number"] == number and finished["window"] == 3
    display.wait_for_event(lambda e: e["type"] == "window_paused" and e["window"] == 3)
    hall.wait_led(3, PAUSED_TEXT)
    hall.wait_keypad(3, "PAUS")
    window = hall.service.snapshot()["windows"]["3"]
    assert window["status"] == "paused" and window["ticket"] is None
