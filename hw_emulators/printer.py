"""The emulated ESC/POS ticket printer of a kiosk: decodes what it is sent, keeps and renders the tickets.

It speaks the bytes of a real printer (``drivers.codecs.escpos``): status queries (``DLE EOT n``)
are answered at once, every job up to a cut is kept as a ticket, and each ticket can be looked at
as the text it holds (``GET /printer/{id}/tickets``) or as the paper it would be
(``GET /printer/{id}/tickets/{n}.png``: 576 dots wide, a CJK font, QR codes drawn as real,
scannable QR symbols). A job that arrives with no cut is printed once the line has been idle for
:data:`IDLE_S` (looked at on the next bytes or the next listing).

Besides the faults of every device (``disconnect`` drops the link like a pulled cable), the printer
knows ``paper_out`` and ``cover_open``: its status answers say so and it refuses (drops) jobs, as a
real printer that cannot print loses what it is sent.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import qrcode
from PIL import Image, ImageDraw, ImageFont

from device_profiles import Profile
from drivers.codecs.escpos import (
    EscposDecoder,
    Feed,
    Job,
    PrinterStatus,
    QrCode,
    StatusQuery,
    TextLine,
    encode_status,
    printer_framing,
    text_columns,
    wrap_columns,
)

from .device import Fault, FaultError, LinkedDevice, RawResponse, Request
from .link import Link
from .registry import emulates

logger = logging.getLogger(__name__)

FONT_PATHS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
PRINTER_FAULTS = ("paper_out", "cover_open")
KEEP_TICKETS = 200
RECENT_ON_DASHBOARD = 3
IDLE_S = 1.0
# Font A: 12 x 24 dots for a half-width character (24 x 24 for a Chinese one), 30 dots a line.
CHAR_HEIGHT = 24
LINE_GAP = 6
MARGIN = 16
_QR_EC = {"L": qrcode.constants.ERROR_CORRECT_L, "M": qrcode.constants.ERROR_CORRECT_M,
          "Q": qrcode.constants.ERROR_CORRECT_Q, "H": qrcode.constants.ERROR_CORRECT_H}


@dataclass
class PrintedTicket:
    n: int
    at: str
    job: Job
    png: bytes | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        elements = [{"type": type(e).__name__.lower(), **asdict(e)} for e in self.job.elements]
        return {"n": self.n, "at": self.at, "lines": self.job.lines, "qr": self.job.qr_payloads,
                "cut": self.job.cut, "elements": elements}


@emulates("printer")
class EmulatedPrinter(LinkedDevice):
    """A kiosk's thermal printer on its own link (USB/serial/TCP 9100 in real life)."""

    routes = {("GET", "tickets"): "api_tickets"}

    def __init__(self, device_id: str, profile_name: str, profile: Profile, link: Link, **where: Any) -> None:
        super().__init__(device_id, profile_name, profile, link, **where)
        self.dots = printer_framing(profile).dots_per_line
        self._decoder = EscposDecoder()
        self._last_rx = 0.0
        self._rx_lock = threading.Lock()
        self.tickets: deque[PrintedTicket] = deque(maxlen=KEEP_TICKETS)
        self.printed = 0
        self.cuts = 0
        self.refused = 0
        self.status_queries = 0

    # -- faults ---------------------------------------------------------------------------------
    def set_fault(self, mode: str, ms: int | None = None) -> Fault:
        """Every device's faults plus ``paper_out`` and ``cover_open``; ``disconnect`` drops the link."""
        if mode in PRINTER_FAULTS:
            if ms is not None:
                raise FaultError(f"{mode} 不需要 ms")
            fault = Fault(mode, 0, self.now())
            with self._lock:
                self._fault = fault
            logger.info("%s: fault %s", self.id, mode)
            self._apply_to_link(mode)
            return fault
        try:
            return super().set_fault(mode, ms)
        except FaultError as exc:
            raise FaultError(f"{exc}；打印机另有：{'、'.join(PRINTER_FAULTS)}") from None

    def printer_status(self) -> PrinterStatus:
        mode = self._mode()
        return PrinterStatus(paper_out=mode == "paper_out", paper_near_end=mode == "paper_out",
                             cover_open=mode == "cover_open")

    # -- bytes ----------------------------------------------------------------------------------
    def on_bytes(self, data: bytes) -> None:
        with self._rx_lock:
            frames = self._idle_flush() + self._decoder.feed(data)
            self._last_rx = time.monotonic()
        for frame in frames:
            if isinstance(frame, StatusQuery):
                self.status_queries += 1
                self.send(encode_status(frame.n, self.printer_status()))
            else:
                self._print(frame)

    def _idle_flush(self) -> list[Any]:
        """A job the host never cut is printed once the line has gone quiet (rx lock held)."""
        if self._last_rx and time.monotonic() - self._last_rx > IDLE_S:
            self._last_rx = 0.0
            return self._decoder.flush()
        return []

    def _print(self, job: Job) -> None:
        status = self.printer_status()
        if not status.online:
            with self._lock:
                self.refused += 1
            logger.warning("%s: cannot print (%s), job of %d lines lost", self.id, self._mode(), len(job.lines))
            return
        with self._lock:
            self.printed += 1
            self.cuts += job.cut is not None
            ticket = PrintedTicket(self.printed, self.now().isoformat(timespec="milliseconds"), job)
            self.tickets.append(ticket)
        logger.info("%s printed ticket %d: %s", self.id, ticket.n, " / ".join(line for line in job.lines if line))

    # -- control API ----------------------------------------------------------------------------
    def api_tickets(self, request: Request) -> Any:
        """``GET /printer/{id}/tickets`` and ``GET /printer/{id}/tickets/{n}.png``."""
        if not request.rest:
            return self.view()
        name = request.rest[0]
        if len(request.rest) > 1 or not name.endswith(".png") or not name[:-4].isdigit():
            raise ValueError(f"票据图片地址应为 tickets/<序号>.png，收到 {'/'.join(request.rest)}")
        return RawResponse(self.png(int(name[:-4])), "image/png")

    def view(self) -> dict[str, Any]:
        with self._rx_lock:
            for frame in self._idle_flush():
                if isinstance(frame, Job):
                    self._print(frame)
        with self._lock:
            tickets = [t.as_dict() for t in self.tickets]
            return {"tickets": tickets, "printed": self.printed, "cuts": self.cuts, "refused": self.refused,
                    "status": asdict(self.printer_status())}

    def png(self, n: int) -> bytes:
        """Ticket ``n`` (1 = the first printed since start) as a PNG; ValueError if not kept."""
        with self._lock:
            ticket = next((t for t in self.tickets if t.n == n), None)
        if ticket is None:
            raise ValueError(f"没有第 {n} 张票（已打印 {self.printed} 张，保留最近 {KEEP_TICKETS} 张）")
        if ticket.png is None:
            ticket.png = render_ticket(ticket.job, self.dots)
        return ticket.png

    def state(self) -> dict[str, Any]:
        with self._lock:
            recent = [t.n for t in list(self.tickets)[-RECENT_ON_DASHBOARD:]]
        return {**super().state(), "printed": self.printed, "refused": self.refused, "recent_tickets": recent,
                "fault_modes": list(PRINTER_FAULTS)}


