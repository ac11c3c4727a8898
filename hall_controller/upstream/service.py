"""The daemon's link to the management system (DESIGN §7): forwarding, appointment sync, 月报表.

- Forwarding: a `Forwarder` on the hall database sends the outbox. The service puts a closed visit's
  record into the write set that closes it, so a `visit_closed` event only has to wake the forwarder;
  a row the upstream refuses for good becomes a supervisor alert (`upstream_dead_letter`); refused
  credentials (401/403) pause forwarding and raise one alert per episode (`upstream_unauthorized`).
- Appointments: every `sync_interval` the bookings of the current business day and the next one are
  copied into the engine through the admin op `add_appointment`, so check-in at the kiosk keeps
  working from the hall's own database while the upstream is down. Codes already known are skipped;
  a booking marked `"status": "cancelled"` withdraws it.
- Retention: the same loop purges personal data `privacy.retention_days` after a visit's record was
  delivered, and scan images `scans.retention_days` after upload (hall_controller.store.retention).
- Monthly report: once the business day is in a new month, the previous month's 月报表 is computed
  from the tickets table and queued as outbox kind `monthly_report` (key `report-{hall}-{YYYY-MM}`);
  the forwarder retries it until accepted (409 = already there). It waits while tickets of that
  month are still open (served across the day change), but never past `upstream.report_day`.

Bookings accepted from `GET /api/v1/appointments` (our documented assumption): objects with `code`,
`service` (a service code of this hall), either `start_at` (ISO-8601) or `date` + `time` ("HH:MM",
hall time), and optionally `name`, `id_number`, `source` (default `online`) and `status`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Engine, func, select

from hall_controller.clock import Clock
from hall_controller.config import HallConfig
from hall_controller.domain import Actor, DomainError
from hall_controller.service import HallService
from hall_controller.store import Store
from hall_controller.store.outbox import enqueue
from hall_controller.store.records import bad_ratings, record_builder_for
from hall_controller.store.retention import purge_personal_data
from hall_controller.store.roster import load_rows, with_roster
from hall_controller.store.schema import outbox, tickets
from hall_controller.upstream.client import UpstreamClient, UpstreamError
from hall_controller.upstream.forwarder import Forwarder
from hall_controller.upstream.reports import compute_month_report, staff_labels

logger = logging.getLogger(__name__)

SYNC_ACTOR = Actor("upstream-sync", "daemon")
DEAD_LETTER_ALERT = "upstream_dead_letter"
UNAUTHORIZED_ALERT = "upstream_unauthorized"
KIND_LABELS = {"service_record": "服务记录", "monthly_report": "月报表"}


# -- monthly report from the hall database (also used by `hallctl report month`) ---------------

def month_bounds(month: str) -> tuple[date, date]:
    """First and last day of "YYYY-MM"."""
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    first = date.fromisoformat(f"{month}-01")
    return first, (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)


def report_key(config: HallConfig, month: str) -> str:
    return f"report-{config.hall_code}-{month}"


def month_records(engine: Engine, config: HallConfig, month: str) -> list[dict[str, Any]]:
    """Service records of every visit that may fall in `month`, recomputed from the tickets table (so
    visits closed before an upstream was configured count too); visits not closed yet come marked
    `"open"`, and a 差评 carries its `follow_up` (None while open). A ticket's business day is its
    local issue date or the day before, hence the one-day margin; the report filters exactly."""
    first, last = month_bounds(month)
    build = record_builder_for(config)
    query = (select(tickets.c.data, tickets.c.closed_at)
             .where(tickets.c.day >= (first - timedelta(days=1)).isoformat(), tickets.c.day <= last.isoformat())
             .order_by(tickets.c.issued_at))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        follow_ups = {b["ticket"]["id"]: b["follow_up"] for b in bad_ratings(conn)}
    records = []
    for data, closed_at in rows:
        record = build(json.loads(data), open_visit=closed_at is None)
        if record["record_id"] in follow_ups:
            record["follow_up"] = follow_ups[record["record_id"]]
        records.append(record)
    return records


def build_month_report(engine: Engine, config: HallConfig, month: str, *, now: datetime | None = None
                       ) -> dict[str, Any]:
    """The 月报表 of `month` for this hall, from its own database; `now` (the caller's clock) marks a
    month that is not over yet as 截至 then."""
    hall = {"code": config.hall_code, "name": config.name, "district": config.district}
    services = {s.code: s.name for s in config.services}
    roster = with_roster(config, load_rows(engine)).staff     # clerks added by `hallctl staff` too
    return compute_month_report(month_records(engine, config, month), month, hall, services, tz=config.tz,
                                now=now, staff=staff_labels(roster))


def _start_at(booking: dict[str, Any], tz: tzinfo) -> str | None:
    """The slot start as ISO-8601 with offset; a time without offset is hall time."""
    try:
        if isinstance(booking.get("start_at"), str):
            start = datetime.fromisoformat(booking["start_at"])
        elif isinstance(booking.get("date"), str) and isinstance(booking.get("time"), str):
            start = datetime.fromisoformat(f"{booking['date']}T{booking['time']}")
        else:
            return None
    except ValueError:
        return None
    return (start if start.tzinfo else start.replace(tzinfo=tz)).isoformat()


class UpstreamService:
    """Forwarder, appointment sync and monthly report for one daemon; `start()` / `stop()`."""

    def __init__(self, config: HallConfig, service: HallService, store: Store, *, url: str, token: str | None,
                 clock: Clock, sync_interval: float = 300.0) -> None:
        self._config = config
        self._service = service
        self._store = store
        self._clock = clock
        self._sync_interval = sync_interval
        self._token_missing = not token
        self.client = UpstreamClient(url, token or "")
        self.forwarder = Forwarder(store.engine, self.client, clock, on_dead=self._on_dead,
                                   on_unauthorized=self._on_unauthorized)
        self._refused: set[str] = set()     # booking codes already reported as unusable
        self._sync_failing = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._token_missing:
            logger.warning("no upstream token configured (upstream.token): the management system may refuse "
                           "every record")
        self._service.subscribe(self._on_event)
        self.forwarder.start()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="upstream-sync", daemon=True)
        self._thread.start()
        logger.info("forwarding to %s", self.client.base_url)

    def stop(self) -> None:
        """Stop both threads; a request in flight ends within the client's timeout."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.client.timeout + 5)
            self._thread = None
        self.forwarder.stop()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            for step in (self.sync_appointments, self.ensure_monthly_report, self.purge_personal_data):
                try:
                    step()
                except Exception:
                    logger.exception("upstream %s failed", step.__name__)
            self._stopping.wait(self._sync_interval)

    # -- forwarding -----------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "visit_closed":
            self.forwarder.wake()

    def _on_dead(self, row: dict[str, Any]) -> None:
        kind, key, error = row["kind"], row["record_key"], row["last_error"]
        self._service.supervisor_alert(DEAD_LETTER_ALERT, {
            "kind": kind, "record_key": key, "attempts": row["attempts"], "error": error,
            "message": f"管理系统拒收{KIND_LABELS.get(kind, kind)} {key}：{error}。"
                       f"请核查后执行 hallctl outbox --retry {key} 重新发送",
        })

    def _on_unauthorized(self, detail: dict[str, Any]) -> None:
        self._service.supervisor_alert(UNAUTHORIZED_ALERT, {
            **detail,
            "message": f"管理系统拒绝本大厅的凭据（{detail['error']}）：服务记录暂停上报，不会丢失，"
                       f"凭据恢复后自动续传。请核对配置 upstream.token",
        })

    # -- appointments ---------------------------------------------------------------------------

    def sync_appointments(self) -> dict[str, int]:
        """Copy the upstream's bookings of today and tomorrow (business days) into the engine; returns
        counts per result (added / cancelled / unchanged / invalid)."""
        today = date.fromisoformat(self._service.engine.business_day(self._clock.now()))
        counts: Counter[str] = Counter()
        for day in (today, today + timedelta(days=1)):
            try:
                bookings = self.client.get_appointments(self._config.hall_code, day)
            except UpstreamError as exc:
                log = logger.debug if self._sync_failing else logger.warning
                log("appointment sync failed (%s); check-in uses the bookings already copied", exc)
                self._sync_failing = True
                return dict(counts)
            for booking in bookings:
                counts[self._apply_booking(booking)] += 1
        if self._sync_failing:
            logger.info("appointment sync works again")
        self._sync_failing = False
        if counts["added"] or counts["cancelled"]:
            logger.info("appointments synced: %d added, %d cancelled", counts["added"], counts["cancelled"])
        return dict(counts)

    def _apply_booking(self, booking: dict[str, Any]) -> str:
        code = booking.get("code")
        if not isinstance(code, str) or not code.strip():
            return self._refuse(repr(booking), "no code")
        if booking.get("status") == "cancelled":
            return "cancelled" if self._service.cancel_appointment(code) else "unchanged"
        args: dict[str, Any] = {"code": code, "service": booking.get("service"),
                                "start_at": _start_at(booking, self._config.tz),
                                "source": booking.get("source") or "online"}
        args |= {k: booking[k] for k in ("name", "id_number") if isinstance(booking.get(k), str)}
        try:
            self._service.execute(SYNC_ACTOR, "add_appointment", args)
        except DomainError as exc:
            if exc.code == "conflict":      # the code is known: copied by an earlier sync
                return "unchanged"
            return self._refuse(code, exc.message)
        return "added"

    def _refuse(self, code: str, reason: str) -> str:
        """Log an unusable booking once, not at every sync."""
        if code not in self._refused:
            self._refused.add(code)
            logger.warning("upstream booking %s not usable: %s", code, reason)
        return "invalid"

    # -- personal data and scans ----------------------------------------------------------------

    def purge_personal_data(self) -> dict[str, int]:
        """Retention (DESIGN §8): holders' personal data `privacy.retention_days` after their visit was
        delivered, scan images `scans.retention_days` after upload; counts per table."""
        return purge_personal_data(self._store.engine, self._clock.now(), self._config.privacy_retention_days,
                                   scan_retention_days=self._config.scan_retention_days)

    # -- monthly report -------------------------------------------------------------------------

    def ensure_monthly_report(self) -> str | None:
        """Queue the previous month's 月报表 when it is complete (or due); returns the key it queued."""
        day = self._service.snapshot()["day"]
        if not day:
            return None
        current = date.fromisoformat(day)
        last = current.replace(day=1) - timedelta(days=1)
        month = f"{last:%Y-%m}"
        key = report_key(self._config, month)
        engine = self._store.engine
        with engine.connect() as conn:
            if conn.execute(select(outbox.c.id).where(outbox.c.record_key == key)).first() is not None:
                return None
            total, closed = conn.execute(select(func.count(), func.count(tickets.c.closed_at))
                                         .where(tickets.c.day <= last.isoformat())).one()
        if total == 0:
            return None                     # the hall was not in operation yet
        if total > closed and current.day < self._config.upstream_report_day:
            logger.debug("%s: %d visit(s) of %s still open; report waits", key, total - closed, month)
            return None
        report = build_month_report(engine, self._config, month, now=self._clock.now())
        with engine.begin() as conn:
            queued = enqueue(conn, record_key=key, kind="monthly_report", payload=report, now=self._clock.now())
        if not queued:
            return None
        logger.info("monthly report %s queued for the management system", key)
        self.forwarder.wake()
        return key
