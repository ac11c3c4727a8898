"""The ticket kiosk's state, without Qt: what the screens show is a function of this.

Fed by the bus (retained queues and daemon status, card reads at this kiosk, replies to
`issue_ticket`). The kiosk never shows a number the daemon did not issue: a ticket result exists only
from an `issue_ticket` reply, and issuing is refused while the hall is unreachable or closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from hall_controller.faults import VISITOR_PRINT_FAILED, readable

from .common_state import PRIORITY_LABELS, ServiceInfo, estimate_text, services_from_queues

# What each service is, for 办事指南, by service category (a hall may add its own categories: they get
# no description line, only the materials).
SERVICE_DESCRIPTIONS = {
    "consult": "免费解答婚姻家庭、劳动用工、借贷、房产、侵权等日常法律问题。",
    "legal_aid": "经济困难或符合条件的群众，可申请免费的律师代理、刑事辩护等法律援助。",
    "mediation": "人民调解员免费调解邻里、家庭、物业、消费等民间纠纷，调解协议依法有效。",
    "notary": "办理继承、委托、声明、合同、学历等公证事项，证明其真实合法。",
    "appraisal": "对法医、物证、声像资料等专门性问题进行鉴定，出具鉴定意见。",
    "general": "综合接待、投诉建议及其他法律服务事项，工作人员会为您引导。",
}

CARD_TTL_S = 120        # the daemon keeps a card read at most this long for `issue_ticket {use_card}`
CARD_TOUCH_EVERY_S = 3  # touches on a kiosk holding a card reach the daemon (`card_touch`) this often at most
CARD_READ_FAILED_TITLE = "未能读取身份证"
IDLE_RETURN_S = 60      # back to the start screen after this long without a touch
RESULT_RETURN_S = 30    # the result screen stays this long


@dataclass(frozen=True)
class CardInfo:
    """A card read at this kiosk, as the daemon tells it (masked)."""

    name_masked: str | None
    age: int | None
    elderly: bool
    appointments: tuple[dict[str, Any], ...]
    problem: str | None          # Chinese reason the card cannot be used, None when usable
    read_at: float               # monotonic time the kiosk got it
    present: bool = True         # still on the reader (the daemon says `removed` when it is taken away)
    idle_seconds: int | None = None   # the daemon forgets a removed card after this long without a touch

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def prompt(self) -> str:
        """What the greeting asks the visitor to do next."""
        if not self.present:
            within = f"请在{self.idle_seconds}秒内" if self.idle_seconds else "请"
            return f"身份证已取走，{within}点击下方业务取号；不是本人请点“取消 / 不是本人”"
        return "请点击下方要办理的业务取号" + ("，您将优先办理" if self.badge else "")

    @property
    def greeting(self) -> str:
        return f"{self.name_masked}，您好" if self.name_masked else "您好"

    @property
    def badge(self) -> str | None:
        return PRIORITY_LABELS["elderly"] if self.elderly else None


@dataclass(frozen=True)
class TicketResult:
    """An issued (or reprinted) ticket as the result screen shows it."""

    number: str
    service_name: str
    ahead: int | None
    estimate: str | None
    printed: bool | None         # None: the daemon did not say (no printer state known)
    print_problem: str | None
    priority_label: str | None
    reprinted: bool
    name_masked: str | None
    unstaffed: bool = False      # no window of its service had a clerk when it was issued
    visit_url: str | None = None  # the ticket's phone page (shown as the same QR code as on the ticket)

    @property
    def remember_number(self) -> bool:
        """No ticket came out: the visitor must remember the number (shown larger still)."""
        return self.printed is False

    @property
    def ahead_text(self) -> str:
        if self.ahead is None:
            return ""
        return "前面没有人在等候，请留意叫号" if self.ahead == 0 else f"前面还有{self.ahead}人"


UNSTAFFED_TEXT = "暂无窗口办理"          # on a service button: no window serving it has a clerk now
UNSTAFFED_RESULT = "该业务暂无工作人员在岗，到岗后按顺序叫号，请留意叫号或咨询工作人员"


@dataclass(frozen=True)
class GuideEntry:
    """办事指南 of one service."""

    code: str
    name: str
    description: str
    materials: tuple[str, ...]


@dataclass(frozen=True)
class KioskState:
    services: tuple[ServiceInfo, ...] = ()
    broker_online: bool = False
    daemon_online: bool = False
    closed_message: str | None = None       # 当前不在服务时间 … (from the schedule or a `closed` reply)
    card: CardInfo | None = None
    result: TicketResult | None = None
    busy: bool = False                      # a request is on its way: buttons wait for it
    message: str | None = None              # an error to show the visitor
    guide: tuple[GuideEntry, ...] = field(default_factory=tuple)
    card_notice: str | None = None          # a card put on the reader could not be read: what to do

    @property
    def online(self) -> bool:
        return self.broker_online and self.daemon_online

    @property
    def can_issue(self) -> bool:
        return self.online and self.closed_message is None and not self.busy

    @property
    def screen(self) -> str:
        """offline | closed | result | home: the screen the kiosk shows (guide is the visitor's choice)."""
        if not self.online:
            return "offline"
        if self.result is not None:
            return "result"
        if self.closed_message is not None:
            return "closed"
        return "home"


# --------------------------------------------------------------------------------------------- reducers


def with_connection(state: KioskState, broker: bool, daemon: bool) -> KioskState:
    busy = state.busy and broker and daemon
    return replace(state, broker_online=broker, daemon_online=daemon, busy=busy)


def with_queues(state: KioskState, value: Any) -> KioskState:
    services = services_from_queues(value)
    return replace(state, services=tuple(services)) if services or value is None else state


def with_card(state: KioskState, card: Any, now: float) -> KioskState:
    """A message on this kiosk's card topic: a card read (greet, or say why it cannot be used; it
    replaces an old result), taken off the reader, not read whole, or dropped by the daemon."""
    if not isinstance(card, dict):
        return state
    event = card.get("event")
    if event == "dropped" or (event is None and card.get("active") is False and "dropped" in card):
        return with_card_dropped(state)
    if event == "removed":
        return with_card_removed(state)
    if event == "read_failed":
        message = card.get("message")
        return with_card_read_failed(state, message if isinstance(message, str) and message else None)
    problem = _card_problem(card)
    age = card.get("age")
    appts = card.get("appointments")
    info = CardInfo(
        name_masked=card.get("name_masked") if isinstance(card.get("name_masked"), str) else None,
        age=age if isinstance(age, int) and not isinstance(age, bool) else None,
        elderly=card.get("elderly") is True,
        appointments=tuple(a for a in appts if isinstance(a, dict)) if isinstance(appts, list) else (),
        problem=problem, read_at=now,
        idle_seconds=_positive_int(card.get("idle_seconds")))
    return replace(state, card=info, card_notice=None, result=None, message=None)


def with_card_removed(state: KioskState) -> KioskState:
    """The card was taken off the reader: keep greeting, and say how long it is kept without a touch."""
    if state.card is None or not state.card.usable or not state.card.present:
        return state
    return replace(state, card=replace(state.card, present=False))


def with_card_dropped(state: KioskState) -> KioskState:
    """The daemon forgot the card (used, cancelled, replaced, idle): back to the start screen's card
    zone. A ticket result on screen stays (its card was just used)."""
    if state.card is None and state.card_notice is None:
        return state
    return replace(state, card=None, card_notice=None)


def with_card_read_failed(state: KioskState, message: str | None) -> KioskState:
    """A card put on the reader was not read whole (taken away mid-read): no half card, say what to do."""
    text = (message or "").removeprefix(CARD_READ_FAILED_TITLE).lstrip("：:，, ") \
        or "请将身份证重新平放在读卡区，屏幕显示您的姓名后再拿开"
    return replace(state, card=None, card_notice=text, result=None, message=None)


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _card_problem(card: dict[str, Any]) -> str | None:
    for key in ("problem", "reason", "error"):
        value = card.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("reason")
        if isinstance(value, str) and value.strip():
            return value.strip()
    if card.get("usable") is False or card.get("ok") is False:
        return "该身份证无法使用，请联系工作人员"
    return None


def card_valid(state: KioskState, now: float) -> CardInfo | None:
    """The card still usable for a ticket (the daemon forgets it after CARD_TTL_S at the latest, and
    says so on the card topic when it drops it earlier)."""
    card = state.card
    if card is None or not card.usable or now - card.read_at > CARD_TTL_S:
        return None
    return card


def with_request(state: KioskState) -> KioskState:
    return replace(state, busy=True, message=None)


def with_issued(state: KioskState, reply: dict[str, Any]) -> KioskState:
    """The daemon's `issue_ticket` reply: the result screen. The card is used up."""
    ticket = reply.get("ticket") if isinstance(reply.get("ticket"), dict) else {}
    number = ticket.get("number")
    if not isinstance(number, str) or not number:
        return replace(state, busy=False, message="取号失败，请重试或联系工作人员")
    service = next((s for s in state.services if s.code == ticket.get("service")), None)
    ahead = reply.get("ahead")
    printed, problem = _printed(reply)
    holder = ticket.get("holder") if isinstance(ticket.get("holder"), dict) else {}
    result = TicketResult(
        number=number, service_name=service.name if service else str(ticket.get("service") or ""),
        ahead=ahead if isinstance(ahead, int) and not isinstance(ahead, bool) and ahead >= 0 else None,
        estimate=estimate_text(reply.get("estimate") or ticket.get("estimate")),
        printed=printed, print_problem=problem,
        priority_label=PRIORITY_LABELS.get(str(ticket.get("priority"))),
        reprinted=reply.get("reprinted") is True,
        name_masked=holder.get("name_masked") if isinstance(holder.get("name_masked"), str) else None,
        unstaffed=service is not None and service.unstaffed, visit_url=_visit_url(reply))
    return replace(state, busy=False, result=result, card=None, card_notice=None, message=None)


def _visit_url(reply: dict[str, Any]) -> str | None:
    """The reply's `visit_url` when it is an http(s) address (None: the hall has no phone page)."""
    url = reply.get("visit_url")
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) < 512 else None


