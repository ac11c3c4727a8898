"""Sans-IO codecs for the RS-485 window bus: call keypads (呼叫器) and LED window screens.

The DORY protocol is not public; these frames follow the framing used by Chinese queue systems in
public code (DESIGN §6). Every wire parameter lives in a framing dataclass built from the device
profile, so another model with other bytes goes through the same code.

Keypad frames (both directions)::

    FF 68 L L 68 ADDR FUNC DATA... CS 16
    L  = len(ADDR FUNC DATA)
    CS = sum(ADDR FUNC DATA) mod 256

``FF`` is a wake-up preamble: decoders do not require it and do not count it as garbage.

- Keypad → host, FUNC 0x01 (key event): DATA = the digit codes (0x00-0x09) the clerk typed, in
  order, followed by exactly one key code (0x0C next, 0x0D recall, 0x0A start, 0x0B evaluate,
  0x0E cancel, 0x0F function, 0x12 pause, 0x13 transfer). The digits qualify the key (e.g. a
  window number for transfer). Example — keypad 3 presses "next" after typing 1 2::

      FF 68 05 05 68 03 01 01 02 0C 13 16      (CS = 03+01+01+02+0C = 0x13)

- Host → keypad: the host acknowledges a key event by echoing the frame byte-for-byte (the
  canonical encoding above, preamble included). FUNC 0x02 shows a number on the keypad's display:
  DATA = its ASCII digits/letters, e.g. ``b"A001"``.

LED frames (host → screen)::

    A0 90 ADDR CMD LEN_H LEN_L DATA... XOR
    XOR = ADDR ^ CMD ^ LEN_H ^ LEN_L ^ DATA...

CMD 0xA5 shows text: DATA holds every character (GBK, 2 bytes, or ASCII, 1 byte) followed by its
colour byte. ADDR 0xFF (per framing) is the broadcast address every screen accepts.

The decoders are :class:`drivers.codecs.framing.FrameScanner` s: they take arbitrary chunks, return
complete frames, skip garbage one byte at a time so that a frame hidden behind a false or truncated
start is still found, and count skipped bytes in ``.discarded``. Call ``flush()`` when the line has
gone idle: a partial frame left at that point will never complete, and dropping it releases any valid
frame behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from device_profiles import Profile, make_framing, require_kind
from drivers.codecs.framing import BAD, NEED_MORE, FrameScanner, ParseResult, checksum_by_name

__all__ = [
    "DEFAULT_KEYPAD_FRAMING",
    "DEFAULT_LED_FRAMING",
    "DIGIT_CODES",
    "FUNC_DISPLAY",
    "FUNC_KEY_EVENT",
    "KEY_CANCEL",
    "KEY_CODES",
    "KEY_EVALUATE",
    "KEY_FUNCTION",
    "KEY_NEXT",
    "KEY_PAUSE",
    "keypad_framing",
    "led_framing",
    "KEY_RECALL",
    "KEY_START",
    "KEY_TRANSFER",
    "LED_BROADCAST",
    "LED_CMD_TEXT",
    "KeypadDecoder",
    "KeypadFrame",
    "KeypadFraming",
    "LedDecoder",
    "LedFrame",
    "LedFraming",
    "decode_led_text",
    "encode_keypad",
    "encode_led",
    "encode_led_text",
    "fit_led_text",
    "keypad_display_frame",
    "key_press_frame",
    "led_text_frame",
    "parse_key_press",
    "parse_keypad_display",
]

KEY_START = 0x0A
KEY_EVALUATE = 0x0B
KEY_NEXT = 0x0C
KEY_RECALL = 0x0D
KEY_CANCEL = 0x0E
KEY_FUNCTION = 0x0F
KEY_PAUSE = 0x12
KEY_TRANSFER = 0x13
KEY_CODES: Mapping[str, int] = MappingProxyType(
    {
        "next": KEY_NEXT,
        "recall": KEY_RECALL,
        "start": KEY_START,
        "evaluate": KEY_EVALUATE,
        "cancel": KEY_CANCEL,
        "function": KEY_FUNCTION,
        "pause": KEY_PAUSE,
        "transfer": KEY_TRANSFER,
    }
)
DIGIT_CODES = range(0x00, 0x0A)
FUNC_KEY_EVENT = 0x01
FUNC_DISPLAY = 0x02
LED_CMD_TEXT = 0xA5
LED_BROADCAST = 0xFF


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be a byte (0-255), got {value}")


# --------------------------------------------------------------------------------------- framings


@dataclass(frozen=True)
class KeypadFraming:
    """Wire parameters of a keypad model (built from its profile by ``device_profiles``)."""

    preamble: bytes = b"\xff"
    start: int = 0x68
    end: int = 0x16
    checksum: str = "sum8"
    func_key: int = FUNC_KEY_EVENT
    func_display: int = FUNC_DISPLAY
    max_data: int = 32
    key_codes: Mapping[str, int] = field(default_factory=lambda: KEY_CODES, hash=False)

    def __post_init__(self) -> None:
        for name in ("start", "end", "func_key", "func_display"):
            _check_byte(name, getattr(self, name))
        checksum_by_name(self.checksum)  # ValueError now rather than at the first frame
        if not 1 <= self.max_data <= 0xFD:
            raise ValueError("max_data must be 1-253 (L is one byte and counts ADDR and FUNC)")
        clash = set(self.key_codes.values()) & set(DIGIT_CODES)
        if clash:
            raise ValueError(f"key codes {sorted(clash)} collide with digit codes 0x00-0x09")


@dataclass(frozen=True)
class LedFraming:
    """Wire parameters of an LED screen model (built from its profile by ``device_profiles``)."""

    preamble: bytes = b"\xa0\x90"
    checksum: str = "xor8"
    cmd_text: int = LED_CMD_TEXT
    encoding: str = "gbk"
    colour: int = 0x01
    max_chars: int = 4
    broadcast: int = LED_BROADCAST
    max_data: int = 256

    def __post_init__(self) -> None:
        if not self.preamble:
            raise ValueError("LED framing needs a non-empty preamble to find frame starts")
        for name in ("cmd_text", "colour", "broadcast"):
            _check_byte(name, getattr(self, name))
        checksum_by_name(self.checksum)  # ValueError now rather than at the first frame
        "".encode(self.encoding)  # LookupError now rather than at the first frame
        if self.max_chars < 1:
            raise ValueError("max_chars must be at least 1")
        if not 1 <= self.max_data <= 0xFFFF:
            raise ValueError("max_data must be 1-65535 (LEN is two bytes)")

    @property
    def width(self) -> int:
        """Display width in half-width cells: a Chinese character takes two, ASCII one."""
        return 2 * self.max_chars


DEFAULT_KEYPAD_FRAMING = KeypadFraming()
DEFAULT_LED_FRAMING = LedFraming()


# ----------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class KeypadFrame:
    addr: int
    func: int
    data: bytes = b""


@dataclass(frozen=True)
class LedFrame:
    addr: int
    cmd: int
    data: bytes = b""


def encode_keypad(frame: KeypadFrame, framing: KeypadFraming = DEFAULT_KEYPAD_FRAMING) -> bytes:
    """``FF 68 L L 68 ADDR FUNC DATA... CS 16`` (per framing)."""
    _check_byte("addr", frame.addr)
    _check_byte("func", frame.func)
    if len(frame.data) > framing.max_data:
        raise ValueError(f"keypad data too long: {len(frame.data)} > {framing.max_data} bytes")
    body = bytes((frame.addr, frame.func)) + bytes(frame.data)
    size = len(body)
    check = checksum_by_name(framing.checksum)(body)
    return (
        framing.preamble
        + bytes((framing.start, size, size, framing.start))
        + body
        + bytes((check, framing.end))
    )


def encode_led(frame: LedFrame, framing: LedFraming = DEFAULT_LED_FRAMING) -> bytes:
    """``A0 90 ADDR CMD LEN_H LEN_L DATA... XOR`` (per framing)."""
    _check_byte("addr", frame.addr)
    _check_byte("cmd", frame.cmd)
    if len(frame.data) > framing.max_data:
        raise ValueError(f"LED data too long: {len(frame.data)} > {framing.max_data} bytes")
    body = bytes((frame.addr, frame.cmd)) + len(frame.data).to_bytes(2, "big") + bytes(frame.data)
    return framing.preamble + body + bytes((checksum_by_name(framing.checksum)(body),))


# ------------------------------------------------------------------------------------- decoders


class KeypadDecoder(FrameScanner[KeypadFrame]):
    """Finds keypad frames (either direction) in a byte stream."""

    def __init__(self, framing: KeypadFraming = DEFAULT_KEYPAD_FRAMING) -> None:
        super().__init__(framing.start, idle=framing.preamble)
        self.framing = framing
        self._checksum = checksum_by_name(framing.checksum)

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, KeypadFrame | None, int]:
        f = self.framing
        head = buf[pos : pos + 4]
        # Reject as early as the available bytes allow, so garbage is not held back.
        if len(head) >= 2 and not 2 <= head[1] <= f.max_data + 2:
            return BAD
        if (len(head) >= 3 and head[2] != head[1]) or (len(head) == 4 and head[3] != f.start):
            return BAD
        if len(head) < 4:
            return NEED_MORE
        size = head[1]
        total = 4 + size + 2
        if len(buf) - pos < total:
            return NEED_MORE
        body = bytes(buf[pos + 4 : pos + 4 + size])
        check, end = buf[pos + 4 + size], buf[pos + 5 + size]
        if end != f.end or check != self._checksum(body):
            return BAD
        return ParseResult.OK, KeypadFrame(body[0], body[1], body[2:]), total


class LedDecoder(FrameScanner[LedFrame]):
    """Finds LED frames in a byte stream (used by emulated screens and bus monitors)."""

    def __init__(self, framing: LedFraming = DEFAULT_LED_FRAMING) -> None:
        super().__init__(preamble=framing.preamble)
        self.framing = framing
        self._checksum = checksum_by_name(framing.checksum)

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, LedFrame | None, int]:
        f = self.framing
        pre = len(f.preamble)
        available = len(buf) - pos
        if available < pre + 4:
            if available >= pre + 3 and buf[pos + pre + 2] << 8 > f.max_data:
                return BAD
            return NEED_MORE
        addr, cmd = buf[pos + pre], buf[pos + pre + 1]
        size = int.from_bytes(buf[pos + pre + 2 : pos + pre + 4], "big")
        if size > f.max_data:
            return BAD
        total = pre + 4 + size + 1
        if available < total:
            return NEED_MORE
        body = bytes(buf[pos + pre : pos + total - 1])
        if buf[pos + total - 1] != self._checksum(body):
            return BAD
        return ParseResult.OK, LedFrame(addr, cmd, body[4:]), total


# --------------------------------------------------------------------------------- keypad helpers


def key_press_frame(
    addr: int,
    key_code: int | str,
    digits: str = "",
    framing: KeypadFraming = DEFAULT_KEYPAD_FRAMING,
) -> KeypadFrame:
    """The frame a keypad sends when a key is pressed (``key_code`` may also be a key name)."""
    code = framing.key_codes[key_code] if isinstance(key_code, str) else key_code
    if code not in framing.key_codes.values():
        raise ValueError(f"unknown key code 0x{code:02X}")
    if not all(ch in "0123456789" for ch in digits):
        raise ValueError(f"digits must be 0-9, got {digits!r}")
    return KeypadFrame(addr, framing.func_key, bytes(int(ch) for ch in digits) + bytes((code,)))


def parse_key_press(frame: KeypadFrame, framing: KeypadFraming = DEFAULT_KEYPAD_FRAMING) -> tuple[str, str]:
    """``(key_name, digits)`` of a key-event frame; ``ValueError`` if it is not a valid one."""
    if frame.func != framing.func_key:
        raise ValueError(f"not a key event: FUNC 0x{frame.func:02X}")
    if not frame.data:
        raise ValueError("key event without a key code")
    *digit_codes, code = frame.data
    names = {value: name for name, value in framing.key_codes.items()}
    if code not in names:
        raise ValueError(f"unknown key code 0x{code:02X}")
    if any(d not in DIGIT_CODES for d in digit_codes):
        raise ValueError(f"invalid digit codes before the key: {bytes(digit_codes).hex(' ')}")
    return names[code], "".join(str(d) for d in digit_codes)


def keypad_display_frame(
    addr: int, text: str, framing: KeypadFraming = DEFAULT_KEYPAD_FRAMING
) -> KeypadFrame:
    """Host → keypad: show ``text`` (ASCII digits/letters, e.g. ``"A001"``) on its display."""
    if not text.isascii() or not text.isprintable():
        raise ValueError(f"keypad displays printable ASCII only, got {text!r}")
    return KeypadFrame(addr, framing.func_display, text.encode("ascii"))


def parse_keypad_display(frame: KeypadFrame, framing: KeypadFraming = DEFAULT_KEYPAD_FRAMING) -> str:
    """The text of a host → keypad display frame; ``ValueError`` if it is not one."""
    if frame.func != framing.func_display:
        raise ValueError(f"not a display frame: FUNC 0x{frame.func:02X}")
    try:
        return frame.data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError("display text is not ASCII") from exc


# ------------------------------------------------------------------------------------ LED helpers


def encode_led_text(text: str, colour: int = 0x01, encoding: str = "gbk") -> bytes:
    """DATA of a show-text frame: each character (ASCII 1 byte, else 2 bytes) then its colour byte."""
    _check_byte("colour", colour)
    out = bytearray()
    for ch in text:
        raw = ch.encode("ascii") if ch.isascii() else ch.encode(encoding)
        if not ch.isascii() and len(raw) != 2:
            raise ValueError(f"{ch!r} does not encode to 2 bytes in {encoding}")
        out += raw
        out.append(colour)
    return bytes(out)


def decode_led_text(data: bytes, encoding: str = "gbk") -> tuple[str, list[int]]:
    """Inverse of :func:`encode_led_text`: the text and one colour byte per character."""
    chars: list[str] = []
    colours: list[int] = []
    i = 0
    while i < len(data):
        width = 1 if data[i] < 0x80 else 2
        if i + width >= len(data):
            raise ValueError(f"text data truncated at byte {i}")
        try:
            chars.append(data[i : i + width].decode("ascii" if width == 1 else encoding))
        except UnicodeDecodeError as exc:
            raise ValueError(f"invalid {encoding} character at byte {i}") from exc
        colours.append(data[i + width])
        i += width + 1
    return "".join(chars), colours


def fit_led_text(text: str, framing: LedFraming = DEFAULT_LED_FRAMING) -> str:
    """Make ``text`` displayable: unencodable characters become ``?``, overflow is cut off."""
    fitted: list[str] = []
    used = 0
    for ch in text:
        if not ch.isascii():
            try:
                ok = len(ch.encode(framing.encoding)) == 2
            except UnicodeEncodeError:
                ok = False
            ch = ch if ok else "?"
        cells = 1 if ch.isascii() else 2
        if used + cells > framing.width:
            break
        fitted.append(ch)
        used += cells
    return "".join(fitted)


def led_text_frame(
    addr: int, text: str, colour: int | None = None, framing: LedFraming = DEFAULT_LED_FRAMING
) -> LedFrame:
    """A show-text frame for one screen (or ``framing.broadcast``); the colour defaults per framing."""
    colour = framing.colour if colour is None else colour
    return LedFrame(addr, framing.cmd_text, encode_led_text(text, colour, framing.encoding))


# ------------------------------------------------------------------------------ framing from profiles


def _profile_values(profile: Profile, kind: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The framing fields a profile of ``kind`` sets among ``keys``, its preamble as bytes."""
    require_kind(profile, kind)
    f = profile.framing
    values: dict[str, Any] = {key: f[key] for key in keys if key in f}
    if "preamble" in f:
        values["preamble"] = bytes(f["preamble"])
    return values


def led_framing(profile: Profile) -> LedFraming:
    """Codec parameters of an LED screen profile."""
    values = _profile_values(profile, "led", ("checksum", "cmd_text", "encoding", "colour", "max_chars", "max_data"))
    if "broadcast" in profile.addressing:
        values["broadcast"] = profile.addressing["broadcast"]
    return make_framing(profile, LedFraming, values)


def keypad_framing(profile: Profile) -> KeypadFraming:
    """Codec parameters of a call keypad profile."""
    values = _profile_values(profile, "keypad", ("start", "end", "checksum", "func_key", "func_display", "max_data"))
    if "keys" in profile.framing:
        values["key_codes"] = {**KEY_CODES, **profile.framing["keys"]}
    return make_framing(profile, KeypadFraming, values)
