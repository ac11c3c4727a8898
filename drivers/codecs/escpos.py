"""Sans-IO ESC/POS for the kiosk's thermal ticket printer: ticket layouts, a decoder, status bytes.

Encoding. Layouts are built through python-escpos (``escpos.printer.Dummy`` collects the bytes), but
every text line goes out as ``FS &`` (``1C 26``, Chinese character mode) followed by the line's
GB18030 bytes and ``LF``: python-escpos sends a string as GB18030 only when it holds an ideograph
and turns full-width punctuation alone (``，。：`` …) into ``?``, which a ticket cannot afford.
Sizes use ``GS ! n`` (width multiplier in the high nibble, height in the low one, both minus one),
bold ``ESC E n``, alignment ``ESC a n``, the QR code the printer's own ``GS ( k`` symbol (model 2,
store ``fn 80`` then print ``fn 81``), the cut ``GS V m`` after ``ESC d n`` feeds the ticket past
the blade.

Decoding. :class:`EscposDecoder` is what a printer does with the byte stream: it keeps the text
attributes, decodes text as GB18030 under ``FS &`` (else code page 437), stores and prints QR
symbols, and returns a :class:`Job` (everything up to a cut) or a :class:`StatusQuery` (a real-time
``DLE EOT n``, which a printer answers at once, even while it cannot print). Commands it does not
render are skipped by their documented lengths; unknown ones are skipped two bytes at a time and
counted in ``unknown``. A line's size, weight and alignment are those in force at its first
character. ``flush()`` returns a job the host never cut (the printer prints it anyway).

Status (Epson "real-time status transmission", implemented by the common Chinese clones). Every
reply is one byte with bits 1 and 4 set and bits 0 and 7 clear (``0x12`` = nothing to report):

==  ==================  ==============================================================
n   asks for            bits
==  ==================  ==============================================================
1   printer status      3 = offline
2   offline cause       2 = cover open, 3 = paper fed by the button, 5 = stopped at paper
                        end, 6 = error
3   error cause         3 = auto-cutter error, 5 = unrecoverable, 6 = auto-recoverable
4   paper roll sensor   2+3 = paper near end, 5+6 = paper end (no paper)
==  ==================  ==============================================================
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_profiles import Profile, make_framing, require_kind

__all__ = [
    "ATTENTION_LINE",
    "VISIT_LINE",
    "WIFI_LINE",
    "CUT_MODES",
    "PRIVACY_LINE",
    "Element",
    "Feed",
    "Frame",
    "Job",
    "NoticeSlip",
    "PrinterFraming",
    "PrinterStatus",
    "QrCode",
    "StatusQuery",
    "TextLine",
    "TicketPrint",
    "EscposDecoder",
    "decode_status",
    "encode_status",
    "merge_status",
    "notice_job",
    "printer_framing",
    "status_query",
    "text_columns",
    "text_line",
    "ticket_job",
    "wrap_columns",
]

ESC, GS, FS, DLE, EOT, LF = 0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A
FS_CHINESE_ON, FS_CHINESE_OFF = 0x26, 0x2E  # FS & / FS . : Chinese character mode on / off
CHINESE_ON = bytes([FS, FS_CHINESE_ON])
CUT_MODES = ("full", "partial", "none")
QR_EC_LEVELS = "LMQH"
STATUS_FIXED = 0x12  # bits 1 and 4 set in every status byte
STATUS_FIXED_MASK = 0x93  # bits 0, 1, 4, 7
STATUS_KINDS = (1, 2, 3, 4)
_ALIGN = ("left", "center", "right")
_CUT_LINES = 5  # ESC d n before the cut: the last printed line clears the blade

#: Printed at the foot of every ticket (PIPL: the ticket carries no personal data).
PRIVACY_LINE = "本票不含您的个人身份信息，请妥善保管。"
ATTENTION_LINE = "请留意叫号"
#: Above the visitor Wi-Fi's join QR, when the hall has one (most phones are on mobile data).
WIFI_LINE = "先扫此码连接大厅Wi-Fi，再扫下方二维码"
#: Above the phone page's QR (the ticket's visit URL).
VISIT_LINE = "手机扫码查看排队进度"
PRIORITY_LABELS = {"elderly": "老年人优先", "green": "绿色通道", "appointment": "预约优先"}


# ------------------------------------------------------------------------------------ framing


@dataclass(frozen=True)
class PrinterFraming:
    """What the layouts need to know about a printer model (from its profile)."""

    encoding: str = "gb18030"
    chinese_prefix: bytes = CHINESE_ON
    dots_per_line: int = 576
    chars_per_line: int = 48
    cut: str = "partial"

    def __post_init__(self) -> None:
        "中".encode(self.encoding)  # LookupError for an unknown codec
        if self.cut not in CUT_MODES:
            raise ValueError(f"cut 须为 {'、'.join(CUT_MODES)} 之一，而非 {self.cut!r}")
        if not 16 <= self.chars_per_line <= 96:
            raise ValueError(f"chars_per_line {self.chars_per_line} 超出 16–96")


DEFAULT_FRAMING = PrinterFraming()


def printer_framing(profile: Profile) -> PrinterFraming:
    """Codec parameters of a printer profile."""
    require_kind(profile, "printer")
    f = profile.framing
    values: dict[str, Any] = {key: f[key] for key in ("encoding", "dots_per_line", "chars_per_line", "cut")
                              if key in f}
    if "chinese_prefix" in f:
        values["chinese_prefix"] = bytes(f["chinese_prefix"])
    return make_framing(profile, PrinterFraming, values)


# ------------------------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class TicketPrint:
    """Everything printed on a queue ticket, already formatted for the hall (no personal data)."""

    hall: str
    service: str
    number: str
    ticket_id: str
    time: str  # issue time in hall time, e.g. "2026-12-02 09:30"
    waiting_before: int | None = None
    estimate: str | None = None  # e.g. "约10–15分钟"; None when there is too little data
    priority: str = "normal"
    reprint: bool = False
    reprinted_at: str | None = None
    visit_url: str | None = None  # the phone page (its QR code); None: the QR carries ticket_id as before
    wifi_qr: str | None = None  # the visitor Wi-Fi's join payload (WIFI:T:WPA;S:…;P:…;;), printed above it


@dataclass(frozen=True)
class NoticeSlip:
    """一次性告知单: the materials a service needs, printed in one go."""

    hall: str
    service: str
    lines: tuple[str, ...]
    time: str


def text_columns(text: str) -> int:
    """Printed width in half-width columns: a Chinese character or full-width sign takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def wrap_columns(text: str, columns: int, indent: str = "") -> list[str]:
    """Split ``text`` into lines no wider than ``columns``; continuation lines get ``indent``."""
    lines: list[str] = []
    line, width = "", 0
    for char in text:
        w = text_columns(char)
        if line and width + w > columns:
            lines.append(line)
            line, width = indent, text_columns(indent)
        line += char
        width += w
    lines.append(line)
    return lines


