"""What the kiosk and the hall display both read from the daemon: services with their waiting
counts and estimates (retained `state/queues`). Pure Python, no Qt: the reducers are tested plain.

Fields added by the daemon over time (the estimate) are optional: a payload without them still
renders, with the estimate left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

PRIORITY_LABELS = {"appointment": "预约", "green": "绿色通道", "elderly": "老年人优先"}


@dataclass(frozen=True)
class ServiceInfo:
    code: str
    name: str
    prefix: str
    waiting: int
    estimate: str | None = None   # e.g. 约10–15分钟; None when the daemon has too little data


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
    """`state/queues` ({code: {name, prefix, waiting, estimate?}}) in the daemon's order; bad entries skipped."""
    if not isinstance(value, dict):
        return []
    services = []
    for code, entry in value.items():
        if not isinstance(entry, dict):
            continue
        waiting = entry.get("waiting")
        services.append(ServiceInfo(
            code=str(code), name=str(entry.get("name") or code), prefix=str(entry.get("prefix") or ""),
            waiting=waiting if isinstance(waiting, int) and not isinstance(waiting, bool) and waiting >= 0 else 0,
            estimate=estimate_text(entry.get("estimate"))))
    return services


def clock_text(moment: datetime | None) -> str:
    """hh:mm:ss, or -- when nothing arrived yet."""
    return moment.strftime("%H:%M:%S") if moment is not None else "--:--:--"


def masked_name(ticket: Any) -> str | None:
    """The holder's masked name (张*) when the ticket carries one; never anything else of the holder."""
    holder = ticket.get("holder") if isinstance(ticket, dict) else None
    name = holder.get("name_masked") if isinstance(holder, dict) else None
    return name if isinstance(name, str) and name else None
