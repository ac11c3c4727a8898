"""hall-kiosk's card greeting against a real daemon (ManualClock) and the emulated reader over TCP:
whose card is active, 取消 / 不是本人 always on the greeting, back to the start screen when the daemon
drops the card, the visitor's touches keeping a removed card, and a card taken away mid-read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QPushButton, QWidget

from kiosk_ui import kiosk_state as ks
from kiosk_ui.kiosk import KioskWindow

from .harness import ELDER, ONLINE_TIMEOUT_MS, Hall, card_hall, kiosk_window
from .test_card_leaves import IDLE, READER, put_on, take_off, told

# Screens are rendered on every run; HALL_SCREENSHOTS=docs/screenshots keeps them for the README.
SHOTS = Path(os.environ.get("HALL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "hall-screenshots")
START_TITLE = "刷身份证取号：请将身份证放在读卡区"
GREETING = "李**，您好  【老年人优先】"


@pytest.fixture
def hall(tmp_path: Path) -> Iterator[Hall]:
    h = card_hall(tmp_path, "tcp")
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def kiosk(qtbot, hall: Hall) -> KioskWindow:
    qtbot.waitUntil(lambda: bool(hall.service.snapshot()["devices"].get("card-reader-1", {}).get("online")),
                    timeout=ONLINE_TIMEOUT_MS)
    window = kiosk_window(qtbot, hall.kiosk)
    return window


def touch(qtbot, widget: QWidget) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=QPoint(widget.width() // 2, widget.height() // 2))


def shoot(window: KioskWindow, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    assert window.grab().save(str(path))
    return path


def take(qtbot, window: KioskWindow, service: str = "consult") -> None:
    touch(qtbot, window._buttons[service])
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.result_page, timeout=5000)


def test_greeting_shows_whose_card_and_cancel_goes_back_to_the_start(qtbot, hall: Hall, kiosk) -> None:
    assert kiosk.card_title.text() == START_TITLE and not kiosk.cancel_card_button.isVisible()
    put_on(hall, ELDER)
    qtbot.waitUntil(lambda: kiosk.card_title.text() == GREETING, timeout=5000)
    button: QPushButton = kiosk.cancel_card_button
    assert button.isVisible() and button.isEnabled() and button.text() == "取消 / 不是本人"
    assert kiosk.card_detail.text() == "请点击下方要办理的业务取号，您将优先办理"
    shoot(kiosk, "kiosk_card_greeting.png")
    touch(qtbot, button)
    assert kiosk.card_title.text() == START_TITLE and not button.isVisible()      # at once, on the kiosk
    qtbot.waitUntil(lambda: hall.service.card_state("kiosk-1") is None, timeout=5000)  # and at the daemon
    assert told(hall, "dropped")["dropped"] == "cancelled"
    take(qtbot, kiosk)
    assert kiosk.result_greeting.text() == "取号成功"                 # nobody's name, no priority
    issued = [t for t in hall.service.engine.state.tickets.values() if t.number == kiosk.result_number.text()]
    assert issued and issued[0].priority == "normal" and issued[0].holder is None


def test_an_idle_card_is_dropped_and_the_kiosk_goes_back_to_the_start(qtbot, hall: Hall, kiosk) -> None:
    put_on(hall, ELDER)
    qtbot.waitUntil(lambda: kiosk.card_title.text() == GREETING, timeout=5000)
    take_off(hall)
    qtbot.waitUntil(lambda: kiosk.card_detail.text().startswith("身份证已取走，请在20秒内"), timeout=5000)
    assert kiosk.cancel_card_button.isVisible()
    shoot(kiosk, "kiosk_card_removed.png")
    kiosk.show_guide()                                  # the visitor wandered off into 办事指南
    assert kiosk.stack.currentWidget() is kiosk.guide_page
    hall.clock.advance(seconds=IDLE)                    # no touch since the removal: the daemon's tick drops it
    qtbot.waitUntil(lambda: kiosk.stack.currentWidget() is kiosk.home_page, timeout=5000)
    assert kiosk.card_title.text() == START_TITLE and not kiosk.cancel_card_button.isVisible()
    assert kiosk.model.state.card is None
    take(qtbot, kiosk)                                  # the next visitor's tap: a plain ticket
    assert kiosk.result_greeting.text() == "取号成功" and "老年人" not in kiosk.result_greeting.text()


def test_touches_keep_a_removed_card_for_its_holder(qtbot, hall: Hall, kiosk) -> None:
    put_on(hall, ELDER)
    qtbot.waitUntil(lambda: kiosk.card_title.text() == GREETING, timeout=5000)
    take_off(hall)
    qtbot.waitUntil(lambda: kiosk.model.state.card is not None and not kiosk.model.state.card.present, timeout=5000)
    hall.clock.advance(seconds=IDLE - 5)
    touch(qtbot, kiosk.card_panel)                      # the visitor touches the greeting: card_touch
    qtbot.waitUntil(lambda: hall.service._cards["kiosk-1"].touched_at == hall.clock.now(), timeout=5000)
    hall.clock.advance(seconds=IDLE - 5)                # 30 s after the removal, 15 s after the touch
    take(qtbot, kiosk)
    assert kiosk.result_greeting.text() == GREETING
    assert hall.service.card_state("kiosk-1") is None   # used: gone


def test_a_card_taken_away_mid_read_says_what_to_do(qtbot, hall: Hall, kiosk) -> None:
    assert hall.post(f"{READER}/remove", {"during_read": True})[0] == 200
    assert hall.post(f"{READER}/insert", ELDER)[0] == 200
    qtbot.waitUntil(lambda: kiosk.card_title.text() == ks.CARD_READ_FAILED_TITLE, timeout=5000)
    assert "重新平放在读卡区" in kiosk.card_detail.text() and not kiosk.cancel_card_button.isVisible()
    shoot(kiosk, "kiosk_card_read_failed.png")
    take(qtbot, kiosk)                                  # no half card: a plain ticket
    assert kiosk.result_greeting.text() == "取号成功"
