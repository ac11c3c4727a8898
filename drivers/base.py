"""The device contract: what every driver is, whatever its kind (in the manner of python-can's BusABC).

A driver *has* a transport (``drivers.transport``) and speaks its kind's sans-IO codec over it.
Life cycle, identical for every kind:

* the constructor only stores settings: no I/O, no threads;
* :meth:`DeviceDriver.open` opens the transport and starts the driver's own threads, if any;
* :meth:`DeviceDriver.close` stops them and closes the transport; it may be called twice;
* a failure on a background thread is reported exactly once through ``on_error`` and stops the
  driver (:class:`ThreadedDriver` does this for every driver with threads); a failure inside a call
  raises :class:`drivers.transport.TransportError`.

Timeouts live in the transport (every read and write has one, from the profile's ``transport``
section); retries do not live here at all: reopening a failed driver with capped exponential
backoff, marking it offline once and restoring its state is the daemon's supervisor's job
(``hall_controller.devices.link``), the one place that retries devices.

Per kind, an abstract interface names the kind's operations, so the daemon codes against the kind and
never against a vendor's driver. Every interface is registered in ``drivers.registry`` beside its
codec and factory.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drivers.transport import TransportError, TransportIOError

log = logging.getLogger(__name__)

__all__ = [
    "CardReaderDriver",
    "CameraDriver",
    "DeviceDriver",
    "ErrorCallback",
    "Health",
    "PrinterDriver",
    "SpeakerDriver",
    "ThreadedDriver",
    "WindowBusDriver",
]

ErrorCallback = Callable[[Exception], None]


@dataclass(frozen=True)
class Health:
    """What the driver knows of its device right now (the supervisor publishes it)."""

    online: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class DeviceDriver(ABC):
    """One open link to a device (or to a bus of devices)."""

    kind: ClassVar[str]

    def __init__(self, url: str, *, on_error: ErrorCallback | None = None) -> None:
        self.url = url
        self._on_error = on_error

    @abstractmethod
    def open(self) -> None:
        """Open the transport and start the driver's threads; raises TransportError."""

    @abstractmethod
    def close(self) -> None:
        """Stop the driver and close its transport (idempotent)."""

    def health(self) -> Health:
        """Default: a driver that is open and has not failed is online."""
        return Health(online=True)

    def answering(self) -> bool | None:
        """Whether the device has shown since :meth:`open` that it answers in time.

        None (the default): the device answers nothing unless it is asked or pressed, so the supervisor
        counts it up once it has stayed open for a moment. A driver that polls its device on its own
        thread says False until the device has answered enough polls within their reply timeout — the
        supervisor's hysteresis: a device whose replies come too late is never counted up on one stray
        reply, only to time out on the next poll, so it stays offline instead of flipping at every reopen.
        """
        return None

    def __enter__(self) -> DeviceDriver:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ThreadedDriver(DeviceDriver):
    """A driver with threads of its own (a reader, a poller, a writer): this base starts them, stops
    them and reports the first failure on any of them exactly once.

    A thread's target just raises on failure. The first exception stops the driver (``stopping``
    turns true, ``cond`` waiters wake) and goes to ``on_error`` once — unless the driver was
    already closing, when a failure is only the side effect of closing the transport and is logged,
    not reported. An exception that is not a :class:`TransportError` is a bug: it is logged with its
    traceback and reported as a :class:`TransportIOError` so that the supervisor reopens the driver.
    Subclasses name the device in ``device_name`` (Chinese, for the wrapped error) and call
    :meth:`_start_threads` from ``open()`` and :meth:`_stop_threads` from ``close()``.
    """

    device_name: ClassVar[str] = "设备"

    def __init__(self, url: str, *, on_error: ErrorCallback | None = None) -> None:
        super().__init__(url, on_error=on_error)
        #: Notified on failure and on stop; subclasses wait on it for their own state too.
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._closing = False
        self._threads: tuple[threading.Thread, ...] = ()
        self._fail_lock = threading.Lock()
        self._failed: Exception | None = None

    @property
    def failed(self) -> Exception | None:
        """The error that stopped the driver, if any."""
        return self._failed

    @property
    def running(self) -> bool:
        """Threads started and not stopped."""
        return bool(self._threads)

    @property
    def stopping(self) -> bool:
        """Closing, or stopped by a failure: threads should return."""
        return self._stop.is_set()

    def health(self) -> Health:
        failed = self._failed
        return Health(online=self.running and failed is None, error=None if failed is None else str(failed))

    def _start_threads(self, targets: dict[str, Callable[[], None]]) -> None:
        """Start one daemon thread per ``{name: target}`` (after the transport is open)."""
        self._stop.clear()
        with self._cond:
            self._closing = False
        self._failed = None
        self._threads = tuple(threading.Thread(target=self._guarded, args=(target,), name=f"{name} {self.url}",
                                               daemon=True) for name, target in targets.items())
        for thread in self._threads:
            thread.start()

    def _begin_close(self) -> bool:
        """Mark the driver closing (a failure from now on is not news); False if it already was."""
        with self._cond:
            if self._closing:
                return False
            self._closing = True
            self._cond.notify_all()
            return True

    def _stop_threads(self, timeout: float) -> None:
        """Stop the threads and wait up to ``timeout`` s for each (never for the calling thread)."""
        self._begin_close()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        current = threading.current_thread()
        threads, self._threads = self._threads, ()
        for thread in threads:
            if thread is not current:
                thread.join(timeout)

    def _guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """Stop the driver and report ``exc`` through ``on_error`` — the first time only."""
        with self._fail_lock:
            if self._failed is not None:
                return
            if not isinstance(exc, TransportError):
                log.error("%s: unexpected error in a %s thread", self.url, self.kind, exc_info=exc)
                exc = TransportIOError(f"{self.device_name}内部错误 {self.url}: {exc!r}")
            self._failed = exc
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
            closing = self._closing
        if closing:
            # The owner is already shutting the driver down: this is not news to report.
            log.info("%s: error while closing: %s", self.url, exc)
            return
        log.warning("%s: %s stopped: %s", self.url, self.kind, exc)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                log.exception("%s: on_error callback failed", self.url)


