"""What the window terminal and the supervisor view show, as pure reducers (no Qt, no I/O).

The Qt layer feeds retained state (`state/window/N`, `state/queues`, `device/…`), events and command
replies into these functions and renders the result; the clock is passed in, so the time-limit
countdown (normal → amber → red) is tested with a manual clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
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
    """A visit this window finished today, with its rating state as the daemon tells it."""

    ticket_id: str
    number: str
    service: str
    finished_at: str
    outcome: str
    score: int | None = None
    rating_until: str | None = None     # the end of its rating time (rules.rating_minutes after finish)
    closed: bool = False                # the daemon closed the visit: rated, or 未评价 when it was not

    @property
    def rating_text(self) -> str:
        """What the daemon knows: the level, 未评价 once the visit closed unrated, else 待评价."""
        if self.score is not None:
            return SCORE_TEXT.get(self.score, "未评价")
        return "未评价" if self.closed else "待评价"

    def rating_text_at(self, now: datetime) -> str:
        """As the clerk reads it at `now`: 未评价 also once the rating time ran out on the clock (the
        daemon closes the visit at its next tick)."""
        return "未评价" if self.waits_for_rating and self._expired(now) else self.rating_text

    @property
    def waits_for_rating(self) -> bool:
        return self.score is None and not self.closed

    def waiting_at(self, now: datetime) -> bool:
        """Still inside its rating time, unrated."""
        return self.waits_for_rating and not self._expired(now)

    def _expired(self, now: datetime) -> bool:
        until = _ts(self.rating_until)
        return until is not None and now >= until


@dataclass(frozen=True)
class TerminalState:
    """One window terminal: its window's retained state, the queues it serves, today's work.

    Today's finished visits come from the daemon (`day_summary`, exact as of its `seq`) and are kept
    up to date by the events after that `seq`; events that arrive before the summary are kept in
    `early` and applied again over it."""

    window: int
    view: dict[str, Any] | None = None
    queues: dict[str, Any] = field(default_factory=dict)
    served: tuple[ServedEntry, ...] = ()
    alerts: tuple[str, ...] = ()        # time-limit warnings and transfers to this window, newest first
    day: str | None = None
    zone: str | None = None             # the hall's time zone: every time of day is shown in it
    summary_seq: int | None = None      # the daemon's day summary applied (None: not yet)
    finished_total: int | None = None   # visits this window finished today (the daemon's count)
    rating_minutes: int | None = None
    early: tuple[dict[str, Any], ...] = ()   # this window's recent day events, replayed over a summary
    awaiting: str | None = None         # the visit this terminal finished that waits for its rating

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


def _served_from(ticket: dict[str, Any], rating_minutes: int | None = None) -> ServedEntry:
    rating = ticket.get("rating") if isinstance(ticket.get("rating"), dict) else None
    finished = str(ticket.get("finished_at") or "")
    until = None
    if rating_minutes is not None and (at := _ts(finished)) is not None:
        until = (at + timedelta(minutes=rating_minutes)).isoformat()
    return ServedEntry(str(ticket.get("id")), str(ticket.get("number")), str(ticket.get("service")), finished,
                       str(ticket.get("outcome") or "completed"), rating.get("score") if rating else None,
                       rating_until=until)


def _upsert_served(served: tuple[ServedEntry, ...], entry: ServedEntry) -> tuple[ServedEntry, ...]:
    """Newest first; a visit already listed keeps what was learnt of it since (its rating, its end)."""
    old = next((s for s in served if s.ticket_id == entry.ticket_id), None)
    if old is None:
        return (entry, *served)[:SERVED_LIMIT]
    merged = replace(old, outcome=entry.outcome, score=old.score if entry.score is None else entry.score,
                     rating_until=old.rating_until or entry.rating_until)
    return tuple(merged if s is old else s for s in served)


def _update_served(served: tuple[ServedEntry, ...], ticket_id: Any, **changes: Any) -> tuple[ServedEntry, ...]:
    return tuple(replace(s, **changes) if s.ticket_id == ticket_id else s for s in served)


DAY_EVENTS = ("service_finished", "rating_requested", "rating_received", "visit_closed")
EARLY_LIMIT = 100


def _seq(event: dict[str, Any]) -> int | None:
    seq = event.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _apply_day_event(state: TerminalState, event: dict[str, Any]) -> TerminalState:
    """One of this window's day events (finish, rating asked/received, visit closed) on the served list."""
    kind = event.get("type")
    ticket = event["ticket"]
    tid = ticket.get("id")
    if kind == "service_finished":
        total = None if state.finished_total is None else state.finished_total + 1
        return replace(state, served=_upsert_served(state.served, _served_from(ticket, state.rating_minutes)),
                       finished_total=total)
    if kind == "rating_requested":
        until = event.get("rating_until")
        return replace(state, served=_update_served(state.served, tid, rating_until=until)) \
            if isinstance(until, str) else state
    awaiting = None if state.awaiting == tid else state.awaiting
    if kind == "rating_received":
        score = (ticket.get("rating") or {}).get("score")
        served = _update_served(state.served, tid, score=score)
        if not any(s.ticket_id == tid for s in served) and ticket.get("status") == "finished":
            served = _upsert_served(served, _served_from(ticket, state.rating_minutes))
        return replace(state, served=served, awaiting=awaiting)
    return replace(state, served=_update_served(state.served, tid, closed=True), awaiting=awaiting)


