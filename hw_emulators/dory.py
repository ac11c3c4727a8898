"""The emulated DORY communication controller and the RS-485 window bus behind it.

The controller is transparent: every byte the host sends reaches every device on the bus, and every
byte a device sends reaches the host, over the controller's one link. Each emulated LED screen and
keypad therefore runs its own decoder on the whole bus traffic and acts only on frames for its
address, as the real devices do. Wire formats come from ``drivers.codecs.window_bus`` with the
framing of each device's profile; nothing here hard-codes a byte of the protocol.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

from device_profiles import Profile
from drivers.codecs.window_bus import (
    KeypadDecoder,
    KeypadFrame,
    LedDecoder,
    decode_led_text,
    encode_keypad,
    fit_led_text,
    key_press_frame,
    keypad_framing,
    led_framing,
    parse_keypad_display,
)

from .device import (
    MIN_IDLE_S,
    EmulatedDevice,
    HallBuilder,
    IdleFramer,
    LinkedDevice,
    Request,
    corrupt_bytes,
)
from .link import Link
from .registry import emulates

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 200
# Real keypads wait a few hundred milliseconds for the echo and then repeat the frame.
ACK_TIMEOUT_S = 0.3
PRESS_ATTEMPTS = 3



@dataclass(frozen=True)
class PressResult:
    acked: bool
    attempts: int
    frame: bytes

    def as_dict(self) -> dict[str, Any]:
        return {"acked": self.acked, "attempts": self.attempts, "frame": self.frame.hex(" ")}


@emulates("controller")
class DoryController(LinkedDevice):
    """Owns the link; relays bytes between the host and the bus devices."""

    def __init__(self, device_id: str, profile_name: str, profile: Profile, link: Link, **where: Any) -> None:
        super().__init__(device_id, profile_name, profile, link, **where)
        self.bus_devices: list[BusDevice] = []
        self._local_echo = bool(profile.quirks.get("local_echo"))
        baud = profile.transport.get("baudrate", 9600)
        gap_s = profile.framing.get("gap_chars", 3.5) * 10 / baud  # 8N1 = 10 bits a character
        self.idle_s = max(gap_s, profile.framing.get("min_gap_ms", 0) / 1000, MIN_IDLE_S)

    def attach(self, device: BusDevice) -> None:
        self.bus_devices.append(device)

    def start(self) -> None:
        rates = {d.profile.transport.get("baudrate") for d in self.bus_devices}
        rates.add(self.profile.transport.get("baudrate"))
        if len(rates - {None}) > 1:
            logger.warning("%s: devices on this bus use different baud rates %s; the real bus "
                           "would not work", self.id, sorted(rates - {None}))
        super().start()

    def stop(self) -> None:
        super().stop()
        for device in self.bus_devices:
            device.stop()

    def on_bytes(self, data: bytes) -> None:
        if self._local_echo:
            # The host's 2-wire adapter hears its own transmission; no controller fault touches that.
            self._transmit(data)
        for device in self.bus_devices:
            device.receive(data)


class BusDevice(EmulatedDevice):
    """A device hanging on a controller's RS-485 line, found by its address there."""

    lookup = "address"
    routes = {("GET", ""): "api_view"}

    @classmethod
    def build(cls, entry: dict[str, Any], profile: Any, hall: HallBuilder) -> BusDevice | None:
        dev_id = entry["id"]
        host = hall.host_of(entry)
        if host is None:
            return None
        if not isinstance(host, DoryController):
            raise ValueError(f"{dev_id}：{host.id} 不是通讯控制器")
        address = entry.get("address")
        if isinstance(address, bool) or not isinstance(address, int):
            raise ValueError(f"{dev_id}：address 须为整数")
        low, high = profile.addressing.get("min", 0), profile.addressing.get("max", 255)
        if not low <= address <= high:
            raise ValueError(f"{dev_id}：地址 {address} 超出档案 {entry['profile']} 的范围 {low}–{high}")
        hall.claim_address(host.id, cls.kind, address, dev_id)
        return cls(dev_id, entry["profile"], profile, host, address=address, window=entry.get("window"))

    def __init__(self, device_id: str, profile_name: str, profile: Profile, bus: DoryController, *,
                 address: int, window: int | None = None) -> None:
        super().__init__(device_id, profile_name, profile, address=address, window=window)
        self.bus = bus
        bus.attach(self)

    @property
    def url(self) -> str:
        return self.bus.url

    @property
    def host_id(self) -> str:
        return self.bus.id

    @property
    def online(self) -> bool:
        return super().online and self.bus.online

    def api_view(self, request: Request) -> dict[str, Any]:
        """``GET /{kind}/{addr}``."""
        return self.view()

    @abstractmethod
    def view(self) -> dict[str, Any]:
        """What the device shows now."""

    def _transmit(self, data: bytes) -> None:
        self.bus.send(data)  # the controller applies its own fault on top

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "bus": self.bus.id}


