"""Delivers the outbox to the management system: the one place that retries upstream calls.

Guarantees (DESIGN §7): a row is marked delivered only after the upstream answered 2xx/409, and
every row update is its own transaction, so a crash at any point causes at most a resend, which
the upstream dedupes by idempotency key. A record-specific refusal (400, 422 …) dead-letters the
row and calls `on_dead`. A refusal of the credentials (401, 403) is no fault of the record: sending
pauses as for an outage (every row keeps its place), `on_unauthorized` is called once per episode
(a supervisor alert), and delivery resumes by itself at the first round the upstream accepts.

Scheduling. Due rows (`next_attempt_at` <= now) are sent in `id` order, one attempt at a time.
A failure that calls for a retry is ambiguous: the upstream may be down, or this one record may
upset it. So after a failure the forwarder probes one other due row (the least-tried one):
- if the probe gets an answer, the upstream is up and the failed row just waits out its own
  capped exponential backoff; the other rows carry on — one bad record never blocks the rest;
- if the probe fails too, the upstream is treated as down: sending pauses (a circuit breaker whose
  delay grows with each failed round) and the failed rows are rescheduled to the moment the pause
  ends. No other row was touched, so when the upstream returns, everything is still sent in id
  order, and a week-long outage costs two requests per round instead of one per row.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Row, and_, func, or_, select, update

from hall_controller.backoff import Backoff
from hall_controller.clock import Clock
from hall_controller.store.schema import db_time, outbox, scans
from hall_controller.upstream.client import DeliveryResult, UpstreamClient

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 30.0  # re-check the outbox even without wake(), e.g. rows added by another process
ERROR_RETRY_SECONDS = 5.0  # after an unexpected error (database locked, bug) in a round
MAX_ERROR_TEXT = 500


class Forwarder:
    """Sends due outbox rows through an `UpstreamClient`, from a background thread or `run_once()`."""

    def __init__(
        self,
        engine: Engine,
        client: UpstreamClient,
        clock: Clock,
        *,
        on_dead: Callable[[dict[str, Any]], None] | None = None,
        on_unauthorized: Callable[[dict[str, Any]], None] | None = None,
        batch: int = 50,
        rng: random.Random | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._engine = engine
        self._client = client
        self._clock = clock
        self._on_dead = on_dead
        self._on_unauthorized = on_unauthorized
        self._unauthorized: str | None = None  # the refusal while the upstream refuses our credentials
        self._batch = batch
        self._rng = rng or random.Random()
        self._backoff = backoff or Backoff()
        self._outbox, self._scans = outbox, scans
        self._run_lock = threading.Lock()
        self._paused_until: datetime | None = None
        self._down_rounds = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one round --------------------------------------------------------------------------

    def run_once(self) -> int:
        """Send what is due now (at most `batch` rows plus one probe); returns the rows attempted."""
        with self._run_lock:
            if self._paused_until is not None and self._clock.now() < self._paused_until:
                return 0
            queue: deque[Row[Any]] = deque(self._due_rows())
            sent: set[int] = set()
            failed: list[int] = []  # rows that failed since the upstream last answered
            while queue:
                row = queue.popleft()
                if row.id in sent:
                    continue
                sent.add(row.id)
                result = self._deliver(row)
                if result.outcome == "unauthorized":
                    self._pause([row.id], credentials=result)
                    break
                if result.outcome != "retry":
                    if result.status is not None:  # the upstream answered: it is up
                        if self._unauthorized is not None:
                            logger.warning("upstream accepts the hall's credentials again; resuming delivery")
                            self._unauthorized = None
                        elif self._down_rounds:
                            logger.info("upstream answers again; resuming delivery")
                        failed.clear()
                        self._down_rounds = 0
                        self._paused_until = None
                    continue
                failed.append(row.id)
                probe = self._probe_row(sent) if len(failed) == 1 else None
                if probe is None:
                    self._pause(failed)
                    break
                queue.appendleft(probe)
            return len(sent)

    def _is_due(self) -> ColumnElement[bool]:
        """Pending and due; a row inserted without `next_attempt_at` is due at once."""
        t = self._outbox
        now = db_time(self._clock.now())
        return and_(t.c.status == "pending", or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now))

    def _due_rows(self) -> list[Row[Any]]:
        t = self._outbox
        with self._engine.connect() as conn:
            return list(conn.execute(select(t).where(self._is_due()).order_by(t.c.id).limit(self._batch)))

    def _probe_row(self, exclude: set[int]) -> Row[Any] | None:
        """The due row tried least often (lowest id among equals), to tell an outage from a bad row."""
        t = self._outbox
        with self._engine.connect() as conn:
            return conn.execute(
                select(t).where(self._is_due(), t.c.id.not_in(exclude)).order_by(t.c.attempts, t.c.id).limit(1)
            ).first()

    def _pause(self, failed: list[int], credentials: DeliveryResult | None = None) -> None:
        """The upstream looks down, or refuses our `credentials`: stop sending until the breaker delay
        ends, and make the failed rows due exactly then so that they keep their place in id order."""
        self._down_rounds += 1
        until = self._clock.now() + timedelta(seconds=self._backoff.delay(self._down_rounds, self._rng))
        self._paused_until = until
        if credentials is not None:
            self._credentials_refused(credentials, until)
        else:
            log = logger.warning if self._down_rounds == 1 else logger.debug
            log("upstream unavailable (round %d); pausing delivery until %s", self._down_rounds, until.isoformat())
        t = self._outbox
        with self._engine.begin() as conn:
            conn.execute(update(t).where(t.c.id.in_(failed), t.c.status == "pending")
                         .values(next_attempt_at=db_time(until)))

    def _credentials_refused(self, result: DeliveryResult, until: datetime) -> None:
        """Log and report the first refusal of an episode; later rounds of it only at DEBUG."""
        error = f"HTTP {result.status}: {result.message}"
        if self._unauthorized is not None:
            logger.debug("upstream still refuses the credentials (%s); paused until %s", error, until.isoformat())
            return
        self._unauthorized = error
        logger.error("upstream refuses the hall's credentials (%s): delivery paused, retried with backoff "
                     "(next at %s); check upstream.token", error, until.isoformat())
        if self._on_unauthorized is None:
            return
        try:
            self._on_unauthorized({"status": result.status, "error": error, "paused_until": db_time(until)})
        except Exception:
            logger.exception("on_unauthorized callback failed")

    # -- one row ----------------------------------------------------------------------------

    def _deliver(self, row: Row[Any]) -> DeliveryResult:
        try:
            payload = json.loads(row.payload or "null")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            result = DeliveryResult("dead", None, "payload is not a JSON object")
        elif row.kind == "service_record":
            result = self._upload_scans(row.record_key, payload) or self._client.post_service_record(
                row.record_key, payload)
        elif row.kind == "monthly_report":
            result = self._client.post_monthly_report(payload)
        else:
            result = DeliveryResult("dead", None, f"unknown outbox kind {row.kind!r}")
        self._record_result(row, result)
        return result

    def _upload_scans(self, record_key: str, payload: dict[str, Any]) -> DeliveryResult | None:
        """PUT the record's scans that are not uploaded yet; the failing result, or None when done."""
        s = self._scans
        for ref in payload.get("scans") or []:
            sha256 = ref.get("sha256") if isinstance(ref, dict) else None
            if not sha256:
                continue
            with self._engine.connect() as conn:
                scan = conn.execute(select(s).where(s.c.sha256 == sha256)).first()
            if scan is None:
                logger.warning("record %s lists scan %s that is not stored here; sending the record without it",
                               record_key, sha256)
                continue
            if scan.uploaded_at is not None:
                continue
            result = self._client.put_scan(sha256, bytes(scan.data or b""), scan.content_type or "")
            if not result.delivered:
                return DeliveryResult(result.outcome, result.status, f"scan {sha256[:12]}: {result.message}")
            with self._engine.begin() as conn:
                conn.execute(update(s).where(s.c.sha256 == sha256).values(uploaded_at=db_time(self._clock.now())))
        return None

    def _record_result(self, row: Row[Any], result: DeliveryResult) -> None:
        t = self._outbox
        now = self._clock.now()
        error = (f"HTTP {result.status}: {result.message}" if result.status else result.message)[:MAX_ERROR_TEXT]
        values: dict[str, Any] = {"attempts": t.c.attempts + 1}
        if result.outcome == "delivered":
            values |= {"status": "delivered", "delivered_at": db_time(now), "last_error": None}
        elif result.outcome == "dead":
            values |= {"status": "dead", "last_error": error}
        elif result.outcome == "retry":
            delay = self._backoff.delay(row.attempts + 1, self._rng)
            values |= {"next_attempt_at": db_time(now + timedelta(seconds=delay)), "last_error": error}
        else:  # unauthorized: the pause that follows reschedules the row
            values |= {"last_error": error}
        with self._engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == row.id, t.c.status == "pending").values(**values))
        if result.outcome == "dead":
            logger.error("outbox %s %s dead-lettered: %s", row.kind, row.record_key, error)
            self._notify_dead(row.id)

    def _notify_dead(self, row_id: int) -> None:
        if self._on_dead is None:
            return
        t = self._outbox
        with self._engine.connect() as conn:
            dead = conn.execute(select(t).where(t.c.id == row_id)).first()
        try:
            self._on_dead(dict(dead._mapping))
        except Exception:
            logger.exception("on_dead callback failed for outbox row %s", row_id)

    # -- background thread ------------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """When a round can next send something (None: nothing pending)."""
        t = self._outbox
        with self._engine.connect() as conn:
            earliest = conn.execute(
                select(func.min(func.coalesce(t.c.next_attempt_at, ""))).where(t.c.status == "pending")
            ).scalar()
        if earliest is None:
            return None
        due = datetime.fromisoformat(earliest) if earliest else self._clock.now()
        if self._paused_until is not None and self._paused_until > due:
            return self._paused_until
        return due

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("forwarder already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="upstream-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; an in-flight request ends within the client's timeout."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    def wake(self) -> None:
        """Run a round now (call after enqueuing a row)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                handled = self.run_once()
                wakeup = self.next_wakeup()
            except Exception:
                logger.exception("forwarder round failed; retrying in %.0f s", ERROR_RETRY_SECONDS)
                delay = ERROR_RETRY_SECONDS
            else:
                delay = IDLE_POLL_SECONDS if wakeup is None else (wakeup - self._clock.now()).total_seconds()
                if handled == 0:
                    delay = max(delay, 0.1)  # nothing sendable yet: never spin
            if delay > 0:
                self._wake.wait(min(delay, IDLE_POLL_SECONDS))

    # -- operator view (hallctl outbox) -----------------------------------------------------

    def outbox_summary(self, dead_limit: int = 100) -> dict[str, Any]:
        """Counts per status, the oldest waiting row, the next attempt and the dead letters."""
        t = self._outbox
        with self._engine.connect() as conn:
            counts = dict(conn.execute(select(t.c.status, func.count()).group_by(t.c.status)).all())
            oldest, next_at = conn.execute(
                select(func.min(t.c.created_at), func.min(t.c.next_attempt_at)).where(t.c.status == "pending")
            ).one()
            scans_waiting = conn.execute(
                select(func.count()).select_from(self._scans).where(self._scans.c.uploaded_at.is_(None))
            ).scalar()
            dead = conn.execute(
                select(t.c.record_key, t.c.kind, t.c.attempts, t.c.last_error, t.c.created_at)
                .where(t.c.status == "dead").order_by(t.c.id).limit(dead_limit)
            ).all()
        return {
            "pending": counts.get("pending", 0),
            "delivered": counts.get("delivered", 0),
            "dead": counts.get("dead", 0),
            "oldest_pending_at": oldest,
            "next_attempt_at": next_at,
            "paused_until": db_time(self._paused_until) if self._paused_until else None,
            "credentials_refused": self._unauthorized,
            "scans_waiting": scans_waiting,
            "dead_records": [dict(r._mapping) for r in dead],
        }

    def retry_dead(self, record_key: str | None = None) -> int:
        """Put a dead row (or every dead row when `record_key` is None) back in the queue, due at once.

        Due at once means no `next_attempt_at` at all, not "now" by this process's clock: the CLI
        and the daemon may read different clocks, and a stamp from one is not "due" to the other.
        """
        t = self._outbox
        stmt = update(t).where(t.c.status == "dead")
        if record_key is not None:
            stmt = stmt.where(t.c.record_key == record_key)
        with self._engine.begin() as conn:
            count = conn.execute(stmt.values(status="pending", next_attempt_at=None)).rowcount
        if count:
            logger.info("re-queued %d dead outbox row(s)", count)
            self.wake()
        return count
