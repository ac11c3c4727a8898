"""Retention of personal data (PIPL, DESIGN §8): the one place that removes it.

What the hall keeps about a card holder — masked name, masked ID number, keyed ID hash, birth date and
sex (the age band is computed from the birth date) — is stored with the ticket (`tickets.person_key`,
`tickets.data.holder`) and copied into: the ticket inside each of its events (`events.payload`), the
service record in the outbox (`outbox.payload.holder`: hash, masked name, age band), the booking it
checked in with (`appointments.data`: masked name, hash) and the replies to commands about it
(`commands.reply`, stamped between its issue and its close). Scan images sit in `scans.data`.

`purge_personal_data` clears all of that for a visit `retention_days` after it closed AND its record
reached the upstream (outbox row delivered: delivery always follows the close). A visit whose record
has not been delivered (no upstream, a dead letter) keeps everything until it is. A booking never
checked in loses its holder once its day ended BOOKING_MARGIN before the cutoff. Scan images go
`scans.retention_days` after upload, or with their visit if that is sooner.

Numbers, services, windows, staff, times, outcomes and ratings stay, so the reports (月报表, the day
summaries) give the same figures before and after. Idempotent: a second run changes nothing and
returns zeros. Each run resumes after the cutoff of the last one (`hall_state` key MARK_KEY, less
CLOCK_STEP_SLACK for a clock stepped back) and works in small transactions so that the daemon, which
runs it beside its writer, is never held up for long.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from . import CLOCK_STEP_SLACK
from .schema import appointments, commands, db_time, events, hall_state, outbox, scans, tickets

log = logging.getLogger(__name__)

MARK_KEY = "privacy_purged_to"       # the cutoff (db_time) the last complete run reached
BATCH = 200                          # visits per transaction
BOOKING_MARGIN = timedelta(days=2)   # a booking's day is local; the engine keeps yesterday's in memory
COUNT_NAMES = ("visits", "events", "outbox", "appointments", "commands", "scans")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _scrub(value: Any, visits: frozenset[str] | None, bookings: frozenset[str] = frozenset()) -> bool:
    """Remove holders from a stored JSON value in place; True when something was removed.

    A ticket or service record (a dict with `holder` and `id` / `record_id`) of a visit in `visits`
    loses its holder; a booking (a dict with `code` and `name_masked`) in `bookings` or checked in for
    such a visit (`ticket_id`) its masked name and hash. `visits=None`: every ticket, record, booking."""
    changed = False
    if isinstance(value, dict):
        if value.get("holder") is not None and (visits is None or value.get("id") in visits
                                                or value.get("record_id") in visits):
            value["holder"] = None
            changed = True
        if value.get("name_masked") and "code" in value and (
                visits is None or value.get("ticket_id") in visits or value.get("id") in bookings):
            value["name_masked"] = ""
            if "id_hash" in value:
                value["id_hash"] = None
            changed = True
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return False
    for child in children:
        changed = _scrub(child, visits, bookings) or changed
    return changed


def _rewrite(conn: Connection, table: Any, key: Any, column: Any, rows: list[tuple[Any, str]],
             clean: Callable[[Any], bool]) -> int:
    """Scrub the JSON in `column` of `rows` ((key, text)); write back the changed ones; how many."""
    count = 0
    for row_key, text in rows:
        if not text:
            continue
        value = orjson.loads(text)
        if clean(value):
            conn.execute(update(table).where(key == row_key).values({column.name: _dumps(value)}))
            count += 1
    return count


def _delivered(conn: Connection, lower: str | None, upper: str, after: tuple[str, int] | None
               ) -> list[tuple[str, str, int]]:
    """The next BATCH delivered service records in (lower, upper], in delivery order after `after`."""
    o = outbox.c
    query = select(o.record_key, o.delivered_at, o.id).where(
        o.kind == "service_record", o.status == "delivered", o.delivered_at <= upper)
    if lower is not None:
        query = query.where(o.delivered_at > lower)
    if after is not None:
        query = query.where(or_(o.delivered_at > after[0], and_(o.delivered_at == after[0], o.id > after[1])))
    return list(conn.execute(query.order_by(o.delivered_at, o.id).limit(BATCH)).all())


def _purge_visits(conn: Connection, ids: list[str], counts: Counter[str]) -> None:
    """Everything personal about these delivered visits, in one transaction."""
    wanted = frozenset(ids)
    clean = lambda value: _scrub(value, wanted)  # noqa: E731 - the same rule for every table
    bookings: list[str] = []
    spans: list[tuple[datetime, datetime]] = []
    for tid, data, person_key in conn.execute(select(tickets.c.id, tickets.c.data, tickets.c.person_key)
                                              .where(tickets.c.id.in_(ids))).all():
        value = orjson.loads(data)
        if value.get("appointment_id"):
            bookings.append(value["appointment_id"])
        if value.get("issued_at") and value.get("closed_at"):
            spans.append((datetime.fromisoformat(value["issued_at"]), datetime.fromisoformat(value["closed_at"])))
        if clean(value) or person_key is not None:
            conn.execute(update(tickets).where(tickets.c.id == tid).values(data=_dumps(value), person_key=None))
            counts["visits"] += 1
    counts["events"] += _rewrite(conn, events, events.c.seq, events.c.payload, conn.execute(
        select(events.c.seq, events.c.payload).where(events.c.ticket_id.in_(ids))).all(), clean)
    counts["outbox"] += _rewrite(conn, outbox, outbox.c.id, outbox.c.payload, conn.execute(
        select(outbox.c.id, outbox.c.payload).where(outbox.c.record_key.in_(ids))).all(), clean)
    if bookings:
        counts["appointments"] += _rewrite(conn, appointments, appointments.c.id, appointments.c.data, conn.execute(
            select(appointments.c.id, appointments.c.data).where(appointments.c.id.in_(bookings))).all(), clean)
    counts["commands"] += _scrub_replies(conn, spans, clean)
    if bookings:
        counts["commands"] += _scrub_booking_replies(conn, bookings)
    counts["scans"] += conn.execute(update(scans).where(scans.c.ticket_id.in_(ids), scans.c.data.is_not(None))
                                    .values(data=None)).rowcount


def _scrub_replies(conn: Connection, spans: list[tuple[datetime, datetime]], clean: Callable[[Any], bool]) -> int:
    """Scrub the command replies stamped within `spans`."""
    count = 0
    for start, end in _merged(spans):
        count += _rewrite(conn, commands, commands.c.command_id, commands.c.reply, conn.execute(
            select(commands.c.command_id, commands.c.reply)
            .where(commands.c.created_at >= _iso(start), commands.c.created_at <= _iso(end))).all(), clean)
    return count


def _scrub_booking_replies(conn: Connection, booking_ids: list[str]) -> int:
    """The replies that added or cancelled these bookings (`hallctl appointment add`): stamped when
    the booking's `appointment_added` / `appointment_cancelled` event was."""
    wanted = frozenset(booking_ids)
    spans: list[tuple[datetime, datetime]] = []
    for start in range(0, len(booking_ids), BATCH):
        chunk = booking_ids[start:start + BATCH]
        stamps = conn.execute(select(events.c.ts).where(
            events.c.type.in_(("appointment_added", "appointment_cancelled")),
            or_(*(events.c.payload.contains(f'"id":"{aid}"', autoescape=True) for aid in chunk)))).scalars()
        spans += [(datetime.fromisoformat(ts),) * 2 for ts in stamps]
    return _scrub_replies(conn, spans, lambda value: _scrub(value, frozenset(), wanted))


