"""The queue engine: DESIGN §4 as pure code.

Every command takes the current time from the injected clock, mutates the in-memory state and
returns an `Outcome` (reply + events + what changed). The caller persists the outcome in one
transaction; if that fails it rebuilds the engine from the store, so the engine never has to undo.
"""

from __future__ import annotations

import secrets
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ..clock import Clock
from ..config import HallConfig, Service, Window, verify_pin
from ..identity import (
    InvalidCard,
    InvalidIdNumber,
    check_validity,
    id_hash,
    mask_id_number,
    mask_name,
    parse_id_number,
)
from .estimate import WaitEstimator
from .model import (
    ACTIVE,
    CALLED,
    CANCELLED,
    FINISHED,
    LEFT,
    NO_SHOW,
    PRIORITY_RANK,
    SERVING,
    WAITING,
    Appointment,
    DomainError,
    EngineState,
    Holder,
    Ticket,
    WindowState,
    iso,
)
from .texts import announcement_text, notice_slip
from .today import TALLIED, DayTally
from .visit import LEAVE_REFUSED_TEXT, NOT_FOUND_TEXT, TOKEN_TTL, lookup_key, new_token, token_hash

RATING_DIMENSIONS = ("服务态度", "业务技能", "服务质量", "廉洁从政")
# National 好差评 levels; 1 and 2 are 差评, which stays open until a supervisor records the follow-up.
RATING_LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
BAD_RATING_MAX = 2
BAD_RATING_EVENTS = ("bad_rating", "bad_rating_resolved")


def bad_rating_summary(event: dict[str, Any]) -> dict[str, Any]:
    """An open 差评 as kept in `EngineState.bad_ratings`, from its `bad_rating` event (the engine and
    the store's reload build it the same way)."""
    ticket = event["ticket"]
    return {"ticket": {k: ticket.get(k) for k in ("id", "number", "service", "window", "staff_id", "day")},
            "score": event["score"], "level": event["level"],
            "dimensions": (ticket.get("rating") or {}).get("dimensions") or {}, "rated_at": event["ts"]}


@dataclass
class CardData:
    """What the ID card reader delivers (clear text, inside the daemon only; never logged in full)."""

    name: str = field(repr=False)
    id_number: str = field(repr=False)
    sex: str | None = None
    birth: str | None = None
    nation: str | None = None
    address: str | None = field(default=None, repr=False)
    issuer: str | None = None
    valid_from: str | None = None   # YYYYMMDD
    valid_to: str | None = None     # YYYYMMDD or 长期
    photo: bytes = field(default=b"", repr=False)   # WLT, opaque


@dataclass
class Outcome:
    result: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    new_tickets: set[str] = field(default_factory=set)
    dirty_tickets: set[str] = field(default_factory=set)
    dirty_windows: set[int] = field(default_factory=set)
    dirty_appointments: set[str] = field(default_factory=set)
    dirty_hall: bool = False
    closed: list[Ticket] = field(default_factory=list)     # visits completed by this command
    staff_rows: list[dict[str, Any]] = field(default_factory=list)   # roster rows to store (hallctl staff)

    @property
    def changed(self) -> bool:
        return bool(self.events or self.new_tickets or self.dirty_tickets or self.dirty_windows
                    or self.dirty_appointments or self.dirty_hall)


