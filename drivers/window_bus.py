"""RS-485 window bus driver: LED window screens and call keypads behind one communication controller.

The bus is half-duplex and shared, so exactly one writer thread talks on it, leaving an idle gap
(≥ 3.5 character times, at least 1 ms) after each frame has physically left the line. Outgoing frames
wait in a bounded queue in which a newer text for the same screen (or keypad display) replaces an
unsent older one and moves to the back — the screens end up showing the latest state even when the
bus is slower than the events. Keypad acknowledgements jump the queue.

A reader thread decodes keypad frames, acknowledges each key event by echoing it, and calls
``on_key(addr, key_name, digits)`` on the reader thread (keep it short or hand off). A transport
failure stops both threads and is reported once through ``on_error(exc)``; reopening (with backoff)
and restoring what the screens should show is the daemon's job (``hall_controller.devices``).
The driver follows ``drivers.base``: nothing happens before :meth:`WindowBus.open`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from device_profiles import Profile, transport_options
from drivers.base import ErrorCallback, ThreadedDriver, WindowBusDriver
from drivers.codecs.window_bus import (
    DEFAULT_KEYPAD_FRAMING,
    DEFAULT_LED_FRAMING,
    KeypadDecoder,
    KeypadFrame,
    KeypadFraming,
    LedFraming,
    encode_keypad,
    encode_led,
    fit_led_text,
    keypad_display_frame,
    keypad_framing,
    led_framing,
    led_text_frame,
    parse_key_press,
)
from drivers.registry import register
from drivers.transport import Transport, TransportError, open_transport

log = logging.getLogger(__name__)

__all__ = ["BusClosed", "BusStats", "WindowBus", "open_window_bus"]

KeyCallback = Callable[[int, str, str], None]

# How long after sending we still expect our own bytes back on an adapter with local echo.
_ECHO_MARGIN = 0.25


class BusClosed(TransportError):
    """The bus was closed or has failed; frames can no longer be queued."""


@dataclass
class BusStats:
    """Counters for diagnostics and benchmarks (updated live by the bus threads)."""

    frames_sent: int = 0
    bytes_sent: int = 0
    acks_sent: int = 0
    frames_received: int = 0
    repeats_ignored: int = 0
    replaced: int = 0
    dropped: int = 0
    last_write_end: float | None = None  # time.perf_counter() when the last write returned


class WindowBus(ThreadedDriver, WindowBusDriver):
    """Owns one transport; serialises writes, decodes keypad frames, acknowledges key presses.

    ``transport`` is an open :class:`Transport` or a function that opens one when the bus opens.
    Its writer and reader threads are a :class:`ThreadedDriver`'s.
    """

    kind = "controller"
    device_name = "窗口总线"

    def __init__(
        self,
        transport: Transport | Callable[[], Transport],
        led_framing: LedFraming = DEFAULT_LED_FRAMING,
        keypad_framing: KeypadFraming = DEFAULT_KEYPAD_FRAMING,
        baudrate: int = 9600,
        *,
        on_key: KeyCallback | None = None,
        on_error: ErrorCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        bits_per_char: float = 10,
        gap_chars: float = 3.5,
        min_gap: float = 0.001,
        queue_size: int = 64,
        local_echo: bool = False,
        repeat_guard: float = 0.5,
    ) -> None:
        if baudrate <= 0 or queue_size < 1:
            raise ValueError("baudrate and queue_size must be positive")
        if isinstance(transport, Transport):
            self.transport: Transport | None = transport
            self._opener: Callable[[], Transport] | None = None
            url = transport.url
        else:
            self.transport, self._opener = None, transport
            url = getattr(transport, "url", "window-bus")
        super().__init__(url, on_error=on_error)
        self.led_framing = led_framing
        self.keypad_framing = keypad_framing
        self.char_time = bits_per_char / baudrate
        self.gap = max(min_gap, gap_chars * self.char_time)
        self.stats = BusStats()
        self._on_key = on_key
        self._clock = clock
        self._queue_size = queue_size
        self._local_echo = local_echo
        self._repeat_guard = repeat_guard

        self._acks: deque[bytes] = deque()
        self._frames: OrderedDict[Hashable, bytes] = OrderedDict()
        self._unique = itertools.count()
        self._sending = False

        self._echo = bytearray()
        self._echo_deadline = 0.0
        self._echo_lock = threading.Lock()
        self._decoder = KeypadDecoder(keypad_framing)
        self._last_key: dict[int, tuple[bytes, float]] = {}

    # ------------------------------------------------------------------------------ public API

    def open(self) -> None:
        """Open the transport (if not given open) and start the writer and reader threads."""
        if self.running:
            return
        if self.transport is None and self._opener is not None:
            self.transport = self._opener()
            self.url = self.transport.url
        self._start_threads({"bus-writer": self._write_loop, "bus-reader": self._read_loop})

    @property
    def pending(self) -> int:
        """Frames queued or being written."""
        with self._cond:
            return len(self._acks) + len(self._frames) + self._sending

    def show_text(self, addr: int, text: str, colour: int | None = None) -> None:
        """Show ``text`` on screen ``addr``; replaces a not yet sent text for that screen."""
        fitted = fit_led_text(text, self.led_framing)
        if fitted != text:
            log.warning("%s: LED %d cannot show %r, showing %r", self.url, addr, text, fitted)
        frame = led_text_frame(addr, fitted, colour, self.led_framing)
        self._enqueue(("led", addr), encode_led(frame, self.led_framing))

    def broadcast_text(self, text: str, colour: int | None = None) -> None:
        """Show ``text`` on every screen of the bus (e.g. 暂停服务 at closing time)."""
        self.show_text(self.led_framing.broadcast, text, colour)

    def show_keypad_number(self, addr: int, text: str) -> None:
        """Show a ticket number such as ``A001`` on keypad ``addr``'s display."""
        frame = keypad_display_frame(addr, text, self.keypad_framing)
        self._enqueue(("keypad", addr), encode_keypad(frame, self.keypad_framing))

    def drain(self, timeout: float = 1.0) -> bool:
        """Wait until every queued frame has been written; False on timeout or failure."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._acks or self._frames or self._sending:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._cond.wait(left)
        return self._failed is None

    def close(self, timeout: float = 1.0) -> None:
        """Send what is queued (for up to ``timeout`` s), stop both threads and close the transport."""
        if not self._begin_close():
            return
        if self.running and threading.current_thread() not in self._threads:
            self.drain(timeout)   # the writer sends what is queued, then returns
        self._stop_threads(timeout + 1.0)
        if self.transport is not None:
            self.transport.close()

    def __enter__(self) -> WindowBus:
        self.open()
        return self

    def _open_transport(self) -> Transport:
        if self.transport is None:
            raise BusClosed(f"窗口总线未打开 {self.url}")
        return self.transport

    # ------------------------------------------------------------------------------ writer side

    def _enqueue(self, key: Hashable, data: bytes, *, ack: bool = False) -> None:
        with self._cond:
            if self._closing or self._stop.is_set():
                raise BusClosed(f"窗口总线已停止 {self.url}")
            if ack:
                if len(self._acks) >= self._queue_size:
                    self._acks.popleft()
                    self.stats.dropped += 1
                self._acks.append(data)
            else:
                if key in self._frames:
                    del self._frames[key]
                    self.stats.replaced += 1
                elif len(self._frames) >= self._queue_size:
                    old_key, _ = self._frames.popitem(last=False)
                    self.stats.dropped += 1
                    log.warning("%s: send queue full, dropped frame for %s", self.url, old_key)
                self._frames[key] = data
            self._cond.notify_all()

    def _next_frame(self) -> tuple[bytes, bool] | None:
        with self._cond:
            while not (self._acks or self._frames):
                if self._closing or self._stop.is_set():
                    return None
                self._cond.wait()
            if self._stop.is_set():
                return None
            self._sending = True
            if self._acks:
                return self._acks.popleft(), True
            return self._frames.popitem(last=False)[1], False

    def _write_loop(self) -> None:
        ready_at = self._clock()
        while (item := self._next_frame()) is not None:
            data, is_ack = item
            delay = ready_at - self._clock()
            if delay > 0 and self._stop.wait(delay):
                break
            if self._local_echo:
                with self._echo_lock:
                    self._echo += data
                    self._echo_deadline = self._clock() + len(self._echo) * self.char_time + _ECHO_MARGIN
            try:
                self._open_transport().write(data)
            except Exception as exc:
                self._fail(exc)
                break
            self.stats.last_write_end = time.perf_counter()
            # write() returns once the bytes are queued in the OS; they leave the wire over the next
            # len * char_time, after which the bus must stay idle for the gap.
            ready_at = self._clock() + len(data) * self.char_time + self.gap
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(data)
            self.stats.acks_sent += is_ack
            with self._cond:
                self._sending = False
                self._cond.notify_all()
        with self._cond:
            self._sending = False
            self._cond.notify_all()

    # ------------------------------------------------------------------------------ reader side

    def _read_loop(self) -> None:
        """Runs until the bus stops; a failed read ends it (and the bus) through ThreadedDriver."""
        while not self._stop.is_set():
            data = self._open_transport().read(256)
            now = self._clock()
            if data:
                frames = self._decoder.feed(self._strip_echo(data, now))
            elif self._decoder.pending:
                # The line has been silent for a whole read timeout: a partial frame is dead.
                frames = self._decoder.flush()
            else:
                continue
            for frame in frames:
                self._handle(frame, now)

    def _strip_echo(self, data: bytes, now: float) -> bytes:
        """Drop the bytes an echoing adapter hands back from our own transmissions."""
        with self._echo_lock:
            if not self._echo:
                return data
            if now > self._echo_deadline:
                log.debug("%s: expected local echo did not arrive (%d bytes)", self.url, len(self._echo))
                self._echo.clear()
                return data
            matched = 0
            limit = min(len(data), len(self._echo))
            while matched < limit and data[matched] == self._echo[matched]:
                matched += 1
            if matched < limit:
                log.debug("%s: local echo mismatch after %d bytes", self.url, matched)
                self._echo.clear()
            else:
                del self._echo[:matched]
            return data[matched:]

    def _handle(self, frame: KeypadFrame, now: float) -> None:
        framing = self.keypad_framing
        if frame.func != framing.func_key:
            log.debug("%s: ignoring keypad frame FUNC 0x%02X from %d", self.url, frame.func, frame.addr)
            return
        self.stats.frames_received += 1
        try:
            self._enqueue(None, encode_keypad(frame, framing), ack=True)
        except BusClosed:
            return
        try:
            key, digits = parse_key_press(frame, framing)
        except ValueError as exc:
            log.warning("%s: keypad %d sent an invalid key event: %s", self.url, frame.addr, exc)
            return
        previous = self._last_key.get(frame.addr)
        self._last_key[frame.addr] = (frame.data, now)
        if previous is not None and previous[0] == frame.data and now - previous[1] < self._repeat_guard:
            # Most likely a retransmission because our echo was lost; acting twice would skip a visitor.
            self.stats.repeats_ignored += 1
            log.info(
                "%s: keypad %d repeated %s within %.2fs, ignored",
                self.url,
                frame.addr,
                key,
                now - previous[1],
            )
            return
        log.info("%s: keypad %d key %s digits %r", self.url, frame.addr, key, digits)
        if self._on_key is not None:
            try:
                self._on_key(frame.addr, key, digits)
            except Exception:
                log.exception("%s: on_key callback failed", self.url)


def _single(profiles: Sequence[Profile], kind: str) -> Profile | None:
    chosen = {p.name: p for p in profiles if p.kind == kind}
    if len(chosen) > 1:
        raise ValueError(f"一条窗口总线上只能有一种 {kind} 型号，实际为：{'、'.join(sorted(chosen))}")
    return next(iter(chosen.values()), None)


@register("controller", interface=WindowBusDriver, codec="drivers.codecs.window_bus")
def open_window_bus(
    url: str,
    profiles: Sequence[Profile],
    *,
    on_key: KeyCallback | None = None,
    on_error: ErrorCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> WindowBus:
    """Registry factory: a bus on ``url`` with the profiles of the controller, screens and keypads on it.

    The transport is opened by :meth:`WindowBus.open`, not here.
    Line settings come from the controller profile (else the LED, else the keypad profile); wire
    formats from the LED and keypad profiles; the gap and local echo from the controller profile.
    """
    controller = _single(profiles, "controller")
    led = _single(profiles, "led")
    keypad = _single(profiles, "keypad")
    line = controller or led or keypad
    if line is None:
        raise ValueError("窗口总线至少需要一个控制器、窗口屏或呼叫器档案")
    options = transport_options(line)
    baudrate = options.setdefault("baudrate", 9600)
    for other in (led, keypad):
        if other is not None and other.transport.get("baudrate", baudrate) != baudrate:
            log.warning(
                "%s: profile %s expects %s baud but the bus runs at %s",
                url,
                other.name,
                other.transport["baudrate"],
                baudrate,
            )
    bits = 1 + options.get("bytesize", 8) + (options.get("parity", "N") != "N") + options.get("stopbits", 1)
    bus_framing = controller.framing if controller else {}
    return WindowBus(
        _TransportOpener(url, options),
        led_framing(led) if led else DEFAULT_LED_FRAMING,
        keypad_framing(keypad) if keypad else DEFAULT_KEYPAD_FRAMING,
        baudrate,
        on_key=on_key,
        on_error=on_error,
        clock=clock,
        bits_per_char=bits,
        gap_chars=bus_framing.get("gap_chars", 3.5),
        min_gap=bus_framing.get("min_gap_ms", 1) / 1000,
        local_echo=bool(controller and controller.quirks.get("local_echo", False)),
        repeat_guard=(keypad.quirks.get("repeat_guard_ms", 500) / 1000) if keypad else 0.5,
    )


# Screens and keypads have no link of their own: the controller's window bus carries them.
register("led", interface=WindowBusDriver, codec="drivers.codecs.window_bus", host="controller")(open_window_bus)
register("keypad", interface=WindowBusDriver, codec="drivers.codecs.window_bus", host="controller")(open_window_bus)


class _TransportOpener:
    """Opens the bus's transport when the bus opens (and knows its URL before that)."""

    def __init__(self, url: str, options: dict[str, object]) -> None:
        self.url = url
        self._options = options

    def __call__(self) -> Transport:
        return open_transport(self.url, **self._options)  # type: ignore[arg-type]
