"""The hall day as the clerks and the supervisor read it: what happened since the day reset (calls,
finished visits, no-shows, ratings …) and each window's finished visits with their rating state.

Kept from the engine's own events, so it is exact at every `seq` and a screen opened mid-day can be
told the whole day: the engine feeds every event it emits to `DayTally.observe`, the store replays the
events since the last `day_reset` into a fresh tally on start. Pure data, no I/O, no clock.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# event type -> the count it adds to (one event is one count: a ticket called again after a transfer
# is a second call, as the hall display and the voice count it)
COUNTED = {
    "ticket_issued": "issued", "ticket_called": "called", "service_finished": "finished",
    "ticket_skipped": "no_show", "ticket_transferred": "transferred", "rating_received": "rated",
    "bad_rating": "bad", "ticket_left": "left",
}
# `left`: tickets whose visitor left the line from the phone (我不排了), apart from no_show (过号)
COUNT_KEYS = ("issued", "called", "finished", "no_show", "left", "transferred", "rated", "bad", "not_rated")
# the events a tally is built from (the store replays these; the engine calls observe for these only)
TALLIED = frozenset({*COUNTED, "rating_requested", "visit_closed"})
SERVED_LIMIT = 200          # finished visits kept per window (the newest); the counts stay exact


def _served_entry(event: dict[str, Any]) -> dict[str, Any]:
    ticket = event["ticket"]
    rating = ticket.get("rating") if isinstance(ticket.get("rating"), dict) else None
    return {"id": ticket.get("id"), "number": ticket.get("number"), "service": ticket.get("service"),
            "finished_at": ticket.get("finished_at"), "outcome": ticket.get("outcome") or "completed",
            "score": rating.get("score") if rating else None, "rating_until": None, "closed": False}


@dataclass
class DayTally:
    """Counts of the hall day and, per window, its finished visits (oldest first).

    A served entry: {id, number, service, finished_at, outcome, score (None until rated),
    rating_until (the end of its rating time), closed (the visit is over: rated, or its rating time
    ran out — 未评价)}."""

    counts: dict[str, int] = field(default_factory=dict)
    served: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    finished: dict[int, int] = field(default_factory=dict)     # per window, exact (the list is capped)
    # seconds from issue to first call of each ticket called today, sorted (the city summary's median/p90)
    waits: list[float] = field(default_factory=list)
    good: int = 0                       # ratings of 4 or 5 (满意, 非常满意)
    _first_called: set[str] = field(default_factory=set)

    def observe(self, event: dict[str, Any]) -> None:
        """One event of the day, in `seq` order (anything else is ignored)."""
        kind = event.get("type")
        key = COUNTED.get(kind)            # type: ignore[arg-type]
        if key is not None:
            self.counts[key] = self.counts.get(key, 0) + 1
        ticket = event.get("ticket")
        window = event.get("window")
        if kind == "ticket_called" and isinstance(ticket, dict):
            self._wait(event, ticket)
        elif kind == "rating_received" and isinstance(ticket, dict) and isinstance(ticket.get("rating"), dict):
            score = ticket["rating"].get("score")
            self.good += isinstance(score, int) and score >= 4
        if not isinstance(ticket, dict) or not isinstance(window, int) or isinstance(window, bool):
            return
        if kind == "service_finished":
            served = self.served.setdefault(window, [])
            served.append(_served_entry(event))
            del served[:-SERVED_LIMIT]
            self.finished[window] = self.finished.get(window, 0) + 1
            return
        if kind not in ("rating_requested", "rating_received", "visit_closed"):
            return
        if kind == "visit_closed" and ticket.get("status") == "finished" and not ticket.get("rating"):
            self.counts["not_rated"] = self.counts.get("not_rated", 0) + 1
        entry = self._entry(window, ticket.get("id"))
        if entry is None:
            return
        if kind == "rating_requested":
            entry["rating_until"] = event.get("rating_until")
        elif kind == "rating_received":
            rating = ticket.get("rating") if isinstance(ticket.get("rating"), dict) else {}
            entry["score"] = rating.get("score")
        else:
            entry["closed"] = True

    def _wait(self, event: dict[str, Any], ticket: dict[str, Any]) -> None:
        """A ticket's first call: how long it waited since it was issued (a recall after a transfer
        or a reinstated no-show is not a new wait)."""
        ticket_id = ticket.get("id")
        if not isinstance(ticket_id, str) or ticket_id in self._first_called:
            return
        self._first_called.add(ticket_id)
        try:
            waited = (datetime.fromisoformat(event["ts"]) - datetime.fromisoformat(ticket["issued_at"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return
        insort(self.waits, max(0.0, waited))

    def wait_quantile(self, q: float) -> float | None:
        """The `q` quantile (0..1, nearest rank) of today's waits in seconds; None before the first call."""
        if not self.waits:
            return None
        rank = max(1, -(-len(self.waits) * q // 1))      # ceil(n·q), at least the first
        return self.waits[int(rank) - 1]

    def _entry(self, window: int, ticket_id: Any) -> dict[str, Any] | None:
        """The served entry of a ticket at a window: a rating or a close follows its finish within
        minutes, so the search runs from the newest."""
        for entry in reversed(self.served.get(window, ())):
            if entry["id"] == ticket_id:
                return entry
        return None

    def count_view(self) -> dict[str, int]:
        return {k: self.counts.get(k, 0) for k in COUNT_KEYS}

    def window_view(self, window: int) -> dict[str, Any]:
        """A window's finished visits, newest first, and how many it finished today."""
        return {"finished": self.finished.get(window, 0),
                "served": [dict(e) for e in reversed(self.served.get(window, ()))]}