def _check_rating(score: Any, dimensions: Any) -> None:
    """A national 好差评 level and, optionally, the four dimensions (1–5 each)."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise DomainError("bad_request", "评分必须是1到5的整数")
    if dimensions is not None:
        if not isinstance(dimensions, dict) or any(
                k not in RATING_DIMENSIONS or isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5
                for k, v in dimensions.items()):
            raise DomainError("bad_request", f"分项评分须为 {'、'.join(RATING_DIMENSIONS)} 的1到5分")


def _random_id() -> str:
    """128 random bits as hex: ticket and event ids (cheaper than building a UUID object)."""
    return secrets.token_hex(16)


class QueueEngine:
    def __init__(self, config: HallConfig, clock: Clock, state: EngineState | None = None, *,
                 secret: bytes = b"", new_id: Callable[[], str] | None = None):
        self.config = config
        self.clock = clock
        self.secret = secret
        self.new_id = new_id or _random_id
        self.state = state or EngineState()
        self._services = {s.code: s for s in config.services}
        self._windows = {w.number: w for w in config.windows}
        for number in self._windows:
            self.state.windows.setdefault(number, WindowState(number))
        self._out: Outcome | None = None
        # Derived index: waiting tickets per service, so calling and queue counts do not scan the
        # tickets that are being served or wait for their rating.
        self._waiting: dict[str, dict[str, Ticket]] = {code: {} for code in self._services}
        # Calling order within one service and priority class is (arrival, seq_no, id) whatever the
        # window, so each class is kept sorted and `pick_next` looks at the first eligible ticket of
        # each instead of scanning the queue. Entries: (arrival_at, seq_no, id, ticket).
        self._lines: dict[tuple[str, str], list[tuple[datetime, int, str, Ticket]]] = {}
        self._line_of: dict[str, tuple[tuple[str, str], tuple[datetime, int, str, Ticket]]] = {}
        self._targeted: dict[int, dict[str, Ticket]] = {}  # waiting tickets sent to one window
        # Derived index: per window the newest finished visit still waiting for its rating. It is in the
        # retained window state, so a tablet that was offline when the visit ended still gets it.
        self._rating_pending: dict[int, Ticket] = {}
        # Derived index: visit token hash -> ticket id, open tickets and those in state.recent_closed.
        self._by_token: dict[str, str] = {
            t.visit_token_hash: t.id for t in (*self.state.tickets.values(), *self.state.recent_closed.values())
            if t.visit_token_hash}
        for t in self.state.tickets.values():
            if t.status == WAITING:
                self._set_waiting(t, True)
            elif t.status == FINISHED and t.rating is None and t.window is not None and t.finished_at:
                pending = self._rating_pending.get(t.window)
                if pending is None or (pending.finished_at and pending.finished_at < t.finished_at):
                    self._rating_pending[t.window] = t
        self._estimates = WaitEstimator(self._services, self._windows, self.state, self._lines, self._targeted,
                                        choose=self._choose, rank=self._rank)
        # the phone pages' waits: ((seq, minute), {ticket id: {ahead, estimate}}), see _phone_wait_info
        self._phone_views: tuple[tuple[int, datetime] | None, dict[str, dict[str, Any]]] = (None, {})

    def _set_waiting(self, ticket: Ticket, waiting: bool) -> None:
        """Every change into or out of WAITING (or of a waiting ticket's service, priority, arrival or
        target window) goes through here: it keeps the waiting indexes."""
        for queue in self._waiting.values():
            queue.pop(ticket.id, None)
        for targeted in self._targeted.values():
            targeted.pop(ticket.id, None)
        placed = self._line_of.pop(ticket.id, None)
        if placed is not None:
            line = self._lines[placed[0]]
            del line[bisect_left(line, placed[1])]
        if waiting:
            ticket.status = WAITING
            self._waiting.setdefault(ticket.service, {})[ticket.id] = ticket
            if ticket.target_window is not None:
                self._targeted.setdefault(ticket.target_window, {})[ticket.id] = ticket
            key, entry = (ticket.service, ticket.priority), (ticket.arrival_at, ticket.seq_no, ticket.id, ticket)
            insort(self._lines.setdefault(key, []), entry)
            self._line_of[ticket.id] = (key, entry)

    # ------------------------------------------------------------------ plumbing
    def _begin(self) -> tuple[Outcome, datetime]:
        self._out = Outcome()
        now = self.clock.now()
        self._roll_day(now)
        return self._out, now

    def _emit(self, type_: str, now: datetime, ticket: Ticket | None = None, window: int | None = None,
              **extra: Any) -> None:
        assert self._out is not None
        self.state.seq += 1
        event: dict[str, Any] = {"event_id": self.new_id(), "seq": self.state.seq, "ts": iso(now), "type": type_}
        if ticket is not None:
            event["ticket"] = ticket.public()
            event["window"] = window if window is not None else ticket.window
            self._out.dirty_tickets.add(ticket.id)
        elif window is not None:
            event["window"] = window
        event.update(extra)
        if type_ in WaitEstimator.OBSERVED and ticket is not None:
            self._estimates.observe(type_, ticket, event["window"], now, extra)
        if type_ in TALLIED:
            self.state.today.observe(event)
        self._out.events.append(event)
        self._out.dirty_hall = True

    def _touch_window(self, number: int) -> WindowState:
        assert self._out is not None
        self._out.dirty_windows.add(number)
        return self.state.windows[number]

    def business_day(self, now: datetime) -> str:
        local = now.astimezone(self.config.tz)
        reset = self.config.rules.day_reset
        day = local.date()
        if (local.hour, local.minute) < (reset.hour, reset.minute):
            day -= timedelta(days=1)
        return day.isoformat()

    def _roll_day(self, now: datetime) -> None:
        day = self.business_day(now)
        if self.state.day == day:
            return
        if not self.state.day:          # first start: nothing to cancel
            self.state.day, self.state.epoch = day, 0
            assert self._out is not None
            self._out.dirty_hall = True
            return
        self._reset(now, day, 0, reason="new_day")

    def _reset(self, now: datetime, day: str, epoch: int, reason: str) -> None:
        cancelled = 0
        for ticket in list(self.state.tickets.values()):
            if ticket.status in (WAITING, CALLED, NO_SHOW):
                if ticket.status == CALLED and ticket.window is not None:
                    self._touch_window(ticket.window).current = None
                self._set_waiting(ticket, False)
                ticket.status = CANCELLED
                ticket.outcome = ticket.outcome or ("no_show" if ticket.skipped_at else "cancelled")
                cancelled += 1
                self._emit("ticket_cancelled", now, ticket, reason=reason)
                self._close(ticket, now)
            elif ticket.status == FINISHED:
                self._close(ticket, now)
        for closed in self.state.recent_closed.values():     # every phone page of the day stops here
            self._by_token.pop(closed.visit_token_hash or "", None)
        self.state.recent_closed = {}
        self.state.day, self.state.epoch = day, epoch
        self.state.counters = {}
        self.state.recent_calls = []
        self.state.today = DayTally()
        self._emit("day_reset", now, day=day, epoch=epoch, cancelled=cancelled, reason=reason)

    def _close(self, ticket: Ticket, now: datetime) -> None:
        """A visit is complete: it leaves memory and goes to the upstream outbox."""
        assert self._out is not None
        ticket.closed_at = now
        if ticket.window is not None and self._rating_pending.get(ticket.window) is ticket:
            del self._rating_pending[ticket.window]
            self._touch_window(ticket.window)
        self._out.closed.append(ticket)
        self.state.tickets.pop(ticket.id, None)
        if ticket.visit_token_hash:          # its phone page reads it for TOKEN_TTL more
            self.state.recent_closed[ticket.id] = ticket
        self._emit("visit_closed", now, ticket)

    # ------------------------------------------------------------------ lookups
    def _service(self, code: Any):
        if not isinstance(code, str) or code not in self._services:
            raise DomainError("not_found", f"没有该业务：{code}")
        return self._services[code]

    def _window_cfg(self, number: Any) -> Window:
        if isinstance(number, bool) or not isinstance(number, int) or number not in self._windows:
            raise DomainError("not_found", f"没有{number}号窗口")
        return self._windows[number]

    def _ticket_by_ref(self, ref: Any) -> Ticket:
        """A ticket in memory by id or by today's number (A001)."""
        if not isinstance(ref, str) or not ref:
            raise DomainError("bad_request", "缺少号码")
        if ref in self.state.tickets:
            return self.state.tickets[ref]
        number = ref.strip().upper()
        for t in self.state.tickets.values():
            if t.number == number and t.day == self.state.day and t.epoch == self.state.epoch:
                return t
        raise DomainError("not_found", f"未找到号码 {ref}")

    def _logged_in(self, number: int) -> WindowState:
        self._window_cfg(number)
        win = self.state.windows[number]
        if win.staff_id is None:
            raise DomainError("not_logged_in", f"{number}号窗口未登录")
        return win

    def _current(self, win: WindowState) -> Ticket:
        if win.current is None or win.current not in self.state.tickets:
            raise DomainError("conflict", f"{win.number}号窗口当前没有正在办理的号")
        return self.state.tickets[win.current]

    def window_status(self, number: int) -> str:
        win = self.state.windows[number]
        if win.staff_id is None:
            return "closed"
        if win.paused:
            return "paused"
        if win.current and win.current in self.state.tickets:
            return "calling" if self.state.tickets[win.current].status == CALLED else "serving"
        return "idle"

    def is_open(self, now: datetime) -> bool:
        return self.config.is_open(now)

    # ------------------------------------------------------------------ kiosk ops
    def holder_from_card(self, card: CardData, today: date) -> Holder:
        try:
            parsed = parse_id_number(card.id_number, today=today)
            check_validity(card.valid_from, card.valid_to, today)
        except InvalidCard as exc:
            raise DomainError("bad_request", str(exc)) from exc
        return Holder(id_hash(card.id_number, self.secret), mask_id_number(card.id_number), mask_name(card.name),
                      parsed.birth_date, parsed.sex)

    def issue_ticket(self, service: Any, *, card: CardData | None = None, appointment_code: Any = None,
                     green: bool = False, green_reason: str | None = None, kiosk: str | None = None,
                     elderly: bool = False) -> Outcome:
        """`elderly`: age checked by a reception clerk from the visitor's papers (no card read)."""
        out, now = self._begin()
        svc = self._service(service)
        if not self.is_open(now):
            raise DomainError("closed", self.config.closed_text(now))
        holder = self.holder_from_card(card, now.astimezone(self.config.tz).date()) if card else None
        appointment: Appointment | None = None
        if appointment_code is not None:
            appointment = self._appointment_for_checkin(appointment_code, svc.code, now)
        elif holder is not None:
            appointment = self._due_appointment_of(holder, svc.code, now)
        held = self._active_ticket_of(holder, svc.code) if holder is not None else None
        if held is not None:        # the card's holder already has one: printed again, not a second
            token = self._new_visit_token(held)
            self._emit("ticket_reprinted", now, held)
            out.result = {"ticket": held.public(), "reprinted": True, **self.wait_info(held, now), **token}
            return out
        late = appointment is not None and now > appointment.start_at + timedelta(
            minutes=self.config.rules.appointment_late_minutes)
        priority, due_at, arrival = "normal", None, now
        if appointment is not None and not late and svc.priority.appointment:
            priority, due_at, arrival = "appointment", appointment.start_at, min(now, appointment.start_at)
        if priority == "normal":
            priority = self._walk_in_priority(svc, holder, green, elderly, now)
        seq_no = self.state.counters.get(svc.prefix, 0) + 1
        self.state.counters[svc.prefix] = seq_no
        ticket = Ticket(
            id=self.new_id(), number=f"{svc.prefix}{seq_no:03d}", prefix=svc.prefix, seq_no=seq_no,
            day=self.state.day, epoch=self.state.epoch, service=svc.code, priority=priority, issued_at=now,
            arrival_at=arrival, due_at=due_at, holder=holder, kiosk=kiosk,
            appointment_id=appointment.id if appointment else None,
            green_reason=green_reason if priority == "green" else None,
        )
        self.state.tickets[ticket.id] = ticket
        self._set_waiting(ticket, True)
        out.new_tickets.add(ticket.id)
        if appointment is not None:
            appointment.status, appointment.ticket_id = "checked_in", ticket.id
            out.dirty_appointments.add(appointment.id)
        token = self._new_visit_token(ticket)
        self._emit("ticket_issued", now, ticket, appointment_late=late if appointment else None)
        out.result = {"ticket": ticket.public(), "reprinted": False, **self.wait_info(ticket, now), **token}
        return out

    def _new_visit_token(self, ticket: Ticket) -> dict[str, Any]:
        """A new visit token for `ticket` (the one it had stops working): the reply's `visit_token`
        and `visit_url`. Only its hash stays in the hall (domain/visit.py)."""
        assert self._out is not None
        self._by_token.pop(ticket.visit_token_hash or "", None)
        token = new_token()
        ticket.visit_token_hash = token_hash(token)
        self._by_token[ticket.visit_token_hash] = ticket.id
        self._out.dirty_tickets.add(ticket.id)
        return {"visit_token": token, "visit_url": self.config.visit_url(token)}

    def _active_ticket_of(self, holder: Holder, service: str) -> Ticket | None:
        """The holder's ticket for `service` that is still waiting or being served."""
        for t in self.state.tickets.values():
            if t.holder and t.holder.id_hash == holder.id_hash and t.service == service and t.status in ACTIVE:
                return t
        return None

    def _walk_in_priority(self, svc: Service, holder: Holder | None, green: bool, elderly: bool,
                          now: datetime) -> str:
        """green (where the service has the channel), elderly (by the card's birth date, or as a clerk
        saw it) or normal, for a ticket without a timely appointment."""
        if green:
            if not svc.priority.green_channel:
                raise DomainError("conflict", f"{svc.name}未开通绿色通道")
            return "green"
        if not svc.priority.elderly:
            return "normal"
        if holder is not None and holder.age_on(now.astimezone(self.config.tz).date()) >= self.config.rules.elderly_age:
            return "elderly"
        return "elderly" if elderly else "normal"

    def _due_appointment_of(self, holder: Holder, service: str, now: datetime) -> Appointment | None:
        """The card holder's booking for this service today whose check-in has opened: the card is
        the check-in, no code needed. None when there is none (the visitor then queues normally)."""
        today = self.business_day(now)
        early = timedelta(minutes=self.config.rules.appointment_early_minutes)
        due = [a for a in self.state.appointments.values()
               if a.id_hash == holder.id_hash and a.service == service and a.status == "booked"
               and a.start_at.astimezone(self.config.tz).date().isoformat() == today and now >= a.start_at - early]
        return min(due, key=lambda a: a.start_at, default=None)

    def _appointment_for_checkin(self, code: Any, service: str, now: datetime) -> Appointment:
        if not isinstance(code, str) or not code.strip():
            raise DomainError("bad_request", "预约码格式错误")
        appt = next((a for a in self.state.appointments.values() if a.code == code.strip()), None)
        if appt is None or appt.status == "cancelled":
            raise DomainError("not_found", "未找到该预约")
        if appt.service != service:
            raise DomainError("conflict", f"该预约的业务为{self._services[appt.service].name}，请选择对应业务")
        if appt.status == "checked_in":
            raise DomainError("conflict", "该预约已签到取号")
        local_start = appt.start_at.astimezone(self.config.tz)
        if local_start.date().isoformat() != self.business_day(now):
            raise DomainError("conflict", f"该预约日期为{local_start:%Y年%m月%d日}，不是今天")
        opens = appt.start_at - timedelta(minutes=self.config.rules.appointment_early_minutes)
        if now < opens:
            raise DomainError("conflict", f"预约时段为{local_start:%H:%M}，请于{opens.astimezone(self.config.tz):%H:%M}后签到")
        return appt

    def wait_info(self, ticket: Ticket, now: datetime) -> dict[str, Any]:
        """What the ticket shows: `ahead` (前面还有N人) and `estimate` (预计等待 range, or None when
        hidden); see domain/estimate.py."""
        return self._estimates.for_ticket(ticket, now)

    def reprint(self, ref: Any) -> Outcome:
        out, now = self._begin()
        ticket = self._ticket_by_ref(ref)
        if ticket.status not in ACTIVE:
            raise DomainError("conflict", f"{ticket.number}号已办结，不能补打")
        token = self._new_visit_token(ticket)
        self._emit("ticket_reprinted", now, ticket)
        out.result = {"ticket": ticket.public(), "reprinted": True, **self.wait_info(ticket, now), **token}
        return out

    def add_appointment(self, *, code: str, service: str, start_at: datetime, source: str,
                        name: str = "", id_number: str | None = None, appointment_id: str | None = None) -> Outcome:
        out, now = self._begin()
        self._service(service)
        if source not in ("online", "phone", "letter", "in_person"):
            raise DomainError("bad_request", f"未知预约来源 {source}")
        if not code or any(a.code == code and a.id != appointment_id for a in self.state.appointments.values()):
            raise DomainError("conflict", f"预约码 {code} 已存在")
        hashed = None
        if id_number:
            try:
                parse_id_number(id_number)
            except InvalidIdNumber as exc:
                raise DomainError("bad_request", str(exc)) from exc
            hashed = id_hash(id_number, self.secret)
        appt = Appointment(appointment_id or self.new_id(), code, service, start_at, source, mask_name(name), hashed)
        self.state.appointments[appt.id] = appt
        out.dirty_appointments.add(appt.id)
        self._emit("appointment_added", now, appointment={"id": appt.id, "code": code, "service": service,
                                                           "start_at": iso(start_at), "source": source})
        out.result = {"appointment": appt.to_record() | {"id_hash": None}}
        return out

    # ------------------------------------------------------------------ window ops
    def login(self, window: int, staff_id: Any, pin: Any = None, *, pin_required: bool = True) -> Outcome:
        out, now = self._begin()
        self._window_cfg(window)
        staff = self.config.staff_member(staff_id) if isinstance(staff_id, str) else None
        if staff is None or (pin_required and (not isinstance(pin, str) or not verify_pin(pin, staff.pin_hash))):
            raise DomainError("forbidden", "工号或密码错误")
        if not staff.active:
            raise DomainError("forbidden", f"{staff.name}（工号 {staff.job_number}）已停用，请联系管理员")
        if not staff.may_work_at(window):
            allowed = "、".join(f"{n}号" for n in staff.windows)
            raise DomainError("forbidden", f"{staff.name}不能在{window}号窗口登录（可登录窗口：{allowed}）")
        for other in self.state.windows.values():
            if other.staff_id == staff.id and other.number != window:
                raise DomainError("conflict", f"{staff.name}已在{other.number}号窗口登录，请先退出")
        win = self.state.windows[window]
        if win.staff_id not in (None, staff.id):
            raise DomainError("conflict", f"{window}号窗口已有工作人员登录")
        win = self._touch_window(window)
        win.staff_id = staff.id
        self._emit("staff_login", now, window=window, staff={"id": staff.id, "name": staff.name,
                                                             "position": staff.position})
        out.result = {"window": self.window_view(window)}
        return out

    def logout(self, window: int) -> Outcome:
        out, now = self._begin()
        win = self._logged_in(window)
        if win.current:
            raise DomainError("conflict", "请先办结或转出当前号再退出")
        win = self._touch_window(window)
        staff, win.staff_id, win.paused, win.paused_reason = win.staff_id, None, False, None
        self._emit("staff_logout", now, window=window, staff={"id": staff})
        out.result = {"window": self.window_view(window)}
        return out

    def change_roster(self, config: HallConfig, changes: list[dict[str, Any]]) -> Outcome:
        """The staff roster changed (`hallctl staff`): serve with `config` from now on, record each change
        (`staff_changed`: id, job number, action, the fields changed, never a PIN or its hash) and log out
        every clerk who may no longer work where they are logged in (disabled, removed from that window).
        A visit in progress stays with the window for the next clerk who logs in there."""
        out, now = self._begin()
        self.config = config
        for change in changes:
            self._emit("staff_changed", now, staff={"id": change["id"], "job_number": change.get("job_number")},
                       action=change["action"], fields=list(change["fields"]))
        logged_out = []
        for win in sorted(self.state.windows.values(), key=lambda w: w.number):
            staff = config.staff_member(win.staff_id) if win.staff_id else None
            if win.staff_id is None or (staff is not None and staff.active and staff.may_work_at(win.number)):
                continue
            reason = "disabled" if staff is None or not staff.active else "window_not_allowed"
            win = self._touch_window(win.number)
            staff_id, win.staff_id, win.paused, win.paused_reason = win.staff_id, None, False, None
            self._emit("staff_logout", now, window=win.number, staff={"id": staff_id}, reason=reason,
                       kept_ticket=win.current)
            logged_out.append(win.number)
        out.result = {"changed": len(changes), "logged_out": logged_out}
        return out

    def _eligible(self, win_cfg: Window, ticket: Ticket) -> int | None:
        """The window's weight for this waiting ticket, or None if the window may not call it."""
        if ticket.status != WAITING:
            return None
        if ticket.target_window is not None:
            if ticket.target_window != win_cfg.number:
                return None
            return win_cfg.weight_of(ticket.service) or max(ws.weight for ws in win_cfg.services)
        return win_cfg.weight_of(ticket.service)

    def _rank(self, ticket: Ticket, now: datetime) -> tuple[int, datetime]:
        """Priority rank and ordering time; an appointment counts as such only once its slot is due."""
        if ticket.priority == "appointment" and ticket.due_at is not None and now < ticket.due_at:
            return PRIORITY_RANK["normal"], ticket.issued_at
        return PRIORITY_RANK[ticket.priority], ticket.arrival_at

    def pick_next(self, window: int, now: datetime) -> Ticket | None:
        """DESIGN §4 calling order; see docs/QUEUE_RULES.md for the table."""
        win_cfg = self._windows[window]
        return self._choose(win_cfg, self._candidates(win_cfg), self.state.windows[window].priority_streak, now)

    def _choose(self, win_cfg: Window, candidates: list[Ticket], streak: int, now: datetime) -> Ticket | None:
        """The ticket this window calls among `candidates` (the wait forecast replays it too)."""
        best = best_normal = None
        best_key = best_normal_key = None
        for t in candidates:
            weight = self._eligible(win_cfg, t)
            if weight is None:
                continue
            rank, when = self._rank(t, now)
            key = (rank, -weight, when, t.seq_no, t.id)
            if best_key is None or key < best_key:
                best, best_key = t, key
            if rank == PRIORITY_RANK["normal"] and (best_normal_key is None or key < best_normal_key):
                best_normal, best_normal_key = t, key
        if (best is not None and best_key is not None and best_key[0] < PRIORITY_RANK["normal"]
                and best_normal is not None and streak >= self.config.rules.priority_ratio):
            return best_normal
        return best

    def _candidates(self, win_cfg: Window) -> list[Ticket]:
        """The tickets that can be best for this window: per service it serves and priority class, the
        first eligible one in arrival order (every appointment: theirs rank by the slot time), and
        the tickets sent to this window from services it does not serve."""
        found: list[Ticket] = []
        for ws in win_cfg.services:
            for priority in PRIORITY_RANK:
                for entry in self._lines.get((ws.service, priority), ()):
                    ticket = entry[3]
                    if ticket.target_window is None or ticket.target_window == win_cfg.number:
                        found.append(ticket)
                        if priority != "appointment":
                            break
        found += [t for t in self._targeted.get(win_cfg.number, {}).values() if win_cfg.weight_of(t.service) is None]
        return found

    def call_next(self, window: int, *, finish_current: bool = False) -> Outcome:
        out, now = self._begin()
        win = self._ready_window(window, finish_current, now)
        ticket = self.pick_next(window, now)
        if ticket is None:
            out.result = {"ticket": None}
            return out
        self._call(win, ticket, now)
        out.result = {"ticket": ticket.public()}
        return out

    def _ready_window(self, window: int, finish_current: bool, now: datetime) -> WindowState:
        win = self._logged_in(window)
        if win.paused:
            raise DomainError("conflict", f"{window}号窗口暂停服务中，请先恢复")
        if win.current:
            if not finish_current:
                raise DomainError("conflict", "请先办结、过号或转出当前号")
            self._finish(win, self._current(win), now, outcome="completed", note=None)
        return win

    def _call(self, win: WindowState, ticket: Ticket, now: datetime) -> None:
        rank, _ = self._rank(ticket, now)
        win = self._touch_window(win.number)
        win.priority_streak = 0 if rank == PRIORITY_RANK["normal"] else win.priority_streak + 1
        win.current = ticket.id
        self._set_waiting(ticket, False)
        ticket.status, ticket.window, ticket.staff_id = CALLED, win.number, win.staff_id
        ticket.target_window = None
        ticket.called_at = ticket.called_at or now
        ticket.last_called_at = now
        ticket.recall_count = 0
        if ticket.first_officer is None:
            ticket.first_officer = win.staff_id
        self._remember_call(ticket, now)
        self._emit("ticket_called", now, ticket, win.number,
                   announcement=announcement_text(ticket.number, win.number))

    def _remember_call(self, ticket: Ticket, now: datetime) -> None:
        calls = self.state.recent_calls
        calls.insert(0, {"number": ticket.number, "window": ticket.window, "service": ticket.service,
                         "at": iso(now), "ticket_id": ticket.id})
        del calls[self.config.rules.recent_calls:]

    def call_number(self, window: int, number: Any) -> Outcome:
        out, now = self._begin()
        win = self._ready_window(window, False, now)
        ticket = self._ticket_by_ref(number)
        if ticket.status == NO_SHOW:
            raise DomainError("conflict", f"{ticket.number}号已过号，请先恢复")
        if ticket.status != WAITING:
            raise DomainError("conflict", f"{ticket.number}号当前状态不能呼叫")
        if self._eligible(self._windows[window], ticket) is None:
            raise DomainError("conflict", f"{ticket.number}号不属于{window}号窗口的业务")
        self._call(win, ticket, now)
        out.result = {"ticket": ticket.public()}
        return out

    def recall(self, window: int) -> Outcome:
        out, now = self._begin()
        win = self._logged_in(window)
        ticket = self._current(win)
        if ticket.status != CALLED:
            raise DomainError("conflict", f"{ticket.number}号已开始办理，无需重呼")
        if ticket.recall_count >= self.config.rules.max_recalls:
            raise DomainError("conflict", f"{ticket.number}号已重呼{ticket.recall_count}次，请过号")
        ticket.recall_count += 1
        ticket.last_called_at = now
        self._remember_call(ticket, now)
        self._emit("ticket_recalled", now, ticket, window, announcement=announcement_text(ticket.number, window))
        out.result = {"ticket": ticket.public()}
        return out

    def start(self, window: int) -> Outcome:
        out, now = self._begin()
        win = self._logged_in(window)
        ticket = self._current(win)
        if ticket.status != CALLED:
            raise DomainError("conflict", f"{ticket.number}号已在办理中")
        self._start(win, ticket, now)
        out.result = {"ticket": ticket.public()}
        return out

    def _start(self, win: WindowState, ticket: Ticket, now: datetime) -> None:
        self._touch_window(win.number)
        ticket.status = SERVING
        ticket.started_at = ticket.started_at or now
        ticket.segment_started_at = now
        ticket.warned = ticket.overdue = False
        self._emit("service_started", now, ticket, win.number)

    def _end_segment(self, ticket: Ticket, now: datetime) -> None:
        if ticket.segment_started_at is not None:
            ticket.serve_seconds += (now - ticket.segment_started_at).total_seconds()
            ticket.segment_started_at = None

    def finish(self, window: int, outcome: Any = None, note: Any = None) -> Outcome:
        out, now = self._begin()
        if outcome is not None and not isinstance(outcome, str):
            raise DomainError("bad_request", "outcome 必须是字符串")
        if note is not None and not isinstance(note, str):
            raise DomainError("bad_request", "note 必须是字符串")
        win = self._logged_in(window)
        ticket = self._current(win)
        self._finish(win, ticket, now, outcome or "completed", note)
        out.result = {"ticket": ticket.public()}
        return out

    def _finish(self, win: WindowState, ticket: Ticket, now: datetime, outcome: str, note: str | None) -> None:
        if ticket.status == CALLED:
            self._start(win, ticket, now)
        self._end_segment(ticket, now)
        self._touch_window(win.number).current = None
        ticket.status, ticket.finished_at = FINISHED, now
        ticket.outcome, ticket.note = outcome, note
        self._emit("service_finished", now, ticket, win.number)
        if ticket.rating is None:
            self._rating_pending[win.number] = ticket
            self._emit("rating_requested", now, ticket, win.number, **self._rating_deadline(now))
        else:
            self._close(ticket, now)

    def request_rating(self, window: int) -> Outcome:
        out, now = self._begin()
        win = self._logged_in(window)
        ticket = self._current(win)
        if ticket.status != SERVING:
            raise DomainError("conflict", "请先开始办理")
        self._emit("rating_requested", now, ticket, window, **self._rating_deadline(now))
        out.result = {"ticket": ticket.public()}
        return out

    def _rating_deadline(self, now: datetime) -> dict[str, Any]:
        minutes = self.config.rules.rating_minutes
        return {"rating_minutes": minutes, "rating_until": iso(now + timedelta(minutes=minutes))}

    def skip(self, window: int) -> Outcome:
        out, now = self._begin()
        win = self._logged_in(window)
        ticket = self._current(win)
        if ticket.status != CALLED:
            raise DomainError("conflict", f"{ticket.number}号已开始办理，不能过号")
        self._touch_window(window).current = None
        ticket.status, ticket.skipped_at = NO_SHOW, now
        self._emit("ticket_skipped", now, ticket, window)
        out.result = {"ticket": ticket.public()}
        return out

    def reinstate(self, window: int, number: Any) -> Outcome:
        out, now = self._begin()
        self._logged_in(window)
        ticket = self._ticket_by_ref(number)
        if ticket.status != NO_SHOW or ticket.skipped_at is None:
            raise DomainError("conflict", f"{ticket.number}号不是过号状态")
        if now - ticket.skipped_at > timedelta(minutes=self.config.rules.reinstate_minutes):
            raise DomainError("conflict", f"{ticket.number}号过号已超过{self.config.rules.reinstate_minutes}分钟，请重新取号")
        self._set_waiting(ticket, True)
        ticket.window, ticket.skipped_at = None, None
        self._emit("ticket_reinstated", now, ticket, window)
        out.result = {"ticket": ticket.public()}
        return out

    def transfer(self, window: int, *, service: Any = None, to_window: Any = None, note: Any = None,
                 reason: str = "transfer") -> Outcome:
        out, now = self._begin()
        if (service is None) == (to_window is None):
            raise DomainError("bad_request", "请指定转入的业务或窗口（二选一）")
        if note is not None and not isinstance(note, str):
            raise DomainError("bad_request", "note 必须是字符串")
        win = self._logged_in(window)
        ticket = self._current(win)
        self._transfer(win, ticket, now, service=service, to_window=to_window, note=note, reason=reason)
        out.result = {"ticket": ticket.public()}
        return out

    def _transfer(self, win: WindowState, ticket: Ticket, now: datetime, *, service: Any, to_window: Any,
                  note: str | None, reason: str) -> None:
        record: dict[str, Any] = {"at": iso(now), "from_window": win.number, "from_service": ticket.service,
                                  "staff_id": win.staff_id, "note": note, "reason": reason}
        if service is not None:
            svc = self._service(service)
            ticket.service, ticket.target_window = svc.code, None
            record["to_service"] = svc.code
        else:
            target = self._window_cfg(to_window)
            if target.number == win.number:
                raise DomainError("conflict", "不能转给本窗口")
            ticket.target_window = target.number
            record["to_window"] = target.number
        self._end_segment(ticket, now)
        self._touch_window(win.number).current = None
        self._set_waiting(ticket, True)
        ticket.window = None
        ticket.warned = ticket.overdue = False
        ticket.transfers = [*ticket.transfers, record]
        self._emit("ticket_transferred", now, ticket, win.number, transfer=record)

    def return_to_first(self, window: int, note: Any = None) -> Outcome:
        out, now = self._begin()
        win = self._logged_in(window)
        ticket = self._current(win)
        target = next((w for w in self.state.windows.values() if w.staff_id == ticket.first_officer), None)
        if target is None:
            raise DomainError("conflict", "首问责任人当前未在岗")
        if target.number == window:
            raise DomainError("conflict", "本窗口即为首问责任人窗口")
        self._transfer(win, ticket, now, service=None, to_window=target.number,
                       note=note if isinstance(note, str) else None, reason="return_to_first")
        out.result = {"ticket": ticket.public()}
        return out

    def pause(self, window: int, reason: Any = None, *, finish_current: bool = False) -> Outcome:
        """Pause calling; with ``finish_current`` (the keypad's pause key) the open visit is finished first."""
        out, now = self._begin()
        win = self._logged_in(window)
        if win.paused:
            raise DomainError("conflict", f"{window}号窗口已暂停")
        if win.current:
            if not finish_current:
                raise DomainError("conflict", "请先办结当前号再暂停")
            self._finish(win, self._current(win), now, outcome="completed", note=None)
        win = self._touch_window(window)
        win.paused, win.paused_reason = True, reason if isinstance(reason, str) else None
        self._emit("window_paused", now, window=window, reason=win.paused_reason)
        out.result = {"window": self.window_view(window)}
        return out

    def resume(self, window: int) -> Outcome:
        out, now = self._begin()
        win = self._logged_in(window)
        if not win.paused:
            raise DomainError("conflict", f"{window}号窗口未暂停")
        win = self._touch_window(window)
        win.paused, win.paused_reason = False, None
        self._emit("window_resumed", now, window=window)
        out.result = {"window": self.window_view(window)}
        return out

    def attach_scan(self, window: int, ref: Any, scan: dict[str, Any]) -> Outcome:
        """Link a checked scan ({sha256, size, type}) to a visit of this window that is not closed yet
        (called, in service, or waiting for its rating); the same image twice is linked once."""
        out, now = self._begin()
        self._logged_in(window)
        try:
            ticket = self._ticket_by_ref(ref)
        except DomainError as exc:
            if exc.code == "not_found":
                raise DomainError("not_found", f"{ref}不是正在办理的号（已结束的业务不能再附加扫描件）") from None
            raise
        if ticket.window != window or ticket.status not in (CALLED, SERVING, FINISHED):
            raise DomainError("conflict", f"{ticket.number}号不在本窗口办理，不能附加扫描件")
        if any(s["sha256"] == scan["sha256"] for s in ticket.scans):
            out.result = {"ticket": ticket.public(), "scan": scan, "duplicate": True}
            return out
        ticket.scans = [*ticket.scans, scan]
        self._emit("scan_attached", now, ticket, window, scan=scan)
        out.result = {"ticket": ticket.public(), "scan": scan, "duplicate": False}
        return out

    # ------------------------------------------------------------------ tablet
    def rate(self, window: int, ref: Any, score: Any, dimensions: Any = None) -> Outcome:
        """The window's tablet rates the visit it served (DESIGN §4)."""
        out, now = self._begin()
        _check_rating(score, dimensions)
        try:
            ticket = self._ticket_by_ref(ref)
        except DomainError as exc:
            if exc.code == "not_found":     # closed: rated already, or the rating time is over
                raise DomainError("not_found", f"{ref}不在待评价状态（已评价或评价时间已过）") from None
            raise
        if ticket.window != window:
            raise DomainError("forbidden", "只能评价本窗口办理的号")
        self._rate(ticket, score, dimensions, now, by="tablet")
        out.result = {"ticket": ticket.public()}
        return out

    def _rate(self, ticket: Ticket, score: int, dimensions: dict[str, int] | None, now: datetime, *, by: str) -> None:
        """One rating per visit, from the tablet or the phone (`by`), whichever comes first; the
        `rating_received` event says which, so the other one leaves its rating screen."""
        if ticket.rating is not None:
            where = "（已在手机上评价）" if ticket.rating.get("by") == "phone" else ""
            raise DomainError("conflict", f"{ticket.number}号已评价{where}")
        if ticket.status not in (SERVING, FINISHED) or (ticket.closed_at is not None and ticket.status != FINISHED):
            raise DomainError("conflict", f"{ticket.number}号尚未办理，不能评价")
        minutes = self.config.rules.rating_minutes
        if ticket.closed_at is not None or (ticket.status == FINISHED and ticket.finished_at
                                            and now - ticket.finished_at >= timedelta(minutes=minutes)):
            raise DomainError("conflict", f"{ticket.number}号办结已超过{minutes}分钟，评价时间已过")
        window = ticket.window
        ticket.rating = {"score": score, "level": RATING_LEVELS[score], "dimensions": dimensions or {},
                         "at": iso(now), "by": by}
        self._emit("rating_received", now, ticket, window, by=by)
        if score <= BAD_RATING_MAX:
            self._emit("bad_rating", now, ticket, window, supervisor=True, score=score, level=RATING_LEVELS[score],
                       message=f"差评：{window}号窗口 {ticket.number}号 {score}分（{RATING_LEVELS[score]}），请回访整改")
            assert self._out is not None
            self.state.bad_ratings[ticket.id] = bad_rating_summary(self._out.events[-1])
        if ticket.status == FINISHED:
            self._close(ticket, now)

    # ------------------------------------------------------------------ the visitor's phone (web role)
    def _ticket_by_token(self, token: Any, now: datetime) -> Ticket:
        """The ticket a visit token opens; one answer for every token that opens none (visit.py)."""
        key = lookup_key(token)
        ticket_id = self._by_token.get(key) if key is not None else None
        ticket = None
        if ticket_id is not None:
            ticket = self.state.tickets.get(ticket_id) or self.state.recent_closed.get(ticket_id)
        if (ticket is None or ticket.visit_token_hash != key
                or (ticket.day, ticket.epoch) != (self.business_day(now), self.state.epoch)
                or (ticket.closed_at is not None and now - ticket.closed_at >= TOKEN_TTL)):
            raise DomainError("not_found", NOT_FOUND_TEXT)
        return ticket

    def visit_status(self, token: Any) -> dict[str, Any]:
        """`ticket_status`: the phone page of one ticket — no holder, no ids, nothing of other visitors
        but the numbers the hall display shows anyway."""
        now = self.clock.now()
        ticket = self._ticket_by_token(token, now)
        calls = [{"number": c["number"], "window": c["window"], "at": c["at"]}
                 for c in self.state.recent_calls if c.get("service") == ticket.service][:5]
        windows = sorted(n for n, cfg in self._windows.items()
                         if cfg.weight_of(ticket.service) is not None and self.state.windows[n].staff_id is not None)
        return {"ticket": self._visit_ticket(ticket, now), "recent_calls": calls, "windows": windows,
                "hall": {"name": self.config.name}, "seq": self.state.seq}

    def _phone_wait_info(self, ticket: Ticket, now: datetime) -> dict[str, Any]:
        """前面还有N人 and the estimate of a waiting ticket for its phone page: every waiting ticket's
        from one forecast, kept while the hall's seq and the minute stay the same."""
        if ticket.status != WAITING:
            return {"ahead": None, "estimate": None}
        key = (self.state.seq, now.replace(second=0, microsecond=0))
        if self._phone_views[0] != key or ticket.id not in self._phone_views[1]:
            self._phone_views = (key, self._estimates.for_waiting(now))
        return self._phone_views[1].get(ticket.id) or self.wait_info(ticket, now)

    def _visit_ticket(self, ticket: Ticket, now: datetime) -> dict[str, Any]:
        info = self._phone_wait_info(ticket, now)
        return {"number": ticket.number, "service": ticket.service,
                "service_name": self._services[ticket.service].name, "status": ticket.status,
                "window": ticket.window, "target_window": ticket.target_window, "ahead": info["ahead"],
                "estimate": info["estimate"], "issued_at": iso(ticket.issued_at), "called_at": iso(ticket.called_at),
                "finished_at": iso(ticket.finished_at), "closed_at": iso(ticket.closed_at),
                "rating": self._rating_state(ticket, now)}

    def _rating_state(self, ticket: Ticket, now: datetime) -> dict[str, Any]:
        """Whether the phone may rate the visit now (the tablet's rules), and whether anyone did."""
        if ticket.rating is not None:
            return {"allowed": False, "done": True, "by": ticket.rating.get("by", "tablet"),
                    "score": ticket.rating.get("score"), "until": None}
        until = None
        if ticket.status == FINISHED and ticket.finished_at is not None:
            until = ticket.finished_at + timedelta(minutes=self.config.rules.rating_minutes)
        allowed = ticket.closed_at is None and (ticket.status == SERVING or (until is not None and now < until))
        return {"allowed": allowed, "done": False, "by": None, "score": None, "until": iso(until)}

    def leave(self, token: Any) -> Outcome:
        """我不排了: a waiting ticket leaves the line (status `left`, its visit closes and goes upstream
        with outcome `left`); again on a ticket that left, the same answer."""
        out, now = self._begin()
        ticket = self._ticket_by_token(token, now)
        if ticket.status == LEFT:
            out.result = {"ticket": self._visit_ticket(ticket, now)}
            return out
        if ticket.status != WAITING:
            raise DomainError("conflict", LEAVE_REFUSED_TEXT)
        self._set_waiting(ticket, False)
        ticket.status, ticket.outcome = LEFT, "left"
        self._emit("ticket_left", now, ticket)
        self._close(ticket, now)
        out.result = {"ticket": self._visit_ticket(ticket, now)}
        return out

    def rate_by_token(self, token: Any, score: Any, dimensions: Any = None) -> Outcome:
        """The phone rates its visit under the tablet's rules; the identical phone rating again is
        answered as the first (idempotent), any other second rating gets `conflict` 已评价."""
        out, now = self._begin()
        ticket = self._ticket_by_token(token, now)
        _check_rating(score, dimensions)
        rating = ticket.rating
        if (rating is not None and rating.get("by") == "phone" and rating.get("score") == score
                and rating.get("dimensions") == (dimensions or {})):
            out.result = {"ticket": self._visit_ticket(ticket, now)}
            return out
        self._rate(ticket, score, dimensions, now, by="phone")
        out.result = {"ticket": self._visit_ticket(ticket, now)}
        return out

    def hall_page(self) -> dict[str, Any]:
        """`hall_page`: the phone's hall page — services with waiting counts and estimates, the recent
        calls, today's opening hours."""
        now = self.clock.now()
        plan = self.config.day_plan(now.astimezone(self.config.tz).date())
        open_now = self.is_open(now)
        services = [{"code": code, **{k: q[k] for k in ("name", "prefix", "waiting", "estimate", "staffed")}}
                    for code, q in self.queues_view().items()]
        calls = [{"number": c["number"], "window": c["window"], "service": c.get("service"), "at": c["at"]}
                 for c in self.state.recent_calls]
        return {"hall": {"name": self.config.name, "hours_today": plan.hours_text, "open_now": open_now,
                         "closed_text": None if open_now else self.config.closed_text(now)},
                "services": services, "recent_calls": calls, "seq": self.state.seq}

    def resolve_bad_rating(self, ref: Any, note: Any, by: str) -> Outcome:
        """A supervisor's follow-up (回访/整改) of an open 差评: `ref` is the ticket id, or its number
        while only one open 差评 has that number."""
        out, now = self._begin()
        if not isinstance(note, str) or not note.strip():
            raise DomainError("bad_request", "请填写回访或整改情况 note")
        if len(note) > 1000:
            raise DomainError("bad_request", "回访记录不能超过1000字")
        if not isinstance(ref, str) or not ref.strip():
            raise DomainError("bad_request", "缺少号码 ticket")
        open_ = self.state.bad_ratings
        if ref in open_:
            ticket_id = ref
        else:
            matches = [tid for tid, b in open_.items() if b["ticket"]["number"] == ref.strip().upper()]
            if len(matches) > 1:
                raise DomainError("conflict", f"{ref}号有{len(matches)}条待回访差评，请用号票编号（ticket id）指定")
            if not matches:
                raise DomainError("not_found", f"没有待回访的差评：{ref}")
            ticket_id = matches[0]
        bad = open_.pop(ticket_id)
        follow_up = {"note": note.strip(), "by": by, "at": iso(now)}
        self._emit("bad_rating_resolved", now, window=bad["ticket"]["window"], supervisor=True,
                   bad_rating=bad, follow_up=follow_up)
        out.events[-1]["ticket"] = bad["ticket"]
        out.result = {"bad_rating": {**bad, "follow_up": follow_up}}
        return out

    # ------------------------------------------------------------------ admin / clock
    def reset_day(self) -> Outcome:
        out, now = self._begin()
        self._reset(now, self.state.day, self.state.epoch + 1, reason="manual")
        out.result = {"day": self.state.day, "epoch": self.state.epoch}
        return out

    def tick(self) -> Outcome:
        """Clock-driven rules: day roll-over, time limits, closing finished/no-show visits."""
        out, now = self._begin()
        rules = self.config.rules
        for ticket in list(self.state.tickets.values()):
            if ticket.status == SERVING and ticket.segment_started_at is not None:
                limit = timedelta(minutes=self._services[ticket.service].time_limit_minutes)
                elapsed = now - ticket.segment_started_at
                if not ticket.warned and elapsed >= limit * rules.time_limit_warn_ratio:
                    ticket.warned = True
                    self._emit("time_limit_warning", now, ticket, limit_minutes=limit.total_seconds() / 60,
                               supervisor=True)
                if not ticket.overdue and elapsed >= limit:
                    ticket.overdue = True
                    self._emit("time_limit_exceeded", now, ticket, limit_minutes=limit.total_seconds() / 60,
                               supervisor=True)
            elif ticket.status == FINISHED and ticket.finished_at and now - ticket.finished_at >= timedelta(minutes=rules.rating_minutes):
                self._close(ticket, now)
            elif (ticket.status == NO_SHOW and ticket.skipped_at
                  and now - ticket.skipped_at > timedelta(minutes=rules.reinstate_minutes)):
                ticket.outcome = "no_show"
                self._close(ticket, now)
        self._expire_closed(now)
        return out

    def _expire_closed(self, now: datetime) -> None:
        """Closed visits leave `recent_closed` (and their tokens stop) TOKEN_TTL after they closed;
        they are kept in closing order, so the walk stops at the first one still young."""
        closed = self.state.recent_closed
        for ticket_id, ticket in list(closed.items()):
            if ticket.closed_at is not None and now - ticket.closed_at < TOKEN_TTL:
                break
            del closed[ticket_id]
            self._by_token.pop(ticket.visit_token_hash or "", None)

    def supervisor_alert(self, kind: str, detail: dict[str, Any]) -> Outcome:
        """An alert from outside the queue (e.g. a record the upstream refused) for the supervisor, logged
        like every other event."""
        out, now = self._begin()
        self._emit(kind, now, supervisor=True, detail=detail)
        out.result = {"alert": kind}
        return out

    def announcement(self, type_: str, detail: dict[str, Any]) -> Outcome:
        """Announcer progress (announcement_started/_finished/_shortened/_dropped), logged and published
        like every event; ``detail["ticket"]`` is the ticket as its call announced it, not as it is now."""
        out, now = self._begin()
        fields = dict(detail)
        ticket, window = fields.pop("ticket", None), fields.pop("window", None)
        self._emit(type_, now, window=window, **fields)
        if ticket is not None:
            out.events[-1]["ticket"] = ticket
        return out

    def cancel_appointment(self, code: str) -> Outcome:
        """A booking cancelled upstream: its check-in is refused from now on. Unknown codes, bookings
        already cancelled and visitors already checked in are left alone, so a repeated sync changes nothing."""
        out, now = self._begin()
        appt = next((a for a in self.state.appointments.values() if a.code == code), None)
        if appt is None or appt.status != "booked":
            return out
        appt.status = "cancelled"
        out.dirty_appointments.add(appt.id)
        self._emit("appointment_cancelled", now, appointment={"id": appt.id, "code": code, "service": appt.service,
                                                               "start_at": iso(appt.start_at)})
        out.result = {"appointment": appt.to_record() | {"id_hash": None}}
        return out

    def device_status(self, device_id: str, online: bool, profile: str, error: str | None = None) -> Outcome:
        """Devices report here so that going offline is one event, not one per failed retry."""
        out, now = self._begin()
        prev = self.state.devices.get(device_id)
        if prev is not None and prev["online"] == online:
            if error and prev.get("error") != error:
                prev["error"] = error
            return out
        self.state.devices[device_id] = {"online": online, "profile": profile, "since": iso(now), "error": error}
        self._emit("device_online" if online else "device_offline", now, device=device_id, profile=profile,
                   error=error)
        out.result = {"device": self.state.devices[device_id]}
        return out

    def notice(self, service: Any) -> dict[str, Any]:
        svc = self._service(service)
        return notice_slip(svc.name, svc.materials, self.config.name)

    # ------------------------------------------------------------------ views
    def window_view(self, number: int) -> dict[str, Any]:
        win = self.state.windows[number]
        cfg = self._windows[number]
        staff = self.config.staff_member(win.staff_id) if win.staff_id else None
        current = self.state.tickets.get(win.current) if win.current else None
        return {
            "number": number, "name": cfg.name, "status": self.window_status(number),
            "staff": {"id": staff.id, "name": staff.name, "position": staff.position, "job_number": staff.job_number}
            if staff else None,
            "ticket": current.public() if current else None, "paused_reason": win.paused_reason,
            "services": [ws.service for ws in cfg.services],
            "time_limit": self._time_limit(current),
            "rating_pending": self._pending_rating_view(number),
        }

    def _pending_rating_view(self, number: int) -> dict[str, Any] | None:
        """The visit the window's tablet should ask a rating for, with its deadline (None: nothing)."""
        ticket = self._rating_pending.get(number)
        if ticket is None or ticket.finished_at is None:
            return None
        return {"ticket": ticket.public(), **self._rating_deadline(ticket.finished_at)}

    def _time_limit(self, ticket: Ticket | None) -> dict[str, Any] | None:
        """What the window terminal needs for its 限时办结 countdown (the limit runs per serving segment)."""
        if ticket is None or ticket.status != SERVING or ticket.segment_started_at is None:
            return None
        return {"minutes": self._services[ticket.service].time_limit_minutes,
                "warn_ratio": self.config.rules.time_limit_warn_ratio, "since": iso(ticket.segment_started_at)}

    def waiting_stats(self) -> dict[str, tuple[int, datetime | None]]:
        """Per service: tickets waiting and the earliest `issued_at` among them (None when none wait);
        cheap, for /metrics (no estimates)."""
        return {code: (len(queue), min((t.issued_at for t in queue.values()), default=None))
                for code, queue in self._waiting.items()}

    def queues_view(self) -> dict[str, Any]:
        """Per service: waiting count, the estimate a visitor taking a number now would be shown, and
        `staffed`: how many windows serving it have a clerk logged in (0: the kiosk says 暂无窗口办理)."""
        estimates = self._estimates.for_services(self.clock.now())
        staffed = dict.fromkeys(self._services, 0)
        for number, cfg in self._windows.items():
            if self.state.windows[number].staff_id is not None:
                for ws in cfg.services:
                    if ws.service in staffed:
                        staffed[ws.service] += 1
        return {code: {"name": s.name, "prefix": s.prefix, "waiting": len(self._waiting.get(code, {})),
                       "estimate": e.to_dict() if (e := estimates[code]) else None, "staffed": staffed[code]}
                for code, s in self._services.items()}

    def snapshot(self) -> dict[str, Any]:
        return {
            "day": self.state.day, "epoch": self.state.epoch, "seq": self.state.seq,
            "counters": dict(self.state.counters),
            "queues": self.queues_view(),
            "windows": {str(n): self.window_view(n) for n in sorted(self.state.windows)},
            "calls": list(self.state.recent_calls),
            "devices": {k: dict(v) for k, v in self.state.devices.items()},
            "bad_ratings": list(self.state.bad_ratings.values()),    # open 差评, for the supervisor view
            "today": self.today_view(),
        }

    def today_view(self, window: int | None = None) -> dict[str, Any]:
        """The hall day (business day and epoch after the last reset) as of `seq`: its counts, each
        window's finished count and, for `window`, its finished visits newest first with their rating
        state. A client applies only the events after `seq` on top of it."""
        today = self.state.today
        view: dict[str, Any] = {
            "day": self.state.day, "epoch": self.state.epoch, "seq": self.state.seq,
            "rating_minutes": self.config.rules.rating_minutes, "counts": today.count_view(),
            "finished_by_window": {str(n): c for n, c in sorted(today.finished.items())},
        }
        if window is not None:
            view.update(window=window, **today.window_view(window))
        return view

