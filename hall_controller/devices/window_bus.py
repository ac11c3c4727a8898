"""DeviceManager: the hall's LED window screens and call keypads, kept in step with the queue.

Threads and why:

* one :class:`~.buslink.BusLink` thread per communication controller opens its window bus, marks
  its devices online/offline and reopens it with backoff — the one place that retries devices;
* one worker thread does everything else: service events arrive on the thread that committed them
  (holding the service lock) and key presses on the bus reader thread, and neither may wait on
  screens, the database or each other. Both only note the work here.

Screens are rendered from the current window state (see :mod:`.screens`), never from the event,
so an update is right however late it runs. An event only marks its window dirty with the event's
``seq``; the worker takes one snapshot and renders every dirty window that snapshot already covers
(``snapshot["seq"]`` ≥ the event's). A finish-and-call therefore sends one LED frame, not two, and
a burst of events costs one snapshot. After a bus comes back every window on it is re-rendered.
Only LED screens, keypads and their controllers are handled here; other kinds (card readers,
printers, speakers, cameras) belong to their own drivers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

from drivers.transport import TransportError

from ..config import DeviceConfig, HallConfig
from ..domain import DomainError
from ..service import Actor, HallService
from .buslink import BusLink, emulator_url
from .keypad import key_command
from .screens import KEYPAD_QUEUE_EMPTY, keypad_error_code, keypad_text, led_text

log = logging.getLogger(__name__)

EMULATED = "emulated"
BUS_KINDS = ("led", "keypad")
# Events after which the window's screens may show something else.
REFRESH_EVENTS = frozenset({
    "ticket_called", "ticket_recalled", "service_finished", "ticket_skipped",
    "ticket_transferred", "window_paused", "window_resumed", "staff_login", "staff_logout", "day_reset",
})
ANY_SNAPSHOT = -1  # dirty mark of a restore: any snapshot taken from now on will do


class DeviceManager:
    """Opens every controller bus of the hall config and drives its screens and keypads.

    ``device_urls`` (device id → url) overrides a controller's configured url; a controller left at
    ``url: emulated`` without an override is looked up in the emulator's control API.
    ``clock`` is the monotonic clock the bus drivers pace frames with.
    """

    def __init__(
        self,
        config: HallConfig,
        service: HallService,
        *,
        device_urls: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.service = service
        self.device_urls = dict(device_urls or {})
        self.links: dict[str, BusLink] = {}
        self._leds: dict[int, list[tuple[BusLink, DeviceConfig]]] = defaultdict(list)
        self._keypads: dict[int, list[tuple[BusLink, DeviceConfig]]] = defaultdict(list)
        self._keypad_window: dict[tuple[str, int], int] = {}
        self._cond = threading.Condition()
        self._keys: deque[tuple[BusLink, int, str, str]] = deque()
        self._dirty: dict[int, int] = {}  # window -> seq of the newest event not yet on its screens
        self._signalled = False  # new keys or marks since the worker last looked
        self._worker = threading.Thread(target=self._work, name="devices-worker", daemon=True)
        self._running = False

        window_of = {dev_id: w.number for w in config.windows for dev_id in w.devices}
        for controller in (d for d in config.devices if d.kind == "controller"):
            members = [d for d in config.devices if d.bus == controller.id and d.kind in BUS_KINDS]
            link = BusLink(controller, members, resolve_url=self._resolve_url,
                           profiles_dir=config.profiles_dir, on_key=self._on_key, on_up=self._on_up,
                           on_status=self._on_status, clock=clock)
            self.links[controller.id] = link
            for device in members:
                window = device.window or window_of.get(device.id)
                if window is None:
                    log.warning("%s is not assigned to a window: it stays blank / its keys are ignored",
                                device.id)
                    continue
                (self._leds if device.kind == "led" else self._keypads)[window].append((link, device))
                if device.kind == "keypad" and device.address is not None:
                    self._keypad_window[(link.id, device.address)] = window

    # ------------------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self._running = True
        self.service.subscribe(self._on_event)
        self._worker.start()
        for link in self.links.values():
            link.start()

    def stop(self) -> None:
        for link in self.links.values():
            link.stop()
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._worker.is_alive():
            self._worker.join(5.0)

    # ------------------------------------------------------------------------------ producers

    def _resolve_url(self, controller: DeviceConfig) -> str:
        """The controller's url: an override from the daemon options, the config, or the emulator."""
        override = self.device_urls.get(controller.id)
        if override:
            return override
        if controller.url != EMULATED:
            return controller.url
        if not self.config.emulator_control:
            raise LookupError(f"{controller.id} 配置为模拟设备，但未配置模拟器控制地址 emulator.control")
        return emulator_url(self.config.emulator_control, controller.id)

    def _on_event(self, event: dict[str, Any]) -> None:
        """Service subscriber: runs on the committing thread under the service lock, so only note it."""
        if not self._running or event.get("type") not in REFRESH_EVENTS:
            return
        window = event.get("window")
        windows = self._windows() if event["type"] == "day_reset" or not isinstance(window, int) else {window}
        self._mark_dirty(windows, event.get("seq", ANY_SNAPSHOT))

    def _on_key(self, link: BusLink, addr: int, key: str, digits: str) -> None:
        """Bus reader thread: hand the key to the worker at once."""
        with self._cond:
            self._keys.append((link, addr, key, digits))
            self._signalled = True
            self._cond.notify()

    def _on_up(self, link: BusLink) -> None:
        """A bus (re)opened: everything on it shows the current state again."""
        windows = {w for table in (self._leds, self._keypads) for w, devs in table.items()
                   if any(owner is link for owner, _ in devs)}
        self._mark_dirty(windows, ANY_SNAPSHOT)

    def _mark_dirty(self, windows: Iterable[int], seq: int) -> None:
        with self._cond:
            for window in windows:
                self._dirty[window] = max(self._dirty.get(window, ANY_SNAPSHOT), seq)
            self._signalled = True
            self._cond.notify()

    def _on_status(self, device: DeviceConfig, online: bool, error: str | None) -> None:
        try:
            self.service.device_status(device.id, online, device.profile, error)
        except Exception:
            log.exception("cannot record the state of %s", device.id)

    # ------------------------------------------------------------------------------ worker

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._running and not self._signalled:
                    self._cond.wait()
                if not self._running:
                    return
                self._signalled = False
                keys, self._keys = self._keys, deque()
            for key in keys:
                self._guarded(self._handle_key, *key)
            self._guarded(self._render_dirty)

    def _guarded(self, action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except Exception:
            log.exception("device worker: %s failed", action.__name__)

    def _windows(self) -> set[int]:
        return set(self._leds) | set(self._keypads)

    def _render_dirty(self) -> None:
        snapshot = self.service.snapshot()
        covered = snapshot.get("seq", 0)
        with self._cond:
            windows = sorted(w for w, seq in self._dirty.items() if seq <= covered)
            for window in windows:
                del self._dirty[window]
        for number in windows:
            view = snapshot["windows"].get(str(number))
            if view is None:
                continue
            # LEDs first: they are what the visitors wait for.
            for link, device in self._leds.get(number, ()):
                text = led_text(view, device.options)
                self._send(link, lambda bus, d=device, t=text: bus.show_text(d.address, t))
            for link, device in self._keypads.get(number, ()):
                self._show_keypad(link, device.address, keypad_text(view))

    def _show_keypad(self, link: BusLink, addr: int | None, text: str) -> None:
        self._send(link, lambda bus: bus.show_keypad_number(addr, text))

    @staticmethod
    def _send(link: BusLink, write: Callable[[Any], None]) -> None:
        """Queue a frame on the link's bus; a bus that is down gets it on restore instead."""
        bus = link.bus
        if bus is None:
            return
        try:
            write(bus)
        except TransportError as exc:
            log.debug("%s: frame not queued: %s", link.id, exc)

    # ------------------------------------------------------------------------------ keypads

    def _prefix(self, window: int) -> str:
        first = self.config.window(window).services[0].service
        return self.config.service(first).prefix

    def _handle_key(self, link: BusLink, addr: int, key: str, digits: str) -> None:
        window = self._keypad_window.get((link.id, addr))
        if window is None:
            log.warning("%s: key %s from keypad %d, which is not configured at a window", link.id, key, addr)
            return
        actor = Actor(f"keypad-{window}", "device", window)
        try:
            view = self.service.snapshot()["windows"][str(window)]
            op, args = key_command(key, digits, view["status"], self._prefix(window))
            result = self.service.execute(actor, op, args)
        except DomainError as exc:
            log.info("keypad %d at window %d: %s%s refused: %s (%s)", addr, window, digits, key,
                     exc.message, exc.code)
            display = keypad_error_code(exc.code)
        except Exception:
            log.exception("keypad %d at window %d: %s%s failed", addr, window, digits, key)
            display = keypad_error_code("internal")
        else:
            log.info("keypad %d at window %d: %s done", addr, window, op)
            if op == "call_next" and result.get("ticket") is None:
                display = KEYPAD_QUEUE_EMPTY
            else:
                display = keypad_text(self.service.snapshot()["windows"][str(window)])
        self._show_keypad(link, addr, display)
