"""The rating tablet's screens as a pure state machine (no Qt, no I/O).

idle (clerk card + current number) → rating (five levels) → dimensions (optional, four items)
→ thank-you → idle. The tablet rates only the ticket the daemon named in `rating_requested` for its
own window; time is a monotonic number of seconds passed in by the caller, so the timeouts are
tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

IDLE, RATING, DIMENSIONS, THANKS = "idle", "rating", "dimensions", "thanks"
SCORES = ((5, "非常满意"), (4, "满意"), (3, "基本满意"), (2, "不满意"), (1, "非常不满意"))
DIMENSIONS_NAMES = ("服务态度", "业务技能", "服务质量", "廉洁从政")

RATING_TIMEOUT = 180.0      # the daemon stops accepting a rating after rules.rating_minutes (3 by default)
DIMENSIONS_TIMEOUT = 60.0   # a visitor who walked away: the overall score alone is sent
THANKS_TIMEOUT = 5.0
RATED_ON_PHONE = "已在手机上评价，谢谢！"   # the visitor rated on the phone page first (issue 19)


@dataclass(frozen=True)
class Rate:
    """The effect of submitting: the `rate` command to send."""

    ticket: str
    score: int
    dimensions: dict[str, int]

    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"ticket": self.ticket, "score": self.score}
        if self.dimensions:
            args["dimensions"] = dict(self.dimensions)
        return args


@dataclass(frozen=True)
class TabletState:
    window: int
    screen: str = IDLE
    view: dict[str, Any] | None = None          # retained state/window/N: clerk, status, current ticket
    request: dict[str, Any] | None = None       # the ticket of the rating_requested event
    score: int | None = None
    dimensions: dict[str, int] = field(default_factory=dict)
    since: float = 0.0                          # when the current screen was entered
    sending: bool = False
    error: str | None = None
    asked: str | None = None                    # the last ticket this tablet asked a rating for
    note: str | None = None                     # on the thank-you screen: why it came (rated on the phone)

    @property
    def staff(self) -> dict[str, Any] | None:
        staff = self.view.get("staff") if isinstance(self.view, dict) else None
        return staff if isinstance(staff, dict) else None

    @property
    def service_text(self) -> str:
        status = self.view.get("status") if isinstance(self.view, dict) else None
        if status == "paused":
            return "暂停服务"
        if status in ("idle", "calling", "serving"):
            return "服务中"
        return "未开放"

    @property
    def current_number(self) -> str | None:
        t = self.view.get("ticket") if isinstance(self.view, dict) else None
        return str(t.get("number")) if isinstance(t, dict) and t.get("number") else None

    @property
    def timeout(self) -> float | None:
        return {RATING: RATING_TIMEOUT, DIMENSIONS: DIMENSIONS_TIMEOUT, THANKS: THANKS_TIMEOUT}.get(self.screen)


def _to(state: TabletState, screen: str, now: float, **changes: Any) -> TabletState:
    changes.setdefault("note", None)
    return replace(state, screen=screen, since=now, error=None, sending=False, **changes)


def _idle(state: TabletState, now: float) -> TabletState:
    return _to(state, IDLE, now, request=None, score=None, dimensions={})


def on_window(state: TabletState, view: dict[str, Any] | None, now: float | None = None) -> TabletState:
    """The window's retained state. Its `rating_pending` (a finished visit the daemon still takes a
    rating for) opens the rating screen once: a tablet restarted mid-rating asks the visitor again."""
    if view is not None and (not isinstance(view, dict) or view.get("number") != state.window):
        return state
    state = replace(state, view=view)
    pending = view.get("rating_pending") if isinstance(view, dict) else None
    ticket = pending.get("ticket") if isinstance(pending, dict) else None
    if (state.screen == IDLE and isinstance(ticket, dict) and ticket.get("id") and not ticket.get("rating")
            and ticket.get("id") != state.asked):
        return _to(state, RATING, state.since if now is None else now, request=ticket, score=None, dimensions={},
                   asked=ticket.get("id"))
    return state


def on_event(state: TabletState, event: dict[str, Any], now: float) -> TabletState:
    """`rating_requested` for this window opens the rating screen; `rating_received` for the ticket
    being rated (a double tap, a keypad, the visitor's phone: `by` phone) ends it; `day_reset` returns
    to idle."""
    kind = event.get("type")
    ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else None
    if kind == "day_reset":
        return _idle(state, now)
    if event.get("window") != state.window or ticket is None or not ticket.get("id"):
        return state
    if kind == "rating_requested":
        if ticket.get("rating"):
            return state
        return _to(state, RATING, now, request=ticket, score=None, dimensions={}, asked=ticket.get("id"))
    if kind == "rating_received" and state.request and ticket.get("id") == state.request.get("id"):
        if state.screen in (RATING, DIMENSIONS):
            return _to(state, THANKS, now, note=RATED_ON_PHONE if event.get("by") == "phone" else None)
    return state


def choose_score(state: TabletState, score: int, now: float) -> TabletState:
    """A tap on one of the five levels: on to the optional dimensions page."""
    if state.screen != RATING or state.request is None or score not in dict(SCORES) or state.sending:
        return state
    return _to(state, DIMENSIONS, now, score=score, dimensions={})


def choose_dimension(state: TabletState, name: str, value: int, now: float) -> TabletState:
    if state.screen != DIMENSIONS or name not in DIMENSIONS_NAMES or value not in dict(SCORES) or state.sending:
        return state
    return replace(state, dimensions={**state.dimensions, name: value}, since=now)


def submit(state: TabletState, now: float, *, with_dimensions: bool = True) -> tuple[TabletState, Rate | None]:
    """提交 (or 跳过 with `with_dimensions=False`): the `rate` to send; the screen waits for its reply."""
    if state.screen != DIMENSIONS or state.request is None or state.score is None or state.sending:
        return state, None
    dims = dict(state.dimensions) if with_dimensions else {}
    return replace(state, sending=True, error=None, since=now), Rate(str(state.request["id"]), state.score, dims)


def back(state: TabletState, now: float) -> TabletState:
    """From the dimensions page back to the five levels (change the overall score)."""
    if state.screen != DIMENSIONS or state.sending:
        return state
    return _to(state, RATING, now, score=None, dimensions={})


def on_rate_reply(state: TabletState, now: float, *, ok: bool, code: str | None = None,
                  message: str | None = None) -> TabletState:
    """The daemon's answer to `rate`: thank-you; already rated or too late also ends the rating, any
    other failure keeps the visitor's choice on screen to try again."""
    if not state.sending:
        return state
    if ok or code in ("conflict", "not_found", "forbidden"):
        return _to(state, THANKS, now, note=RATED_ON_PHONE if not ok and "手机" in (message or "") else None)
    return replace(state, sending=False, error=message or "评价提交失败，请稍后再试", since=now)


def tick(state: TabletState, now: float) -> tuple[TabletState, Rate | None]:
    """Timeouts: thank-you → idle, rating → idle, dimensions → the overall score alone is sent."""
    limit = state.timeout
    if limit is None or state.sending or now - state.since < limit:
        return state, None
    if state.screen == DIMENSIONS:
        return submit(state, now, with_dimensions=True)
    return _idle(state, now), None