@emulates("led")
class EmulatedLed(BusDevice):
    """A window screen: shows the text of show-text frames for its address or the broadcast one."""

    def __init__(self, device_id: str, profile_name: str, profile: Profile, bus: DoryController, *,
                 address: int, window: int | None = None) -> None:
        super().__init__(device_id, profile_name, profile, bus, address=address, window=window)
        self.framing = led_framing(profile)
        self._framer = IdleFramer(LedDecoder(self.framing), bus.idle_s)
        self.text = ""
        self.history: deque[tuple[str, str]] = deque(maxlen=HISTORY_LIMIT)

    def on_bytes(self, data: bytes) -> None:
        if self._mode() == "corrupt":
            data = corrupt_bytes(data)  # noise on the screen's own drop of the bus
        for frame in self._framer.feed(data):
            if frame.addr not in (self.address, self.framing.broadcast):
                continue
            if frame.cmd != self.framing.cmd_text:
                logger.debug("%s: ignoring CMD 0x%02X", self.id, frame.cmd)
                continue
            try:
                text, _colours = decode_led_text(frame.data, self.framing.encoding)
            except ValueError as exc:
                logger.warning("%s: bad text data %s: %s", self.id, frame.data.hex(" "), exc)
                continue
            shown = fit_led_text(text, self.framing)
            if shown != text:
                logger.warning("%s: %r does not fit %d characters, showing %r",
                               self.id, text, self.framing.max_chars, shown)
            self._output(partial(self._show, shown))

    def _show(self, text: str) -> None:
        with self._lock:
            self.text = text
            self.history.append((text, self.now().isoformat(timespec="milliseconds")))
        logger.info("%s shows %r", self.id, text)

    def view(self) -> dict[str, Any]:
        """``GET /led/{addr}``."""
        with self._lock:
            return {"text": self.text, "history": [{"text": t, "at": at} for t, at in self.history]}

    def state(self) -> dict[str, Any]:
        return {**super().state(), **self.view()}


@emulates("keypad")
class EmulatedKeypad(BusDevice):
    """A call keypad: sends key frames until the host echoes them; shows what the host sends."""

    routes = {**BusDevice.routes, ("POST", "press"): "api_press"}

    def __init__(self, device_id: str, profile_name: str, profile: Profile, bus: DoryController, *,
                 address: int, window: int | None = None) -> None:
        super().__init__(device_id, profile_name, profile, bus, address=address, window=window)
        self.framing = keypad_framing(profile)
        self.display_chars = int(profile.framing.get("display_chars", 4))
        self._framer = IdleFramer(KeypadDecoder(self.framing), bus.idle_s)
        self.display = ""
        self.presses = 0
        self._press_lock = threading.Lock()
        self._ack = threading.Event()
        self._expect: KeypadFrame | None = None

    def press(self, key: str, digits: str = "", *, attempts: int = PRESS_ATTEMPTS,
              ack_timeout: float = ACK_TIMEOUT_S) -> PressResult:
        """Type ``digits``, press ``key``; repeat the frame until echoed, at most ``attempts`` times.

        Raises ``ValueError`` for an unknown key, non-digit input or too many digits.
        """
        if key not in self.framing.key_codes:
            raise ValueError(f"未知按键 {key!r}（可选：{'、'.join(self.framing.key_codes)}）")
        frame = key_press_frame(self.address, key, digits, self.framing)
        raw = encode_keypad(frame, self.framing)
        with self._press_lock:
            self.presses += 1
            self._ack.clear()
            self._expect = frame
            try:
                for attempt in range(1, attempts + 1):
                    logger.info("%s: key %s%s (attempt %d)", self.id, key,
                                f" after {digits}" if digits else "", attempt)
                    self.send(raw)
                    if self._ack.wait(ack_timeout):
                        return PressResult(True, attempt, raw)
                logger.warning("%s: key %s not acknowledged after %d attempts", self.id, key, attempts)
                return PressResult(False, attempts, raw)
            finally:
                self._expect = None

    def api_press(self, request: Request) -> dict[str, Any]:
        """``POST /keypad/{addr}/press {"key", "digits"?}``."""
        key, digits = request.body.get("key"), request.body.get("digits", "")
        if not isinstance(key, str):
            raise ValueError("缺少 key：next、recall、start、evaluate、cancel、function、pause 或 transfer")
        if not isinstance(digits, str):
            raise ValueError("digits 须为由 0–9 组成的字符串")
        return {"id": self.id, **self.press(key, digits).as_dict()}

    def on_bytes(self, data: bytes) -> None:
        for frame in self._framer.feed(data):
            if frame.addr != self.address:
                continue
            if frame.func == self.framing.func_key:
                if frame == self._expect:
                    self._ack.set()
                else:
                    logger.debug("%s: stray echo %s", self.id, frame.data.hex(" "))
            elif frame.func == self.framing.func_display:
                try:
                    text = parse_keypad_display(frame, self.framing)
                except ValueError as exc:
                    logger.warning("%s: bad display frame: %s", self.id, exc)
                    continue
                self._output(partial(self._show, text[: self.display_chars]))
            else:
                logger.debug("%s: ignoring FUNC 0x%02X", self.id, frame.func)

    def _show(self, text: str) -> None:
        self.display = text
        logger.info("%s displays %r", self.id, text)

    def view(self) -> dict[str, Any]:
        """``GET /keypad/{addr}``."""
        return {"display": self.display}

    def state(self) -> dict[str, Any]:
        return {**super().state(), **self.view(), "presses": self.presses}
