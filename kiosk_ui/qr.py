"""QR codes on the hall's screens: the ticket's phone page on the kiosk's result screen, the hall page
(扫码看排队) and the visitor Wi-Fi on the hall display. The same `qrcode` library the printer emulator
draws tickets with builds the symbol; it is painted module by module with a 4-module quiet zone, black
on white whatever the screen's palette, so phone cameras read it from a few steps away.
"""

from __future__ import annotations

import logging

import qrcode
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

log = logging.getLogger(__name__)

QUIET_MODULES = 4


def qr_image(payload: str, size: int) -> QImage:
    """The QR symbol of `payload` (error correction M), whole modules, at most `size` pixels square
    (never below 2 pixels a module)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1, border=QUIET_MODULES)
    code.add_data(payload.encode("utf-8"))
    code.make(fit=True)
    matrix = code.get_matrix()
    modules = len(matrix)
    scale = max(2, size // modules)
    image = QImage(modules * scale, modules * scale, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    try:
        for y, row in enumerate(matrix):
            for x, dark in enumerate(row):
                if dark:
                    painter.fillRect(x * scale, y * scale, scale, scale, QColor("black"))
    finally:
        painter.end()
    return image


class QrBox(QWidget):
    """A QR code with its caption underneath; hidden while it has no payload."""

    def __init__(self, caption: str, size: int, *, caption_css: str = "") -> None:
        super().__init__()
        self.size_px = size
        self.payload: str | None = None
        self.setObjectName("qrBox")
        self.setStyleSheet("QWidget#qrBox { background: transparent; }")
        self.code = QLabel()
        self.code.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.code.setStyleSheet("background: white;")      # the symbol's quiet zone stays white on any screen
        self.caption = QLabel(caption)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setStyleSheet("background: transparent;" + caption_css)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(4)
        box.addWidget(self.code, 0, Qt.AlignmentFlag.AlignHCenter)
        box.addWidget(self.caption)
        self.setVisible(False)

    def set_caption(self, text: str) -> None:
        """A new caption; the layout is told, so a longer one is not cut off."""
        if text != self.caption.text():
            self.caption.setText(text)
            self.caption.updateGeometry()
            self.updateGeometry()

    def set_payload(self, payload: str | None) -> None:
        """Show `payload` as a QR code (None hides the box); the image is rebuilt only when it changes."""
        if payload == self.payload:
            return
        self.payload = payload
        if not payload:
            self.code.clear()
            self.setVisible(False)
            return
        try:
            self.code.setPixmap(QPixmap.fromImage(qr_image(payload, self.size_px)))
        except Exception:          # a payload too long for a QR symbol: show nothing rather than fail the screen
            log.exception("cannot draw a QR code of %d characters", len(payload))
            self.code.clear()
            self.setVisible(False)
            return
        self.setVisible(True)