def apply_summary(state: TerminalState, summary: Any) -> TerminalState:
    """The daemon's `day_summary` of this window: the day's finished visits (newest first) as of its
    `seq`, then the events after that `seq` that arrived first. A summary of another window, or one
    older than the one applied, changes nothing."""
    if not isinstance(summary, dict) or not isinstance(summary.get("served"), list):
        return state
    seq = _seq(summary)
    if seq is None or summary.get("window") not in (None, state.window):
        return state
    if state.summary_seq is not None and seq < state.summary_seq:
        return state
    served = []
    for e in summary["served"][:SERVED_LIMIT]:
        if isinstance(e, dict) and e.get("id"):
            score = e.get("score")
            served.append(ServedEntry(
                str(e["id"]), str(e.get("number") or ""), str(e.get("service") or ""), str(e.get("finished_at") or ""),
                str(e.get("outcome") or "completed"), score if isinstance(score, int) else None,
                e.get("rating_until") if isinstance(e.get("rating_until"), str) else None, e.get("closed") is True))
    total = summary.get("finished")
    minutes = summary.get("rating_minutes")
    state = replace(state, served=tuple(served), summary_seq=seq, day=summary.get("day") or state.day,
                    finished_total=total if isinstance(total, int) else len(served),
                    rating_minutes=minutes if isinstance(minutes, int) else state.rating_minutes)
    later = tuple(e for e in state.early if (_seq(e) or 0) > seq)
    for event in later:
        state = _apply_day_event(state, event)
    return replace(state, early=later)


def awaiting_rating(state: TerminalState, now: datetime) -> bool:
    """The visit this terminal just finished still waits for the visitor's rating: no rating arrived,
    the daemon did not close it, and its rating time has not run out."""
    if state.awaiting is None:
        return False
    entry = next((s for s in state.served if s.ticket_id == state.awaiting), None)
    return entry is not None and entry.waiting_at(now)


