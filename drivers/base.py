"""The device contract: what every driver is, whatever its kind (in the manner of python-can's BusABC).

A driver *has* a transport (``drivers.transport``) and speaks its kind's sans-IO codec over it.
Life cycle, identical for every kind:

* the constructor only stores settings: no I/O, no threads;
* :meth:`DeviceDriver.open` opens the transport and starts the driver's own threads, if any;
* :meth:`DeviceDriver.close` stops them and closes the transport; it may be called twice;
* a failure on a background thread is reported exactly once through ``on_error`` and stops the
  driver; a failure inside a call raises :class:`drivers.transport.TransportError`.

Timeouts live in the transport (every read and write has one, from the profile's ``transport``
section); retries do not live here at all: reopening a failed driver with capped exponential
backoff, marking it offline once and restoring its state is the daemon's supervisor's job
(``hall_controller.devices.link``), the one place that retries devices.

Per kind, an abstract interface names the kind's operations, so the daemon codes against the kind and
never against a vendor's driver. Every interface is registered in ``drivers.registry`` beside its
codec and factory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "CardReaderDriver",
    "CameraDriver",
    "DeviceDriver",
    "ErrorCallback",
    "Health",
    "PrinterDriver",
    "SpeakerDriver",
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

    def __enter__(self) -> DeviceDriver:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


class SpeakerDriver(DeviceDriver):
    """An audio output (PA zone): plays whole WAV files, one at a time, never cutting one off."""

    @abstractmethod
    def play(self, wav: bytes) -> float:
        """Play a WAV file's bytes to the end; returns the duration in seconds."""


class CameraDriver(DeviceDriver):
    """A document camera (高拍仪): one still image per call."""

    @abstractmethod
    def capture(self) -> tuple[bytes, str]:
        """``(image bytes, content type)``; raises TransportError."""