def _merged(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The times replies about these visits were stamped: issue to close of each (widened by
    CLOCK_STEP_SLACK: a reply is stamped just after the change it answers), overlaps merged."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted((a - CLOCK_STEP_SLACK, b + CLOCK_STEP_SLACK) for a, b in spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _iso(moment: datetime) -> str:
    """A time as the service stamps commands (ISO-8601 in UTC, milliseconds)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _purge_bookings(conn: Connection, lower: datetime | None, cutoff: datetime, counts: Counter[str]) -> None:
    """Bookings never checked in whose day is past the cutoff (by BOOKING_MARGIN), and their replies."""
    upper_day = (cutoff - BOOKING_MARGIN).date().isoformat()
    query = select(appointments.c.id, appointments.c.data).where(appointments.c.day < upper_day)
    if lower is not None:
        query = query.where(appointments.c.day >= (lower - BOOKING_MARGIN - timedelta(days=1)).date().isoformat())
    rows = [(aid, data) for aid, data in conn.execute(query).all() if not orjson.loads(data).get("ticket_id")]
    counts["appointments"] += _rewrite(conn, appointments, appointments.c.id, appointments.c.data, rows,
                                       lambda v: _scrub(v, None))
    if rows:
        counts["commands"] += _scrub_booking_replies(conn, [aid for aid, _ in rows])


def purge_personal_data(engine: Engine, now: datetime, retention_days: int, *,
                        scan_retention_days: int | None = None) -> dict[str, int]:
    """Purge the personal data of visits closed and delivered `retention_days` before `now` (see the
    module); scan images also `scan_retention_days` after upload. Returns the rows changed per table."""
    cutoff = now.astimezone(UTC) - timedelta(days=retention_days)
    upper = db_time(cutoff)
    counts: Counter[str] = Counter()
    with engine.connect() as conn:
        mark = conn.execute(select(hall_state.c.value).where(hall_state.c.key == MARK_KEY)).scalar()
    since = datetime.fromisoformat(mark) - CLOCK_STEP_SLACK if mark else None
    lower = db_time(since) if since is not None else None
    after: tuple[str, int] | None = None
    while True:
        with engine.connect() as conn:
            batch = _delivered(conn, lower, upper, after)
        if not batch:
            break
        with engine.begin() as conn:
            _purge_visits(conn, [key for key, _, _ in batch], counts)
        after = (batch[-1][1], batch[-1][2])
    with engine.begin() as conn:
        _purge_bookings(conn, since, cutoff, counts)
        if scan_retention_days is not None:
            uploaded_before = db_time(now - timedelta(days=scan_retention_days))
            counts["scans"] += conn.execute(update(scans).where(
                scans.c.uploaded_at.is_not(None), scans.c.uploaded_at <= uploaded_before,
                scans.c.data.is_not(None)).values(data=None)).rowcount
        if mark is None:
            conn.execute(insert(hall_state).values(key=MARK_KEY, value=upper))
        elif upper > mark:
            conn.execute(update(hall_state).where(hall_state.c.key == MARK_KEY).values(value=upper))
    result = {name: counts[name] for name in COUNT_NAMES}
    if any(result.values()):
        log.info("personal data purged (retention %d days): %s", retention_days,
                 ", ".join(f"{n} {name}" for name, n in result.items() if n))
    return result