def apply_event(state: TerminalState, event: dict[str, Any], now: datetime) -> TerminalState:
    """An event from the hall bus; those of other windows are ignored."""
    kind = event.get("type")
    ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else None
    if kind == "day_reset":
        return replace(state, served=(), alerts=(), day=event.get("day"), finished_total=0, early=(),
                       awaiting=None)
    mine = event.get("window") == state.window
    if kind in DAY_EVENTS and mine and ticket:
        seq = _seq(event)
        if seq is not None and state.summary_seq is not None and seq <= state.summary_seq:
            return state                                   # already in the daemon's summary
        if seq is not None:
            if any(_seq(e) == seq for e in state.early):
                return state                               # delivered twice
            state = replace(state, early=(*state.early, event)[-EARLY_LIMIT:])
        return _apply_day_event(state, event)
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
        ticket = result["ticket"]
        state = replace(state, served=_upsert_served(state.served, _served_from(ticket, state.rating_minutes)),
                        awaiting=None if ticket.get("rating") else str(ticket.get("id")))
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
    """The hall day's counts, as the daemon's `today.counts` (domain/today.py) names them."""

    issued: int = 0
    called: int = 0
    finished: int = 0
    no_show: int = 0
    left: int = 0          # left the line from the phone (我不排了), apart from 过号
    rated: int = 0
    bad: int = 0
    not_rated: int = 0
    transferred: int = 0


# event type -> the count it adds to (the daemon's DayTally counts the same events)
COUNTED_EVENTS = {"ticket_issued": "issued", "ticket_called": "called", "service_finished": "finished",
                  "ticket_skipped": "no_show", "ticket_transferred": "transferred", "rating_received": "rated",
                  "bad_rating": "bad", "ticket_left": "left"}
COUNT_BUFFER = 500


def _count(counts: Counts, event: dict[str, Any]) -> Counts:
    """One event on the day's counts (`day_reset` starts them again)."""
    kind = event.get("type")
    if kind == "day_reset":
        return Counts()
    key = COUNTED_EVENTS.get(str(kind))
    if key is None and kind == "visit_closed":
        ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else {}
        key = "not_rated" if ticket.get("status") == "finished" and not ticket.get("rating") else None
    return replace(counts, **{key: getattr(counts, key) + 1}) if key else counts


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
    counts_since: datetime | None = None     # until the daemon's day counts arrive: when counting started
    zone: str | None = None                  # the hall's time zone: every time of day is shown in it
    counts_seq: int | None = None            # the daemon's day counts applied are as of this seq
    day: str | None = None                   # the hall day they count
    counted: tuple[dict[str, Any], ...] = ()   # recent counted events, replayed over the daemon's counts

    @property
    def whole_day(self) -> bool:
        """The counts are the daemon's for the whole hall day (else only since `counts_since`)."""
        return self.counts_seq is not None

    @property
    def counts_since_text(self) -> str | None:
        if self.whole_day or self.counts_since is None:
            return None
        return hall_time_text(self.counts_since, self.zone)

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


DEAD_LETTER_TITLE = "上报失败（需处理）"     # a record the management system refused (a dead letter)


def counts_text(state: SupervisorState) -> str:
    """The supervisor's header: the hall day's counts (the daemon's; until they arrive, those since the
    view opened, said so), the waiting count and the open 差评."""
    c = state.counts
    waiting = sum(int(q.get("waiting") or 0) for q in state.queues.values() if isinstance(q, dict))
    if state.whole_day and state.day and len(state.day) == 10:
        when = f"今日（{int(state.day[5:7])}月{int(state.day[8:10])}日）"
    elif state.counts_since_text:
        when = f"今日（自{state.counts_since_text}起）"
    else:
        when = "今日"
    left = f"离队 {c.left}　" if c.left else ""
    return (f"{when}取号 {c.issued}　叫号 {c.called}　办结 {c.finished}　过号 {c.no_show}　{left}"
            f"评价 {c.rated}　未评价 {c.not_rated}　｜　当前等候 {waiting}　待回访差评 {len(state.bad_ratings)}")


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


def sup_apply_today(state: SupervisorState, today: Any) -> SupervisorState:
    """The daemon's counts of the hall day (`status`'s `today`, or a `day_summary`) as of its `seq`, then
    the counted events after that `seq` that arrived first. Older counts than those applied are ignored."""
    if not isinstance(today, dict) or not isinstance(today.get("counts"), dict):
        return state
    seq = _seq(today)
    if seq is None or (state.counts_seq is not None and seq < state.counts_seq):
        return state
    raw = today["counts"]
    counts = Counts(**{k: v for k, v in raw.items()
                       if k in Counts.__dataclass_fields__ and isinstance(v, int) and not isinstance(v, bool)})
    later = tuple(e for e in state.counted if (_seq(e) or 0) > seq)
    for event in later:
        counts = _count(counts, event)
    return replace(state, counts=counts, counts_seq=seq, counted=later, day=today.get("day") or state.day)


