"""What the window terminal and the supervisor view show, as pure reducers (no Qt, no I/O).

The Qt layer feeds retained state (`state/window/N`, `state/queues`, `device/…`), events and command
replies into these functions and renders the result; the clock is passed in, so the time-limit
countdown (normal → amber → red) is tested with a manual clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from hall_controller.faults import DEVICE_FAULT_TEXTS, readable
from kiosk_ui.common_state import PRIORITY_LABELS, estimate_text, hall_time_text, hall_zone

NORMAL, AMBER, RED = "normal", "amber", "red"
SERVED_LIMIT = 200          # today's served list kept in memory
ALERT_LIMIT = 100

PRIORITY_TEXT = {**PRIORITY_LABELS, "normal": "普通"}
STATUS_TEXT = {"closed": "未登录", "idle": "空闲", "calling": "呼叫中", "serving": "办理中", "paused": "暂停服务"}
TICKET_STATUS_TEXT = {"waiting": "等候中", "called": "已呼叫", "serving": "办理中", "finished": "已办结",
                      "no_show": "过号", "cancelled": "已取消"}
SCORE_TEXT = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
OUTCOMES = {"completed": "办结", "referred": "已告知/引导", "pending_materials": "需补充材料",
            "accepted": "已受理（后台办理）", "declined": "不予受理"}


def _ts(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _clock_text(seconds: float) -> str:
    seconds = int(abs(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------------------------- current visit

@dataclass(frozen=True)
class Countdown:
    """The service's time limit (限时办结) as the clerk sees it."""

    limit_minutes: float
    remaining_seconds: float          # negative once overdue
    level: str                        # normal / amber (past the warning ratio) / red (overdue)
    text: str


def countdown(time_limit: dict[str, Any] | None, now: datetime) -> Countdown | None:
    """From the window state's `time_limit` {minutes, warn_ratio, since}; None when not serving."""
    if not isinstance(time_limit, dict):
        return None
    since = _ts(time_limit.get("since"))
    minutes = time_limit.get("minutes")
    if since is None or not isinstance(minutes, (int, float)) or minutes <= 0:
        return None
    ratio = time_limit.get("warn_ratio")
    ratio = ratio if isinstance(ratio, (int, float)) and 0 < ratio < 1 else 0.8
    limit = minutes * 60.0
    elapsed = (now - since).total_seconds()
    remaining = limit - elapsed
    if elapsed >= limit:
        return Countdown(minutes, remaining, RED, f"已超时 {_clock_text(remaining)}")
    level = AMBER if elapsed >= limit * ratio else NORMAL
    return Countdown(minutes, remaining, level, f"剩余 {_clock_text(remaining)}")


@dataclass(frozen=True)
class VisitView:
    """The ticket at the window, ready to render."""

    ticket_id: str
    number: str
    service: str
    service_name: str
    status: str
    status_text: str
    waited_minutes: int
    countdown: Countdown | None
    first_officer: str | None
    holder: str
    priority: str
    priority_text: str
    appointment: str | None
    green_reason: str | None
    transfers: int
    recall_count: int
    scans: int


