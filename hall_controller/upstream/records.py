"""The service record sent upstream for each completed or no-show visit (DESIGN §7).

Built from the ticket dict of docs/ARCHITECTURE.md; the same dicts feed the monthly report, so the
figures the hall prints and the ones the upstream receives cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from hall_controller.config import HallConfig
from hall_controller.identity import age_band, age_on

RECORDABLE_STATUSES = ("finished", "no_show", "cancelled")


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
    ticket: dict[str, Any], hall_code: str, *, time_limit_seconds: float | None = None
) -> dict[str, Any]:
    """The upstream record for a closed visit: finished, no-show or cancelled (day end).

    - `wait_seconds`: issue → first call (the engine keeps the first call in `called_at` and later
      ones in `last_called_at`): the visitor's real wait, unaffected by recalls and transfers.
    - `handling_seconds`: `started_at` → `finished_at`; None for a no-show.
    - `outcome`: "no_show" for a skipped ticket, else the clerk's outcome (default "completed").
    - `over_limit`: handling exceeded the service's time limit (限时办结), when one is given.
    - `holder`: keyed ID hash, masked name and age band on the day of issue only — the birth date,
      sex and masked ID number the hall keeps never leave it (DESIGN §7, §8).
    """
    status = ticket.get("status")
    if status not in RECORDABLE_STATUSES:
        raise ValueError(f"ticket {ticket.get('id')} is {status!r}; only closed visits are recorded")
    no_show = status == "no_show" or (status == "cancelled" and ticket.get("outcome") == "no_show")
    handling = None if status != "finished" else _seconds(ticket.get("started_at"), ticket.get("finished_at"))
    over_limit = bool(time_limit_seconds is not None and handling is not None and handling > time_limit_seconds)
    rating = ticket.get("rating")
    return {
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
        "outcome": "no_show" if no_show else "cancelled" if status == "cancelled" else (
            ticket.get("outcome") or "completed"),
        "over_limit": over_limit,
        "transfers": list(ticket.get("transfers") or []),
        "rating": dict(rating) if rating else None,
        "holder": _holder(ticket.get("holder"), ticket.get("issued_at")),
        "scans": [
            {"sha256": s["sha256"], "size": s.get("size"), "type": s.get("type")}
            for s in ticket.get("scans") or []
        ],
    }


def record_builder_for(config: HallConfig) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`build_service_record` bound to a hall's code and time limits: one definition for the store's
    outbox rows and for reports recomputed from the tickets table."""
    limits = {s.code: s.time_limit_minutes * 60 for s in config.services}

    def build(ticket: dict[str, Any]) -> dict[str, Any]:
        return build_service_record(ticket, config.hall_code, time_limit_seconds=limits.get(ticket["service"]))

    return build
