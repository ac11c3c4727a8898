"""Base class of emulated devices: identity, byte handling and fault injection.

Faults let IT staff and tests rehearse what broken hardware does to the daemon. Modes:

* ``disconnect`` — the device is off the line: it hears nothing and sends nothing; a device that
  owns the link (the bus controller) also drops the link (see ``hw_emulators.link``).
* ``silent`` — the link stays up but the device swallows everything and answers nothing.
* ``corrupt`` — one byte of every chunk the device sends is altered (line noise), so the host's
  checksum check must discard it. A device that never sends (an LED screen) gets the noise on
  what reaches it instead, so it drops the frames.
* ``delay`` — everything the device outputs is held ``ms`` milliseconds: bytes it sends and, for
  devices with a display, what it shows.

Clearing the fault restores normal behaviour (and the link).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from drivers.codecs.framing import Decoder
from hall_controller.clock import Clock, SystemClock

if TYPE_CHECKING:
    from .link import Link

logger = logging.getLogger(__name__)

FAULT_MODES = ("disconnect", "silent", "corrupt", "delay")
# A profile's inter-frame gap is a few milliseconds at 9600 baud; thread scheduling jitters more
# than that, so a partial frame is only abandoned after this much silence.
MIN_IDLE_S = 0.05
_OFF_LINE = ("disconnect", "silent")
MAX_DELAY_MS = 60_000


class FaultError(ValueError):
    """A fault request the emulator cannot apply (bad mode or ms)."""


class DeviceNotFound(LookupError):
    """No emulated device matches a lookup."""


class AmbiguousDevice(ValueError):
    """Several buses have a device at that address; the caller must name the bus."""


FrameT = TypeVar("FrameT")


class IdleFramer(Generic[FrameT]):
    """A codec's decoder (``drivers.codecs.framing``) plus the UART idle timer: a gap in the traffic
    ends any partial frame."""

    def __init__(self, decoder: Decoder[FrameT], idle_s: float) -> None:
        self._decoder = decoder
        self._idle_s = idle_s
        self._last = 0.0

    def feed(self, data: bytes) -> list[FrameT]:
        t = time.monotonic()
        frames = self._decoder.flush() if t - self._last > self._idle_s else []
        self._last = t
        return frames + self._decoder.feed(data)


@dataclass(frozen=True)
class Fault:
    mode: str
    ms: int
    since: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "ms": self.ms, "since": self.since.isoformat(timespec="seconds")}


def corrupt_bytes(data: bytes) -> bytes:
    """Alter the middle byte by +0x5A: breaks any sum or XOR check, also when applied twice."""
    if not data:
        return data
    out = bytearray(data)
    i = len(out) // 2
    out[i] = (out[i] + 0x5A) & 0xFF
    return bytes(out)


@dataclass(frozen=True)
class Request:
    """A control API call routed to a device: JSON body, query string, path parts after the action."""

    body: dict[str, Any]
    query: dict[str, str]
    rest: tuple[str, ...] = ()


@dataclass(frozen=True)
class RawResponse:
    """A route result that is not JSON (a PNG, a WAV)."""

    data: bytes
    content_type: str


class HallBuilder(Protocol):
    """What an emulator class needs from the emulated hall while it is built."""

    def make_link(self, name: str) -> Link: ...

    def host_of(self, entry: dict[str, Any]) -> EmulatedDevice | None: ...

    def claim_address(self, host_id: str, kind: str, address: int, device_id: str) -> None: ...


class EmulatedDevice(ABC):
    """An emulated device: ``receive()`` bytes from the line, ``send()`` bytes to it.

    Subclasses register with ``hw_emulators.registry.emulates(kind)`` and are built from the hall
    config entry by :meth:`build`. The control API finds them by id (``lookup = "id"``) or by bus
    address (``"address"``) under ``/{kind}/{ref}`` and calls the methods named in ``routes``
    (``(HTTP method, action) -> method name``; the action is the path part after the ref, ``""``
    for none; the method takes a :class:`Request`). Faults are routed for every kind.
    """

    kind: ClassVar[str]
    lookup: ClassVar[str] = "id"
    # At most this many bytes of each chunk in the DEBUG logs (None: all); see Link.log_limit.
    traffic_log_bytes: ClassVar[int | None] = None
    routes: ClassVar[dict[tuple[str, str], str]] = {}

    def __init__(self, device_id: str, profile_name: str, profile: Any, *, address: int | None = None,
                 window: int | None = None, kiosk: str | None = None) -> None:
        self.id = device_id
        # The hall's clock (EmulatedHall sets it; the system clock by default): emulated hardware
        # stamps what it shows and records with it, never with the wall clock directly.
        self.clock: Clock = SystemClock()
        self.profile_name = profile_name
        self.profile = profile
        self.address = address
        self.window = window
        self.kiosk = kiosk
        self._fault: Fault | None = None
        self._lock = threading.RLock()
        self._later: ThreadPoolExecutor | None = None
        self._pending = 0

    @classmethod
    @abstractmethod
    def build(cls, entry: dict[str, Any], profile: Any, hall: HallBuilder) -> EmulatedDevice | None:
        """The emulator of a config entry, or None when it is not ours to emulate (a real host)."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the daemon connects to reach this device."""

    def start(self) -> None:  # noqa: B027 - most devices have no link of their own
        """Open the device's own link, if it has one (never in the constructor)."""

    def now(self) -> datetime:
        """Local time with offset from the hall's clock: what an operator compares with the daemon's logs."""
        return self.clock.now().astimezone()

    # -- faults ---------------------------------------------------------------------------------
    @property
    def fault(self) -> Fault | None:
        return self._fault

    def set_fault(self, mode: str, ms: int | None = None) -> Fault:
        if mode not in FAULT_MODES:
            raise FaultError(f"未知的故障模式 {mode!r}（可选：{'、'.join(FAULT_MODES)}）")
        if mode == "delay" and ms is None:
            raise FaultError("delay 模式需要 ms（毫秒）")
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= MAX_DELAY_MS):
            raise FaultError(f"ms 须为 0–{MAX_DELAY_MS} 的整数")
        fault = Fault(mode, ms or 0, self.now())
        with self._lock:
            self._fault = fault
        logger.info("%s: fault %s%s", self.id, mode, f" {fault.ms} ms" if mode == "delay" else "")
        return fault

    def clear_fault(self) -> None:
        with self._lock:
            old, self._fault = self._fault, None
        if old is not None:
            logger.info("%s: fault %s cleared", self.id, old.mode)

    def _mode(self) -> str | None:
        fault = self._fault
        return fault.mode if fault else None

    @property
    def online(self) -> bool:
        """Whether the device would answer the host now (the dashboard's 在线)."""
        return self._mode() not in _OFF_LINE

    # -- bytes ----------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes arriving from the line; faults decide whether the device hears them."""
        mode = self._mode()
        if mode in _OFF_LINE:
            logger.debug("%s: %s, swallowed %s", self.id, mode, self._traffic(data))
            return
        self.on_bytes(data)

    @abstractmethod
    def on_bytes(self, data: bytes) -> None:
        """Protocol handling of bytes the device heard."""

    def _traffic(self, data: bytes) -> str:
        limit = self.traffic_log_bytes
        if limit is None or len(data) <= limit:
            return data.hex(" ")
        return f"{data[:limit].hex(' ')} … ({len(data)} bytes, the rest not logged)"

    def send(self, data: bytes) -> bool:
        """Put bytes on the line after applying the fault; False when the fault ate them."""
        fault = self._fault
        mode = fault.mode if fault else None
        if mode in _OFF_LINE:
            logger.debug("%s: %s, not sending %s", self.id, mode, self._traffic(data))
            return False
        if mode == "corrupt":
            data = corrupt_bytes(data)
        elif mode == "delay" and fault is not None:
            time.sleep(fault.ms / 1000)  # callers are the device's own (press/reader) threads
        self._transmit(data)
        return True

    @abstractmethod
    def _transmit(self, data: bytes) -> None:
        """Hand bytes to the link (or to the bus controller)."""

    def _output(self, apply: Callable[[], None]) -> None:
        """Run a display update now, or after the delay fault, keeping updates in order."""
        fault = self._fault
        ms = fault.ms if fault and fault.mode == "delay" else 0
        with self._lock:
            later = None
            if ms or self._pending:  # updates still held by an earlier delay go first
                self._pending += 1
                if self._later is None:
                    self._later = ThreadPoolExecutor(1, thread_name_prefix=f"emu-{self.id}-delay")
                later = self._later
        if later is None:
            apply()
        else:
            later.submit(self._run_later, ms, apply)

    def _run_later(self, ms: int, apply: Callable[[], None]) -> None:
        try:
            time.sleep(ms / 1000)
            apply()
        except Exception:
            logger.exception("%s: delayed update failed", self.id)
        finally:
            with self._lock:
                self._pending -= 1

    def stop(self) -> None:
        with self._lock:
            later, self._later = self._later, None
            self._pending = 0
        if later is not None:
            later.shutdown(wait=False, cancel_futures=True)

    # -- reporting ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Identity as in ``GET /devices`` (without url, which the hall knows)."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind}
        for key in ("address", "window", "kiosk"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def state(self) -> dict[str, Any]:
        """Everything the dashboard shows about the device."""
        fault = self._fault
        return {**self.describe(), "profile": self.profile_name, "online": self.online,
                "fault": fault.as_dict() if fault else None}


class LinkedDevice(EmulatedDevice):
    """A device on a link of its own (a USB or serial cable, a TCP port): ``disconnect`` pulls the cable.

    Subclasses add the protocol (``on_bytes``) and their routes; ``placement`` turns the config entry
    into their constructor's keywords.
    """

    def __init__(self, device_id: str, profile_name: str, profile: Any, link: Link, **where: Any) -> None:
        super().__init__(device_id, profile_name, profile, **where)
        self.link = link
        link.log_limit = self.traffic_log_bytes

    @classmethod
    def build(cls, entry: dict[str, Any], profile: Any, hall: HallBuilder) -> LinkedDevice:
        return cls(entry["id"], entry["profile"], profile, hall.make_link(entry["id"]), **cls.placement(entry))

    @classmethod
    def placement(cls, entry: dict[str, Any]) -> dict[str, Any]:
        """Where the device stands, from its config entry."""
        return {"window": entry.get("window"), "kiosk": entry.get("kiosk")}

    @property
    def url(self) -> str:
        return self.link.url

    def start(self) -> None:
        self.link.start(self.receive)
        logger.info("%s listens at %s", self.id, self.url)

    def stop(self) -> None:
        self.link.stop()
        super().stop()

    def _transmit(self, data: bytes) -> None:
        self.link.send(data)

    def set_fault(self, mode: str, ms: int | None = None) -> Fault:
        """As for any device; ``disconnect`` also drops the link, any other mode restores it."""
        fault = super().set_fault(mode, ms)
        self._apply_to_link(mode)
        return fault

    def _apply_to_link(self, mode: str) -> None:
        if mode == "disconnect":
            self.link.drop()
        else:
            self.link.restore()

    def clear_fault(self) -> None:
        super().clear_fault()
        self.link.restore()

    def state(self) -> dict[str, Any]:
        return {**super().state(), "url": self.url, "host_connected": self.link.host_connected}
