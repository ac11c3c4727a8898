"""Document camera (高拍仪) drivers for the window app: one still image per :meth:`capture`.

Two transports, one interface (:class:`drivers.base.CameraDriver`), chosen by URL:

* ``uvc://`` (the first camera) or ``uvc://NAME`` (the first whose description contains NAME, e.g.
  ``uvc://S500L``): the Eloam S500L on the window PC's USB, through QtMultimedia (QCamera +
  QImageCapture, imported only here). Needs a running Qt application; :meth:`QtCamera.capture`
  waits for the image in a local event loop, so call it from the GUI thread.
* anything ``drivers.transport.open_transport`` opens (``tcp://HOST:PORT``, ``socket://``, a serial
  device or a pty): the byte link of ``drivers.codecs.camera``, which the emulated camera of
  ``hall-emu`` speaks — ``emulated://HOST:PORT/camera-N`` reaches it through the emulator's control
  address.

Usage (the window app)::

    from drivers.base import CameraDriver
    from drivers.registry import create_driver
    from device_profiles import load_profile
    camera = create_driver("camera", CameraDriver, url, [load_profile("eloam-s500l")])
    camera.open()
    jpeg, content_type = camera.capture()     # raises TransportError with a Chinese message
    ...                                       # send base64(jpeg) as attach_scan {ticket, image}
    camera.close()

No retries here: a failing capture raises and the caller decides (the clerk presses 拍摄 again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from device_profiles import Profile, transport_options
from drivers.base import CameraDriver, ErrorCallback, Health
from drivers.codecs.camera import (
    CAPTURE,
    ERROR,
    IMAGE,
    CameraFraming,
    FrameDecoder,
    camera_framing,
    encode_request,
)
from drivers.registry import register
from drivers.transport import (
    DeviceNotFound,
    NotSupported,
    Transport,
    TransportIOError,
    TransportTimeout,
    open_transport,
)

log = logging.getLogger(__name__)

__all__ = ["LinkCamera", "QtCamera", "open_camera"]

JPEG_MAGIC = b"\xff\xd8\xff"
TRANSFER_BYTES_PER_S = 1_000_000      # a slow link still moves an A4 JPEG within the capture time


class LinkCamera(CameraDriver):
    """A camera on a byte link speaking ``drivers.codecs.camera`` (the emulated 高拍仪)."""

    kind = "camera"

    def __init__(self, url: str, profile: Profile, *, on_error: ErrorCallback | None = None) -> None:
        super().__init__(url, on_error=on_error)
        self.profile = profile
        self.framing: CameraFraming = camera_framing(profile)
        self._options = transport_options(profile)
        self._transport: Transport | None = None
        self._lock = threading.Lock()
        self.captures = 0

    def open(self) -> None:
        if self._transport is None:
            self._transport = open_transport(self.url, **self._options)

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def health(self) -> Health:
        return Health(online=self._transport is not None, detail={"captures": self.captures})

    def capture(self) -> tuple[bytes, str]:
        with self._lock:
            transport = self._transport
            if transport is None:
                raise TransportIOError(f"高拍仪未打开 {self.url}")
            decoder = FrameDecoder(self.framing)
            transport.write(encode_request(CAPTURE))
            deadline = time.monotonic() + self.framing.capture_ms / 1000
            while time.monotonic() < deadline:
                data = transport.read(65536)
                if not data:
                    continue
                log.debug("%s: %d bytes (%s…)", self.url, len(data), data[:16].hex(" "))
                deadline += len(data) / TRANSFER_BYTES_PER_S     # a large image takes its transfer time
                for frame in decoder.feed(data):
                    if frame.type == ERROR:
                        raise TransportIOError(f"高拍仪报告：{frame.text}")
                    if frame.type == IMAGE:
                        if not frame.payload.startswith(JPEG_MAGIC):
                            raise TransportIOError("高拍仪返回的不是 JPEG 图像")
                        self.captures += 1
                        log.info("%s: captured %d bytes", self.url, len(frame.payload))
                        return frame.payload, "image/jpeg"
            if decoder.discarded:
                raise TransportTimeout(f"高拍仪数据校验失败（{decoder.discarded} 字节被丢弃），请重拍")
            raise TransportTimeout(f"高拍仪无应答 {self.url}")


class QtCamera(CameraDriver):
    """The Eloam S500L (or any UVC camera) through QtMultimedia's QCamera + QImageCapture."""

    kind = "camera"

    def __init__(self, url: str, profile: Profile | None = None, *, on_error: ErrorCallback | None = None) -> None:
        super().__init__(url, on_error=on_error)
        parts = urlsplit(url)
        self.name = unquote(parts.netloc + parts.path).strip("/")
        self.framing = camera_framing(profile) if profile is not None else CameraFraming()
        self._camera: Any = None
        self._session: Any = None
        self._capture: Any = None

    def open(self) -> None:
        if self._camera is not None:
            return
        try:
            from PySide6.QtCore import QCoreApplication
            from PySide6.QtMultimedia import QCamera, QImageCapture, QMediaCaptureSession, QMediaDevices
        except ImportError as exc:
            raise NotSupported(f"未安装 QtMultimedia（PySide6），无法使用高拍仪：{exc}") from exc
        if QCoreApplication.instance() is None:
            raise NotSupported("高拍仪需要在 Qt 应用（窗口终端）中使用")
        inputs = list(QMediaDevices.videoInputs())
        chosen = next((d for d in inputs if self.name.lower() in d.description().lower()), None)
        if chosen is None:
            found = "、".join(d.description() for d in inputs) or "无"
            raise DeviceNotFound(f"未检测到高拍仪{('“' + self.name + '”') if self.name else ''}"
                                 f"（已连接的摄像头：{found}），请检查 USB 连接")
        camera = QCamera(chosen)
        capture = QImageCapture()
        capture.setFileFormat(QImageCapture.FileFormat.JPEG)
        session = QMediaCaptureSession()
        session.setCamera(camera)
        session.setImageCapture(capture)
        camera.start()
        self._camera, self._capture, self._session = camera, capture, session
        log.info("camera %s opened", chosen.description())

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.stop()
        self._capture = self._session = None

    def capture(self) -> tuple[bytes, str]:
        if self._capture is None:
            raise TransportIOError("高拍仪未打开")
        from PySide6.QtCore import QBuffer, QByteArray, QEventLoop, QIODevice, QTimer

        result: dict[str, Any] = {}
        loop = QEventLoop()

        def captured(_id: int, image: Any) -> None:
            result["image"] = image
            loop.quit()

        def failed(_id: int, _error: Any, message: str) -> None:
            result["error"] = message
            loop.quit()

        self._capture.imageCaptured.connect(captured)
        self._capture.errorOccurred.connect(failed)
        try:
            if not self._capture.isReadyForCapture():
                raise TransportIOError("高拍仪尚未就绪，请稍候再拍")
            self._capture.capture()
            QTimer.singleShot(self.framing.capture_ms, loop.quit)
            loop.exec()
        finally:
            self._capture.imageCaptured.disconnect(captured)
            self._capture.errorOccurred.disconnect(failed)
        if "error" in result:
            raise TransportIOError(f"高拍仪拍摄失败：{result['error']}")
        if "image" not in result:
            raise TransportTimeout("高拍仪拍摄超时")
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not result["image"].save(buffer, "JPG", 90):
            raise TransportIOError("高拍仪图像无法编码为 JPEG")
        return bytes(data.data()), "image/jpeg"


@register("camera", interface=CameraDriver, codec="drivers.codecs.camera")
def open_camera(url: str, profiles: Sequence[Profile] = (), *,
                on_error: ErrorCallback | None = None) -> CameraDriver:
    """An unopened camera driver for ``url`` (``uvc://[NAME]`` or a byte-link URL)."""
    profile = profiles[0] if profiles else None
    if url.lower().startswith("uvc:"):
        return QtCamera(url, profile, on_error=on_error)
    if profile is None:
        raise ValueError("高拍仪缺少设备档案")
    return LinkCamera(url, profile, on_error=on_error)