# ------------------------------------------------------------------------------------ rendering


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_PATHS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    logger.warning("no CJK font found (install fonts-wqy-microhei); Chinese will not render")
    return ImageFont.load_default(size)


def _text_image(line: TextLine, dots: int) -> Image.Image:
    """One printed line in the printer's fixed pitch: a cell of 12 dots per half-width character
    (24 for a Chinese one) times the width multiplier, glyphs at the line's height."""
    height = CHAR_HEIGHT * line.height
    cell = CHAR_HEIGHT // 2 * line.height  # drawn square, stretched to the width multiplier below
    font = _font(height)
    stroke = max(1, line.height // 3) if line.bold else 0
    img = Image.new("L", (max(1, text_columns(line.text) * cell), height + LINE_GAP * line.height), 255)
    draw = ImageDraw.Draw(img)
    x, mid = 0, height // 2 + LINE_GAP * line.height // 2
    for char in line.text:
        w = text_columns(char) * cell
        draw.text((x + w // 2, mid), char, font=font, fill=0, anchor="mm", stroke_width=stroke, stroke_fill=0)
        x += w
    if line.width != line.height:
        img = img.resize((max(1, img.width * line.width // line.height), img.height), Image.Resampling.LANCZOS)
    return img.crop((0, 0, min(img.width, dots), img.height))


def _qr_image(code: QrCode) -> Image.Image:
    qr = qrcode.QRCode(error_correction=_QR_EC[code.ec], box_size=code.module, border=0)
    qr.add_data(code.payload.encode("utf-8"))
    qr.make(fit=True)
    return qr.make_image(fill_color="black", back_color="white").get_image().convert("L")


def _x(align: str, width: int, dots: int) -> int:
    return {"center": (dots - width) // 2, "right": dots - width}.get(align, 0)


def render_ticket(job: Job, dots: int = 576) -> bytes:
    """The ticket as the paper would look: ``dots`` wide, top to bottom, a torn edge at the cut."""
    pieces: list[tuple[Image.Image | None, int, int]] = []  # (image, x, height)
    for element in job.elements:
        if isinstance(element, TextLine):
            for part in wrap_columns(element.text, max(1, dots // (CHAR_HEIGHT // 2 * element.width))):
                img = _text_image(TextLine(part, element.width, element.height, element.bold, element.align), dots)
                pieces.append((img, _x(element.align, img.width, dots), img.height))
        elif isinstance(element, QrCode):
            img = _qr_image(element)
            pieces.append((None, 0, LINE_GAP))
            pieces.append((img, _x(element.align, img.width, dots), img.height + LINE_GAP))
        elif isinstance(element, Feed):
            pieces.append((None, 0, element.lines * (CHAR_HEIGHT + LINE_GAP)))
    height = MARGIN + sum(h for _, _, h in pieces) + MARGIN
    paper = Image.new("L", (dots, height), 255)
    y = MARGIN
    for img, x, h in pieces:
        if img is not None:
            paper.paste(img, (x, y))
        y += h
    if job.cut is not None:  # the cut: a dashed line across the foot
        draw = ImageDraw.Draw(paper)
        for x0 in range(0, dots, 16):
            draw.line((x0, height - 2, x0 + 8, height - 2), fill=150, width=2)
    out = io.BytesIO()
    paper.save(out, "PNG", optimize=True)
    return out.getvalue()