def _printed(reply: dict[str, Any]) -> tuple[bool | None, str | None]:
    """`printed: bool` (+ `print_error`), or `print: {ok, error}`; None when the reply says nothing."""
    printed = reply.get("printed")
    problem = reply.get("print_error")
    if isinstance(reply.get("print"), dict):
        printed = reply["print"].get("ok", printed)
        problem = reply["print"].get("error", problem)
    if isinstance(problem, dict):
        problem = problem.get("message")
    # the daemon sends a fixed sentence; anything else (raw driver text from an older daemon) is not shown
    return (printed if isinstance(printed, bool) else None), (readable(problem, VISITOR_PRINT_FAILED)
                                                              if printed is False else None)


ERROR_TEXTS = {
    "offline": "网络连接中断，暂停取号，请稍后再试或联系工作人员",
    "timeout": "系统繁忙，暂未取到号，请稍后再试",
    "forbidden": "本机无权取号，请联系工作人员",
}


def with_failure(state: KioskState, code: str, message: str) -> KioskState:
    """A failed request; `closed` also switches to the closed screen. Never a made-up number."""
    if code == "closed":
        return replace(state, busy=False, closed_message=readable(message, "当前不在服务时间，请在办公时间内取号"))
    text = ERROR_TEXTS.get(code) or readable(message, "取号失败，请重试或联系工作人员")
    return replace(state, busy=False, message=text)


