"""DeviceLink: one driver of any kind, supervised: open, watch, reopen — the one place that retries devices.

A driver (``drivers.base.DeviceDriver``) reports a failure once and stops; this supervisor owns
everything after that: it marks the device and every device hosted on its link (LED screens and
keypads behind a communication controller) offline once, reopens with capped exponential backoff,
and calls ``on_up`` when the link is back so its handler can restore what the device shows.

Many devices answer nothing unless asked or pressed, so a link counts as up once it has stayed open
for :data:`SETTLE_S`. A serial server that accepts the connection and drops it at once (as one with
nothing behind it does) therefore neither flaps the devices' state nor resets the backoff. For the
same reason hosted devices share their link's state: a single dead screen cannot be seen.
A device its driver polls (a card reader) must also have answered in time
(``DeviceDriver.answering``): the same judgement that takes it down — no reply within its timeout —
decides when it is up, so a reader that answers too slowly stays offline (one change) instead of
counting as up after :data:`SETTLE_S` and timing out a moment later, over and over.
A handler whose own call on the driver failed (a print job, say) hands the error to
:meth:`DeviceLink.report_failure`, which takes the link down and lets the supervisor reopen it.

A link is typed by its kind's interface (``DeviceLink[PrinterDriver]``): the driver the registry
builds is checked against it once, at open, so a handler uses ``link.driver`` as its kind's driver
without a cast. The link opens its URL as it is: an emulated device's ``emulated://`` URL is resolved
by the transport layer (``drivers.transport``) on each open, so an emulator that is not up yet is
retried here like an unplugged cable.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from device_profiles import ProfileError, load_profile
from drivers.base import DeviceDriver
from drivers.registry import create_driver
from drivers.transport import TransportError

from ..backoff import Backoff
from ..config import DeviceConfig
from ..faults import device_fault_text

log = logging.getLogger(__name__)

SETTLE_S = 0.3
ANSWER_POLL_S = 0.05    # how often a settled link asks a polled driver whether its device answered
# Failures that are expected on a flaky or absent device; anything else is logged with a traceback.
EXPECTED_ERRORS = (TransportError, ProfileError, ValueError, OSError, LookupError)

StatusHandler = Callable[[DeviceConfig, bool, str | None], None]
D = TypeVar("D", bound=DeviceDriver)


class DeviceLink(Generic[D]):
    """Supervises one driver of interface ``interface`` on its own thread, reached at ``url``; the open
    driver (or None) is ``driver``.

    ``driver_options`` go to the kind's factory beside ``on_error`` (e.g. ``on_key``, ``on_card``); one
    the factory does not take fails the link at its first open, naming it.
    """

    def __init__(
        self,
        owner: DeviceConfig,
        members: Sequence[DeviceConfig] = (),
        *,
        interface: type[D],
        url: str,
        profiles_dir: str | None,
        on_up: Callable[[DeviceLink[D]], None],
        on_status: StatusHandler,
        driver_options: dict[str, Any] | None = None,
        backoff: Backoff | None = None,
        settle: float = SETTLE_S,
        rng: random.Random | None = None,
    ) -> None:
        self.owner = owner
        self.members = tuple(members)
        self.interface = interface
        self.url = url
        self.driver: D | None = None
        self._profiles_dir = profiles_dir
        self._driver_options = dict(driver_options or {})
        self._on_up = on_up
        self._on_status = on_status
        # Capped below 5 s so that a replugged bus is back (reopened and settled) within 5 s.
        self._backoff = backoff or Backoff(base=0.2, cap=4.0)
        self._settle = settle
        self._rng = rng or random.Random()
        self._wake = threading.Event()
        self._stopping = False
        self._error: Exception | None = None
        self._online: bool | None = None
        self._thread: threading.Thread | None = None

    @property
    def id(self) -> str:
        return self.owner.id

    @property
    def online(self) -> bool:
        return bool(self._online)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"devices-{self.id}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------------------ supervisor

    def _run(self) -> None:
        failures = 0
        while not self._stopping:
            error, was_up = self._session()
            if self._stopping:
                break
            failures = 1 if was_up else failures + 1
            # Screens show the fixed sentence for this kind of fault; the raw error only goes to the log.
            self._mark(False, device_fault_text(error))
            delay = self._backoff.delay(failures, self._rng)
            log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                    "%s: device link unavailable (%s); retry %d in %.2f s", self.id, error, failures, delay)
            self._wake.wait(delay)
            self._wake.clear()

    def _session(self) -> tuple[Exception, bool]:
        """Open the driver and hold it until it fails: ``(error, whether it counted as up)``."""
        try:
            driver = self._open()
        except Exception as exc:
            if not isinstance(exc, EXPECTED_ERRORS):
                log.exception("%s: unexpected error opening the device", self.id)
            return exc, False
        self.driver = driver
        try:
            log.info("%s: open at %s", self.id, driver.url)
            self._on_up(self)
            up = self._settled(driver)
            if up:
                self._mark(True, None)
                self._wake.wait()
            return self._error or TransportError("已停止"), up
        finally:
            self.driver = None
            driver.close()
            self._wake.clear()

    def _settled(self, driver: D) -> bool:
        """Open for the settle time without failing and, where the driver can tell, answered in time;
        False as soon as the driver fails or the link stops."""
        if self._wake.wait(self._settle):
            return False
        while driver.answering() is False:
            if self._wake.wait(ANSWER_POLL_S):
                return False
        return True

    def _open(self) -> D:
        names = dict.fromkeys(d.profile for d in (self.owner, *self.members))
        profiles = [load_profile(name, site_dir=self._profiles_dir) for name in names]
        self._error = None
        driver = create_driver(self.owner.kind, self.interface, self.url, profiles, on_error=self.report_failure,
                               **self._driver_options)
        try:
            driver.open()
        except BaseException:
            driver.close()
            raise
        return driver

    def report_failure(self, exc: Exception) -> None:
        """The driver failed (on its own thread, or in a handler's call): reopen it with backoff."""
        if self._error is None:
            self._error = exc
        self._wake.set()

    # ------------------------------------------------------------------------------ device state

    def _mark(self, online: bool, error: str | None) -> None:
        """Report a state change of the whole bus once, not once per retry."""
        if self._online is online:
            return
        self._online = online
        if online:
            log.info("%s: online (%d devices)", self.id, 1 + len(self.members))
        for device in (self.owner, *self.members):
            self._on_status(device, online, error)
