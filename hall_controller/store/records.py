"""The service record sent upstream for each completed or no-show visit (DESIGN §7), and the 差评 log.

Built from the ticket dict of docs/ARCHITECTURE.md; the same dicts feed the monthly report, so the
figures the hall prints and the ones the upstream receives cannot disagree. The service builds a
closed visit's record while the engine lock is held and puts it into that command's write set; the
store writes it to the outbox in the transaction that closes the visit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from ..config import HallConfig
from ..domain.engine import BAD_RATING_EVENTS, bad_rating_summary
from ..identity import age_band, age_on
from .schema import events

RECORDABLE_STATUSES = ("finished", "no_show", "cancelled", "left")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _seconds(start: str | None, end: str | None) -> int | None:
    """Whole seconds from `start` to `end`; None when either is missing; clock skew counts as 0."""
    a, b = _parse(start), _parse(end)
    if a is None or b is None:
        return None
    return max(0, round((b - a).total_seconds()))


def _holder(holder: dict[str, Any] | None, issued_at: str | None) -> dict[str, Any] | None:
    """The upstream view of a card holder: a whitelist, so new fields in the hall's copy stay home."""
    if not holder:
        return None
    band = None
    birth, issued = holder.get("birth_date"), _parse(issued_at)
    if birth and issued is not None:
        born, day = date.fromisoformat(birth), issued.date()
        band = age_band(age_on(born, day))
    return {"id_hash": holder.get("id_hash"), "name_masked": holder.get("name_masked"), "age_band": band}


def build_service_record(
    ticket: dict[str, Any], hall_code: str, *, time_limit_seconds: float | None = None, open_visit: bool = False
) -> dict[str, Any]:
    """The upstream record for a closed visit: finished, no-show, cancelled (day end) or left (the
    visitor left the line from the phone page, 我不排了).

    - `wait_seconds`: issue → first call (the engine keeps the first call in `called_at` and later
      ones in `last_called_at`): the visitor's real wait, unaffected by recalls and transfers.
    - `handling_seconds`: `started_at` → `finished_at`; None for a no-show.
    - `outcome`: "no_show" for a skipped ticket, "left" for one that left the line, "cancelled" at the
      day end, else the clerk's outcome (default "completed").
    - `over_limit`: handling exceeded the service's time limit (限时办结), when one is given.
    - `holder`: keyed ID hash, masked name and age band on the day of issue only — the birth date,
      sex and masked ID number the hall keeps never leave it (DESIGN §7, §8).
    - `rating_status`: "rated", or "not_rated" (未评价: no rating within the rating time) for a served visit.

    With `open_visit` a visit that is not closed yet gets the same shape for the report of a running
    month, marked `"open": true`: outcome "open" while it waits or is served (or was skipped and may
    be reinstated), rating_status "pending" while a finished visit is inside its rating time.
    """
    status = ticket.get("status")
    if not open_visit and status not in RECORDABLE_STATUSES:
        raise ValueError(f"ticket {ticket.get('id')} is {status!r}; only closed visits are recorded")
    if open_visit and status != "finished":
        status = "open"
    no_show = status == "no_show" or (status == "cancelled" and ticket.get("outcome") == "no_show")
    handling = None if status != "finished" else _seconds(ticket.get("started_at"), ticket.get("finished_at"))
    over_limit = bool(time_limit_seconds is not None and handling is not None and handling > time_limit_seconds)
    rating = ticket.get("rating")
    record = {
        "record_id": ticket["id"],
        "hall": hall_code,
        "ticket_number": ticket["number"],
        "service": ticket["service"],
        "priority": ticket.get("priority"),
        "window": ticket.get("window"),
        "staff_id": ticket.get("staff_id"),
        "first_officer": ticket.get("first_officer"),
        "issued_at": ticket.get("issued_at"),
        "arrival_at": ticket.get("arrival_at"),
        "called_at": ticket.get("called_at"),
        "started_at": ticket.get("started_at"),
        "finished_at": ticket.get("finished_at"),
        "wait_seconds": _seconds(ticket.get("issued_at"), ticket.get("called_at")),
        "handling_seconds": handling,
        "outcome": "no_show" if no_show else status if status in ("cancelled", "left", "open") else (
            ticket.get("outcome") or "completed"),
        "over_limit": over_limit,
        "transfers": list(ticket.get("transfers") or []),
        "rating": dict(rating) if rating else None,
        # 未评价 is recorded explicitly: a served visit without a rating when its rating time ended.
        "rating_status": None if status != "finished" else "rated" if rating else (
            "pending" if open_visit else "not_rated"),
        "holder": _holder(ticket.get("holder"), ticket.get("issued_at")),
        "scans": [
            {"sha256": s["sha256"], "size": s.get("size"), "type": s.get("type")}
            for s in ticket.get("scans") or []
        ],
    }
    if open_visit:
        record["open"] = True
    return record


def record_builder_for(config: HallConfig) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`build_service_record` bound to a hall's code and time limits: one definition for the outbox
    rows the service hands the store and for reports recomputed from the tickets table."""
    limits = {s.code: s.time_limit_minutes * 60 for s in config.services}

    def build(ticket: dict[str, Any], *, open_visit: bool = False) -> dict[str, Any]:
        return build_service_record(ticket, config.hall_code, time_limit_seconds=limits.get(ticket["service"]),
                                    open_visit=open_visit)

    return build


def bad_ratings(db: Engine | Connection, *, open_only: bool = False) -> list[dict[str, Any]]:
    """Every 差评 in rating order, each with its `follow_up` ({note, by, at}) or None while open.

    Read from the append-only event log (the `bad_rating` / `bad_rating_resolved` events), the same
    source the engine rebuilds its open 差评 from, so the CLI, the report and the daemon agree."""
    query = select(events.c.payload).where(events.c.type.in_(BAD_RATING_EVENTS)).order_by(events.c.seq)
    if isinstance(db, Engine):
        with db.connect() as conn:
            payloads = conn.execute(query).scalars().all()
    else:
        payloads = db.execute(query).scalars().all()
    found: dict[str, dict[str, Any]] = {}
    for event in map(json.loads, payloads):
        if event["type"] == "bad_rating":
            found[event["ticket"]["id"]] = {**bad_rating_summary(event), "follow_up": None}
        elif event["ticket"]["id"] in found:
            found[event["ticket"]["id"]]["follow_up"] = event["follow_up"]
    return [b for b in found.values() if not (open_only and b["follow_up"])]
