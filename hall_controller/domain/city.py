"""What a hall tells the city (DESIGN §11): its summary and its alerts, built from the engine alone.

Pure: no I/O, no clock but the engine's. The summary carries no personal data at all — no names (not
even masked), no ID hashes, no ticket ids — only counts, times and device ids; ticket numbers appear in
alerts only. Alerts are derived from the engine's own events (a 差评 raised and resolved, an overdue
visit, a dead letter) or from the device states at a clock tick (offline over `DEVICE_OFFLINE_ALERT`),
so the service can write them in the same transaction as the event. Each alert's id is a UUID derived
from the hall and what it is about, so an alert raised again after a crash has the same id and the
city counts it once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .model import iso

SCHEMA = 1
DEVICE_OFFLINE_ALERT = timedelta(minutes=5)
ALERT_TYPES = ("bad_rating", "bad_rating_resolved", "device_offline", "device_online", "dead_letter",
               "overdue_visit")
DEAD_LETTER_EVENT = "upstream_dead_letter"      # the upstream forwarder's supervisor alert


@dataclass(frozen=True)
class CityAlert:
    """One alert for the queue: `payload` is what is published on `city/{d}/{h}/alert/{type}`."""

    alert_id: str
    type: str
    at: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CityHall:
    """Who the hall is to the city, and its 差评 clocks."""

    hall_id: str
    district: str
    contact_minutes: int = 60
    fix_hours: int = 72

    def alert_id(self, key: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hall-city:{self.district}/{self.hall_id}/{key}"))

    def alert(self, type_: str, key: str, at: str, **fields: Any) -> CityAlert:
        alert_id = self.alert_id(key)
        return CityAlert(alert_id, type_, at, {"id": alert_id, "type": type_, "at": at,
                                               "hall": {"id": self.hall_id, "district": self.district}, **fields})


def _ticket(ticket: dict[str, Any]) -> dict[str, Any]:
    """A ticket as an alert names it: its number, service and window, nothing of the visitor."""
    return {"number": ticket.get("number"), "service": ticket.get("service"), "window": ticket.get("window")}


def _plus(ts: str, delta: timedelta) -> str | None:
    try:
        return iso(datetime.fromisoformat(ts) + delta)
    except (TypeError, ValueError):
        return None


def _bad_rating(hall: CityHall, ev: dict[str, Any]) -> CityAlert:
    raised = ev["ts"]
    return hall.alert("bad_rating", f"bad_rating/{ev['ticket']['id']}", raised, ticket=_ticket(ev["ticket"]),
                      score=ev.get("score"), level=ev.get("level"), raised_at=raised,
                      contact_by=_plus(raised, timedelta(minutes=hall.contact_minutes)),
                      fix_by=_plus(raised, timedelta(hours=hall.fix_hours)))


def _bad_rating_resolved(hall: CityHall, ev: dict[str, Any]) -> CityAlert:
    ticket_id = ev["ticket"]["id"]
    follow_up = ev.get("follow_up") or {}
    return hall.alert("bad_rating_resolved", f"bad_rating_resolved/{ticket_id}", ev["ts"],
                      ref=hall.alert_id(f"bad_rating/{ticket_id}"), ticket={"number": ev["ticket"].get("number")},
                      note_kind="fix", resolved_at=follow_up.get("at") or ev["ts"])


def _overdue(hall: CityHall, ev: dict[str, Any]) -> CityAlert:
    ticket = ev["ticket"]
    return hall.alert("overdue_visit", f"overdue/{ticket['id']}/{ev['seq']}", ev["ts"],
                      ticket=_ticket(ticket), minutes=ev.get("limit_minutes"))


def _dead_letter(hall: CityHall, ev: dict[str, Any]) -> CityAlert:
    record = (ev.get("detail") or {}).get("record_key")
    return hall.alert("dead_letter", f"dead_letter/{record}/{ev['seq']}", ev["ts"], record=record)


EVENT_ALERTS = {"bad_rating": _bad_rating, "bad_rating_resolved": _bad_rating_resolved,
                "time_limit_exceeded": _overdue, DEAD_LETTER_EVENT: _dead_letter}


class AlertRules:
    """Which alerts a batch of events or a clock tick raises. Remembers the devices whose offline alert
    went out (so that their return is told, once) — rebuilt at start from the queue (`restore`)."""

    def __init__(self, hall: CityHall, device_kinds: dict[str, str]) -> None:
        self.hall = hall
        self._kinds = device_kinds
        self._offline_alerted: dict[str, str] = {}     # device id -> `since` of its alerted offline spell

    def restore(self, device_alerts: list[tuple[str, dict[str, Any]]]) -> None:
        """The queued device alerts in order: (type, payload); the last per device wins."""
        for type_, payload in device_alerts:
            device = (payload.get("device") or {}).get("id")
            if not device:
                continue
            if type_ == "device_offline":
                self._offline_alerted[device] = payload.get("since") or ""
            else:
                self._offline_alerted.pop(device, None)

    def forget(self, alerts: list[CityAlert]) -> None:
        """Device alerts that were not stored after all (a failed commit): raise them again."""
        for alert in alerts:
            if alert.type == "device_offline":
                self._offline_alerted.pop(alert.payload["device"]["id"], None)

    def from_events(self, events: list[dict[str, Any]]) -> list[CityAlert]:
        alerts: list[CityAlert] = []
        for ev in events:
            build = EVENT_ALERTS.get(ev.get("type", ""))
            if build is not None and (ev.get("type") == DEAD_LETTER_EVENT or isinstance(ev.get("ticket"), dict)):
                alerts.append(build(self.hall, ev))
            elif ev.get("type") == "device_online" and ev.get("device") in self._offline_alerted:
                device = ev["device"]
                since = self._offline_alerted.pop(device)
                alerts.append(self.hall.alert("device_online", f"device_online/{device}/{since}", ev["ts"],
                                              device={"id": device, "kind": self._kinds.get(device)},
                                              since=ev["ts"]))
        return alerts

    def from_devices(self, devices: dict[str, dict[str, Any]], now: datetime) -> list[CityAlert]:
        """Devices offline for DEVICE_OFFLINE_ALERT or longer whose spell was not alerted yet."""
        alerts: list[CityAlert] = []
        for device, state in sorted(devices.items()):
            since = state.get("since")
            if state.get("online") or not since or self._offline_alerted.get(device) == since:
                continue
            try:
                offline_for = now - datetime.fromisoformat(since)
            except (TypeError, ValueError):
                continue
            if offline_for >= DEVICE_OFFLINE_ALERT:
                self._offline_alerted[device] = since
                alerts.append(self.hall.alert("device_offline", f"device_offline/{device}/{since}", iso(now) or "",
                                              device={"id": device, "kind": self._kinds.get(device)}, since=since))
        return alerts


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summary(engine: Any, *, hall: CityHall, code: str, name: str, outbox: tuple[int, int],
            device_kinds: dict[str, str]) -> dict[str, Any]:
    """The retained `city/{d}/{h}/summary` of a hall (a `QueueEngine`; call it under the service lock)."""
    now = engine.clock.now()
    state = engine.state
    today = state.today
    counts = today.count_view()
    staffed = sum(1 for w in state.windows.values() if w.staff_id is not None)
    stats = engine.waiting_stats()
    services = []
    for svc in engine.config.services:
        waiting, oldest = stats.get(svc.code, (0, None))
        services.append({"code": svc.code, "name": svc.name, "prefix": svc.prefix, "waiting": waiting,
                         "oldest_wait_s": _seconds(max(0.0, (now - oldest).total_seconds())) if oldest else None})
    offline = [{"id": dev, "kind": device_kinds.get(dev), "since": s.get("since")}
               for dev, s in sorted(state.devices.items()) if not s.get("online")]
    return {
        "schema": SCHEMA,
        "hall": {"id": hall.hall_id, "name": name, "district": hall.district, "code": code},
        "at": now.astimezone(engine.config.tz).isoformat(timespec="seconds"), "seq": state.seq, "open": engine.is_open(now),
        "windows": {"staffed": staffed, "total": len(state.windows)},
        "services": services,
        "wait_today": {"median_s": _seconds(today.wait_quantile(0.5)), "p90_s": _seconds(today.wait_quantile(0.9))},
        "counts": {"issued": counts["issued"], "served": counts["finished"], "left": counts["left"],
                   "no_show": counts["no_show"]},
        "ratings": {"count": counts["rated"], "good": today.good, "bad": counts["bad"],
                    "bad_open": len(state.bad_ratings)},
        "devices_offline": offline,
        "outbox": {"pending": outbox[0], "dead": outbox[1]},
    }