class WindowBusDriver(DeviceDriver):
    """An RS-485 line with LED window screens and call keypads behind a communication controller.

    Key presses arrive through ``on_key(addr, key_name, digits)`` given to the factory.
    """

    @abstractmethod
    def show_text(self, addr: int, text: str, colour: int | None = None) -> None:
        """Queue a text for LED screen ``addr`` (a newer one replaces an unsent older one)."""

    @abstractmethod
    def show_keypad_number(self, addr: int, text: str) -> None:
        """Queue a number such as ``A001`` (or an error code) for keypad ``addr``'s display."""


class CardReaderDriver(DeviceDriver):
    """A resident ID card reader. Cards read arrive through ``on_card(card)`` given to the factory,
    once per insertion; ``on_card_removed()`` when a card read is taken away, ``on_card_failed(why)``
    when a card put on it could not be read whole. The driver polls no faster than its profile allows."""

    @abstractmethod
    def sam_status(self) -> str:
        """The security module's state as reported by the reader (raises TransportError)."""


class PrinterDriver(DeviceDriver):
    """A receipt printer: whole jobs of printer bytes, and its status where the model reports it."""

    @abstractmethod
    def print_job(self, data: bytes) -> None:
        """Send one job; raises TransportError (offline) or a printer status error."""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """``{"online", "paper_out", "cover_open", ...}`` as far as the profile supports it."""

    @abstractmethod
    def check(self) -> None:
        """Ask the printer, between jobs, whether it can print (its real-time status, where the profile
        has it): raises TransportError when it does not answer in time or answers garbage, and the
        printer's status error when it answers but cannot print (no paper, cover open)."""


class SpeakerDriver(DeviceDriver):
    """An audio output (PA zone): plays whole WAV files, one at a time, never cutting one off."""

    @abstractmethod
    def play(self, wav: bytes, meta: dict[str, Any] | None = None) -> float:
        """Play a WAV file's bytes to the end; returns the duration in seconds. ``meta`` says what is
        played (``text``, ``tokens``, ``zone``, ...): a remote player or a WAV sink records it, a sound
        card ignores it."""


class CameraDriver(DeviceDriver):
    """A document camera (高拍仪): one still image per call."""

    @abstractmethod
    def capture(self) -> tuple[bytes, str]:
        """``(image bytes, content type)``; raises TransportError."""