def with_schedule(state: KioskState, open_now: bool | None, message: str = "当前不在服务时间，请在办公时间内取号") -> KioskState:
    """The hall's opening hours (known with --config); None leaves it to the daemon's replies."""
    if open_now is None:
        return state
    return replace(state, closed_message=None if open_now else message)


def with_guide(state: KioskState, guide: tuple[GuideEntry, ...]) -> KioskState:
    return replace(state, guide=guide)


def home(state: KioskState) -> KioskState:
    """Back to the start screen (idle timeout or 返回): forget the result, the card and messages."""
    return replace(state, result=None, card=None, card_notice=None, message=None)


def guide_from_config(config: Any) -> tuple[GuideEntry, ...]:
    """办事指南 from the hall config (HallConfig.services)."""
    return tuple(GuideEntry(s.code, s.name, SERVICE_DESCRIPTIONS.get(s.category, ""), tuple(s.materials))
                 for s in config.services)


def guide_from_reply(result: dict[str, Any]) -> tuple[GuideEntry, ...]:
    """办事指南 from the daemon's `service_guide` reply: {"services": [{code, name, category, materials}]}."""
    entries = []
    for item in result.get("services") or []:
        if not isinstance(item, dict) or not isinstance(item.get("code"), str):
            continue
        materials = tuple(m for m in item.get("materials") or [] if isinstance(m, str))
        description = item.get("description") or SERVICE_DESCRIPTIONS.get(str(item.get("category")), "")
        entries.append(GuideEntry(item["code"], str(item.get("name") or item["code"]), str(description), materials))
    return tuple(entries)
