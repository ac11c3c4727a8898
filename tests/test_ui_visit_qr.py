"""The phone's QR codes on the hall's screens (issue 19), offscreen against a real daemon: the kiosk's
result screen shows the ticket's visit URL (the QR printed on the ticket) with the visitor Wi-Fi's
join code first; the hall display shows the hall page (扫码看排队) and the Wi-Fi code. Each screen
is grabbed and read back by a real QR reader (zxing-cpp); HALL_SCREENSHOTS keeps the pictures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from PySide6.QtCore import QPoint, Qt

from hall_controller.config import wifi_qr_payload
from kiosk_ui.display import DisplayModel, DisplayWindow
from kiosk_ui.kiosk import KioskModel, KioskWindow
from kiosk_ui.qtbus import QtHallBus

from .harness import Hall, no_devices

SHOTS = Path(os.environ.get("HALL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "hall-screenshots")
PUBLIC_URL = "http://192.168.10.2:8080"
SSID, WPA = "法律服务中心-访客", "guest2026"


def hall_with_web(data: dict) -> None:
    no_devices(data)
    data["web"] = {"listen": "0.0.0.0:8080", "public_url": PUBLIC_URL, "wifi": {"ssid": SSID, "password": WPA}}


@pytest.fixture
def hall(tmp_path):
    h = Hall(tmp_path, mutate=hall_with_web)
    yield h
    h.close()


def read_qr(widget, name: str) -> list[str]:
    """The QR payloads a phone camera would read off `widget`, left to right (its grab kept as `name`)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    widget.grab().save(str(path))
    found = zxingcpp.read_barcodes(Image.open(path).convert("L"))
    return [r.text for r in sorted(found, key=lambda r: r.position.top_left.x)]


def test_the_kiosk_result_screen_shows_the_tickets_qr_after_the_wifi_one(qtbot, hall):
    bus = QtHallBus(hall.client("kiosk-1"), poll_ms=50)
    bus.start()
    window = KioskWindow(KioskModel(bus, hall.config), hall.config.name, wifi_qr=hall.config.wifi_qr)
    qtbot.addWidget(window)
    window.resize(1920, 1080)
    window.show()
    qtbot.waitUntil(lambda: len(window._buttons) == 6 and window._buttons["consult"].isEnabled(), timeout=10_000)
    button = window._buttons["consult"]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=QPoint(button.width() // 2, button.height() // 2))
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.result_page, timeout=5000)
    [issued] = hall.of_type("ticket_issued")
    assert window.result_number.text() == issued["ticket"]["number"]
    payloads = read_qr(window, "kiosk_result_qr.png")
    assert payloads[0] == wifi_qr_payload(SSID, WPA)
    assert payloads[1].startswith(f"{PUBLIC_URL}/t/") and len(payloads[1]) == len(PUBLIC_URL) + 3 + 22
    assert window.result_visit_qr.payload == payloads[1]          # the URL of the reply, as printed
    assert window.result_wifi_qr.caption.text().startswith("①")
    assert window.result_visit_qr.caption.text().startswith("②")
    bus.close()


def test_the_hall_display_shows_the_hall_page_and_wifi_qr(qtbot, hall):
    bus = QtHallBus(hall.client("display-1"), poll_ms=50)
    bus.start()
    window = DisplayWindow(DisplayModel(bus), hall.config.name, hall.config.display_notice,
                           hall_url=hall.config.hall_page_url, wifi_qr=hall.config.wifi_qr)
    qtbot.addWidget(window)
    window.resize(1920, 1080)
    window.show()
    qtbot.waitUntil(lambda: bus.online, timeout=10_000)
    assert read_qr(window, "display_hall_qr.png") == [wifi_qr_payload(SSID, WPA), f"{PUBLIC_URL}/"]
    assert "扫码看排队" in window.hall_qr.caption.text()
    bus.close()


def test_without_a_phone_page_the_screens_show_no_qr(qtbot, hall):
    bus = QtHallBus(hall.client("display-1"), poll_ms=50)
    bus.start()
    window = DisplayWindow(DisplayModel(bus), hall.config.name)
    qtbot.addWidget(window)
    window.resize(1920, 1080)
    window.show()
    assert not window.hall_qr.isVisible() and not window.wifi_qr.isVisible()
    assert read_qr(window, "display_no_qr.png") == []
    bus.close()
