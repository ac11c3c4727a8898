"""What the pages say: the daemon's answers turned into Chinese words, once, for both the HTML and the
pushes (the page's script only puts these texts in place, so the words live here alone).

Pure functions of plain data; the daemon's replies are read defensively (a field it does not send
yet is left out, never guessed). No personal data goes in: numbers, services and windows only.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The national 好差评 levels and the tablet's four dimensions (kiosk_ui/tablet_state.py, engine.rate).
SCORES = ((5, "非常满意"), (4, "满意"), (3, "基本满意"), (2, "不满意"), (1, "非常不满意"))
LEVELS = dict(SCORES)
DIMENSIONS = ("服务态度", "业务技能", "服务质量", "廉洁从政")

DONE = frozenset({"finished", "served"})
CLOSED = frozenset({"finished", "served", "no_show", "left", "cancelled"})

EXPIRED_TITLE = "号码已失效或不存在"
EXPIRED_TEXT = "号码在办结30分钟后或次日失效。如需办理，请到取号机重新取号。"
OFFLINE_TEXT = "连接中断，正在重连…"
TOO_MANY_TITLE = "查询过于频繁"
TOO_MANY_TEXT = "请稍等一分钟后再扫码或刷新页面。"
UNAVAILABLE_TITLE = "暂时无法连接大厅系统"
UNAVAILABLE_TEXT = "正在重新连接，页面将自动刷新；也可以留意大厅显示屏的叫号。"


@lru_cache(maxsize=8)
def zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def clock_text(when: datetime, tz: ZoneInfo | None) -> str:
    """HH:MM:SS in the hall's time zone (the daemon's retained status says which)."""
    return (when.astimezone(tz) if tz else when).strftime("%H:%M:%S")


def updated_text(when: datetime | None, tz: ZoneInfo | None) -> str:
    return f"更新于 {clock_text(when, tz)}" if when else ""


def estimate_text(value: Any) -> str:
    """The daemon's estimate as shown (约10–15分钟), '' when it has too little data to say."""
    if isinstance(value, dict):
        text = value.get("text")
        if isinstance(text, str) and text.strip():
            return text.strip()
        low, high = value.get("low_min"), value.get("high_min")
        if _count(high):
            return f"约{low}–{high}分钟" if _count(low) and low < high else f"约{high}分钟内"
    return ""


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _window(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def call_line(call: dict[str, Any]) -> str:
    window = _window(call.get("window"))
    number = _str(call.get("number"))
    return f"{number} → {window}号窗口" if window else number


def windows_text(windows: Any) -> str:
    numbers = sorted({w for w in windows if _window(w)}) if isinstance(windows, list) else []
    if not numbers:
        return "暂无窗口办理此业务，请耐心等候"
    return "、".join(f"{n}号" for n in numbers) + "窗口正在办理此业务"


def _status_words(status: str, window: int | None, ahead: Any) -> tuple[str, str]:
    """(status in words, what to do)."""
    if status == "waiting":
        if isinstance(ahead, int) and not isinstance(ahead, bool) and ahead >= 0:
            return "等候中", f"前面还有{ahead}人" if ahead else "前面没有人了，马上轮到您，请留意叫号"
        return "等候中", "请留意叫号"
    if status == "called":
        return (f"请到{window}号窗口办理" if window else "已叫号，请到窗口办理"), "已叫到您的号，请尽快前往"
    if status == "serving":
        return "办理中", f"正在{window}号窗口办理" if window else "正在窗口办理"
    if status in DONE:
        return "已办结", "感谢您的耐心等候"
    if status == "no_show":
        return "已过号", "已过号：请到综合窗口说明情况"
    if status == "left":
        return "已离开队伍", "您已离开队伍，如需办理请到取号机重新取号"
    if status == "cancelled":
        return "已作废", "本号已作废，如需办理请到取号机重新取号"
    return "状态更新中", ""


def _rating(ticket: dict[str, Any], status: str) -> tuple[bool, str]:
    """(show the rating form, the line that replaces it)."""
    rating = ticket.get("rating") if isinstance(ticket.get("rating"), dict) else {}
    if rating.get("done"):
        if rating.get("by") == "tablet":
            return False, "您已在窗口评价器上评价，感谢您的评价！"
        return False, "感谢您的评价！"
    if status not in DONE:
        return False, ""
    if rating.get("allowed"):
        return True, ""
    return False, "评价时间已过，感谢您的耐心等候"


def ticket_view(reply: dict[str, Any], *, online: bool, updated: str, recalls: int = 0) -> dict[str, Any]:
    """The ticket page's content from a `ticket_status` reply (see hub.py for the fast path's edits).

    `text` maps element ids to their text; `recent` is the last calls of its service; `called` is set
    while the visitor is called (its `key` changes with every call and recall, so the page alerts
    once per call); `show` says which blocks are visible."""
    ticket = reply.get("ticket") if isinstance(reply.get("ticket"), dict) else {}
    hall = reply.get("hall") if isinstance(reply.get("hall"), dict) else {}
    status = _str(ticket.get("status"))
    window = _window(ticket.get("window"))
    title, detail = _status_words(status, window, ticket.get("ahead"))
    estimate = estimate_text(ticket.get("estimate")) if status == "waiting" else ""
    rate_form, rated = _rating(ticket, status)
    recent = _recent(reply.get("recent_calls"))
    called = None
    if status == "called" and window:
        called = {"window": window, "text": f"请到{window}号窗口",
                  "key": f"{_str(ticket.get('number'))}|{window}|{_str(ticket.get('called_at'))}|{recalls}"}
    return {
        "expired": False, "online": online, "status": status, "called": called, "recent": recent,
        "text": {
            "hall": _str(hall.get("name")), "number": _str(ticket.get("number")),
            "service": _str(ticket.get("service_name")) or _str(ticket.get("service")),
            "status": title, "detail": detail,
            "estimate": f"预计等待{estimate}（仅供参考）" if estimate else "",
            "windows": windows_text(reply.get("windows")) if status in ("waiting", "called") else "",
            "rated": rated, "updated": updated,
        },
        "show": {"leave": status == "waiting", "rate": rate_form, "alert": status in ("waiting", "called"),
                 "recent": bool(recent) and status in ("waiting", "called")},
    }


def _recent(calls: Any) -> list[str]:
    return [call_line(c) for c in calls or [] if isinstance(c, dict)][:5]


def with_calls(v: dict[str, Any], calls: Any) -> dict[str, Any]:
    """`v` (a ticket_view) with other recent calls: a call elsewhere in its service changes nothing
    else until the daemon's next answer (the fast path of 2,000 pages, so no rebuild)."""
    recent = _recent(calls)
    return {**v, "recent": recent, "show": {**v["show"], "recent": bool(recent) and v["status"] in ("waiting", "called")}}


def expired_view() -> dict[str, Any]:
    """The same for every unknown, malformed or expired token (no oracle)."""
    return {"expired": True, "online": True, "status": "expired", "called": None, "recent": [],
            "text": {"status": EXPIRED_TITLE, "detail": EXPIRED_TEXT}, "show": {}}


def hall_view(name: str, queues: Any, calls: Any, hours: str, *, online: bool, updated: str,
              closed: str = "") -> dict[str, Any]:
    """The hall page: each service with its waiting count and estimate, the recent calls, today's hours
    (and, outside them, the daemon's words on when to come)."""
    services = []
    if isinstance(queues, dict):
        for code, entry in queues.items():
            if not isinstance(entry, dict):
                continue
            waiting = entry.get("waiting") if isinstance(entry.get("waiting"), int) else 0
            estimate = estimate_text(entry.get("estimate"))
            if entry.get("staffed") == 0:
                note = "暂无窗口办理"
            elif estimate:
                note = f"预计等待{estimate}"
            else:
                note = ""
            services.append({"code": str(code), "name": _str(entry.get("name")) or str(code),
                             "prefix": _str(entry.get("prefix")), "waiting": f"等候{waiting}人", "note": note})
    recent = [call_line(c) for c in calls if isinstance(c, dict)][:8] if isinstance(calls, list) else []
    return {"online": online, "services": services, "recent": recent,
            "text": {"hall": name, "hours": f"今日开放时间：{hours}" if hours else "", "closed": closed,
                     "updated": updated}}
