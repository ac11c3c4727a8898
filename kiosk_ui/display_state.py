"""The hall display's state, without Qt: calls (latest and history), windows, queues, freshness.

Calls come two ways: `ticket_called` / `ticket_recalled` events as they happen, and the retained
`state/calls` (the daemon's recent calls) after every change and on every (re)connect. Both are
merged by (ticket id, time of the call), so a burst of calls loses none even when state updates are
coalesced, and a display that just (re)connected shows the retained board, never an empty one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .common_state import ServiceInfo, hall_time_text, hall_zone, masked_name, services_from_queues

HISTORY = 12            # calls kept (the board shows the latest and the ones before it)

STATUS_TEXTS = {"closed": "未开放", "idle": "空闲", "calling": "呼叫中", "serving": "办理中", "paused": "暂停服务"}


@dataclass(frozen=True)
class Call:
    number: str
    window: int | None
    service: str
    at: str                     # ISO time of the call (recalls have their own)
    ticket_id: str
    name_masked: str | None = None
    recall: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.ticket_id or self.number, self.at)

    @property
    def text(self) -> str:
        where = f"{self.window}号窗口" if self.window is not None else "窗口"
        return f"请{self.number}号到{where}办理"


@dataclass(frozen=True)
class WindowRow:
    number: int
    name: str
    status: str
    ticket: str | None
    paused_reason: str | None = None

    @property
    def status_text(self) -> str:
        return STATUS_TEXTS.get(self.status, self.status)

    @property
    def current_text(self) -> str:
        if self.status in ("paused", "closed"):
            return "—"
        return self.ticket or "—"


@dataclass(frozen=True)
class DisplayState:
    calls: tuple[Call, ...] = ()            # newest first
    windows: tuple[WindowRow, ...] = ()      # by number
    services: tuple[ServiceInfo, ...] = ()
    broker_online: bool = False
    daemon_online: bool = False
    updated_at: datetime | None = None      # last message from the daemon (shown as 更新于 hh:mm:ss)
    flashing: tuple[str, str] | None = None  # key of the call being announced right now
    flash_seconds: float = 0.0               # how long that announcement plays (its `duration`)
    zone: str | None = None                  # the hall's time zone: every time on the board is shown in it

    @property
    def online(self) -> bool:
        return self.broker_online and self.daemon_online

    @property
    def latest(self) -> Call | None:
        return self.calls[0] if self.calls else None

    @property
    def history(self) -> tuple[Call, ...]:
        return self.calls[1:]

    @property
    def updated_text(self) -> str:
        """更新于 hh:mm:ss in hall time."""
        return hall_time_text(self.updated_at, self.zone, "%H:%M:%S")

    def call_time(self, call: Call) -> str:
        """叫号时间 of a call in hall time (the daemon's stamps are UTC)."""
        return hall_time_text(call.at, self.zone, "%H:%M:%S")

    @property
    def offline_text(self) -> str | None:
        """The banner on a stale board; None while the daemon is reachable."""
        if self.online:
            return None
        if not self.broker_online:
            return "叫号系统连接中断，以下信息可能不是最新，请以窗口叫号为准"
        return "叫号服务暂停响应，以下信息可能不是最新，请以窗口叫号为准"


def _call_from(entry: Any, recall: bool = False) -> Call | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("number"), str):
        return None
    window = entry.get("window")
    return Call(number=entry["number"], window=window if isinstance(window, int) else None,
                service=str(entry.get("service") or ""), at=str(entry.get("at") or ""),
                ticket_id=str(entry.get("ticket_id") or ""), name_masked=entry.get("name_masked"), recall=recall)


