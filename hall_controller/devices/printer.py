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

An idle printer is asked for its status (``PrinterDriver.check``: ``DLE EOT 2`` and ``4``) every
``status_probe_s`` seconds (device option, else the profile's ``framing.status_probe_s``, else
:data:`PROBE_S`; 0 = never; only with the profile's ``status`` feature), so that a printer unplugged,
switched off or out of paper is offline — with its Chinese fault sentence — before a visitor's ticket
is lost to it. The probe runs on the job thread, one call at a time with the jobs (never inside one,
and never within ``status_probe_s`` after one: a job checks the status itself), and its failure
takes the same path as a failed job: :meth:`PrinterHandler._on_job_thread`, the one place that
waits for the printer and hands its failure to the link.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
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
PROBE_S = 10.0          # an idle printer's status is asked this often unless its profile or options say
TIME_FORMAT = "%Y-%m-%d %H:%M"


@handles("printer")
class PrinterHandler(DeviceHandler):
    """One kiosk's printer."""

    def __init__(self, ctx: HandlerContext, device: DeviceConfig, members: Sequence[DeviceConfig]) -> None:
        super().__init__(ctx, device, members)
        self.kiosk = device.kiosk
        self.timeout = float(device.options.get("print_timeout_s", PRINT_TIMEOUT_S))
        profile = load_profile(device.profile, ctx.config.profiles_dir)
        self.framing = printer_framing(profile)
        self.probe_s = probe_interval(device, profile.framing, profile.supports("status"))
        self.link = ctx.link(device, PrinterDriver, on_up=self._on_up)
        self.probes = 0                 # idle status probes sent (diagnostics, tests)
        self._jobs: ThreadPoolExecutor | None = None
        self._busy = 0                  # calls submitted to the job thread and not finished
        self._last_use = time.monotonic()
        self._use_lock = threading.Lock()
        self._stopping = threading.Event()
        self._prober: threading.Thread | None = None

    def start(self) -> None:
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix=f"print-{self.id}")
        if self.kiosk is None:
            log.warning("%s is not assigned to a kiosk (device option kiosk): it prints nothing", self.id)
        else:
            self.ctx.service.set_printer(self.kiosk, self.print_for)
        if self.probe_s > 0:
            self._prober = threading.Thread(target=self._probe_loop, name=f"probe-{self.id}", daemon=True)
            self._prober.start()
        self.link.start()

    def stop(self) -> None:
        if self.kiosk is not None:
            self.ctx.service.set_printer(self.kiosk, None)
        self._stopping.set()
        if self._prober is not None:
            self._prober.join(self.timeout + 1.0)
        self.link.stop()
        if self._jobs is not None:
            self._jobs.shutdown(wait=False, cancel_futures=True)

    def _on_up(self, link: DeviceLink[PrinterDriver]) -> None:
        self._used()            # open() has just checked the status: the next probe is probe_s from now
        log.info("%s: printer ready for %s", self.id, self.kiosk)

    # ------------------------------------------------------------------------------ the job thread

    def _claim(self, idle_for: float = 0.0) -> bool:
        """Count one more call for the job thread; with ``idle_for`` (a probe) only when nothing is
        queued or running and nothing finished within that many seconds. Checked and counted at once,
        so a job and a probe never both decide that the printer is theirs."""
        with self._use_lock:
            if idle_for and (self._busy or time.monotonic() - self._last_use < idle_for):
                return False
            self._busy += 1
            return True

    def _on_job_thread(self, what: str, call: Callable[[], None]) -> Exception | None:
        """Run ``call`` (claimed with :meth:`_claim`) on the job thread and wait at most ``timeout`` for
        it; on failure the printer goes offline through the link, which reopens it with backoff.
        None, or the error."""
        assert self._jobs is not None
        future = self._jobs.submit(self._counted, call)
        try:
            future.result(timeout=self.timeout)
        except FutureTimeout:
            error: Exception = TransportTimeout(f"打印机 {self.timeout:g} 秒内未完成 {what}")
        except TransportError as exc:
            error = exc
        except Exception as exc:
            log.exception("%s: %s failed", self.id, what)
            error = exc
        else:
            return None
        self.link.report_failure(error)
        return error

    def _counted(self, call: Callable[[], None]) -> None:
        try:
            call()
        finally:
            self._release()

    def _release(self) -> None:
        """A claimed call is over: the printer was last used now."""
        with self._use_lock:
            self._busy -= 1
            self._last_use = time.monotonic()

    def _used(self) -> None:
        with self._use_lock:
            self._last_use = time.monotonic()

    def _next_probe_in(self) -> float:
        with self._use_lock:
            if self._busy:
                return self.probe_s     # the call that runs now looks at the printer itself
            return max(0.0, self._last_use + self.probe_s - time.monotonic())

    def _probe_loop(self) -> None:
        """Every ``probe_s`` of idleness, ask the printer whether it can print."""
        while not self._stopping.wait(self._next_probe_in()):
            if self._claim(idle_for=self.probe_s):
                self._probe()

    def _probe(self) -> None:
        driver = self.link.driver
        if driver is None or not self.link.online:
            self._release()             # offline: the link's reopening asks the printer
            return
        self.probes += 1
        error = self._on_job_thread("status probe", driver.check)
        if error is not None:
            log.warning("%s: idle status probe: %s", self.id, error)

    # ------------------------------------------------------------------------------ printing

    def print_for(self, op: str, result: dict[str, Any]) -> dict[str, Any]:
        """The print hook: print what ``op`` produced; ``{"printed": …, "print_error"?, "print_reason"?}``."""
        driver = self.link.driver
        if driver is None or self._jobs is None:
            log.warning("%s: %s not printed for %s: the printer is offline", self.id, op, self.kiosk)
            return {"printed": False, "print_error": VISITOR_PRINT_FAILED, "print_reason": "offline"}
        data = self._job(result)
        self._claim()
        error = self._on_job_thread(op, lambda: driver.print_job(data))
        if error is None:
            return {"printed": True}
        log.warning("%s: %s not printed for %s: %s", self.id, op, self.kiosk, error)
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


def probe_interval(device: DeviceConfig, framing: dict[str, Any], has_status: bool) -> float:
    """Seconds between idle status probes: the device option, else the profile's, else PROBE_S; 0 when
    the printer cannot report its status (then only the next ticket finds it unplugged)."""
    value = float(device.options.get("status_probe_s", framing.get("status_probe_s", PROBE_S)))
    if value > 0 and not has_status:
        log.info("%s: its profile has no status feature: an idle printer is not probed", device.id)
        return 0.0
    return max(0.0, value)
