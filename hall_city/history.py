"""The 5-minute history of every hall, in PostgreSQL (a city) or SQLite (the demo), via SQLAlchemy.

Each summary updates its hall's row of the current 5-minute bucket in memory; a background thread
writes the changed rows every `flush_s` (one upsert per hall and bucket), so a slow or absent database
never holds up the live page. When the database is down, the rows wait (bounded) and are written when
it is back; `available` is False meanwhile and the page says 历史数据暂不可用.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hall_controller.clock import Clock
from hall_controller.redact import redact_url

log = logging.getLogger(__name__)

BUCKET = timedelta(minutes=5)
MAX_PENDING = 100_000        # rows kept while the database is down (5,000 halls × 100 minutes)

metadata = sa.MetaData()
history = sa.Table(
    "city_history", metadata,
    sa.Column("district", sa.String(32), primary_key=True),
    sa.Column("hall", sa.String(32), primary_key=True),
    sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),       # the city clock at the last summary
    sa.Column("online", sa.Boolean),
    sa.Column("open", sa.Boolean),
    sa.Column("waiting", sa.Integer, nullable=False),
    sa.Column("issued", sa.Integer, nullable=False),
    sa.Column("served", sa.Integer, nullable=False),
    sa.Column("left_", sa.Integer, nullable=False),
    sa.Column("median_s", sa.Float),
    sa.Column("p90_s", sa.Float),
    sa.Column("oldest_s", sa.Float),
    sa.Column("bad", sa.Integer, nullable=False),
    sa.Column("bad_open", sa.Integer, nullable=False),
)


# The open 差评 as their alerts came (topic and payload), so a restarted hall-city shows them with their
# clocks: alerts are not retained, and the broker's session holds only what was not yet delivered.
open_ratings = sa.Table(
    "city_open_ratings", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("contacted", sa.LargeBinary),          # the bad_rating_resolved (contact) payload, if any
)


def bucket_of(when: datetime) -> datetime:
    """The start of the 5-minute bucket `when` falls in."""
    return when.replace(minute=when.minute - when.minute % 5, second=0, microsecond=0)


def row_of(district: str, hall: str, summary: dict[str, Any], online: bool | None, now: datetime) -> dict[str, Any]:
    services = summary.get("services") or []
    waits = [s["oldest_wait_s"] for s in services if s.get("oldest_wait_s") is not None]
    return {"district": district, "hall": hall, "bucket": bucket_of(now), "at": now, "online": online,
            "open": summary.get("open"), "waiting": sum(int(s.get("waiting") or 0) for s in services),
            "issued": summary["counts"]["issued"], "served": summary["counts"]["served"],
            "left_": summary["counts"]["left"], "median_s": summary["wait_today"].get("median_s"),
            "p90_s": summary["wait_today"].get("p90_s"), "oldest_s": max(waits) if waits else None,
            "bad": summary["ratings"]["bad"], "bad_open": summary["ratings"]["bad_open"]}


class History:
    """The history table and its writer thread; `on_change(available)` is called from that thread."""

    def __init__(self, url: str, clock: Clock, *, flush_s: float = 5.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.url = url
        self.clock = clock
        self.flush_s = flush_s
        self.on_change = on_change
        self.available = False
        self.engine = sa.create_engine(url, pool_pre_ping=True, **_engine_options(url))
        self._pending: dict[tuple[str, str, datetime], dict[str, Any]] = {}
        self._rating_ops: list[tuple[str, str, str, bytes]] = []     # (op, id, topic, payload) in order
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created = False
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="city-history", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.engine.dispose()

    def record(self, district: str, hall: str, summary: dict[str, Any], online: bool | None) -> None:
        """Keep this summary as its hall's row of the current bucket (written by the thread)."""
        row = row_of(district, hall, summary, online, self.clock.now())
        with self._lock:
            key = (district, hall, row["bucket"])
            if key not in self._pending and len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending[key] = row

    def rating(self, op: str, alert_id: str, topic: str, payload: bytes) -> None:
        """Keep an open 差评 across restarts: op `raised`, `contacted` or `closed` (written by the thread)."""
        with self._lock:
            if len(self._rating_ops) < MAX_PENDING:
                self._rating_ops.append((op, alert_id, topic, payload))

    def load_open_ratings(self) -> list[tuple[str, bytes, bytes | None]]:
        """(topic, payload, contact payload) of every open 差评 kept; SQLAlchemyError when the database is down."""
        metadata.create_all(self.engine)
        self._created = True
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(open_ratings.c.topic, open_ratings.c.payload, open_ratings.c.contacted))
            return [(r.topic, bytes(r.payload), bytes(r.contacted) if r.contacted is not None else None) for r in rows]

    def flush_now(self) -> None:
        """Ask the thread to write at once (tests, shutdown)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._flush()
            if self._stop.is_set():
                return
            self._wake.wait(self.flush_s)
            self._wake.clear()

    def _flush(self) -> None:
        with self._lock:
            rows, self._pending = list(self._pending.values()), {}
            ops, self._rating_ops = self._rating_ops, []
        try:
            if not self._created:
                metadata.create_all(self.engine)
                self._created = True
            if rows or ops:
                with self.engine.begin() as conn:
                    if rows:
                        conn.execute(self._upsert(), rows)
                    for op, alert_id, topic, payload in ops:
                        self._rating_op(conn, op, alert_id, topic, payload)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("city history: the database %s is unavailable (%s); %d rows wait",
                        redact_url(self.url), type(exc).__name__, len(rows))
            log.debug("city history error: %s", exc)
            with self._lock:
                for row in rows:        # newer rows of the same bucket win
                    self._pending.setdefault((row["district"], row["hall"], row["bucket"]), row)
                self._rating_ops[:0] = ops
            self._set(False)
            return
        self._set(True)

    @staticmethod
    def _rating_op(conn: Any, op: str, alert_id: str, topic: str, payload: bytes) -> None:
        table = open_ratings
        if op == "raised":
            if conn.execute(sa.select(table.c.id).where(table.c.id == alert_id)).first() is None:
                conn.execute(table.insert().values(id=alert_id, topic=topic, payload=payload))
        elif op == "contacted":
            conn.execute(table.update().where(table.c.id == alert_id).values(contacted=payload))
        else:
            conn.execute(table.delete().where(table.c.id == alert_id))

    def _upsert(self) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(history)
        keys = ("district", "hall", "bucket")
        return stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c.name: stmt.excluded[c.name] for c in history.c if c.name not in keys})

    def _set(self, available: bool) -> None:
        if available != self.available:
            self.available = available
            log.info("city history: %s", "available" if available else "UNAVAILABLE")
            if self.on_change is not None:
                self.on_change(available)

    def rows(self, district: str, hall: str, since: datetime) -> list[dict[str, Any]]:
        """The hall's buckets since `since`, oldest first (raises SQLAlchemyError when the database is down)."""
        query = sa.select(history).where(history.c.district == district, history.c.hall == hall,
                                         history.c.bucket >= since).order_by(history.c.bucket)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 3}, "pool_size": 2, "max_overflow": 2}
    return {}