def sup_apply_snapshot(state: SupervisorState, snapshot: dict[str, Any]) -> SupervisorState:
    """The `status` reply: the hall day's counts (`today`; from an older daemon only the issued count of
    its counters) and the open 差评 raised before this view started (`bad_ratings`)."""
    if isinstance(snapshot.get("today"), dict):
        state = sup_apply_today(state, snapshot["today"])
    elif isinstance(snapshot.get("counters"), dict):
        issued = sum(v for v in snapshot["counters"].values() if isinstance(v, int))
        state = replace(state, counts=replace(state.counts, issued=max(issued, state.counts.issued)))
    bad = dict(state.bad_ratings)
    for summary in snapshot.get("bad_ratings") or ():
        ticket = summary.get("ticket") if isinstance(summary, dict) else None
        if isinstance(ticket, dict) and ticket.get("id") and isinstance(summary.get("score"), int):
            bad.setdefault(str(ticket["id"]), BadRating(
                str(ticket["id"]), str(ticket.get("number")), ticket.get("window"), ticket.get("staff_id"),
                summary["score"], str(summary.get("rated_at") or ""), dict(summary.get("dimensions") or {})))
    return replace(state, bad_ratings=bad)


def _sup_count(state: SupervisorState, event: dict[str, Any]) -> SupervisorState:
    """The day's counts after one event: skipped when the daemon's counts already hold it (its seq is not
    after theirs); kept in `counted` to be replayed over counts that arrive later."""
    kind = event.get("type")
    if kind not in COUNTED_EVENTS and kind not in ("visit_closed", "day_reset"):
        return state
    seq = _seq(event)
    if seq is not None and state.counts_seq is not None and seq <= state.counts_seq:
        return state
    if seq is not None and any(e["seq"] == seq for e in state.counted):
        return state                                       # delivered twice
    counted = state.counted
    if seq is not None:
        ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else {}
        brief = {"type": kind, "seq": seq, "ticket": {"status": ticket.get("status"), "rating": ticket.get("rating")}}
        counted = (*counted, brief)[-COUNT_BUFFER:]
    return replace(state, counts=_count(state.counts, event), counted=counted)


def sup_apply_event(state: SupervisorState, event: dict[str, Any], now: datetime) -> SupervisorState:
    kind = event.get("type")
    ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else None
    tid = str(ticket.get("id")) if ticket else None
    if state.counts_since is None:
        state = replace(state, counts_since=now)
    state = _sup_count(state, event)
    if kind == "day_reset":
        return replace(state, overdue={}, counts_since=now, day=event.get("day") or state.day)
    if kind in ("time_limit_warning", "time_limit_exceeded") and tid:
        level = RED if kind == "time_limit_exceeded" else AMBER
        return replace(state, overdue={**state.overdue, tid: (level, event)})
    if kind in ("service_finished", "ticket_transferred", "ticket_skipped", "ticket_cancelled") and tid:
        return replace(state, overdue={k: v for k, v in state.overdue.items() if k != tid})
    if kind in BAD_RATING_EVENTS and tid and ticket:
        rating = ticket.get("rating") if isinstance(ticket.get("rating"), dict) else {}
        score = event.get("score", rating.get("score"))
        entry = BadRating(tid, str(ticket.get("number")), event.get("window"), ticket.get("staff_id"),
                          int(score) if isinstance(score, int) else 0, str(event.get("ts") or ""),
                          dict(rating.get("dimensions") or {}))
        return replace(state, bad_ratings={**state.bad_ratings, tid: entry})
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