def visit_view(window_view: dict[str, Any] | None, queues: dict[str, Any], now: datetime,
               staff_names: dict[str, str] | None = None, zone: str | None = None) -> VisitView | None:
    """The current visit of a window state, or None when the window has no ticket; times of day in the
    hall's `zone`."""
    if not isinstance(window_view, dict) or not isinstance(window_view.get("ticket"), dict):
        return None
    t = window_view["ticket"]
    issued = _ts(t.get("arrival_at")) or _ts(t.get("issued_at"))
    called = _ts(t.get("called_at")) or now
    waited = max(0, int((called - issued).total_seconds() // 60)) if issued else 0
    holder = t.get("holder") if isinstance(t.get("holder"), dict) else {}
    due = _ts(t.get("due_at"))
    first = t.get("first_officer")
    service = str(t.get("service") or "")
    status = str(t.get("status") or "")
    return VisitView(
        ticket_id=str(t.get("id") or ""), number=str(t.get("number") or ""), service=service,
        service_name=service_name(queues, service), status=status,
        status_text=TICKET_STATUS_TEXT.get(status, status), waited_minutes=waited,
        countdown=countdown(window_view.get("time_limit"), now) if status == "serving" else None,
        first_officer=(staff_names or {}).get(first, first) if first else None,
        holder=str(holder.get("name_masked") or "未刷身份证"),
        priority=str(t.get("priority") or "normal"),
        priority_text=PRIORITY_TEXT.get(str(t.get("priority")), str(t.get("priority"))),
        appointment=f"预约 {hall_time_text(due, zone)}" if due else ("预约" if t.get("appointment_id") else None),
        green_reason=t.get("green_reason") or None,
        transfers=len(t.get("transfers") or ()), recall_count=int(t.get("recall_count") or 0),
        scans=len(t.get("scans") or ()),
    )


def service_name(queues: dict[str, Any], code: str) -> str:
    entry = queues.get(code) if isinstance(queues, dict) else None
    return str(entry.get("name") or code) if isinstance(entry, dict) else code


# ---------------------------------------------------------------------------------- the terminal

@dataclass(frozen=True)
class ServedEntry:
    ticket_id: str
    number: str
    service: str
    finished_at: str
    outcome: str
    score: int | None = None

    @property
    def rating_text(self) -> str:
        return SCORE_TEXT.get(self.score, "未评价") if self.score is not None else "待评价"


@dataclass(frozen=True)
class TerminalState:
    """One window terminal: its window's retained state, the queues it serves, today's work."""

    window: int
    view: dict[str, Any] | None = None
    queues: dict[str, Any] = field(default_factory=dict)
    served: tuple[ServedEntry, ...] = ()
    alerts: tuple[str, ...] = ()        # time-limit warnings and transfers to this window, newest first
    day: str | None = None
    zone: str | None = None             # the hall's time zone: every time of day is shown in it

    @property
    def staff(self) -> dict[str, Any] | None:
        staff = self.view.get("staff") if isinstance(self.view, dict) else None
        return staff if isinstance(staff, dict) else None

    @property
    def logged_in(self) -> bool:
        return self.staff is not None

    @property
    def status(self) -> str:
        return str(self.view.get("status")) if isinstance(self.view, dict) else "closed"

    @property
    def ticket(self) -> dict[str, Any] | None:
        t = self.view.get("ticket") if isinstance(self.view, dict) else None
        return t if isinstance(t, dict) else None

    @property
    def is_reception(self) -> bool:
        return bool(self.staff and self.staff.get("position") == "综合接待岗")

    def window_queues(self) -> list[tuple[str, str, int, str]]:
        """(code, name, waiting, estimate) for the services this window serves, in its order; the estimate
        is the daemon's range, or a dash while it has too little data (never a guess)."""
        codes = self.view.get("services") if isinstance(self.view, dict) else None
        rows = []
        for code in codes or []:
            entry = self.queues.get(code)
            if isinstance(entry, dict):
                rows.append((code, str(entry.get("name") or code), int(entry.get("waiting") or 0),
                             estimate_text(entry.get("estimate")) or "—（数据不足）"))
        return rows


def apply_window(state: TerminalState, view: dict[str, Any] | None) -> TerminalState:
    """The retained `state/window/N` (or a `login`/`pause` reply's `window`)."""
    if view is not None and (not isinstance(view, dict) or view.get("number") != state.window):
        return state
    return replace(state, view=view)


def apply_queues(state: TerminalState, queues: Any) -> TerminalState:
    return replace(state, queues=queues if isinstance(queues, dict) else {})


def apply_status(state: Any, status: Any, fallback_zone: str | None = None) -> Any:
    """The daemon's retained status (terminal or supervisor state): the hall's time zone, else the
    config's; a zone once known is kept."""
    zone = hall_zone(status, fallback_zone) or state.zone
    return state if zone == state.zone else replace(state, zone=zone)


def _served_from(ticket: dict[str, Any]) -> ServedEntry:
    rating = ticket.get("rating") if isinstance(ticket.get("rating"), dict) else None
    return ServedEntry(str(ticket.get("id")), str(ticket.get("number")), str(ticket.get("service")),
                       str(ticket.get("finished_at") or ""), str(ticket.get("outcome") or "completed"),
                       rating.get("score") if rating else None)


def _upsert_served(served: tuple[ServedEntry, ...], entry: ServedEntry) -> tuple[ServedEntry, ...]:
    rest = [s for s in served if s.ticket_id != entry.ticket_id]
    old = next((s for s in served if s.ticket_id == entry.ticket_id), None)
    if old is not None and entry.score is None:
        entry = replace(entry, score=old.score)
    return (entry, *rest)[:SERVED_LIMIT]


def apply_event(state: TerminalState, event: dict[str, Any], now: datetime) -> TerminalState:
    """An event from the hall bus; those of other windows are ignored."""
    kind = event.get("type")
    ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else None
    if kind == "day_reset":
        return replace(state, served=(), alerts=(), day=event.get("day"))
    mine = event.get("window") == state.window
    if kind == "service_finished" and mine and ticket:
        return replace(state, served=_upsert_served(state.served, _served_from(ticket)))
    if kind == "rating_received" and mine and ticket:
        score = (ticket.get("rating") or {}).get("score")
        served = tuple(replace(s, score=score) if s.ticket_id == ticket.get("id") else s for s in state.served)
        if not any(s.ticket_id == ticket.get("id") for s in served) and ticket.get("status") == "finished":
            served = _upsert_served(served, _served_from(ticket))
        return replace(state, served=served)
    stamp = hall_time_text(now, state.zone)
    if kind in ("time_limit_warning", "time_limit_exceeded") and mine and ticket:
        what = "即将超时" if kind == "time_limit_warning" else "已超过办理时限"
        return _alert(state, f"{stamp} {ticket.get('number')}号{what}（时限{_minutes(event)}分钟）")
    if kind == "ticket_transferred" and ticket:
        transfer = event.get("transfer") if isinstance(event.get("transfer"), dict) else {}
        if transfer.get("to_window") == state.window:
            how = "退回首问责任人" if transfer.get("reason") == "return_to_first" else "转入本窗口"
            return _alert(state, f"{stamp} {ticket.get('number')}号由{transfer.get('from_window')}号窗口{how}")
    return state


def _minutes(event: dict[str, Any]) -> str:
    value = event.get("limit_minutes")
    return f"{value:g}" if isinstance(value, (int, float)) else "?"


def _alert(state: TerminalState, text: str) -> TerminalState:
    return replace(state, alerts=(text, *state.alerts)[:ALERT_LIMIT])


def apply_reply(state: TerminalState, op: str, result: dict[str, Any]) -> TerminalState:
    """A successful reply: `finish` adds to the served list, ops that return the window update it."""
    if isinstance(result.get("window"), dict):
        state = apply_window(state, result["window"])
    if op == "finish" and isinstance(result.get("ticket"), dict):
        state = replace(state, served=_upsert_served(state.served, _served_from(result["ticket"])))
    return state


# ---------------------------------------------------------------------------------- supervisor

BAD_RATING_EVENTS = ("bad_rating",)
BAD_RATING_RESOLVED = ("bad_rating_resolved",)


@dataclass(frozen=True)
class BadRating:
    ticket_id: str
    number: str
    window: int | None
    staff_id: str | None
    score: int
    at: str
    dimensions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Counts:
    issued: int = 0
    called: int = 0
    finished: int = 0
    no_show: int = 0
    rated: int = 0
    bad: int = 0


@dataclass(frozen=True)
class SupervisorState:
    """Every window, devices, overdue visits, dead letters, open 差评 and today's counts."""

    windows: dict[int, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: dict[str, Any] = field(default_factory=dict)
    overdue: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # ticket id -> (level, event)
    dead_letters: tuple[dict[str, Any], ...] = ()
    bad_ratings: dict[str, BadRating] = field(default_factory=dict)
    counts: Counts = Counts()
    counts_since: datetime | None = None     # the instant the counts started (shown in hall time)
    zone: str | None = None                  # the hall's time zone: every time of day is shown in it

    @property
    def counts_since_text(self) -> str | None:
        return hall_time_text(self.counts_since, self.zone) if self.counts_since is not None else None

    def time_text(self, moment: Any) -> str:
        """A daemon stamp (ISO, UTC) as hh:mm in hall time."""
        return hall_time_text(moment, self.zone)

    @property
    def devices_offline(self) -> list[tuple[str, dict[str, Any]]]:
        return sorted((k, v) for k, v in self.devices.items() if isinstance(v, dict) and not v.get("online"))


def device_problem(info: dict[str, Any]) -> str:
    """Why a device is offline, as the supervisor reads it: the daemon's fixed sentence
    (hall_controller.faults), never a raw driver error."""
    return readable(info.get("error"), DEVICE_FAULT_TEXTS["unknown"])


def dead_letter_text(event: dict[str, Any]) -> str:
    """A record the management system refused, as the supervisor reads it (the upstream's own reply is
    in the daemon's log and `hallctl outbox`)."""
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    what = {"service_record": "服务记录", "monthly_report": "月报表"}.get(str(detail.get("kind")), "数据")
    key = detail.get("record_key")
    retry = f"（hallctl outbox --retry {key}）" if isinstance(key, str) and key else ""
    return f"{what}被管理系统拒收，请联系管理员核查后重新发送{retry}"


def sup_apply_state(state: SupervisorState, section: str, key: Any, value: Any) -> SupervisorState:
    """A retained value (HallClient state listener: section, key, value; None = removed)."""
    if section == "window" and isinstance(key, int):
        windows = dict(state.windows)
        if isinstance(value, dict):
            windows[key] = value
        else:
            windows.pop(key, None)
        return replace(state, windows=windows)
    if section == "device" and isinstance(key, str):
        devices = dict(state.devices)
        if isinstance(value, dict):
            devices[key] = value
        else:
            devices.pop(key, None)
        return replace(state, devices=devices)
    if section == "queues":
        return replace(state, queues=value if isinstance(value, dict) else {})
    if section == "hall":
        return apply_status(state, value)
    return state


def sup_apply_snapshot(state: SupervisorState, snapshot: dict[str, Any]) -> SupervisorState:
    """The `status` reply: today's issued count from the day's counters and the open 差评 raised before
    this view started (`bad_ratings`: the daemon's summaries), when the daemon gives them."""
    counters = snapshot.get("counters")
    if isinstance(counters, dict):
        issued = sum(v for v in counters.values() if isinstance(v, int))
        state = replace(state, counts=replace(state.counts, issued=max(issued, state.counts.issued)))
    bad = dict(state.bad_ratings)
    for summary in snapshot.get("bad_ratings") or ():
        ticket = summary.get("ticket") if isinstance(summary, dict) else None
        if isinstance(ticket, dict) and ticket.get("id") and isinstance(summary.get("score"), int):
            bad.setdefault(str(ticket["id"]), BadRating(
                str(ticket["id"]), str(ticket.get("number")), ticket.get("window"), ticket.get("staff_id"),
                summary["score"], str(summary.get("rated_at") or ""), dict(summary.get("dimensions") or {})))
    return replace(state, bad_ratings=bad)


def sup_apply_event(state: SupervisorState, event: dict[str, Any], now: datetime) -> SupervisorState:
    kind = event.get("type")
    ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else None
    tid = str(ticket.get("id")) if ticket else None
    c = state.counts
    if state.counts_since is None:
        state = replace(state, counts_since=now)
    if kind == "day_reset":
        return replace(state, overdue={}, counts=Counts(), counts_since=now)
    if kind == "ticket_issued":
        return replace(state, counts=replace(c, issued=c.issued + 1))
    if kind == "ticket_called":
        return replace(state, counts=replace(c, called=c.called + 1))
    if kind in ("time_limit_warning", "time_limit_exceeded") and tid:
        level = RED if kind == "time_limit_exceeded" else AMBER
        return replace(state, overdue={**state.overdue, tid: (level, event)})
    if kind in ("service_finished", "ticket_transferred", "ticket_skipped", "ticket_cancelled") and tid:
        overdue = {k: v for k, v in state.overdue.items() if k != tid}
        if kind == "service_finished":
            c = replace(c, finished=c.finished + 1)
        elif kind == "ticket_skipped":
            c = replace(c, no_show=c.no_show + 1)
        return replace(state, overdue=overdue, counts=c)
    if kind == "rating_received":
        return replace(state, counts=replace(c, rated=c.rated + 1))
    if kind in BAD_RATING_EVENTS and tid and ticket:
        rating = ticket.get("rating") if isinstance(ticket.get("rating"), dict) else {}
        score = event.get("score", rating.get("score"))
        entry = BadRating(tid, str(ticket.get("number")), event.get("window"), ticket.get("staff_id"),
                          int(score) if isinstance(score, int) else 0, str(event.get("ts") or ""),
                          dict(rating.get("dimensions") or {}))
        return replace(state, bad_ratings={**state.bad_ratings, tid: entry}, counts=replace(c, bad=c.bad + 1))
    if kind in BAD_RATING_RESOLVED:
        ref = tid or event.get("ticket_id")
        return replace(state, bad_ratings={k: v for k, v in state.bad_ratings.items() if k != ref})
    if kind == "upstream_dead_letter":
        return replace(state, dead_letters=(event, *state.dead_letters)[:ALERT_LIMIT])
    return state


def sup_resolved(state: SupervisorState, ticket_id: str) -> SupervisorState:
    """A follow-up this view recorded (the reply came before, or instead of, the event)."""
    return replace(state, bad_ratings={k: v for k, v in state.bad_ratings.items() if k != ticket_id})


def window_rows(state: SupervisorState, now: datetime) -> list[dict[str, Any]]:
    """One row per window for the supervisor table."""
    rows = []
    for number in sorted(state.windows):
        view = state.windows[number]
        visit = visit_view(view, state.queues, now, zone=state.zone)
        staff = view.get("staff") if isinstance(view.get("staff"), dict) else None
        level = NORMAL
        if visit and visit.countdown:
            level = visit.countdown.level
        if visit and visit.ticket_id in state.overdue:
            flagged = state.overdue[visit.ticket_id][0]
            level = RED if RED in (flagged, level) else AMBER
        rows.append({
            "number": number, "status": STATUS_TEXT.get(str(view.get("status")), str(view.get("status"))),
            "staff": f"{staff.get('name')}（{staff.get('job_number')}）" if staff else "—",
            "ticket": visit.number if visit else "—",
            "service": visit.service_name if visit else "",
            "time": visit.countdown.text if visit and visit.countdown else (visit.status_text if visit else ""),
            "level": level, "reason": view.get("paused_reason") or "",
        })
    return rows
