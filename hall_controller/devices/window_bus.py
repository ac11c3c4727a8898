"""The window bus handler: a communication controller's LED window screens and call keypads, kept in
step with the queue.

Threads and why:

* the controller's :class:`~.link.DeviceLink` thread opens its window bus, marks its devices
  online/offline and reopens it with backoff — the one place that retries devices;
* one worker thread does everything else: service events arrive on the thread that committed them
  (holding the service lock) and key presses on the bus reader thread, and neither may wait on
  screens, the database or each other. Both only note the work here.

Screens are rendered from the current window state (see :mod:`.screens`), never from the event,
so an update is right however late it runs. An event only marks its window dirty with the event's
``seq``; the worker takes one snapshot and renders every dirty window that snapshot already covers
(``snapshot["seq"]`` ≥ the event's). A finish-and-call therefore sends one LED frame, not two, and
a burst of events costs one snapshot. After the bus comes back every window on it is re-rendered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from drivers.base import WindowBusDriver
from drivers.transport import TransportError

from ..config import DeviceConfig
from ..domain import DomainError
from ..service import Actor
from .handler import DeviceHandler, HandlerContext, handles
from .keypad import key_command
from .link import DeviceLink
from .screens import KEYPAD_QUEUE_EMPTY, keypad_error_code, keypad_text, led_text

log = logging.getLogger(__name__)

# Events after which the window's screens may show something else.
REFRESH_EVENTS = frozenset({
    "ticket_called", "ticket_recalled", "service_finished", "ticket_skipped",
    "ticket_transferred", "window_paused", "window_resumed", "staff_login", "staff_logout", "day_reset",
})
ANY_SNAPSHOT = -1  # dirty mark of a restore: any snapshot taken from now on will do


@handles("controller")
class WindowBusHandler(DeviceHandler):
    """Drives the screens and keypads on one controller's bus.

    ``ctx.options["bus_clock"]`` (monotonic seconds) paces the bus frames; tests may replace it.
    """

    def __init__(self, ctx: HandlerContext, device: DeviceConfig, members: Sequence[DeviceConfig]) -> None:
        super().__init__(ctx, device, members)
        self.service = ctx.service
        self._leds: dict[int, list[DeviceConfig]] = defaultdict(list)
        self._keypads: dict[int, list[int]] = defaultdict(list)   # window -> keypad addresses
        self._keypad_window: dict[int, int] = {}
        self._cond = threading.Condition()
        self._keys: deque[tuple[int, str, str]] = deque()
        self._dirty: dict[int, int] = {}  # window -> seq of the newest event not yet on its screens
        self._signalled = False  # new keys or marks since the worker last looked
        self._worker: threading.Thread | None = None
        self._running = False
        clock: Callable[[], float] = ctx.options.get("bus_clock", time.monotonic)
        self.link = ctx.link(device, WindowBusDriver, members, on_up=self._on_up, on_key=self._on_key, clock=clock)

        window_of = {dev_id: w.number for w in ctx.config.windows for dev_id in w.devices}
        for member in members:
            window = member.window or window_of.get(member.id)
            if window is None:
                log.warning("%s is not assigned to a window: it stays blank / its keys are ignored", member.id)
                continue
            if member.address is None:   # the config requires one on a bus; never guess it
                log.warning("%s has no bus address: it stays blank / its keys are ignored", member.id)
            elif member.kind == "led":
                self._leds[window].append(member)
            else:
                self._keypads[window].append(member.address)
                self._keypad_window[member.address] = window

    # ------------------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self._running = True
        self.listen(self._on_event)
        self._worker = threading.Thread(target=self._work, name=f"devices-worker-{self.id}", daemon=True)
        self._worker.start()
        self.link.start()

    def stop(self) -> None:
        self.stop_listening()
        self.link.stop()
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(5.0)

    # ------------------------------------------------------------------------------ producers

    def _on_event(self, event: dict[str, Any]) -> None:
        """Service subscriber: runs on the committing thread under the service lock, so only note it."""
        if not self._running or event.get("type") not in REFRESH_EVENTS:
            return
        window = event.get("window")
        windows = self._windows() if event["type"] == "day_reset" or not isinstance(window, int) else {window}
        self._mark_dirty(windows & self._windows(), event.get("seq", ANY_SNAPSHOT))

    def _on_key(self, addr: int, key: str, digits: str) -> None:
        """Bus reader thread: hand the key to the worker at once."""
        with self._cond:
            self._keys.append((addr, key, digits))
            self._signalled = True
            self._cond.notify()

    def _on_up(self, link: DeviceLink[WindowBusDriver]) -> None:
        """The bus (re)opened: everything on it shows the current state again."""
        self._mark_dirty(self._windows(), ANY_SNAPSHOT)

    def _mark_dirty(self, windows: Iterable[int], seq: int) -> None:
        with self._cond:
            for window in windows:
                self._dirty[window] = max(self._dirty.get(window, ANY_SNAPSHOT), seq)
            self._signalled = True
            self._cond.notify()

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
            for device in self._leds.get(number, ()):
                if device.address is not None:
                    self._show_led(device.address, led_text(view, device.options))
            for addr in self._keypads.get(number, ()):
                self._show_keypad(addr, keypad_text(view))

    def _show_led(self, addr: int, text: str) -> None:
        self._send(lambda bus: bus.show_text(addr, text))

    def _show_keypad(self, addr: int, text: str) -> None:
        self._send(lambda bus: bus.show_keypad_number(addr, text))

    def _send(self, write: Callable[[WindowBusDriver], None]) -> None:
        """Queue a frame on the bus; a bus that is down gets it on restore instead."""
        bus = self.link.driver
        if bus is None:
            return
        try:
            write(bus)
        except TransportError as exc:
            log.debug("%s: frame not queued: %s", self.id, exc)

    # ------------------------------------------------------------------------------ keypads

    def _prefix(self, window: int) -> str:
        config = self.ctx.config
        return config.service(config.window(window).services[0].service).prefix

    def _handle_key(self, addr: int, key: str, digits: str) -> None:
        window = self._keypad_window.get(addr)
        if window is None:
            log.warning("%s: key %s from keypad %d, which is not configured at a window", self.id, key, addr)
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
        self._show_keypad(addr, display)
