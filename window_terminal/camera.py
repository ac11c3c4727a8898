"""The window's document camera (高拍仪) in the terminal: where it is, capturing without freezing the
screen, and the JPEG that goes into `attach_scan`.

The device layer is `drivers/camera.py` (`LinkCamera` for a byte link such as the emulated camera of
`hall-emu`, `QtCamera` for `uvc://[NAME]`); this module only finds the camera and runs its driver.
Where the camera is: `--camera URL`, else the hall config's camera device of this window (`camera-N`);
the URL `emulated` becomes the transport URL `emulated://HOST:PORT/camera-N` (`--emulator HOST:PORT`,
else the config's `emulator.control`), which the driver opens like any other: the transport layer asks
the emulator where the camera is, as for the daemon's own devices. A failed capture closes the driver;
the next press of 拍照 opens it again (drivers never retry on their own).

The captured page is scaled to at most SCAN_LONG_SIDE pixels and saved as JPEG at SCAN_QUALITY: an A4
form stays legible (about 190 dpi) at a few hundred KB, far below the daemon's `scans.max_mb`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QBuffer, QIODevice, QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage

from device_profiles import ProfileError, load_profile
from drivers.base import CameraDriver
from drivers.camera import QtCamera
from drivers.registry import create_driver
from drivers.transport import TransportError, device_url
from hall_controller.config import HallConfig
from hall_controller.faults import CAMERA_FAULT_TEXTS, camera_fault_text

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "eloam-s500l"
SCAN_LONG_SIDE = 1600        # pixels: an A4 page at about 190 dpi
SCAN_QUALITY = 85            # JPEG quality: small print and stamps stay sharp
# A camera unplugged, an emulator not running, a bad profile or image: logged without a traceback.
EXPECTED_ERRORS = (TransportError, ValueError, ProfileError)


@dataclass(frozen=True)
class Scan:
    """A captured page, scaled and encoded for `attach_scan`; `image` is what the preview shows."""

    image: QImage
    jpeg: bytes

    def payload(self) -> str:
        """The `image` argument of `attach_scan`: base64 of the JPEG."""
        return base64.b64encode(self.jpeg).decode("ascii")


Done = Callable[[Scan], None]
Failed = Callable[[str], None]


@dataclass(frozen=True)
class CameraSource:
    """Where a window's camera is: `url` (or `emulated`: the emulator's `device_id` through `emulator`)."""

    url: str
    device_id: str
    profile: str = DEFAULT_PROFILE
    emulator: str | None = None             # HOST:PORT of the emulator control API
    profiles_dir: str | None = None

    @property
    def driver_url(self) -> str:
        """The URL the driver opens (no I/O here: an `emulated://` one is resolved when it is opened)."""
        return device_url(self.url, self.device_id, self.emulator)


def camera_source(spec: str | None, window: int, config: HallConfig | None = None,
                  emulator: str | None = None) -> CameraSource | None:
    """Window `window`'s camera. `spec` (the command line's --camera): None for the config's camera device
    of this window, `none` for no camera, `emulated`, or a driver URL (`uvc://S500L`, `socket://HOST:PORT`,
    a serial device). None when there is no camera."""
    if spec == "none":
        return None
    device = None
    if config is not None:
        device = next((d for d in config.devices if d.kind == "camera" and d.window == window), None)
    control = emulator or (config.emulator_control if config is not None else None)
    profiles_dir = config.profiles_dir if config is not None else None
    url = spec if spec is not None else (device.url if device is not None else None)
    if url is None:
        return None
    return CameraSource(url, device.id if device is not None else f"camera-{window}",
                        device.profile if device is not None else DEFAULT_PROFILE, control, profiles_dir)


class ScanImageError(ValueError):
    """The camera's bytes are no usable picture (the clerk retakes it)."""


def prepare_scan(data: bytes) -> Scan:
    """The captured bytes as a page for the preview and for `attach_scan` (any thread: QImage only)."""
    image = QImage.fromData(data)
    if image.isNull():
        raise ScanImageError("高拍仪返回的图像无法解码")
    if max(image.width(), image.height()) > SCAN_LONG_SIDE:
        image = image.scaled(SCAN_LONG_SIDE, SCAN_LONG_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "JPEG", SCAN_QUALITY):
        raise ScanImageError("照片无法编码为 JPEG")
    return Scan(image, bytes(buffer.data().data()))


def failure_text(exc: BaseException) -> str:
    """What the clerk reads when a capture fails: a fixed sentence for the kind of fault
    (hall_controller.faults); the driver's own message, with its URL and errno, goes to the log."""
    if isinstance(exc, ScanImageError):
        return CAMERA_FAULT_TEXTS["image"]
    return camera_fault_text(exc)


class DocumentCamera(QObject):
    """One window's camera. `capture(done, failed)` returns at once; `done(Scan)` or `failed(message)`
    runs later in the UI thread. The driver is built, opened (an emulated camera's URL resolved) and a
    byte-link camera read on a worker thread; a UVC camera (QtCamera) waits for its image in a local Qt event loop and is opened and
    read in the GUI thread, which stays responsive meanwhile."""

    _finished = Signal(object, str)          # Scan or None, message
    _in_gui = Signal()                       # go on in the GUI thread (a QtCamera)

    def __init__(self, source: CameraSource, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.name = source.device_id
        self._driver: CameraDriver | None = None
        self._pending: tuple[Done, Failed] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"camera-{source.device_id}")
        self._finished.connect(self._deliver)
        self._in_gui.connect(self._attempt_in_gui)

    def capture(self, done: Done, failed: Failed) -> None:
        if self._pending is not None:
            failed("正在拍摄，请稍候")
            return
        self._pending = (done, failed)
        self._pool.submit(self._attempt)

    def _make_driver(self) -> CameraDriver:
        profile = load_profile(self.source.profile, self.source.profiles_dir)
        return create_driver("camera", CameraDriver, self.source.driver_url, [profile])

    @Slot()
    def _attempt_in_gui(self) -> None:
        self._attempt(gui_thread=True)

    def _attempt(self, gui_thread: bool = False) -> None:
        try:
            if self._driver is None:
                self._driver = self._make_driver()     # no I/O before open()
            if isinstance(self._driver, QtCamera) and not gui_thread:
                self._in_gui.emit()
                return
            self._driver.open()
            data, _content_type = self._driver.capture()
            scan = prepare_scan(data)
        except Exception as exc:
            self._fail(exc)
        else:
            log.info("document camera %s: %d×%d, %d bytes JPEG", self.name, scan.image.width(),
                     scan.image.height(), len(scan.jpeg))
            self._finished.emit(scan, "")

    def _fail(self, exc: Exception) -> None:
        """Report to the clerk and close the driver: the next capture opens it afresh."""
        log.warning("document camera %s (%s): %s", self.name, self.source.url, exc,
                    exc_info=not isinstance(exc, EXPECTED_ERRORS))
        self._drop_driver()
        self._finished.emit(None, failure_text(exc))

    def _drop_driver(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            try:
                driver.close()
            except Exception:
                log.exception("closing the document camera %s failed", self.name)

    @Slot(object, str)
    def _deliver(self, scan: Any, message: str) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        done, failed = pending
        if scan is not None:
            done(scan)
        else:
            failed(message)

    def close(self) -> None:
        """Wait for a capture under way, then close the driver."""
        self._pool.shutdown(wait=True)
        self._drop_driver()