def text_line(text: str, framing: PrinterFraming = DEFAULT_FRAMING) -> bytes:
    """One printed line: ``FS &`` + the text in the printer's Chinese encoding + ``LF``."""
    return framing.chinese_prefix + text.encode(framing.encoding) + b"\n"


def _escpos() -> Any:
    """A python-escpos ``Dummy`` printer (its capabilities cache goes to a fixed directory)."""
    cache = os.environ.get("ESCPOS_CAPABILITIES_PICKLE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hall-controller" / "escpos")
    Path(cache).mkdir(parents=True, exist_ok=True)  # python-escpos fails when it is missing
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = cache
    from escpos.printer import Dummy

    return Dummy()


class _Layout:
    """python-escpos plus the one rule it gets wrong for us: text as FS & + GB18030."""

    def __init__(self, framing: PrinterFraming) -> None:
        self.framing = framing
        self.p = _escpos()
        self.p.hw("INIT")

    def style(self, *, align: str = "center", size: tuple[int, int] = (1, 1), bold: bool = False) -> None:
        self.p.set(align=align, bold=bold, custom_size=True, width=size[0], height=size[1])

    def line(self, text: str = "") -> None:
        self.p._raw(text_line(text, self.framing))

    def wrapped(self, text: str, width: int = 1, indent: str = "") -> None:
        for part in wrap_columns(text, self.framing.chars_per_line // width, indent):
            self.line(part)

    def rule(self) -> None:
        self.style()
        self.line("-" * self.framing.chars_per_line)

    def qr(self, payload: str) -> None:
        self.style()
        self.p.qr(payload, native=True, size=6, ec=1)  # model 2, 6 dots a module, level M
        self.line()

    def finish(self) -> bytes:
        self.style()
        if self.framing.cut == "none":
            self.p.print_and_feed(_CUT_LINES)
        else:
            self.p.cut(mode="PART" if self.framing.cut == "partial" else "FULL")
        return bytes(self.p.output)


def ticket_job(ticket: TicketPrint, framing: PrinterFraming = DEFAULT_FRAMING) -> bytes:
    """The 80 mm queue ticket, as one job ending in a cut."""
    out = _Layout(framing)
    out.style(bold=True, size=(1, 2))
    out.wrapped(ticket.hall)
    if ticket.reprint:
        out.style(bold=True, size=(2, 2))
        out.line("【补打】")
    out.rule()
    out.style(size=(2, 2), bold=True)
    out.wrapped(ticket.service, width=2)
    out.style(size=(4, 4), bold=True)
    out.line(ticket.number)
    if ticket.priority in PRIORITY_LABELS:
        out.style(size=(1, 2), bold=True)
        out.line(PRIORITY_LABELS[ticket.priority])
    out.style(size=(1, 2))
    if ticket.waiting_before is not None:
        out.line(f"前面还有{ticket.waiting_before}人，请稍候。")
    if ticket.estimate:
        out.line(f"预计等待{ticket.estimate}")
    out.style()
    out.line(f"取号时间：{ticket.time}")
    if ticket.reprint and ticket.reprinted_at:
        out.line(f"补打时间：{ticket.reprinted_at}")
    if ticket.wifi_qr:
        out.style(bold=True)
        out.wrapped(WIFI_LINE)
        out.qr(ticket.wifi_qr)
    if ticket.visit_url:
        out.style(bold=True)
        out.line(VISIT_LINE)
    out.qr(ticket.visit_url or ticket.ticket_id)
    out.style(size=(1, 2), bold=True)
    out.line(ATTENTION_LINE)
    out.style()
    out.wrapped(PRIVACY_LINE)
    return out.finish()


def notice_job(slip: NoticeSlip, framing: PrinterFraming = DEFAULT_FRAMING) -> bytes:
    """The one-time notification slip (一次性告知单) of a service."""
    out = _Layout(framing)
    out.style(bold=True)
    out.wrapped(slip.hall)
    out.style(bold=True, size=(2, 2))
    out.line("一次性告知单")
    out.style(size=(1, 2))
    out.wrapped(f"业务：{slip.service}")
    out.rule()
    out.style(align="left")
    for text in slip.lines:
        indent = " " * (text.index(" ") + 1) if text[:1].isdigit() and " " in text else ""
        out.wrapped(text, indent=indent)
    out.rule()
    out.line(f"打印时间：{slip.time}")
    return out.finish()


# ------------------------------------------------------------------------------------ decoder


@dataclass(frozen=True)
class TextLine:
    text: str
    width: int = 1
    height: int = 1
    bold: bool = False
    align: str = "left"


@dataclass(frozen=True)
class QrCode:
    payload: str
    module: int = 3  # dots per module
    ec: str = "L"
    align: str = "left"


@dataclass(frozen=True)
class Feed:
    lines: int


Element = TextLine | QrCode | Feed


@dataclass(frozen=True)
class Job:
    """What the printer put on paper between two cuts."""

    elements: tuple[Element, ...]
    cut: str | None  # "full", "partial" or None (never cut)

    @property
    def lines(self) -> list[str]:
        return [e.text for e in self.elements if isinstance(e, TextLine)]

    @property
    def qr_payloads(self) -> list[str]:
        return [e.payload for e in self.elements if isinstance(e, QrCode)]


@dataclass(frozen=True)
class StatusQuery:
    """``DLE EOT n``: the host asks for status byte ``n`` (answer with :func:`encode_status`)."""

    n: int


Frame = Job | StatusQuery


@dataclass
class _State:
    width: int = 1
    height: int = 1
    bold: bool = False
    align: str = "left"
    chinese: bool = False
    qr_module: int = 3
    qr_ec: str = "L"
    qr_data: bytes = b""


# Fixed-length commands the decoder skips: (prefix, second byte) -> total length.
_FIXED: dict[tuple[int, int], int] = {
    **{(ESC, c): 3 for c in b"-MtJ3{GR VU"},
    **{(ESC, c): 2 for c in b"2<"},
    (ESC, ord("p")): 5,
    (ESC, ord("$")): 4,
    (ESC, ord("\\")): 4,
    **{(GS, c): 3 for c in b"BbhwHfarI|"},
    **{(GS, c): 4 for c in b"LWP"},
    **{(FS, c): 3 for c in b"!-WC"},
    (FS, ord("S")): 4,
    (FS, ord("p")): 4,
}


class EscposDecoder:
    """Turns an ESC/POS byte stream into :class:`Job` and :class:`StatusQuery` frames."""

    def __init__(self, *, max_elements: int = 10_000) -> None:
        self._buf = bytearray()
        self._state = _State()
        self._elements: list[Element] = []
        self._text: list[str] = []  # decoded parts of the current line
        self._raw = bytearray()  # text bytes not decoded yet (one code page)
        self._line_style: tuple[int, int, bool, str] | None = None
        self._max_elements = max_elements
        self.unknown = 0  # commands skipped without being understood
        self.discarded = 0  # stray control bytes

    # -- public ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        return list(self._parse())

    def flush(self) -> list[Frame]:
        """The line is idle: drop a partial command, print what is buffered as an uncut job."""
        self.discarded += len(self._buf)
        self._buf.clear()
        self._end_line(force=False)
        if not self._elements:
            return []
        job = Job(tuple(self._elements), None)
        self._elements = []
        return [job]

    # -- parsing -----------------------------------------------------------------------------
    def _parse(self) -> Iterator[Frame]:
        buf = self._buf
        while buf:
            b = buf[0]
            if b >= 0x20:
                end = 1
                while end < len(buf) and buf[end] >= 0x20:
                    end += 1
                self._add_text(bytes(buf[:end]))
                del buf[:end]
                continue
            if b in (ESC, GS, FS, DLE):
                used, frame = self._command()
                if used == 0:
                    return  # incomplete: wait for more bytes
                del buf[:used]
                if frame is not None:
                    yield frame
                continue
            del buf[:1]
            if b == LF:
                self._end_line(force=True)
            elif b == 0x09:
                self._add_text(b" ")
            elif b != 0x0D:
                self.discarded += 1

    def _command(self) -> tuple[int, Frame | None]:
        """Consume one command at the head of the buffer: ``(bytes used, frame)``; 0 = incomplete."""
        buf = self._buf
        if len(buf) < 2:
            return 0, None
        prefix, code = buf[0], buf[1]
        if prefix == DLE:
            return self._realtime(code)
        fixed = _FIXED.get((prefix, code))
        if fixed is not None:
            return (fixed if len(buf) >= fixed else 0), None
        by_prefix = {ESC: self._esc, GS: self._gs, FS: self._fs}[prefix]
        done = by_prefix(code)
        if done is not None:
            return done
        self.unknown += 1
        return 2, None

    def _esc(self, code: int) -> tuple[int, Frame | None] | None:
        """``ESC x ...`` that changes what is printed; None: not one the decoder knows."""
        buf = self._buf
        if code == ord("@"):  # initialise: the print buffer is cleared, modes reset
            self._flush_raw()
            self.discarded += sum(len(t.encode()) for t in self._text)
            self._text, self._line_style = [], None
            self._state = _State()
            return 2, None
        if code in b"!Ead":
            if len(buf) < 3:
                return 0, None
            self._esc_mode(code, buf[2])
            return 3, None
        if code == ord("*"):  # bit image: ESC * m nL nH d1..dk
            if len(buf) < 5:
                return 0, None
            dots = buf[3] | buf[4] << 8
            size = 5 + dots * (3 if buf[2] in (32, 33) else 1)
            return (size if len(buf) >= size else 0), None
        return None

    def _esc_mode(self, code: int, n: int) -> None:
        """``ESC ! n`` (print mode), ``ESC E n`` (bold), ``ESC a n`` (align), ``ESC d n`` (feed n lines)."""
        st = self._state
        if code == ord("!"):
            st.width, st.height, st.bold = 1 + (n >> 5 & 1), 1 + (n >> 4 & 1), bool(n & 0x08)
        elif code == ord("E"):
            st.bold = bool(n & 1)
        elif code == ord("a"):
            st.align = _ALIGN[n % 48] if n % 48 < 3 else st.align
        elif code == ord("d"):
            self._end_line(force=False)
            self._add(Feed(n))

    def _gs(self, code: int) -> tuple[int, Frame | None] | None:
        """``GS x ...``: size, cut, extended (QR), raster image, barcode; None: not one the decoder knows."""
        buf = self._buf
        if code == ord("!"):
            if len(buf) < 3:
                return 0, None
            self._state.width, self._state.height = (buf[2] >> 4 & 7) + 1, (buf[2] & 7) + 1
            return 3, None
        if code == ord("V"):
            return self._cut()
        if code in b"(8":
            return self._extended()
        if code == ord("v"):  # raster image: GS v 0 m xL xH yL yH data
            if len(buf) < 8:
                return 0, None
            size = 8 + (buf[4] | buf[5] << 8) * (buf[6] | buf[7] << 8)
            return (size if len(buf) >= size else 0), None
        if code == ord("k"):
            return self._barcode()
        return None

    def _fs(self, code: int) -> tuple[int, Frame | None] | None:
        """``FS &`` / ``FS .``: Chinese (GB18030) text mode on / off."""
        if code in (FS_CHINESE_ON, FS_CHINESE_OFF):
            self._flush_raw()
            self._state.chinese = code == FS_CHINESE_ON
            return 2, None
        return None

    def _realtime(self, code: int) -> tuple[int, Frame | None]:
        buf = self._buf
        size = 5 if code == 0x14 else 3  # DLE DC4 fn m t / DLE EOT n, DLE ENQ n
        if code not in (EOT, 0x05, 0x14):
            self.discarded += 1  # a stray DLE: drop it alone, whatever follows is parsed anew
            return 1, None
        if len(buf) < size:
            return 0, None
        if code == EOT and buf[2] in STATUS_KINDS:
            return 3, StatusQuery(buf[2])
        return size, None

    def _cut(self) -> tuple[int, Frame | None]:
        buf = self._buf
        if len(buf) < 3:
            return 0, None
        m = buf[2]
        size = 4 if m in (65, 66, 97, 98, 103, 104) else 3
        if len(buf) < size:
            return 0, None
        self._end_line(force=False)
        job = Job(tuple(self._elements), "partial" if m in (1, 49, 66, 98, 104) else "full")
        self._elements = []
        return size, job

    def _extended(self) -> tuple[int, Frame | None]:
        """``GS ( x pL pH ...`` and ``GS 8 L p1 p2 p3 p4 ...``."""
        buf = self._buf
        if buf[1] == ord("8"):
            if len(buf) < 7:
                return 0, None
            size = 7 + int.from_bytes(buf[3:7], "little")
            return (size if len(buf) >= size else 0), None
        if len(buf) < 5:
            return 0, None
        size = 5 + (buf[3] | buf[4] << 8)
        if len(buf) < size:
            return 0, None
        if buf[2] == ord("k") and size >= 7 and buf[5] == 0x31:  # cn 49 = QR code
            self._qr(buf[6], bytes(buf[7:size]))
        return size, None

    def _qr(self, fn: int, params: bytes) -> None:
        st = self._state
        if fn == 67 and params:
            st.qr_module = max(1, min(16, params[0]))
        elif fn == 69 and params and 48 <= params[0] <= 51:
            st.qr_ec = QR_EC_LEVELS[params[0] - 48]
        elif fn == 80 and params:
            st.qr_data = params[1:]  # m = 48, then the data
        elif fn == 81:
            self._end_line(force=False)
            self._add(QrCode(st.qr_data.decode("utf-8", "replace"), st.qr_module, st.qr_ec, st.align))

    def _barcode(self) -> tuple[int, Frame | None]:
        buf = self._buf
        if len(buf) < 3:
            return 0, None
        if buf[2] <= 6:  # GS k m d1..dk NUL
            end = buf.find(0, 3)
            return (end + 1 if end >= 0 else 0), None
        if len(buf) < 4:
            return 0, None
        size = 4 + buf[3]
        return (size if len(buf) >= size else 0), None

    # -- text --------------------------------------------------------------------------------
    def _add_text(self, data: bytes) -> None:
        if self._line_style is None:
            st = self._state
            self._line_style = (st.width, st.height, st.bold, st.align)
        self._raw += data

    def _flush_raw(self) -> None:
        if self._raw:
            codec = "gb18030" if self._state.chinese else "cp437"
            self._text.append(bytes(self._raw).decode(codec, "replace"))
            self._raw.clear()

    def _end_line(self, *, force: bool) -> None:
        """LF prints the line (blank or not); other commands print only what is buffered."""
        self._flush_raw()
        if not self._text and not force:
            return
        st = self._state
        width, height, bold, align = self._line_style or (st.width, st.height, st.bold, st.align)
        self._add(TextLine("".join(self._text), width, height, bold, align))
        self._text = []
        self._line_style = None

    def _add(self, element: Element) -> None:
        if len(self._elements) >= self._max_elements:
            self.discarded += 1
            return
        self._elements.append(element)


# ------------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class PrinterStatus:
    """The conditions a status byte can report."""

    paper_out: bool = False
    paper_near_end: bool = False
    cover_open: bool = False
    error: bool = False

    @property
    def online(self) -> bool:
        return not (self.paper_out or self.cover_open or self.error)


def status_query(n: int) -> bytes:
    """``DLE EOT n``."""
    if n not in STATUS_KINDS:
        raise ValueError(f"DLE EOT n 须为 1–4，而非 {n}")
    return bytes([DLE, EOT, n])


def encode_status(n: int, status: PrinterStatus) -> bytes:
    """The printer's one-byte answer to ``DLE EOT n``."""
    bits = STATUS_FIXED
    if n == 1:
        bits |= 0x08 * (not status.online)
    elif n == 2:
        bits |= 0x04 * status.cover_open | 0x20 * status.paper_out | 0x40 * status.error
    elif n == 3:
        bits |= 0x20 * status.error
    elif n == 4:
        bits |= 0x0C * (status.paper_near_end or status.paper_out) | 0x60 * status.paper_out
    else:
        raise ValueError(f"DLE EOT n 须为 1–4，而非 {n}")
    return bytes([bits])


def decode_status(n: int, byte: int) -> dict[str, bool]:
    """What one status byte says; ``ValueError`` when it cannot be a status byte."""
    if n not in STATUS_KINDS:
        raise ValueError(f"DLE EOT n 须为 1–4，而非 {n}")
    if byte & STATUS_FIXED_MASK != STATUS_FIXED:
        raise ValueError(f"不是打印机状态字节：0x{byte:02X}")
    if n == 1:
        return {"online": not byte & 0x08}
    if n == 2:
        return {"cover_open": bool(byte & 0x04), "paper_out": bool(byte & 0x20), "error": bool(byte & 0x40)}
    if n == 3:
        return {"cutter_error": bool(byte & 0x08), "error": bool(byte & 0x60)}
    return {"paper_near_end": bool(byte & 0x0C), "paper_out": bool(byte & 0x60)}


def merge_status(replies: Sequence[dict[str, bool]]) -> PrinterStatus:
    """One :class:`PrinterStatus` from several decoded replies (any reply raising a flag wins)."""
    flags = {name: any(r.get(name, False) for r in replies) for name in ("paper_out", "paper_near_end",
                                                                          "cover_open", "error")}
    return PrinterStatus(**flags)

