"""What the kiosk and the hall display both read from the daemon: services with their waiting
counts and estimates (retained `state/queues`), and the hall's time zone (retained `status`), in which
every app shows every time of day. Pure Python, no Qt: the reducers are tested plain.

Fields added by the daemon over time (the estimate) are optional: a payload without them still
renders, with the estimate left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PRIORITY_LABELS = {"appointment": "预约", "green": "绿色通道", "elderly": "老年人优先"}


@dataclass(frozen=True)
class ServiceInfo:
    code: str
    name: str
    prefix: str
    waiting: int
    estimate: str | None = None   # e.g. 约10–15分钟; None when the daemon has too little data
    staffed: int | None = None    # windows serving it with a clerk logged in; None when the daemon does not say

    @property
    def unstaffed(self) -> bool:
        """No window serving it has a clerk now (the kiosk says 暂无窗口办理; a number can still be taken)."""
        return self.staffed == 0


def estimate_text(value: Any) -> str | None:
    """The estimate as shown: the daemon's `text`, else built from `low_min`/`high_min`; None when absent."""
    if isinstance(value, str):
        return value.strip() or None
    if not isinstance(value, dict):
        return None
    text = value.get("text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    low, high = value.get("low_min"), value.get("high_min")
    if isinstance(high, int) and not isinstance(high, bool) and high > 0:
        if isinstance(low, int) and not isinstance(low, bool) and 0 < low < high:
            return f"约{low}–{high}分钟"
        return f"约{high}分钟内"
    return None


def services_from_queues(value: Any) -> list[ServiceInfo]:
    """`state/queues` ({code: {name, prefix, waiting, estimate?, staffed?}}) in the daemon's order; bad
    entries skipped."""
    if not isinstance(value, dict):
        return []
    services = []
    for code, entry in value.items():
        if not isinstance(entry, dict):
            continue
        waiting, staffed = entry.get("waiting"), entry.get("staffed")
        services.append(ServiceInfo(
            code=str(code), name=str(entry.get("name") or code), prefix=str(entry.get("prefix") or ""),
            waiting=waiting if isinstance(waiting, int) and not isinstance(waiting, bool) and waiting >= 0 else 0,
            estimate=estimate_text(entry.get("estimate")),
            staffed=staffed if isinstance(staffed, int) and not isinstance(staffed, bool) and staffed >= 0 else None))
    return services


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def hall_zone(status: Any, fallback: str | None = None) -> str | None:
    """The hall's IANA time zone (e.g. Asia/Shanghai), in which every app shows every time of day.

    The daemon's retained `hall/{h}/status` says it (`timezone`, also in its last will, so a hall whose
    daemon is down still has one); else `fallback`, the config's `hall.timezone` of an app started with
    --config; else None: the app then shows dashes, never the PC's own zone (a PC left at UTC would show
    the hall's 09:30 as 01:30)."""
    if isinstance(status, dict):
        name = status.get("timezone")
        if isinstance(name, str) and _zone(name) is not None:
            return name
    return fallback if isinstance(fallback, str) and _zone(fallback) is not None else None


def hall_time(moment: datetime | str | None, zone: str | None) -> datetime | None:
    """`moment` (an aware datetime, or ISO-8601 text as the daemon sends it) as a time in the hall's zone;
    None when either is unknown or unusable (a naive time has no instant: it is not guessed)."""
    tz = _zone(zone) if zone else None
    if tz is None or moment is None or moment == "":
        return None
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return None
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        return None
    return moment.astimezone(tz)


def hall_time_text(moment: datetime | str | None, zone: str | None, fmt: str = "%H:%M") -> str:
    """The one way an app shows a time of day: `moment` in the hall's zone as `fmt`; dashes in the same
    shape (--:--) while the moment or the zone is not known."""
    local = hall_time(moment, zone)
    if local is None:
        return fmt.replace("%H", "--").replace("%M", "--").replace("%S", "--")
    return local.strftime(fmt)


def clock_text(moment: datetime | str | None, zone: str | None) -> str:
    """hh:mm:ss in hall time, or --:--:-- when nothing arrived yet (the display's 更新于)."""
    return hall_time_text(moment, zone, "%H:%M:%S")


def masked_name(ticket: Any) -> str | None:
    """The holder's masked name (张*) when the ticket carries one; never anything else of the holder."""
    holder = ticket.get("holder") if isinstance(ticket, dict) else None
    name = holder.get("name_masked") if isinstance(holder, dict) else None
    return name if isinstance(name, str) and name else None
