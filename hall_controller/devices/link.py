"""One communication controller and the LED screens and keypads behind it: open, watch, reopen.

The window bus driver reports a failure once and stops; this supervisor owns everything after that:
it marks the controller and every device on its bus offline once, reopens with capped exponential
backoff, and tells the device manager when the bus is back so it can restore what the screens show.

Nothing on the bus answers unless a key is pressed, so a link counts as up once it has stayed open
for :data:`SETTLE_S`. A serial server that accepts the connection and drops it at once (as one with
nothing behind it does) therefore neither flaps the devices' state nor resets the backoff. For the
same reason the screens and keypads share their bus's state: a single dead screen cannot be seen.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence

from device_profiles import ProfileError, load_profile
from drivers.registry import get_factory
from drivers.transport import TransportError
from drivers.window_bus import WindowBus

from ..backoff import Backoff
from ..config import DeviceConfig

log = logging.getLogger(__name__)

SETTLE_S = 0.3
CONTROL_TIMEOUT_S = 1.0
# Failures that are expected on a flaky or absent device; anything else is logged with a traceback.
EXPECTED_ERRORS = (TransportError, ProfileError, ValueError, OSError, LookupError)

KeyHandler = Callable[["BusLink", int, str, str], None]
StatusHandler = Callable[[DeviceConfig, bool, str | None], None]


def emulator_url(control: str, device_id: str, timeout: float = CONTROL_TIMEOUT_S) -> str:
    """Where the emulator serves ``device_id``, from its control API (``GET /devices``)."""
    with urllib.request.urlopen(f"http://{control}/devices", timeout=timeout) as response:
        listing = json.load(response)
    for entry in listing:
        if entry.get("id") == device_id and entry.get("url"):
            return str(entry["url"])
    raise LookupError(f"模拟器未提供设备 {device_id}")


class BusLink:
    """Supervises one window bus on its own thread; the current :class:`WindowBus` is ``bus``."""

    def __init__(
        self,
        controller: DeviceConfig,
        members: Sequence[DeviceConfig],
        *,
        resolve_url: Callable[[DeviceConfig], str],
        profiles_dir: str | None,
        on_key: KeyHandler,
        on_up: Callable[[BusLink], None],
        on_status: StatusHandler,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        settle: float = SETTLE_S,
        rng: random.Random | None = None,
    ) -> None:
        self.controller = controller
        self.members = tuple(members)
        self.bus: WindowBus | None = None
        self._resolve_url = resolve_url
        self._profiles_dir = profiles_dir
        self._on_key = on_key
        self._on_up = on_up
        self._on_status = on_status
        self._clock = clock
        # Capped below 5 s so that a replugged bus is back (reopened and settled) within 5 s.
        self._backoff = backoff or Backoff(base=0.2, cap=4.0)
        self._settle = settle
        self._rng = rng or random.Random()
        self._wake = threading.Event()
        self._stopping = False
        self._error: Exception | None = None
        self._online: bool | None = None
        self._thread = threading.Thread(target=self._run, name=f"devices-{controller.id}", daemon=True)

    @property
    def id(self) -> str:
        return self.controller.id

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------------------ supervisor

    def _run(self) -> None:
        failures = 0
        while not self._stopping:
            error, was_up = self._session()
            if self._stopping:
                break
            failures = 1 if was_up else failures + 1
            self._mark(False, str(error) or type(error).__name__)
            delay = self._backoff.delay(failures, self._rng)
            log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                    "%s: window bus unavailable (%s); retry %d in %.2f s", self.id, error, failures, delay)
            self._wake.wait(delay)
            self._wake.clear()

    def _session(self) -> tuple[Exception, bool]:
        """Open the bus and hold it until it fails: ``(error, whether it counted as up)``."""
        try:
            bus = self._open()
        except Exception as exc:
            if not isinstance(exc, EXPECTED_ERRORS):
                log.exception("%s: unexpected error opening the window bus", self.id)
            return exc, False
        self.bus = bus
        try:
            log.info("%s: window bus open at %s", self.id, bus.url)
            self._on_up(self)
            up = not self._wake.wait(self._settle)
            if up:
                self._mark(True, None)
                self._wake.wait()
            return self._error or TransportError("已停止"), up
        finally:
            self.bus = None
            bus.close()
            self._wake.clear()

    def _open(self) -> WindowBus:
        url = self._resolve_url(self.controller)
        names = dict.fromkeys(d.profile for d in (self.controller, *self.members))
        profiles = [load_profile(name, site_dir=self._profiles_dir) for name in names]
        self._error = None
        factory = get_factory(self.controller.kind)
        return factory(url, profiles, on_key=self._key, on_error=self._failed, clock=self._clock)

    # ------------------------------------------------------------------------------ bus callbacks

    def _key(self, addr: int, key: str, digits: str) -> None:
        self._on_key(self, addr, key, digits)

    def _failed(self, exc: Exception) -> None:
        self._error = exc
        self._wake.set()

    # ------------------------------------------------------------------------------ device state

    def _mark(self, online: bool, error: str | None) -> None:
        """Report a state change of the whole bus once, not once per retry."""
        if self._online is online:
            return
        self._online = online
        if online:
            log.info("%s: window bus online (%d devices)", self.id, len(self.members))
        for device in (self.controller, *self.members):
            self._on_status(device, online, error)
