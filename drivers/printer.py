"""ESC/POS ticket printer driver (USB, serial or raw TCP such as ``socket://HOST:9100``).

The driver has no thread of its own: a print job is one synchronous call. Where the profile lists the
``status`` feature, the printer is asked for its real-time status (``DLE EOT 2`` offline cause and
``DLE EOT 4`` paper sensor) when the driver opens, before every job and after it, and by
:meth:`EscposPrinter.check` (the daemon's idle probe, between jobs), so that a printer without paper
or with its cover open fails loudly with a :class:`PrinterError` instead of swallowing the ticket —
the daemon then tells the visitor the ticket was not printed and takes the printer offline. A reply
that does not come within the read timeout is a :class:`TransportTimeout`, one that is no status byte
a :class:`TransportIOError`. A printer that fails at ``open()`` stays offline: the daemon's supervisor
reopens it with backoff until it answers with a clean status. Without the feature the driver can only
tell that the bytes were written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from device_profiles import Profile, transport_options
from drivers.base import ErrorCallback, PrinterDriver
from drivers.codecs.escpos import (
    PrinterFraming,
    PrinterStatus,
    decode_status,
    merge_status,
    printer_framing,
    status_query,
)
from drivers.registry import register
from drivers.transport import Transport, TransportError, TransportIOError, TransportTimeout, open_transport

log = logging.getLogger(__name__)

__all__ = ["EscposPrinter", "PrinterError", "open_printer"]

# Offline cause and paper sensor: together they name every reason a job would not be printed.
_CHECK_QUERIES = (2, 4)


class PrinterError(TransportError):
    """The printer answers but cannot print (``reason``: paper_out, cover_open or error)."""

    MESSAGES = {"paper_out": "打印机缺纸", "cover_open": "打印机纸仓盖未关", "error": "打印机故障"}

    def __init__(self, reason: str, status: PrinterStatus) -> None:
        self.reason = reason
        self.status = status
        super().__init__(self.MESSAGES[reason])

    @classmethod
    def check(cls, status: PrinterStatus) -> None:
        for reason in ("paper_out", "cover_open", "error"):
            if getattr(status, reason):
                raise cls(reason, status)


class EscposPrinter(PrinterDriver):
    """A receipt printer on any transport; ``print_job`` sends one whole job."""

    kind = "printer"

    def __init__(self, url: str, profile: Profile, *, on_error: ErrorCallback | None = None) -> None:
        super().__init__(url, on_error=on_error)
        self.profile = profile
        self.framing: PrinterFraming = printer_framing(profile)
        self.has_status = profile.supports("status")
        self._transport: Transport | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self._transport = open_transport(self.url, **transport_options(self.profile))
        if self.has_status:
            with self._lock:
                PrinterError.check(self._query(_CHECK_QUERIES))

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def print_job(self, data: bytes) -> None:
        """Write one job (status checked before and after where supported); raises TransportError."""
        with self._lock:
            transport = self._open_transport()
            if self.has_status:
                PrinterError.check(self._query(_CHECK_QUERIES))
            transport.write(data)
            if self.has_status:
                PrinterError.check(self._query(_CHECK_QUERIES))
        log.info("%s: printed a job of %d bytes", self.url, len(data))

    def check(self) -> None:
        """The printer's real-time status, as before a job; without the feature only the link is looked at."""
        with self._lock:
            self._open_transport()
            if self.has_status:
                PrinterError.check(self._query(_CHECK_QUERIES))

    def status(self) -> dict[str, Any]:
        if not self.has_status:
            self._open_transport()
            return {"online": True, "paper_out": None, "paper_near_end": None, "cover_open": None}
        with self._lock:
            status = self._query((1, *_CHECK_QUERIES))
        return {"online": status.online, "paper_out": status.paper_out,
                "paper_near_end": status.paper_near_end, "cover_open": status.cover_open}

    # ------------------------------------------------------------------------------ internals

    def _open_transport(self) -> Transport:
        if self._transport is None:
            raise TransportIOError(f"打印机未连接 {self.url}")
        return self._transport

    def _query(self, kinds: Sequence[int]) -> PrinterStatus:
        """Ask ``DLE EOT n`` for each n; one reply byte each, within the read timeout."""
        transport = self._open_transport()
        replies = []
        for n in kinds:
            transport.write(status_query(n))
            reply = transport.read(1)
            if not reply:
                raise TransportTimeout(f"打印机无应答 {self.url}（DLE EOT {n}）")
            try:
                replies.append(decode_status(n, reply[0]))
            except ValueError as exc:
                raise TransportIOError(f"打印机状态应答无效 {self.url}: {exc}") from exc
        return merge_status(replies)


@register("printer", interface=PrinterDriver, codec="drivers.codecs.escpos")
def open_printer(url: str, profiles: Sequence[Profile], *, on_error: ErrorCallback | None = None) -> EscposPrinter:
    """An unopened printer driver for the first profile of its link."""
    if not profiles:
        raise ValueError("打印机缺少设备档案")
    return EscposPrinter(url, profiles[0], on_error=on_error)
