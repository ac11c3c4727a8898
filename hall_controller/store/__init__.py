"""Durable store: one transaction per command, engine state rebuilt from it on start.

SQLite (WAL, synchronous=FULL) by default, PostgreSQL by URL. A kill -9 at any moment leaves either
the whole command or none of it; the reply to a client is sent only after the commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine

from ..domain.city import CityAlert
from ..domain.engine import BAD_RATING_EVENTS, Outcome, bad_rating_summary
from ..domain.model import Appointment, EngineState, Ticket, WindowState
from ..domain.today import TALLIED
from . import schema
from .city_alerts import alert_row
from .outbox import outbox_row
from .roster import db_row as staff_db_row
from .schema import appointments, city_alerts, commands, events, hall_state, outbox, staff, tickets, windows

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
#: how far :meth:`Store.recent_events` reads past its start, for a clock stepped back (NTP)
CLOCK_STEP_SLACK = timedelta(minutes=5)


def _dumps(value: Any) -> str:
    """Compact UTF-8 JSON; orjson because serialising rows is the hot path of every command."""
    return orjson.dumps(value).decode()


# Statement order inside one command's write (tickets exist before events reference them).
WRITE_ORDER = ("ins_ticket", "upd_ticket", "upd_window", "ins_event", "upd_kv", "ins_outbox", "ins_alert",
               "ins_command")


@dataclass
class WriteSet:
    """One command's rows, serialised at the moment the command ran."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in WRITE_ORDER})
    appointments: list[dict[str, Any]] = field(default_factory=list)
    staff: list[dict[str, Any]] = field(default_factory=list)     # roster rows to upsert (hallctl staff)

    def __bool__(self) -> bool:
        return any(self.rows.values()) or bool(self.appointments) or bool(self.staff)

    def add_outbox(self, record_key: str, kind: str, payload: dict[str, Any], at: datetime | None) -> None:
        """Send `payload` upstream once this write set commits (a closed visit's service record)."""
        self.rows["ins_outbox"].append(outbox_row(record_key, kind, payload, at))

    def add_city_alert(self, alert: CityAlert, now: datetime) -> None:
        """Queue `alert` for the city broker once this write set commits (hall_controller.uplink)."""
        self.rows["ins_alert"].append(alert_row(alert, now))


class _Prepared:
    """A statement compiled once for the dialect, executed on a DB-API cursor."""

    def __init__(self, stmt: Any, dialect: Any, column_keys: list[str] | None = None):
        compiled = stmt.compile(dialect=dialect, column_keys=column_keys)
        self.sql = str(compiled)
        self.names = list(compiled.positiontup) if compiled.positional else None

    def _params(self, row: dict[str, Any]) -> Any:
        return tuple(row[n] for n in self.names) if self.names is not None else row

    def one(self, cur: Any, row: dict[str, Any]) -> int:
        cur.execute(self.sql, self._params(row))
        return cur.rowcount

    def many(self, cur: Any, rows: list[dict[str, Any]]) -> None:
        if len(rows) == 1:
            cur.execute(self.sql, self._params(rows[0]))
        else:
            cur.executemany(self.sql, [self._params(r) for r in rows])


def make_engine(url: str, *, sqlite_sync: str = "FULL") -> Engine:
    """Create the SQLAlchemy engine with the pragmas the durability promise depends on."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - DB-API connection
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
        return eng
    return create_engine(url, pool_pre_ping=True)


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Run the Alembic migrations (`hallctl db upgrade`)."""
    from alembic import command
    from alembic.config import Config

    eng = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    if isinstance(url_or_engine, str):
        eng.dispose()