def _merge(calls: tuple[Call, ...], new: list[Call]) -> tuple[Call, ...]:
    """Union by key, newest first; a known call keeps the name it was shown with."""
    by_key = {c.key: c for c in calls}
    for call in new:
        old = by_key.get(call.key)
        by_key[call.key] = replace(call, name_masked=call.name_masked or (old.name_masked if old else None),
                                   recall=call.recall or (old.recall if old else False))
    ordered = sorted(by_key.values(), key=lambda c: c.at, reverse=True)
    return tuple(ordered[:HISTORY])


def with_calls(state: DisplayState, value: Any, now: datetime) -> DisplayState:
    """Retained `state/calls`: a list, newest first. An empty list after a day reset clears the board."""
    if not isinstance(value, list):
        return replace(state, updated_at=now)
    calls = [c for c in (_call_from(e) for e in value) if c is not None]
    if not calls:
        return replace(state, calls=(), updated_at=now)
    return replace(state, calls=_merge(state.calls, calls), updated_at=now)


def with_event(state: DisplayState, event: Any, now: datetime) -> DisplayState:
    if not isinstance(event, dict):
        return state
    kind = event.get("type")
    if kind in ("ticket_called", "ticket_recalled"):
        ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else {}
        call = _call_from({"number": ticket.get("number"), "window": event.get("window", ticket.get("window")),
                           "service": ticket.get("service"), "at": event.get("ts"), "ticket_id": ticket.get("id"),
                           "name_masked": masked_name(ticket)}, recall=kind == "ticket_recalled")
        if call is None:
            return state
        return replace(state, calls=_merge(state.calls, [call]), updated_at=now)
    if kind == "announcement_started":
        duration = event.get("duration")
        seconds = float(duration) if isinstance(duration, int | float) and 0 < duration < math.inf else 0.0
        return replace(state, flashing=_announced(state, event), flash_seconds=seconds, updated_at=now)
    if kind == "announcement_finished":
        return replace(state, flashing=None, updated_at=now)
    if kind == "day_reset":
        return replace(state, calls=(), flashing=None, updated_at=now)
    return replace(state, updated_at=now)


def _announced(state: DisplayState, event: dict[str, Any]) -> tuple[str, str] | None:
    """The call an announcement is for: by ticket id, else number (+ window); else the latest call."""
    ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else {}
    ticket_id = ticket.get("id") or event.get("ticket_id")
    number = ticket.get("number") or event.get("number")
    window = event.get("window", ticket.get("window"))
    for call in state.calls:
        if ticket_id and call.ticket_id == ticket_id:
            return call.key
        if not ticket_id and number and call.number == number and (window is None or call.window == window):
            return call.key
    return state.latest.key if state.latest else None


def with_window(state: DisplayState, number: Any, value: Any, now: datetime) -> DisplayState:
    if not isinstance(number, int):
        return state
    rows = {r.number: r for r in state.windows}
    if isinstance(value, dict):
        ticket = value.get("ticket") if isinstance(value.get("ticket"), dict) else {}
        rows[number] = WindowRow(number, str(value.get("name") or f"{number}号窗口"), str(value.get("status") or ""),
                                 ticket.get("number") if isinstance(ticket.get("number"), str) else None,
                                 value.get("paused_reason") if isinstance(value.get("paused_reason"), str) else None)
    else:
        rows.pop(number, None)
    return replace(state, windows=tuple(rows[n] for n in sorted(rows)), updated_at=now)


def with_queues(state: DisplayState, value: Any, now: datetime) -> DisplayState:
    return replace(state, services=tuple(services_from_queues(value)), updated_at=now)


def with_status(state: DisplayState, status: Any, now: datetime, fallback_zone: str | None = None) -> DisplayState:
    """The daemon's retained status: the hall's time zone (else the config's), and a sign of life."""
    return replace(state, zone=hall_zone(status, fallback_zone) or state.zone, updated_at=now)


def with_connection(state: DisplayState, broker: bool, daemon: bool) -> DisplayState:
    return replace(state, broker_online=broker, daemon_online=daemon)


def stop_flash(state: DisplayState) -> DisplayState:
    return replace(state, flashing=None)
