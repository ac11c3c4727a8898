"""State objects of the queue domain (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from ..identity import age_on
from .today import DayTally

WAITING, CALLED, SERVING, FINISHED, NO_SHOW, CANCELLED, LEFT = (
    "waiting", "called", "serving", "finished", "no_show", "cancelled", "left")
STATUSES = (WAITING, CALLED, SERVING, FINISHED, NO_SHOW, CANCELLED, LEFT)
ACTIVE = frozenset({WAITING, CALLED, SERVING})
FINAL = frozenset({FINISHED, CANCELLED, LEFT})      # LEFT: the visitor left the line from the phone (我不排了)

PRIORITY_RANK = {"appointment": 0, "green": 1, "elderly": 2, "normal": 3}

ERROR_CODES = ("bad_request", "forbidden", "not_found", "conflict", "not_logged_in", "closed", "internal")


class DomainError(Exception):
    """A command the rules refuse; `message` is Chinese text for the person at the kiosk/window."""

    def __init__(self, code: str, message: str):
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Actor:
    """Who sends a command: the MQTT client id, its role (kiosk, window, tablet, display, admin, daemon)
    and the window a window client is bound to. A domain value, so every layer that names a caller
    (bridge, keypads, hallctl, the upstream sync) takes it from here rather than from the service."""

    client_id: str
    role: str
    window: int | None = None


def iso(ts: datetime | None) -> str | None:
    return _iso(ts) if ts else None


@lru_cache(maxsize=8192)
def _iso(ts: datetime) -> str:
    """Tickets are serialised many times with the same few timestamps: format each once."""
    return ts.isoformat(timespec="milliseconds")


def parse_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Holder:
    """What the hall keeps about a card holder: a keyed hash and masked forms only."""

    id_hash: str
    id_masked: str
    name_masked: str
    birth_date: date
    sex: str

    def age_on(self, day: date) -> int:
        return age_on(self.birth_date, day)

    def to_dict(self) -> dict[str, Any]:
        return {"id_hash": self.id_hash, "id_masked": self.id_masked, "name_masked": self.name_masked,
                "birth_date": self.birth_date.isoformat(), "sex": self.sex}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Holder | None:
        if not d:
            return None
        return cls(d["id_hash"], d["id_masked"], d["name_masked"], date.fromisoformat(d["birth_date"]), d["sex"])


@dataclass
class Ticket:
    id: str
    number: str
    prefix: str
    seq_no: int
    day: str
    epoch: int
    service: str
    priority: str
    issued_at: datetime
    arrival_at: datetime
    status: str = WAITING
    window: int | None = None
    target_window: int | None = None
    due_at: datetime | None = None          # appointment slot start: priority applies from then
    called_at: datetime | None = None
    last_called_at: datetime | None = None
    started_at: datetime | None = None
    segment_started_at: datetime | None = None
    finished_at: datetime | None = None
    skipped_at: datetime | None = None
    closed_at: datetime | None = None
    serve_seconds: float = 0.0
    first_officer: str | None = None
    staff_id: str | None = None
    recall_count: int = 0
    holder: Holder | None = None
    kiosk: str | None = None
    appointment_id: str | None = None
    green_reason: str | None = None
    transfers: list[dict[str, Any]] = field(default_factory=list)
    outcome: str | None = None
    note: str | None = None
    rating: dict[str, Any] | None = None
    scans: list[dict[str, Any]] = field(default_factory=list)
    warned: bool = False
    overdue: bool = False
    # sha256 of the visit token (domain/visit.py) the phone page holds; the clear token is never kept.
    # Persisted, never in the public view (events, replies).
    visit_token_hash: str | None = None
    _public: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # Any change invalidates the cached public view (lists are replaced, never mutated in place).
        object.__setattr__(self, "_public", None)
        object.__setattr__(self, name, value)

    def public(self) -> dict[str, Any]:
        """The ticket as it travels on MQTT and in events: masked holder only.

        Cached until the next change: one command serialises the same ticket several times
        (events, reply, row). Callers must not mutate the returned dict."""
        if self._public is None:
            object.__setattr__(self, "_public", self._build_public())
        return self._public  # type: ignore[return-value]

    def _build_public(self) -> dict[str, Any]:
        holder = None
        if self.holder:
            holder = {"name_masked": self.holder.name_masked, "id_masked": self.holder.id_masked}
        return {
            "id": self.id, "number": self.number, "service": self.service, "status": self.status,
            "priority": self.priority, "window": self.window, "target_window": self.target_window,
            "issued_at": iso(self.issued_at), "arrival_at": iso(self.arrival_at), "due_at": iso(self.due_at),
            "called_at": iso(self.called_at), "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at), "skipped_at": iso(self.skipped_at),
            "closed_at": iso(self.closed_at), "serve_seconds": round(self.serve_seconds, 3),
            "first_officer": self.first_officer, "staff_id": self.staff_id, "recall_count": self.recall_count,
            "holder": holder, "kiosk": self.kiosk, "appointment_id": self.appointment_id,
            "green_reason": self.green_reason, "transfers": list(self.transfers), "outcome": self.outcome,
            "note": self.note, "rating": self.rating, "scans": list(self.scans),
            "warned": self.warned, "overdue": self.overdue, "day": self.day, "epoch": self.epoch,
        }

    def to_record(self) -> dict[str, Any]:
        """Full persisted form (includes the holder's keyed hash and birth date)."""
        data = dict(self.public())
        data.update(prefix=self.prefix, seq_no=self.seq_no, last_called_at=iso(self.last_called_at),
                    segment_started_at=iso(self.segment_started_at),
                    holder=self.holder.to_dict() if self.holder else None,
                    visit_token_hash=self.visit_token_hash)
        return data

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> Ticket:
        return cls(
            id=d["id"], number=d["number"], prefix=d["prefix"], seq_no=d["seq_no"], day=d["day"],
            epoch=d["epoch"], service=d["service"], priority=d["priority"],
            issued_at=parse_ts(d["issued_at"]), arrival_at=parse_ts(d["arrival_at"]), status=d["status"],
            window=d["window"], target_window=d["target_window"], due_at=parse_ts(d["due_at"]),
            called_at=parse_ts(d["called_at"]), last_called_at=parse_ts(d["last_called_at"]),
            started_at=parse_ts(d["started_at"]), segment_started_at=parse_ts(d["segment_started_at"]),
            finished_at=parse_ts(d["finished_at"]), skipped_at=parse_ts(d["skipped_at"]),
            closed_at=parse_ts(d["closed_at"]), serve_seconds=d["serve_seconds"],
            first_officer=d["first_officer"], staff_id=d["staff_id"], recall_count=d["recall_count"],
            holder=Holder.from_dict(d["holder"]), kiosk=d["kiosk"], appointment_id=d["appointment_id"],
            green_reason=d["green_reason"], transfers=list(d["transfers"]), outcome=d["outcome"],
            note=d["note"], rating=d["rating"], scans=list(d["scans"]), warned=d["warned"], overdue=d["overdue"],
            visit_token_hash=d.get("visit_token_hash"),
        )


@dataclass
class WindowState:
    number: int
    staff_id: str | None = None
    paused: bool = False
    paused_reason: str | None = None
    current: str | None = None          # ticket id being called or served
    priority_streak: int = 0            # consecutive priority calls, for the anti-starvation ratio

    def to_record(self) -> dict[str, Any]:
        return {"number": self.number, "staff_id": self.staff_id, "paused": self.paused,
                "paused_reason": self.paused_reason, "current": self.current,
                "priority_streak": self.priority_streak}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> WindowState:
        return cls(d["number"], d["staff_id"], d["paused"], d["paused_reason"], d["current"], d["priority_streak"])


@dataclass
class Appointment:
    id: str
    code: str
    service: str
    start_at: datetime
    source: str                      # online (12348) | phone | letter | in_person
    name_masked: str = ""
    id_hash: str | None = None
    status: str = "booked"           # booked | checked_in | cancelled
    ticket_id: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "code": self.code, "service": self.service, "start_at": iso(self.start_at),
                "source": self.source, "name_masked": self.name_masked, "id_hash": self.id_hash,
                "status": self.status, "ticket_id": self.ticket_id}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> Appointment:
        return cls(d["id"], d["code"], d["service"], parse_ts(d["start_at"]), d["source"], d["name_masked"],
                   d["id_hash"], d["status"], d["ticket_id"])


@dataclass
class EngineState:
    """Everything the engine needs in memory; the store rebuilds it on start."""

    day: str = ""
    epoch: int = 0
    seq: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)     # unclosed tickets only
    # Visits closed less than visit.TOKEN_TTL ago in this day and epoch, by id: their phone page still
    # reads them (served, left, rated). Pruned by the engine's tick, emptied at the day reset.
    recent_closed: dict[str, Ticket] = field(default_factory=dict)
    windows: dict[int, WindowState] = field(default_factory=dict)
    appointments: dict[str, Appointment] = field(default_factory=dict)
    recent_calls: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)   # live only, not persisted
    # Open 差评 by ticket id (the visit itself is closed): rebuilt from the `bad_rating` and
    # `bad_rating_resolved` events on start.
    bad_ratings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The hall day so far (counts, each window's finished visits): kept from the events, replayed from
    # the day's events on start (see domain/today.py).
    today: DayTally = field(default_factory=DayTally)
