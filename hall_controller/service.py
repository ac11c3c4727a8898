"""HallService: the one entry point for every command, whoever sends it.

MQTT clients, the keypad driver, the CLI and tests all call `execute(actor, op, args, command_id)`.
It authorises the op by role and window, runs it on the engine under one lock, commits it as one
transaction, remembers the reply by command id (so a redelivered command is answered, not re-run)
and only then hands the events to subscribers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Literal

from .clock import Clock
from .config import HallConfig
from .domain import Actor, CardData, DomainError, Outcome, QueueEngine, city
from .domain.model import iso
from .domain.visit import TOKEN_TTL
from .faults import VISITOR_PRINT_FAILED
from .identity import mask_name
from .scans import ScanImage, decode_scan, save_scan
from .store import Store, WriteSet
from .store.city_alerts import device_alerts
from .store.records import record_builder_for
from .store.roster import RosterInvalid, listing, load_rows, plan, with_roster

log = logging.getLogger(__name__)

KIOSK_OPS = {"issue_ticket", "reprint", "print_notice", "service_guide", "drop_card", "card_touch"}
WINDOW_OPS = {"login", "logout", "call_next", "call_number", "recall", "start", "finish", "skip", "transfer",
              "return_to_first", "pause", "resume", "reinstate", "print_notice", "attach_scan",
              "request_rating", "day_summary"}
TABLET_OPS = {"rate"}
# hall-web (role web, the visitors' phone pages): each op needs a ticket's visit token and reads or
# changes that one ticket, or reads the public hall page; every other op is refused to it.
WEB_OPS = {"ticket_status", "leave", "rate_by_token", "hall_page"}
ADMIN_OPS = {"status", "reset_day", "reload_config", "add_appointment", "resolve_bad_rating", "day_summary",
             "staff_list", "staff_save"}
ROLE_OPS: dict[str, set[str]] = {
    "kiosk": KIOSK_OPS, "window": WINDOW_OPS, "device": WINDOW_OPS, "tablet": TABLET_OPS,
    "display": set(), "web": WEB_OPS, "admin": ADMIN_OPS | KIOSK_OPS,
    "daemon": set().union(KIOSK_OPS, WINDOW_OPS, ADMIN_OPS),
}
ALL_OPS = set().union(*ROLE_OPS.values())
# 前台统一受理: a window client may issue tickets for visitors while its clerk holds this position.
RECEPTION_POSITION = "综合接待岗"
RECEPTION_OPS = {"issue_ticket"}
# A window client bound to no window is a supervisor's terminal (值班长): it reads the hall and records
# the follow-up of a 差评, and may do nothing that needs a window.
SUPERVISOR_OPS = {"status", "resolve_bad_rating", "day_summary"}
# Answered from memory under the lock, nothing to persist. `day_summary` {window?}: the hall day so far
# (counts; a window client's own finished visits, or those of `window` for the supervisor and admin).
READ_ONLY_OPS = {"status", "print_notice", "service_guide", "day_summary", "staff_list", "ticket_status",
                 "hall_page"}
# The visit token and its URL go to the kiosk that issued the ticket (and its printer), never into the
# stored command reply: the database keeps only the token's hash (domain/visit.py).
TOKEN_FIELDS = ("visit_token", "visit_url")
# A card read at a kiosk serves at most this long after the read, whatever else happens (see "cards").
CARD_TTL_SECONDS = 120
# Kiosk ops about the held card: answered at once, nothing to persist (a touch may come every few seconds).
CARD_OPS = {"drop_card", "card_touch"}
# Why a held card was dropped, as the kiosk is told (`dropped`) with a Chinese sentence for the visitor.
CARD_DROP_TEXTS = {
    "used": "号票已取，身份证信息已清除",
    "cancelled": "已取消，身份证信息已清除",
    "replaced": "已读取新的身份证",
    "idle": "长时间无操作，身份证信息已清除；如需刷证取号，请重新放置身份证",
    "read_failed": "未能读取身份证",
}
NO_CARD_TEXT = "请先在读卡区放置身份证，或不刷证直接点击业务取号"
CARD_READ_FAILED_TEXTS = {
    "read_failed": "未能读取身份证：请将身份证重新平放在读卡区，屏幕显示您的姓名后再拿开",
    "unreadable": "该身份证信息无法识别，请联系工作人员，或直接点击业务取号",
}
# Ops whose result the calling kiosk's own printer prints (see HallService.set_printer).
PRINT_OPS = {"issue_ticket", "reprint", "print_notice"}
PrintHook = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass
class _Pending:
    """A command whose rows wait for the next commit."""

    writeset: WriteSet
    events: list[dict[str, Any]]
    result: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class _HeldCard:
    """A card read at a kiosk and kept for its next `issue_ticket {use_card}`."""

    card: CardData
    read_at: datetime
    removed_at: datetime | None = None     # the reader reported it taken away
    touched_at: datetime | None = None     # the kiosk's latest command since the read

    def expired(self, now: datetime, idle_seconds: int) -> bool:
        """Removed and no touch for `idle_seconds` since the removal, or older than CARD_TTL_SECONDS."""
        if (now - self.read_at).total_seconds() >= CARD_TTL_SECONDS:
            return True
        if self.removed_at is None:
            return False
        last = max(self.removed_at, self.touched_at or self.removed_at)
        return (now - last).total_seconds() >= idle_seconds


class HallService:
    def __init__(self, config: HallConfig, store: Store, clock: Clock, *, secret: bytes = b"",
                 config_loader: Callable[[], HallConfig] | None = None, reply_cache: int = 10_000):
        self.base_config = config      # as loaded from the YAML; `config` adds the roster in the database
        self.config = config
        self.store = store
        self.clock = clock
        self.secret = secret
        self._config_loader = config_loader
        self._lock = threading.RLock()
        # Copied on write: a commit publishing on one thread never sees the tuple change under it.
        self._subscribers: tuple[tuple[Callable[[Any], None], bool], ...] = ()
        self._subscribe_lock = threading.Lock()
        self._card_subscribers: list[Callable[[str, dict[str, Any]], None]] = []
        self._replies: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._inflight: dict[str, _Pending] = {}
        self._queue: list[_Pending] = []
        self._commit_lock = threading.Lock()
        self._reply_cache = reply_cache
        self._cards: dict[str, _HeldCard] = {}
        self._card_outbox: list[tuple[str, dict[str, Any]]] = []   # card views to publish, in order
        self._card_publish_lock = threading.Lock()
        self._printers: dict[str, PrintHook] = {}
        self._build_record = record_builder_for(config)   # a closed visit's upstream record, into its write set
        self.city_hall, self._city_alerts = self._city_rules(config)   # None, None: no city broker
        for command_id, reply in store.recent_command_replies(reply_cache):
            self._replies[command_id] = reply
        self.engine = self._build_engine()
        self.tick()     # roll the day / close lapsed visits before serving anyone

    def _city_rules(self, config: HallConfig) -> tuple[city.CityHall | None, city.AlertRules | None]:
        """With `city:` set, the alerts for the city commit with the events that raise them (DESIGN §11)."""
        if not config.city_url or not config.city_district:
            return None, None
        hall = city.CityHall(config.hall_id, config.city_district, config.city_contact_minutes, config.city_fix_hours)
        rules = city.AlertRules(hall, {d.id: d.kind for d in config.devices})
        with self.store.engine.connect() as conn:
            rules.restore(device_alerts(conn))
        return hall, rules

    def city_summary(self, outbox: tuple[int, int]) -> dict[str, Any]:
        """The hall's summary for the city broker (no personal data); `outbox` = (pending, dead)."""
        assert self.city_hall is not None
        kinds = {d.id: d.kind for d in self.config.devices}
        with self._lock:
            return city.summary(self.engine, hall=self.city_hall, code=self.config.hall_code, name=self.config.name,
                                outbox=outbox, device_kinds=kinds)

    def _build_engine(self) -> QueueEngine:
        """The engine from the store, the staff roster included (hallctl staff's rows over the config's)."""
        self._roster_rows = load_rows(self.store.engine)
        self.config = with_roster(self.base_config, self._roster_rows)
        state = self.store.load_state([w.number for w in self.config.windows],
                                      closed_since=self.clock.now() - TOKEN_TTL)
        return QueueEngine(self.config, self.clock, state, secret=self.secret)

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, callback: Callable[[Any], None], *, batch: bool = False) -> Callable[[], None]:
        """Committed events in sequence order: one call per event, or with `batch` one call per
        commit with the list of its events (the MQTT bridge syncs its retained state once per commit).
        Returns the unsubscribe: commits published after it returns no longer reach `callback`."""
        entry = (callback, batch)
        with self._subscribe_lock:
            self._subscribers = (*self._subscribers, entry)

        def unsubscribe() -> None:
            with self._subscribe_lock:
                self._subscribers = tuple(e for e in self._subscribers if e is not entry)

        return unsubscribe

    def subscribe_cards(self, callback: Callable[[str, dict[str, Any]], None]) -> None:
        self._card_subscribers.append(callback)

    def set_printer(self, kiosk_id: str, hook: PrintHook | None) -> None:
        """The kiosk's ticket printer: ``hook(op, result)`` prints a PRINT_OPS result once it is
        durable and returns ``{"printed", "print_error"?}`` for the reply (None removes it)."""
        if hook is None:
            self._printers.pop(kiosk_id, None)
        else:
            self._printers[kiosk_id] = hook

    def _print(self, actor: Actor, op: str, result: dict[str, Any]) -> dict[str, Any]:
        """Print at the calling kiosk, outside the lock; the op stands whatever the printer does."""
        hook = self._printers.get(actor.client_id) if op in PRINT_OPS else None
        if hook is None:
            return result
        try:
            printed = hook(op, result)
        except Exception:
            log.exception("printer of %s failed on %s", actor.client_id, op)
            printed = {"printed": False, "print_error": VISITOR_PRINT_FAILED, "print_reason": "unknown"}
        return {**result, **printed}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.engine.snapshot()

    def waiting_stats(self) -> dict[str, tuple[int, datetime | None]]:
        """Per service: (tickets waiting, earliest issue time among them) — for /metrics."""
        with self._lock:
            return self.engine.waiting_stats()

    def device_states(self) -> dict[str, dict[str, Any]]:
        """The last reported state of each device (`online`, `profile`, `since`, `error`)."""
        with self._lock:
            return {k: dict(v) for k, v in self.engine.state.devices.items()}

    # ------------------------------------------------------------------ commands
    def execute(self, actor: Actor, op: str, args: dict[str, Any] | None = None,
                command_id: str | None = None) -> dict[str, Any]:
        """Run one op; returns its result once it is durable, or raises DomainError."""
        try:
            with self._lock:
                self._card_activity(actor)
            return self._execute(actor, op, args, command_id)
        finally:
            self._flush_cards()

    def _execute(self, actor: Actor, op: str, args: dict[str, Any] | None,
                 command_id: str | None) -> dict[str, Any]:
        args = args or {}
        if not isinstance(args, dict):
            raise DomainError("bad_request", "参数必须是对象")
        if op == "attach_scan":
            # Checked before the lock: decoding a large image must not hold up the hall's other commands.
            self._authorise(actor, op, args)
            args = {**args, "image": decode_scan(args.get("image"), self.config.scan_max_bytes)}
        with self._lock:
            kind, step = self._begin(actor, op, args, command_id)
        if kind == "read":
            return self._print(actor, op, step)
        if kind == "again":
            return self._answer_again(command_id, *step)
        outcome, inflight = step
        result = outcome.result if inflight is None else self._durable_result(command_id, inflight)
        result = self._print(actor, op, result)
        if command_id:
            with self._lock:
                self._remember(command_id, {"ok": True, "result": result})
        return result

    def _begin(self, actor: Actor, op: str, args: dict[str, Any], command_id: str | None
               ) -> tuple[Literal["again", "read", "write"], Any]:
        """Under the lock, one of: a redelivered command's first answer ("again", (reply, pending)),
        a read-only op's answer ("read", result), or a change queued for commit ("write", (outcome, pending))."""
        if command_id:
            previous, inflight = self._replies.get(command_id), self._inflight.get(command_id)
            if previous is not None or inflight is not None:     # answered, never printed twice
                log.info("command %s from %s redelivered: answering the first result", command_id,
                         actor.client_id)
                return "again", (previous, inflight)
        if op in READ_ONLY_OPS:
            self._authorise(actor, op, args)
            return "read", self._read_only(op, args, actor)
        if op in CARD_OPS:
            self._authorise(actor, op, args)
            return "read", self._card_op(actor, op)
        return "write", self._apply(actor, op, args, command_id)

    def _apply(self, actor: Actor, op: str, args: dict[str, Any], command_id: str | None
               ) -> tuple[Outcome, _Pending | None]:
        """Run a changing op on the engine and queue its rows (lock held); a refusal is remembered too."""
        try:
            self._authorise(actor, op, args)
            outcome = self._dispatch(actor, op, args)
        except DomainError as exc:
            if command_id:
                self._remember(command_id, {"ok": False, "error": {"code": exc.code, "message": exc.message}})
            raise
        command = None
        if command_id:
            result = outcome.result
            if any(k in result for k in TOKEN_FIELDS):     # stored without the token (a redelivery after a
                result = {k: v for k, v in result.items() if k not in TOKEN_FIELDS}   # restart gets none)
            reply = {"ok": True, "result": result}
            command = (command_id, actor.client_id, iso(self.clock.now()) or "", reply)
        inflight = self._enqueue(outcome, command)
        if command_id and inflight is not None:
            self._inflight[command_id] = inflight
        return outcome, inflight

    def _answer_again(self, command_id: str | None, previous: dict[str, Any] | None,
                      inflight: _Pending | None) -> dict[str, Any]:
        """A redelivered command gets its first answer: the remembered reply, or the in-flight one once durable."""
        if previous is not None:
            if previous["ok"]:
                return previous["result"]
            raise DomainError(previous["error"]["code"], previous["error"]["message"])
        assert inflight is not None
        result = self._durable_result(command_id, inflight)
        with self._lock:
            self._remember(command_id or "", {"ok": True, "result": result})
        return result

    def _durable_result(self, command_id: str | None, inflight: _Pending) -> dict[str, Any]:
        """Wait for the commit holding the command; it stops being in flight either way."""
        try:
            self._await_durable(inflight)
        finally:
            if command_id:
                with self._lock:
                    self._inflight.pop(command_id, None)
        return inflight.result

    def _remember(self, command_id: str, reply: dict[str, Any]) -> None:
        self._replies[command_id] = reply
        self._replies.move_to_end(command_id)
        while len(self._replies) > self._reply_cache:
            self._replies.popitem(last=False)

    def _enqueue(self, outcome: Outcome, command: tuple[str, str, str, dict] | None) -> _Pending | None:
        """Serialise the command's rows (engine lock held) and queue them for the next commit."""
        if not outcome.changed and command is None:
            return None
        try:
            writeset = self.store.prepare(outcome, self.engine.state, command)
            for ticket in outcome.closed:    # the outbox row commits with the change that closed the visit
                writeset.add_outbox(ticket.id, "service_record", self._build_record(ticket.to_record()),
                                    ticket.closed_at)
            if self._city_alerts is not None and outcome.events:    # so do the city's alerts (差评 …)
                for alert in self._city_alerts.from_events(outcome.events):
                    writeset.add_city_alert(alert, self.clock.now())
            pending = _Pending(writeset, outcome.events, outcome.result)
        except Exception as exc:
            log.exception("cannot serialise a command; rebuilding engine state from the store")
            self.engine = self._build_engine()
            raise DomainError("internal", "数据保存失败，请重试") from exc
        self._queue.append(pending)
        return pending

    def _await_durable(self, pending: _Pending) -> None:
        """Group commit: whoever gets the commit lock writes everything queued so far in one transaction.

        Alone, each command is its own transaction; under concurrent load the commands that queued
        while a commit was in flight share the next fsync. Nobody is answered before the commit
        that holds their command, and events go out in sequence order after it.
        """
        with self._commit_lock:
            if not pending.done.is_set():
                with self._lock:
                    batch, self._queue = self._queue, []
                try:
                    self.store.write([p.writeset for p in batch])
                except Exception as exc:
                    log.exception("commit of %d command(s) failed; rebuilding engine state from the store",
                                  len(batch))
                    with self._lock:
                        later, self._queue = self._queue, []    # built on the lost state: fail them too
                        self.engine = self._build_engine()
                    for p in batch + later:
                        p.error = exc
                        p.done.set()
                else:
                    for p in batch:
                        p.done.set()
                    self._publish([e for p in batch for e in p.events])
        if pending.error is not None:
            raise DomainError("internal", "数据保存失败，请重试") from pending.error

    def _run(self, step: Callable[[], Outcome]) -> Outcome:
        """An engine step that is not a client command (clock, devices, upstream alerts)."""
        with self._lock:
            outcome = step()
            pending = self._enqueue(outcome, None)
        if pending is not None:
            self._await_durable(pending)
        return outcome

    def _publish(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        for callback, batch in self._subscribers:
            for item in ([events] if batch else events):
                try:
                    callback(item)
                except Exception:
                    log.exception("event subscriber %r failed", callback)

    def _authorise(self, actor: Actor, op: str, args: dict[str, Any]) -> None:
        if not isinstance(op, str) or op not in ALL_OPS:
            raise DomainError("bad_request", f"未知操作 {op!r}")
        if actor.role == "window" and actor.window is None:
            if op not in SUPERVISOR_OPS:
                raise DomainError("forbidden", f"该终端未绑定窗口（值班长终端），不能执行 {op}")
            return
        if op in RECEPTION_OPS and actor.role == "window":
            self._authorise_reception(actor)
            return
        if op not in ROLE_OPS.get(actor.role, set()):
            raise DomainError("forbidden", f"{actor.role} 无权执行 {op}")
        if actor.role in ("window", "device", "tablet"):
            if actor.window is None:
                raise DomainError("forbidden", "该终端未绑定窗口")
            if op != "transfer" and "window" in args and args["window"] != actor.window:
                raise DomainError("forbidden", f"{actor.window}号窗口不能代替{args['window']}号窗口操作")

    def _authorise_reception(self, actor: Actor) -> None:
        """The logged-in clerk's position authorises reception work, not the window number."""
        win = self.engine.state.windows.get(actor.window) if actor.window is not None else None
        if win is None:
            raise DomainError("forbidden", "该终端未绑定窗口")
        staff = self.config.staff_member(win.staff_id) if win.staff_id else None
        if staff is None:
            raise DomainError("not_logged_in", f"{actor.window}号窗口未登录")
        if staff.position != RECEPTION_POSITION:
            raise DomainError("forbidden", f"{staff.name}（{staff.position}）不能代为取号，仅限{RECEPTION_POSITION}")

    def _window_of(self, actor: Actor, args: dict[str, Any], op: str = "") -> int:
        """The acting window: bound to the client, else `window` (`at_window` for transfer)."""
        if actor.window is not None:
            return actor.window
        window = args.get("at_window" if op == "transfer" else "window")
        if isinstance(window, bool) or not isinstance(window, int):
            raise DomainError("bad_request", "缺少窗口号 window")
        return window

    # op -> handler(service, actor, args): the ops that do not act as one window
    _HALL_OPS: ClassVar[dict[str, Callable[[HallService, Actor, dict[str, Any]], Outcome]]] = {
        "issue_ticket": lambda s, actor, a: s._issue_ticket(actor, a),
        "reprint": lambda s, _actor, a: s.engine.reprint(a.get("ticket") or a.get("number")),
        "add_appointment": lambda s, _actor, a: s._add_appointment(a),
        "reset_day": lambda s, _actor, _a: s.engine.reset_day(),
        "reload_config": lambda s, _actor, _a: s._reload_config(),
        "staff_save": lambda s, _actor, a: s._save_staff(a),
        "rate": lambda s, actor, a: s.engine.rate(s._window_of(actor, a), a.get("ticket"), a.get("score"),
                                                  a.get("dimensions")),
        "resolve_bad_rating": lambda s, actor, a: s.engine.resolve_bad_rating(a.get("ticket"), a.get("note"),
                                                                              by=actor.client_id),
        "leave": lambda s, _actor, a: s.engine.leave(a.get("token")),
        "rate_by_token": lambda s, _actor, a: s.engine.rate_by_token(a.get("token"), a.get("score"),
                                                                     a.get("dimensions")),
    }
    # op -> handler(service, actor, acting window, args)
    _WINDOW_OPS: ClassVar[dict[str, Callable[[HallService, Actor, int, dict[str, Any]], Outcome]]] = {
        "login": lambda s, actor, w, a: s.engine.login(w, a.get("staff_id"), a.get("pin"),
                                                       pin_required=actor.role != "device"),
        "logout": lambda s, _actor, w, _a: s.engine.logout(w),
        "recall": lambda s, _actor, w, _a: s.engine.recall(w),
        "start": lambda s, _actor, w, _a: s.engine.start(w),
        "skip": lambda s, _actor, w, _a: s.engine.skip(w),
        "resume": lambda s, _actor, w, _a: s.engine.resume(w),
        "request_rating": lambda s, _actor, w, _a: s.engine.request_rating(w),
        "call_next": lambda s, _actor, w, a: s.engine.call_next(
            w, finish_current=bool(a.get("finish_current", False))),
        "call_number": lambda s, _actor, w, a: s.engine.call_number(w, a.get("number")),
        "finish": lambda s, _actor, w, a: s.engine.finish(w, a.get("outcome"), a.get("note")),
        "transfer": lambda s, _actor, w, a: s.engine.transfer(w, service=a.get("service"),
                                                              to_window=a.get("window"), note=a.get("note")),
        "return_to_first": lambda s, _actor, w, a: s.engine.return_to_first(w, a.get("note")),
        "pause": lambda s, _actor, w, a: s.engine.pause(w, a.get("reason"),
                                                        finish_current=bool(a.get("finish_current", False))),
        "reinstate": lambda s, _actor, w, a: s.engine.reinstate(w, a.get("number")),
        "attach_scan": lambda s, _actor, w, a: s._attach_scan(w, a.get("ticket"), a["image"]),
    }

    def _dispatch(self, actor: Actor, op: str, args: dict[str, Any]) -> Outcome:
        """An authorised changing op to its handler: hall ops get the actor, window ops the acting window."""
        hall_op = self._HALL_OPS.get(op)
        if hall_op is not None:
            return hall_op(self, actor, args)
        window = self._window_of(actor, args, op)
        window_op = self._WINDOW_OPS.get(op)
        if window_op is None:
            raise DomainError("bad_request", f"操作 {op} 尚未支持")
        return window_op(self, actor, window, args)

    def _issue_ticket(self, actor: Actor, args: dict[str, Any]) -> Outcome:
        """A kiosk's ticket (its held card's, with use_card) or reception's on a visitor's behalf."""
        card = self._held_card(actor.client_id) if args.get("use_card") else None
        green = args.get("green", False)
        if not isinstance(green, bool):
            raise DomainError("bad_request", "green 必须是布尔值")
        priority = args.get("priority", "normal")
        if priority not in ("normal", "green", "elderly"):
            raise DomainError("bad_request", "priority 须为 normal、green 或 elderly")
        reception = actor.role == "window"
        if priority == "elderly" and not reception:
            raise DomainError("forbidden", "老年人优先请刷身份证取号")
        green = green or priority == "green"
        green_reason = _opt_str(args, "green_reason")
        if reception and green and not (green_reason or "").strip():
            raise DomainError("bad_request", "绿色通道请填写事由（如农民工欠薪）")
        issued = self.engine.issue_ticket(args.get("service"), card=card,
                                          appointment_code=args.get("appointment_code"), green=green,
                                          green_reason=green_reason, kiosk=actor.client_id,
                                          elderly=priority == "elderly")
        if card is not None:
            self._drop_card(actor.client_id, "used")    # one ticket per card read
        return issued

    def _add_appointment(self, args: dict[str, Any]) -> Outcome:
        start = args.get("start_at")
        try:
            start_at = datetime.fromisoformat(start) if isinstance(start, str) else None
        except ValueError:
            start_at = None
        if start_at is None or start_at.tzinfo is None:
            raise DomainError("bad_request", "start_at 须为带时区的 ISO 时间")
        return self.engine.add_appointment(code=str(args.get("code") or ""), service=args.get("service"),
                                           start_at=start_at, source=args.get("source", "in_person"),
                                           name=_opt_str(args, "name") or "", id_number=_opt_str(args, "id_number"))

    def _attach_scan(self, window: int, ref: Any, image: ScanImage) -> Outcome:
        """The engine links the scan, then its bytes are stored before the link is committed, so a record
        never names a scan the forwarder cannot upload."""
        outcome = self.engine.attach_scan(window, ref, image.ref)
        if outcome.changed:
            try:
                save_scan(self.store.engine, image, outcome.result["ticket"]["id"], self.clock.now())
            except Exception as exc:
                log.exception("cannot store a scan; rebuilding engine state from the store")
                self.engine = self._build_engine()
                raise DomainError("internal", "扫描件保存失败，请重试") from exc
        return outcome

    def _read_only(self, op: str, args: dict[str, Any], actor: Actor) -> dict[str, Any]:
        if op == "status":
            return self.engine.snapshot()
        if op == "day_summary":
            window = actor.window if actor.window is not None else args.get("window")
            if window is not None and (isinstance(window, bool) or window not in self.engine.state.windows):
                raise DomainError("not_found", f"没有该窗口：{window}")
            return self.engine.today_view(window)
        if op == "ticket_status":   # a phone page: one ticket by its visit token
            return self.engine.visit_status(args.get("token"))
        if op == "hall_page":
            return self.engine.hall_page()
        if op == "staff_list":
            logged_in = {w.staff_id: n for n, w in self.engine.state.windows.items() if w.staff_id}
            return {"staff": listing(self.base_config.staff, self._roster_rows, logged_in)}
        if op == "service_guide":   # the kiosk's 办事指南: what each service needs, without printing
            return {"services": [{"code": s.code, "name": s.name, "prefix": s.prefix, "category": s.category,
                                  "materials": list(s.materials)} for s in self.config.services]}
        return {"notice": self.engine.notice(args.get("service"))}

    def _reload_config(self) -> Outcome:
        if self._config_loader is None:
            raise DomainError("conflict", "未配置配置文件路径，无法重新加载")
        new = self._config_loader()
        self.base_config = new
        self.config = with_roster(new, self._roster_rows)
        self._build_record = record_builder_for(new)
        self.engine = QueueEngine(self.config, self.clock, self.engine.state, secret=self.secret)
        return Outcome(result={"reloaded": True, "services": len(new.services), "windows": len(new.windows)})

    def _save_staff(self, args: dict[str, Any]) -> Outcome:
        """`staff_save` {entries, new?, dry_run?} (hallctl staff add/disable/enable/set-pin/import): checked
        whole, then the roster in force is swapped at once and the rows commit with the change's events;
        a clerk who may no longer work where logged in is logged out. PINs arrive hashed and never leave."""
        new, dry_run = args.get("new", False), args.get("dry_run", False)
        if not isinstance(new, bool) or not isinstance(dry_run, bool):
            raise DomainError("bad_request", "new 与 dry_run 须为布尔值")
        try:
            change = plan(self.base_config.staff, self._roster_rows, args.get("entries"),
                          [w.number for w in self.base_config.windows], now=iso(self.clock.now()) or "", new=new)
        except RosterInvalid as exc:
            raise DomainError("bad_request", str(exc)) from None
        result = {"changes": change.changes, "unchanged": change.unchanged, "logged_out": [], "applied": False}
        if dry_run or not change.changes:
            return Outcome(result=result)
        outcome = self.engine.change_roster(replace(self.config, staff=change.staff), change.changes)
        self._roster_rows, self.config = change.rows, self.engine.config
        outcome.staff_rows = change.written
        outcome.result = {**result, "logged_out": outcome.result["logged_out"], "applied": True}
        log.info("staff roster: %s", ", ".join(f"{c['id']} {c['action']} ({', '.join(c['fields'])})"
                                               for c in change.changes))
        return outcome

    # ------------------------------------------------------------------ cards
    # A card read at a kiosk's reader is held for that kiosk's next `issue_ticket {use_card}` and leaves
    # with its holder: it is dropped when a ticket is issued with it ("used"), when the kiosk sends
    # `drop_card` (取消 / 不是本人, or the kiosk went back to its start screen: "cancelled"), when another
    # card is read at that reader or a new read fails there ("replaced" / "read_failed"), and when it
    # was taken off the reader and the kiosk sent no command for `rules.card_idle_seconds` since
    # ("idle"). Any command of that kiosk counts as a touch; the kiosk sends `card_touch` when the
    # visitor touches its screen. CARD_TTL_SECONDS after the read it goes in any case. The kiosk hears
    # of each step on its card topic: {"event": "read" | "removed" | "read_failed" | "dropped", …}.

    def card_inserted(self, kiosk_id: str, card: CardData) -> dict[str, Any]:
        """A card read at a kiosk: keep it for `issue_ticket {use_card}`; tell the kiosk a masked view.

        A card that cannot be used (wrong check digit, impossible birth date, expired by the clock's
        date) is not kept; the kiosk gets `usable: false` and the Chinese `reason`. Never the number.
        Either way the card held before at that kiosk is dropped ("replaced").
        """
        with self._lock:
            now = self.clock.now()
            self._drop_card(kiosk_id, "replaced")
            try:
                holder = self.engine.holder_from_card(card, now.astimezone(self.config.tz).date())
            except DomainError as exc:
                view = {"event": "read", "active": False, "usable": False, "reason": exc.message,
                        "name_masked": mask_name(card.name), "read_at": iso(now)}
            else:
                self._cards[kiosk_id] = _HeldCard(card, now)
                age = holder.age_on(now.astimezone(self.config.tz).date())
                appts = [a.to_record() | {"id_hash": None} for a in self.engine.state.appointments.values()
                         if a.id_hash == holder.id_hash and a.status == "booked"]
                elderly = age >= self.config.rules.elderly_age
                view = {"event": "read", "active": True, "usable": True, "reason": None,
                        "name_masked": holder.name_masked, "id_masked": holder.id_masked, "age": age,
                        "elderly": elderly, "flags": ["elderly"] * elderly + ["appointment"] * bool(appts),
                        "appointments": appts, "read_at": iso(now),
                        "idle_seconds": self.config.rules.card_idle_seconds, "ttl_seconds": CARD_TTL_SECONDS}
            self._card_outbox.append((kiosk_id, view))
        self._flush_cards()
        return view

    def card_removed(self, kiosk_id: str) -> bool:
        """The reader saw the card taken away: its idle time starts. True when a held card was removed."""
        with self._lock:
            held = self._cards.get(kiosk_id)
            if held is None or held.removed_at is not None:
                return False
            held.removed_at = now = self.clock.now()
            self._card_outbox.append((kiosk_id, {"event": "removed", "active": True, "removed_at": iso(now),
                                                 "idle_seconds": self.config.rules.card_idle_seconds}))
        log.info("card at %s taken off the reader: held %d s more without a touch", kiosk_id,
                 self.config.rules.card_idle_seconds)
        self._flush_cards()
        return True

    def card_read_failed(self, kiosk_id: str, why: str = "read_failed") -> None:
        """A card put on the reader could not be read whole (taken away mid-read, or unreadable):
        nothing of it is kept, the card held before is dropped, and the kiosk says what to do."""
        with self._lock:
            self._drop_card(kiosk_id, "read_failed")
            message = CARD_READ_FAILED_TEXTS.get(why, CARD_READ_FAILED_TEXTS["read_failed"])
            self._card_outbox.append((kiosk_id, {"event": "read_failed", "active": False, "usable": False,
                                                 "failure": why, "message": message,
                                                 "read_at": iso(self.clock.now())}))
        self._flush_cards()

    def expire_cards(self) -> None:
        """Drop the cards whose time is up by the clock (called by `tick`)."""
        with self._lock:
            now = self.clock.now()
            for kiosk_id, held in list(self._cards.items()):
                if held.expired(now, self.config.rules.card_idle_seconds):
                    self._drop_card(kiosk_id, "idle")
        self._flush_cards()

    def card_state(self, kiosk_id: str) -> str | None:
        """`present`, `removed` or None (no card held) at a kiosk, for status and tests."""
        with self._lock:
            held = self._cards.get(kiosk_id)
            return None if held is None else ("present" if held.removed_at is None else "removed")

    def _card_op(self, actor: Actor, op: str) -> dict[str, Any]:
        """`drop_card` (取消 / 不是本人) and `card_touch` (the touch itself was taken by _card_activity)."""
        if op == "drop_card":
            return {"dropped": self._drop_card(actor.client_id, "cancelled")}
        return {"active": actor.client_id in self._cards}

    def _card_activity(self, actor: Actor) -> None:
        """A command from a kiosk that holds a card: drop it if its time is up, else count a touch.
        Checked before the command runs, so a late `use_card` cannot revive an idle card."""
        held = self._cards.get(actor.client_id)
        if held is None:
            return
        now = self.clock.now()
        if held.expired(now, self.config.rules.card_idle_seconds):
            self._drop_card(actor.client_id, "idle")
        else:
            held.touched_at = now

    def _held_card(self, kiosk_id: str) -> CardData:
        """The card for `issue_ticket {use_card}` (dropped only once the ticket is issued). With none
        the kiosk is also told on its card topic, in case it missed the drop (it was offline)."""
        held = self._cards.get(kiosk_id)
        if held is None:
            self._card_outbox.append((kiosk_id, {"event": "dropped", "active": False, "dropped": "missing",
                                                 "message": NO_CARD_TEXT}))
            raise DomainError("conflict", NO_CARD_TEXT)
        return held.card

    def _drop_card(self, kiosk_id: str, why: str) -> bool:
        """Forget the card held at a kiosk (lock held) and queue the kiosk's notice; False if none."""
        if self._cards.pop(kiosk_id, None) is None:
            return False
        log.info("card at %s dropped (%s)", kiosk_id, why)
        self._card_outbox.append((kiosk_id, {"event": "dropped", "active": False, "dropped": why,
                                             "message": CARD_DROP_TEXTS.get(why, "身份证信息已清除")}))
        return True

    def _flush_cards(self) -> None:
        """Publish queued card views in the order they were made; never call it with the lock held."""
        with self._card_publish_lock:
            with self._lock:
                batch, self._card_outbox = self._card_outbox, []
            for kiosk_id, view in batch:
                for callback in self._card_subscribers:
                    try:
                        callback(kiosk_id, view)
                    except Exception:
                        log.exception("card subscriber %r failed", callback)

    # ------------------------------------------------------------------ clock / devices
    def tick(self) -> None:
        self._run(lambda: self.engine.tick())
        self.expire_cards()
        self._device_alerts()

    def _device_alerts(self) -> None:
        """A device offline for 5 minutes raises one city alert (committed before the next tick)."""
        if self._city_alerts is None:
            return
        with self._lock:
            now = self.clock.now()
            alerts = self._city_alerts.from_devices(self.engine.state.devices, now)
            if not alerts:
                return
            writeset = WriteSet()
            for alert in alerts:
                writeset.add_city_alert(alert, now)
            pending = _Pending(writeset, [], {})
            self._queue.append(pending)
        try:
            self._await_durable(pending)
        except DomainError:
            self._city_alerts.forget(alerts)     # raised again at the next tick
            raise

    def supervisor_alert(self, kind: str, detail: dict[str, Any]) -> None:
        """Log and publish an alert raised outside the queue (the upstream forwarder's dead letters)."""
        self._run(lambda: self.engine.supervisor_alert(kind, detail))

    def announcement_event(self, type_: str, detail: dict[str, Any]) -> None:
        """Record and publish an announcer event (never call it from an event subscriber: it commits)."""
        self._run(lambda: self.engine.announcement(type_, detail))

    def cancel_appointment(self, code: str) -> bool:
        """Apply a cancellation from the upstream's booking list; True when it changed a booking."""
        return "appointment" in self._run(lambda: self.engine.cancel_appointment(code)).result

    def device_status(self, device_id: str, online: bool, profile: str, error: str | None = None) -> None:
        self._run(lambda: self.engine.device_status(device_id, online, profile, error))


def _opt_str(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DomainError("bad_request", f"{key} 必须是字符串")
    return value
