"""The window's document camera (高拍仪, Eloam S500L: a UVC camera) behind one small interface.

`DocumentCamera.capture(done, failed)` delivers one QImage in the UI thread. `QtCamera` uses
QtMultimedia (QCamera + QImageCapture, in the pyside6-addons wheel) when a video input exists;
`EmulatedCamera` draws a synthetic A4 document so the whole flow runs without the hardware.
`encode_scan` makes the image small enough for one `attach_scan` command on the bus.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtCore import QBuffer, QIODevice, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen

from kiosk_ui.style import font_family

log = logging.getLogger(__name__)

A4_PIXELS = (1240, 1754)          # A4 at 150 dpi
MAX_SCAN_BYTES = 45_000           # one command is at most 64 KiB of JSON on the bus; base64 adds a third

Done = Callable[[QImage], None]
Failed = Callable[[str], None]


class DocumentCamera(Protocol):
    name: str

    def capture(self, done: Done, failed: Failed) -> None: ...

    def close(self) -> None: ...


class EmulatedCamera:
    """A synthetic A4 page (a form with the visit's number and time) in place of the real camera."""

    name = "模拟高拍仪"

    def __init__(self, caption: Callable[[], str] | None = None) -> None:
        self._caption = caption or (lambda: "")
        self.count = 0

    def capture(self, done: Done, failed: Failed) -> None:
        self.count += 1
        image = synthetic_document(self._caption(), self.count)
        QTimer.singleShot(0, lambda: done(image))       # asynchronous, like the real camera

    def close(self) -> None:
        pass


def synthetic_document(caption: str, page: int) -> QImage:
    """A grey-paper A4 form with ruled lines, a heading, the caption and a red seal."""
    width, height = A4_PIXELS
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("#f4f1ea"))
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    family = font_family()
    p.setPen(QColor("#1a1a1a"))
    p.setFont(QFont(family, 40, QFont.Weight.Bold))
    p.drawText(QRectF(0, 110, width, 90), Qt.AlignmentFlag.AlignHCenter, "法律援助申请表（样张）")
    p.setFont(QFont(family, 20))
    p.drawText(QRectF(120, 230, width - 240, 50), Qt.AlignmentFlag.AlignLeft, caption or "模拟高拍仪拍摄")
    p.drawText(QRectF(120, 230, width - 240, 50), Qt.AlignmentFlag.AlignRight, f"第 {page} 页")
    fields = ("申请人姓名", "身份证号码", "联系电话", "住所地址", "案件类型", "对方当事人", "申请事项", "事实与理由")
    p.setPen(QPen(QColor("#333333"), 2))
    y = 340
    for name in fields:
        p.drawText(QRectF(120, y, 260, 60), Qt.AlignmentFlag.AlignVCenter, name + "：")
        p.drawLine(390, y + 48, width - 120, y + 48)
        y += 110
    p.setPen(QPen(QColor("#888888"), 1))
    for line in range(12):
        p.drawLine(120, y + 40 + line * 46, width - 120, y + 40 + line * 46)
    p.setPen(QPen(QColor("#c62828"), 8))
    p.drawEllipse(QRectF(width - 430, height - 430, 260, 260))
    p.setFont(QFont(family, 22, QFont.Weight.Bold))
    p.setPen(QColor("#c62828"))
    p.drawText(QRectF(width - 430, height - 430, 260, 260), Qt.AlignmentFlag.AlignCenter, "受理\n专用章")
    p.end()
    return image


class QtCamera:
    """A UVC document camera through QtMultimedia: QCamera + QMediaCaptureSession + QImageCapture."""

    def __init__(self, device: Any, multimedia: Any) -> None:
        self.name = device.description()
        self._camera = multimedia.QCamera(device)
        self._session = multimedia.QMediaCaptureSession()
        self._capture = multimedia.QImageCapture()
        self._session.setCamera(self._camera)
        self._session.setImageCapture(self._capture)
        self._pending: tuple[Done, Failed] | None = None
        self._capture.imageCaptured.connect(self._captured)
        self._capture.errorOccurred.connect(self._error)
        self._camera.errorOccurred.connect(lambda *_: self._error(-1, None, self._camera.errorString()))
        self._camera.start()

    def capture(self, done: Done, failed: Failed) -> None:
        if self._pending is not None:
            failed("正在拍摄，请稍候")
            return
        if not self._capture.isReadyForCapture():
            failed("高拍仪未就绪，请稍后再试")
            return
        self._pending = (done, failed)
        self._capture.capture()

    def _captured(self, _id: int, image: QImage) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[0](image)

    def _error(self, _id: int, _error: Any, message: str) -> None:
        log.warning("document camera %s: %s", self.name, message)
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1](f"高拍仪拍摄失败：{message}")

    def close(self) -> None:
        self._camera.stop()


def open_camera(spec: str | None, caption: Callable[[], str] | None = None) -> DocumentCamera | None:
    """`emulated`, `none`, a camera name (part of its description), or None/`auto` for the first video
    input QtMultimedia finds. None when there is no camera (the scan button says so)."""
    if spec == "none":
        return None
    if spec == "emulated":
        return EmulatedCamera(caption)
    try:
        from PySide6 import QtMultimedia
    except ImportError:
        log.warning("QtMultimedia is not installed (pip install pyside6-addons): no document camera")
        return None
    devices = list(QtMultimedia.QMediaDevices.videoInputs())
    if spec not in (None, "auto"):
        devices = [d for d in devices if spec.lower() in d.description().lower()]
    if not devices:
        log.warning("no document camera found%s", f" matching {spec!r}" if spec not in (None, "auto") else "")
        return None
    return QtCamera(devices[0], QtMultimedia)


def encode_scan(image: QImage, max_bytes: int = MAX_SCAN_BYTES) -> bytes:
    """JPEG bytes of at most `max_bytes`: lower quality first, then smaller, until it fits."""
    scaled = image
    while True:
        for quality in (80, 65, 50, 35):
            data = _jpeg(scaled, quality)
            if len(data) <= max_bytes:
                return data
        if scaled.width() < 300:
            raise ValueError("图像过大，无法压缩到可传输的大小")
        scaled = scaled.scaledToWidth(int(scaled.width() * 0.8), Qt.TransformationMode.SmoothTransformation)


def _jpeg(image: QImage, quality: int) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "JPEG", quality)
    return bytes(buffer.data().data())


def scan_payload(image: QImage, max_bytes: int = MAX_SCAN_BYTES) -> str:
    """The `image` argument of `attach_scan`: base64 of the encoded JPEG."""
    return base64.b64encode(encode_scan(image, max_bytes)).decode("ascii")