class Store:
    def __init__(self, url: str, *, sqlite_sync: str = "FULL", migrate: bool = True):
        self.url = url
        self.engine = make_engine(url, sqlite_sync=sqlite_sync)
        if migrate:
            upgrade(self.engine)
        self._prepared_day: tuple[str, int] | None = None
        self._raw = None
        self.closed = False
        self.commits = 0            # transactions written by `write` (a group commit counts once), for /metrics
        self.commit_failures = 0
        d = self.engine.dialect

        def upd(table, key: str, *cols: str) -> _Prepared:  # noqa: ANN001 - Table
            stmt = update(table).where(table.c[key] == bindparam(f"b_{key}")).values(
                {c: bindparam(c) for c in cols})
            return _Prepared(stmt, d)

        self._prepared = {
            "ins_ticket": _Prepared(insert(tickets), d, [c.name for c in tickets.columns]),
            "upd_ticket": upd(tickets, "id", "status", "service", "priority", "window_no", "closed_at", "data",
                              "visit_token_hash"),
            "upd_window": upd(windows, "number", "data"),
            "upd_appointment": upd(appointments, "id", "code", "day", "status", "data"),
            "ins_appointment": _Prepared(insert(appointments), d, ["id", "code", "day", "status", "data"]),
            "ins_event": _Prepared(insert(events), d, [c.name for c in events.columns]),
            "upd_kv": upd(hall_state, "key", "value"),
            "ins_outbox": _Prepared(insert(outbox), d, ["record_key", "kind", "created_at", "payload", "status",
                                                        "attempts", "next_attempt_at"]),
            "ins_alert": _Prepared(insert(city_alerts), d, ["alert_id", "type", "created_at", "payload"]),
            "ins_command": _Prepared(insert(commands), d, ["command_id", "client_id", "created_at", "reply"]),
            "upd_staff": upd(staff, "id", *(c.name for c in staff.columns if c.name != "id")),
            "ins_staff": _Prepared(insert(staff), d, [c.name for c in staff.columns]),
        }

    def close(self) -> None:
        self.closed = True
        self._discard_writer()
        self.engine.dispose()

    def ping(self) -> None:
        """A trivial read of the hall's own table (health checks); raises when the database does not
        answer or the store is closed."""
        if self.closed:
            raise RuntimeError("store closed")
        with self.engine.connect() as conn:
            conn.execute(select(hall_state.c.key).limit(1)).all()

    # ------------------------------------------------------------------ load
    def load_state(self, window_numbers: list[int] | None = None, *,
                   closed_since: datetime | None = None) -> EngineState:
        """The engine's state; with `closed_since`, also the visits of the current day closed since then
        that have a visit token (their phone pages still read them: `EngineState.recent_closed`)."""
        state = EngineState()
        with self.engine.begin() as conn:
            kv = dict(conn.execute(select(hall_state.c.key, hall_state.c.value)).all())
            state.day = kv.get("day", "")
            state.epoch = int(kv.get("epoch", "0"))
            self._prepared_day = (state.day, state.epoch) if state.day else None
            state.seq = conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one()
            for (data,) in conn.execute(select(tickets.c.data).where(tickets.c.closed_at.is_(None))):
                t = Ticket.from_record(json.loads(data))
                state.tickets[t.id] = t
            rows = conn.execute(select(tickets.c.prefix, func.max(tickets.c.seq_no))
                                .where(tickets.c.day == state.day, tickets.c.epoch == state.epoch)
                                .group_by(tickets.c.prefix))
            state.counters = {prefix: n for prefix, n in rows}
            for (data,) in conn.execute(select(windows.c.data)):
                w = WindowState.from_record(json.loads(data))
                state.windows[w.number] = w
            if state.day:
                since = (datetime.fromisoformat(state.day) - timedelta(days=1)).date().isoformat()
                for (data,) in conn.execute(select(appointments.c.data).where(appointments.c.day >= since)):
                    a = Appointment.from_record(json.loads(data))
                    state.appointments[a.id] = a
            self._replay_events(conn, state)
            if closed_since is not None and state.day:
                self._load_recent_closed(conn, state, closed_since)
        missing = [n for n in window_numbers or [] if n not in state.windows]
        with self.engine.begin() as conn:
            for n in missing:
                state.windows[n] = WindowState(n)
                conn.execute(insert(windows), {"number": n, "data": _dumps(state.windows[n].to_record())})
            for key in ("day", "epoch"):
                if key not in kv:
                    conn.execute(insert(hall_state), {"key": key, "value": "" if key == "day" else "0"})
        return state

    @staticmethod
    def _replay_events(conn: Connection, state: EngineState) -> None:
        """What the engine keeps from the event log: the open 差评, the hall day so far, the recent calls."""
        for ev in map(json.loads, conn.execute(select(events.c.payload)
                                               .where(events.c.type.in_(BAD_RATING_EVENTS))
                                               .order_by(events.c.seq)).scalars()):
            if ev["type"] == "bad_rating":
                state.bad_ratings[ev["ticket"]["id"]] = bad_rating_summary(ev)
            else:
                state.bad_ratings.pop(ev["ticket"]["id"], None)
        # the hall day so far: its events since the last day reset (all of them before the first)
        day_start = conn.execute(select(func.coalesce(func.max(events.c.seq), 0))
                                 .where(events.c.type == "day_reset")).scalar_one()
        for payload in conn.execute(select(events.c.payload)
                                    .where(events.c.type.in_(sorted(TALLIED)), events.c.seq > day_start)
                                    .order_by(events.c.seq)).scalars():
            state.today.observe(json.loads(payload))
        calls = conn.execute(select(events.c.payload)
                             .where(events.c.type.in_(("ticket_called", "ticket_recalled")))
                             .order_by(events.c.seq.desc()).limit(50)).scalars()
        for payload in calls:
            ev = json.loads(payload)
            t = ev["ticket"]
            if t["day"] != state.day or t["epoch"] != state.epoch:
                break
            state.recent_calls.append({"number": t["number"], "window": ev.get("window"),
                                       "service": t["service"], "at": ev["ts"], "ticket_id": t["id"]})

    @staticmethod
    def _load_recent_closed(conn: Connection, state: EngineState, since: datetime) -> None:
        """Closed visits of the day with a token, closed at `since` or later, in closing order."""
        rows = conn.execute(select(tickets.c.data).where(
            tickets.c.day == state.day, tickets.c.epoch == state.epoch, tickets.c.closed_at.is_not(None),
            tickets.c.visit_token_hash.is_not(None))).scalars()
        closed = [t for t in map(Ticket.from_record, map(json.loads, rows))
                  if t.closed_at is not None and t.closed_at >= since]
        for t in sorted(closed, key=lambda t: t.closed_at or since):
            state.recent_closed[t.id] = t

    def recent_command_replies(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The newest `limit` stored replies, oldest first: a command redelivered after a restart
        is answered from memory like any other."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(commands.c.command_id, commands.c.reply)
                                .order_by(commands.c.created_at.desc()).limit(limit)).all()
        return [(cid, json.loads(reply)) for cid, reply in reversed(rows)]

    # ------------------------------------------------------------------ write
    def _writer(self):  # noqa: ANN202 - pooled DB-API connection
        """One long-lived DB-API connection for the single writer (the service serialises writes)."""
        if self._raw is None:
            self._raw = self.engine.raw_connection()
        return self._raw

    def prepare(self, outcome: Outcome, state: EngineState, command: tuple[str, str, str, dict] | None = None
                ) -> WriteSet:
        """Serialise one command's changes *now*, while the engine lock is held.

        The rows are a snapshot: a later command may change the same ticket before this one is
        written, and what is written for this command must be this command's state.
        `command` = (command_id, client_id, ts, reply) for redelivery dedupe. The caller adds what
        else commits with it (a closed visit's outbox row: `WriteSet.add_outbox`).
        """
        ws = WriteSet()
        for tid in outcome.new_tickets:
            ws.rows["ins_ticket"].append(self._ticket_row(self._ticket(outcome, state, tid)))
        for tid in outcome.dirty_tickets - outcome.new_tickets:
            row = self._ticket_row(self._ticket(outcome, state, tid))
            row["b_id"] = row.pop("id")
            ws.rows["upd_ticket"].append(row)
        for n in outcome.dirty_windows:
            ws.rows["upd_window"].append({"b_number": n, "data": _dumps(state.windows[n].to_record())})
        for aid in outcome.dirty_appointments:
            appt = state.appointments[aid]
            ws.appointments.append({"b_id": aid, "code": appt.code, "day": appt.start_at.date().isoformat(),
                                    "status": appt.status, "data": _dumps(appt.to_record())})
        for ev in outcome.events:
            ws.rows["ins_event"].append({
                "seq": ev["seq"], "event_id": ev["event_id"], "ts": ev["ts"], "type": ev["type"],
                "ticket_id": ev["ticket"]["id"] if "ticket" in ev else None, "window_no": ev.get("window"),
                "payload": _dumps(ev)})
        if (state.day, state.epoch) != self._prepared_day:
            self._prepared_day = (state.day, state.epoch)
            ws.rows["upd_kv"] += [{"b_key": "day", "value": state.day},
                                  {"b_key": "epoch", "value": str(state.epoch)}]
        ws.staff = [staff_db_row(row) for row in outcome.staff_rows]
        if command is not None:
            cid, client, ts, reply = command
            ws.rows["ins_command"].append({"command_id": cid, "client_id": client, "created_at": ts,
                                           "reply": _dumps(reply)})
        return ws

    def write(self, writesets: list[WriteSet]) -> None:
        """Write prepared commands in one transaction, in order (one command, or a group commit)."""
        raw = self._writer()
        try:
            cur = raw.cursor()
            p = self._prepared
            # One statement per kind for the whole group, in WRITE_ORDER: inserts of a ticket precede
            # its updates and rows of one kind keep command order, so the last state wins.
            for name in WRITE_ORDER:
                rows = [row for ws in writesets for row in ws.rows[name]]
                if rows:
                    p[name].many(cur, rows)
            for ws in writesets:
                for row in ws.appointments:
                    if p["upd_appointment"].one(cur, row) == 0:
                        p["ins_appointment"].one(cur, {"id": row["b_id"], **{k: v for k, v in row.items()
                                                                              if k != "b_id"}})
                for row in ws.staff:
                    if p["upd_staff"].one(cur, {"b_id": row["id"], **row}) == 0:
                        p["ins_staff"].one(cur, row)
            cur.close()
            raw.commit()
        except Exception:
            self.commit_failures += 1
            self._prepared_day = None       # unknown what is on disk now: write day/epoch again
            self._discard_writer()
            raise
        self.commits += 1

    def _discard_writer(self) -> None:
        """After a failed write the connection may be half-dead (PostgreSQL restart): start afresh."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        try:
            raw.rollback()
            raw.close()
        except Exception:
            log.warning("discarding a broken database connection", exc_info=True)
            try:
                raw.invalidate()
            except Exception:
                log.debug("invalidate failed", exc_info=True)

    @staticmethod
    def _ticket(outcome: Outcome, state: EngineState, tid: str) -> Ticket:
        t = state.tickets.get(tid)
        if t is None:
            t = next(c for c in outcome.closed if c.id == tid)
        return t

    @staticmethod
    def _ticket_row(t: Ticket) -> dict[str, Any]:
        return {"id": t.id, "day": t.day, "epoch": t.epoch, "prefix": t.prefix, "seq_no": t.seq_no,
                "number": t.number, "service": t.service, "status": t.status, "priority": t.priority,
                "window_no": t.window, "person_key": t.holder.id_hash if t.holder else None,
                "issued_at": t.issued_at.isoformat(), "closed_at": t.closed_at.isoformat() if t.closed_at else None,
                "data": _dumps(t.to_record()), "visit_token_hash": t.visit_token_hash}

    # ------------------------------------------------------------------ read
    def iter_events(self, since_seq: int = 0, batch: int = 1000) -> Iterator[dict[str, Any]]:
        last = since_seq
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(select(events.c.seq, events.c.payload).where(events.c.seq > last)
                                    .order_by(events.c.seq).limit(batch)).all()
            if not rows:
                return
            for seq, payload in rows:
                last = seq
                yield json.loads(payload)

    def recent_events(self, since: datetime, types: Collection[str], batch: int = 500) -> list[dict[str, Any]]:
        """Events of ``types`` with ``ts >= since``, in seq order (what the announcer left unsaid at a
        restart). Walks back from the newest event, so the cost follows the span asked for, not the
        size of the log; it reads on past ``since`` by :data:`CLOCK_STEP_SLACK` in case the clock was
        stepped back, as events are stamped in seq order from one clock."""
        wanted = list(types)
        stop_at = since - CLOCK_STEP_SLACK
        found: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            q = select(events.c.seq, events.c.ts, events.c.payload).where(events.c.type.in_(wanted))
            if before is not None:
                q = q.where(events.c.seq < before)
            with self.engine.connect() as conn:
                rows = conn.execute(q.order_by(events.c.seq.desc()).limit(batch)).all()
            for seq, ts, payload in rows:
                stamped = datetime.fromisoformat(ts)
                if stamped < stop_at:
                    return found[::-1]
                if stamped >= since:
                    found.append(json.loads(payload))
                before = seq
            if len(rows) < batch:
                return found[::-1]

    def tickets_of_day(self, day: str, epoch: int | None = None) -> list[dict[str, Any]]:
        q = select(tickets.c.data).where(tickets.c.day == day)
        if epoch is not None:
            q = q.where(tickets.c.epoch == epoch)
        with self.engine.connect() as conn:
            return [json.loads(d) for d in conn.execute(q.order_by(tickets.c.issued_at)).scalars()]


__all__ = ["Store", "make_engine", "schema", "upgrade"]
