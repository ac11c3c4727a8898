"""The kiosk ticket printer: prints what its kiosk issues, and says whether it did.

A printer belongs to one kiosk (device config ``kiosk: kiosk-1``). The handler registers a print
hook for that kiosk with the service, which calls it after ``issue_ticket``, ``reprint`` or
``print_notice`` from that kiosk is durable and before the kiosk is answered; the reply then carries
``printed`` (and, when false, ``print_error``: the visitor's fixed sentence
:data:`hall_controller.faults.VISITOR_PRINT_FAILED`, and ``print_reason``: the kind of fault) so the kiosk
can show the number large instead of saying "take your ticket". The raw error goes to the daemon's log
only. The ticket is issued whatever the printer does.

A job runs on the handler's own job thread and is waited for at most ``print_timeout_s`` (device
option, default :data:`PRINT_TIMEOUT_S`). A failed or timed-out job is handed to
``link.report_failure``: the printer goes offline (``device_offline``) and the link reopens it with
backoff; the driver's ``open()`` checks the paper and the cover, so the printer comes back online
only once it can print again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

from device_profiles import load_profile
from drivers.base import PrinterDriver
from drivers.codecs.escpos import NoticeSlip, TicketPrint, notice_job, printer_framing, ticket_job
from drivers.transport import TransportError, TransportTimeout

from ..config import DeviceConfig
from ..faults import VISITOR_PRINT_FAILED, fault_reason
from .handler import DeviceHandler, HandlerContext, handles
from .link import DeviceLink

log = logging.getLogger(__name__)

PRINT_TIMEOUT_S = 3.0
TIME_FORMAT = "%Y-%m-%d %H:%M"


@handles("printer")
class PrinterHandler(DeviceHandler):
    """One kiosk's printer."""

    def __init__(self, ctx: HandlerContext, device: DeviceConfig, members: Sequence[DeviceConfig]) -> None:
        super().__init__(ctx, device, members)
        self.kiosk = device.kiosk
        self.timeout = float(device.options.get("print_timeout_s", PRINT_TIMEOUT_S))
        self.framing = printer_framing(load_profile(device.profile, ctx.config.profiles_dir))
        self.link = ctx.link(device, PrinterDriver, on_up=self._on_up)
        self._jobs: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self.kiosk is None:
            log.warning("%s is not assigned to a kiosk (device option kiosk): it prints nothing", self.id)
        else:
            self._jobs = ThreadPoolExecutor(1, thread_name_prefix=f"print-{self.id}")
            self.ctx.service.set_printer(self.kiosk, self.print_for)
        self.link.start()

    def stop(self) -> None:
        if self.kiosk is not None:
            self.ctx.service.set_printer(self.kiosk, None)
        self.link.stop()
        if self._jobs is not None:
            self._jobs.shutdown(wait=False, cancel_futures=True)

    def _on_up(self, link: DeviceLink[PrinterDriver]) -> None:
        log.info("%s: printer ready for %s", self.id, self.kiosk)

    # ------------------------------------------------------------------------------ printing

    def print_for(self, op: str, result: dict[str, Any]) -> dict[str, Any]:
        """The print hook: print what ``op`` produced; ``{"printed": …, "print_error"?, "print_reason"?}``."""
        driver = self.link.driver
        if driver is None or self._jobs is None:
            log.warning("%s: %s not printed for %s: the printer is offline", self.id, op, self.kiosk)
            return {"printed": False, "print_error": VISITOR_PRINT_FAILED, "print_reason": "offline"}
        data = self._job(result)
        future = self._jobs.submit(driver.print_job, data)
        try:
            future.result(timeout=self.timeout)
        except FutureTimeout:
            error: Exception = TransportTimeout(f"打印超时（{self.timeout:g} 秒）")
        except TransportError as exc:
            error = exc
        except Exception as exc:
            log.exception("%s: printing failed", self.id)
            error = exc
        else:
            return {"printed": True}
        log.warning("%s: %s not printed for %s: %s", self.id, op, self.kiosk, error)
        self.link.report_failure(error)
        return {"printed": False, "print_error": VISITOR_PRINT_FAILED, "print_reason": fault_reason(error)}

    def _job(self, result: dict[str, Any]) -> bytes:
        """The notice slip, or the ticket (marked 补打 when it is a reprint), as printer bytes."""
        config = self.ctx.config
        now = self.ctx.service.clock.now().astimezone(config.tz).strftime(TIME_FORMAT)
        if "notice" in result:
            notice = result["notice"]
            slip = NoticeSlip(config.name, notice["service"], tuple(notice["lines"]), now)
            return notice_job(slip, self.framing)
        ticket = result["ticket"]
        estimate = result.get("estimate")
        reprint = bool(result.get("reprinted"))
        issued = datetime.fromisoformat(ticket["issued_at"]).astimezone(config.tz).strftime(TIME_FORMAT)
        info = TicketPrint(hall=config.name, service=config.service(ticket["service"]).name,
                           number=ticket["number"], ticket_id=ticket["id"], time=issued,
                           waiting_before=result.get("ahead"), estimate=estimate["text"] if estimate else None,
                           priority=ticket.get("priority", "normal"), reprint=reprint,
                           reprinted_at=now if reprint else None, visit_url=result.get("visit_url"),
                           wifi_qr=config.wifi_qr if result.get("visit_url") else None)
        return ticket_job(info, self.framing)
