"""The city's state of every hall: a pure reducer of what the halls publish on the city broker.

`CityState.apply(topic, payload, now, retained=…)` takes one MQTT message (the bytes as received) and
updates the latest state of its hall; `city_view(now)` and `hall_view(key, now)` are what the 大屏 page
shows. No I/O and no wall clock here: `now` is the city clock, passed in (tests use a ManualClock).

Topics (the contract of issue 20): `city/{district}/{hall}/online` and `…/summary` (retained),
`…/alert/{type}` (QoS 1, not retained; the alert `id` is the dedupe key, so a redelivery is applied
once). A summary that is not the contract's shape is logged and ignored, and its hall is marked
数据异常 until a good one comes. A hall whose clock (summary.at) is more than CLOCK_TOLERANCE off
the city clock is flagged — judged on live messages only: a retained summary may be hours old by design
(a closed hall publishes only when something changes).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import orjson

log = logging.getLogger(__name__)

SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
CLOCK_TOLERANCE = timedelta(minutes=5)
CONTACT_DEFAULT = timedelta(hours=1)      # a 差评's visitor is called back within the hour
AMBER_SHARE = 0.25                        # a clock turns amber in the last quarter of its time
LONG_WAIT_S = 30 * 60                     # a visitor waiting this long makes the hall need attention
MAX_SEEN_ALERTS = 200_000                 # alert ids remembered for dedupe (QoS 1 redelivers)
RECENT_ALERTS = 20
ALERT_TYPES = ("bad_rating", "bad_rating_resolved", "device_offline", "device_online", "dead_letter",
               "overdue_visit")
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")

# Why a hall needs attention, most urgent first: the tiles are sorted by their first reason.
OFFLINE, BAD_DATA, CLOCK_OFF, RATING_OVERDUE, LONG_WAIT, RATING_OPEN, DEVICES, DEAD, UNKNOWN = range(9)
RED_UP_TO = LONG_WAIT


class Malformed(ValueError):
    """A message that is not the contract's shape (the reason goes to the log, never to the page)."""


@dataclass
class BadRating:
    id: str
    key: str
    number: str
    service: str
    window: Any
    score: Any
    raised_at: datetime
    contact_by: datetime
    fix_by: datetime | None
    contacted_at: datetime | None = None


@dataclass
class Hall:
    district: str
    hall_id: str
    name: str = ""
    online: bool | None = None
    summary: dict[str, Any] | None = None
    summary_at: datetime | None = None      # the hall's own clock, from the summary
    received_at: datetime | None = None     # the city clock when the last summary came
    bad_data: bool = False
    skew_s: float | None = None
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_ALERTS))

    @property
    def key(self) -> str:
        return f"{self.district}/{self.hall_id}"


def parse_time(value: Any, what: str) -> datetime:
    """An ISO time with its offset (the contract's `at`), else Malformed."""
    if not isinstance(value, str):
        raise Malformed(f"{what} is not a time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed(f"{what} is not an ISO time") from None
    if when.tzinfo is None:
        raise Malformed(f"{what} has no UTC offset")
    return when


def _obj(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise Malformed(f"{key} is not an object")
    return value


def _count(data: dict[str, Any], key: str, *, nullable: bool = False) -> None:
    value = data.get(key)
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise Malformed(f"{key} is not a count")


def check_summary(data: Any, district: str, hall_id: str) -> datetime:
    """Raise Malformed unless `data` is a contract summary of this hall; returns its `at`."""
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise Malformed("not a schema 1 summary")
    hall = _obj(data, "hall")
    if hall.get("id") != hall_id or str(hall.get("district")) != district:
        raise Malformed("hall id/district differ from the topic")
    at = parse_time(data.get("at"), "at")
    if not isinstance(data.get("open"), bool):
        raise Malformed("open is not a boolean")
    for key, fields, nullable in (("windows", ("staffed", "total"), False),
                                  ("wait_today", ("median_s", "p90_s"), True),
                                  ("counts", ("issued", "served", "left", "no_show"), False),
                                  ("ratings", ("count", "good", "bad", "bad_open"), False),
                                  ("outbox", ("pending", "dead"), False)):
        part = _obj(data, key)
        for name in fields:
            _count(part, name, nullable=nullable)
    services = data.get("services")
    if not isinstance(services, list):
        raise Malformed("services is not a list")
    for service in services:
        if not isinstance(service, dict) or not isinstance(service.get("code"), str):
            raise Malformed("a service has no code")
        _count(service, "waiting")
        _count(service, "oldest_wait_s", nullable=True)
    if not isinstance(data.get("devices_offline"), list):
        raise Malformed("devices_offline is not a list")
    return at


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise Malformed("not JSON") from None


class CityState:
    """The latest state of every hall and the open 差评, from the messages in any order of arrival."""

    def __init__(self) -> None:
        self.halls: dict[str, Hall] = {}
        self.ratings: dict[str, BadRating] = {}              # open 差评 by alert id
        self._seen: OrderedDict[str, None] = OrderedDict()   # alert ids applied (dedupe)
        self._early: dict[str, tuple[str, datetime]] = {}    # resolutions that came before their 差评
        self.malformed = 0
        self.duplicates = 0

    # ------------------------------------------------------------------ messages in

    def apply(self, topic: str, payload: bytes, now: datetime, *, retained: bool = False) -> str | None:
        """Apply one message; returns the key (`district/hall`) of the hall it changed, None when it
        changed nothing (a duplicate alert, a topic that is not a hall's)."""
        parts = topic.split("/")
        if len(parts) < 4 or parts[0] != "city" or not SEGMENT_RE.fullmatch(parts[1]) \
                or not SEGMENT_RE.fullmatch(parts[2]):
            log.debug("city: ignored topic %r", topic[:200])
            return None
        district, hall_id, kind = parts[1], parts[2], parts[3:]
        hall = self.halls.get(f"{district}/{hall_id}")
        if hall is None:
            hall = self.halls[f"{district}/{hall_id}"] = Hall(district, hall_id)
        try:
            if kind == ["summary"]:
                self._summary(hall, payload, now, retained)
            elif kind == ["online"]:
                self._online(hall, payload)
            elif len(kind) == 2 and kind[0] == "alert" and kind[1] in ALERT_TYPES:
                if not self._alert(hall, kind[1], payload, now):
                    return None
            else:
                log.debug("city: ignored topic %r", topic[:200])
                return None
        except Malformed as exc:
            self.malformed += 1
            hall.bad_data = True
            log.warning("city: hall %s sent a malformed %s (%s); ignored", hall.key, "/".join(kind)[:40], exc)
        return hall.key

    def _summary(self, hall: Hall, payload: bytes, now: datetime, retained: bool) -> None:
        if not payload:                 # a cleared retained summary: the hall was removed
            hall.summary = None
            return
        data = _loads(payload)
        at = check_summary(data, hall.district, hall.hall_id)
        hall.summary, hall.summary_at, hall.received_at, hall.bad_data = data, at, now, False
        hall.name = str(data["hall"].get("name") or hall.name)
        if not retained:
            skew = (at - now).total_seconds()
            hall.skew_s = skew if abs(skew) > CLOCK_TOLERANCE.total_seconds() else None
            if hall.skew_s is not None:
                log.warning("city: hall %s's clock is %+.0f s off the city clock", hall.key, skew)

    def _online(self, hall: Hall, payload: bytes) -> None:
        if not payload:
            hall.online = None
            return
        data = _loads(payload)
        if not isinstance(data, dict) or not isinstance(data.get("online"), bool):
            raise Malformed("online message without online: bool")
        hall.online = data["online"]

    def _alert(self, hall: Hall, kind: str, payload: bytes, now: datetime) -> bool:
        data = _loads(payload)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise Malformed("alert without id")
        alert_id = data["id"]
        if alert_id in self._seen:
            self.duplicates += 1
            return False
        if kind == "bad_rating":
            self._raise(hall, alert_id, data)
        elif kind == "bad_rating_resolved":
            self._resolve(data)
        at = data.get("at")
        self._remember(alert_id)
        hall.recent.appendleft({"id": alert_id, "type": kind, "at": at if isinstance(at, str) else None,
                                "data": {k: v for k, v in data.items() if k not in ("id", "type", "at", "hall")}})
        return True

    def _remember(self, alert_id: str) -> None:
        self._seen[alert_id] = None
        while len(self._seen) > MAX_SEEN_ALERTS:
            self._seen.popitem(last=False)

    def _raise(self, hall: Hall, alert_id: str, data: dict[str, Any]) -> None:
        ticket = _obj(data, "ticket")
        raised = parse_time(data.get("raised_at") or data.get("at"), "raised_at")
        contact_by = parse_time(data["contact_by"], "contact_by") if data.get("contact_by") else raised + CONTACT_DEFAULT
        fix_by = parse_time(data["fix_by"], "fix_by") if data.get("fix_by") else None
        rating = BadRating(alert_id, hall.key, str(ticket.get("number") or ""), str(ticket.get("service") or ""),
                           ticket.get("window"), data.get("score"), raised, contact_by, fix_by)
        early = self._early.pop(alert_id, None)
        if early is not None and early[0] == "fix":
            return                      # already closed before we heard it was raised
        if early is not None:
            rating.contacted_at = early[1]
        self.ratings[alert_id] = rating

    def _resolve(self, data: dict[str, Any]) -> None:
        ref = data.get("ref")
        if not isinstance(ref, str):
            raise Malformed("bad_rating_resolved without ref")
        note = data.get("note_kind")
        if note not in ("contact", "fix"):
            raise Malformed("bad_rating_resolved with an unknown note_kind")
        when = parse_time(data.get("resolved_at") or data.get("at"), "resolved_at")
        rating = self.ratings.get(ref)
        if rating is None:
            if len(self._early) < MAX_SEEN_ALERTS:
                self._early[ref] = (note, when)
            return
        if note == "fix":
            del self.ratings[ref]
        else:
            rating.contacted_at = when

    # ------------------------------------------------------------------ what the page shows

    def _by_hall(self) -> dict[str, list[BadRating]]:
        by_hall: dict[str, list[BadRating]] = {}
        for rating in self.ratings.values():
            by_hall.setdefault(rating.key, []).append(rating)
        return by_hall

    def attention(self, hall: Hall, now: datetime, ratings: list[BadRating] | None = None) -> list[tuple[int, str]]:
        """Why this hall needs attention, most urgent first (empty: all is well). `ratings`: the hall's
        open 差评 when the caller has them (a whole-city view indexes them once)."""
        reasons: list[tuple[int, str]] = []
        if hall.online is False:
            reasons.append((OFFLINE, "离线"))
        if hall.bad_data:
            reasons.append((BAD_DATA, "数据异常"))
        if hall.skew_s is not None:
            reasons.append((CLOCK_OFF, f"时钟偏差 {_minutes_text(hall.skew_s)}"))
        if ratings is None:
            ratings = [r for r in self.ratings.values() if r.key == hall.key]
        overdue = sum(1 for r in ratings if rating_status(r, now) == "red")
        if overdue:
            reasons.append((RATING_OVERDUE, f"差评超时 {overdue}"))
        oldest = _oldest_wait(hall.summary)
        if oldest is not None and oldest >= LONG_WAIT_S:
            reasons.append((LONG_WAIT, f"最长等候 {int(oldest // 60)} 分钟"))
        open_count = _open_count(hall, ratings)
        if open_count > overdue:
            reasons.append((RATING_OPEN, f"待处理差评 {open_count - overdue}"))
        summary = hall.summary or {}
        if summary.get("devices_offline"):
            reasons.append((DEVICES, f"设备离线 {len(summary['devices_offline'])}"))
        if (summary.get("outbox") or {}).get("dead"):
            reasons.append((DEAD, f"上报失败 {summary['outbox']['dead']}"))
        if hall.summary is None and not reasons:
            reasons.append((UNKNOWN, "尚无数据"))
        return reasons

    def tile(self, hall: Hall, now: datetime, ratings: list[BadRating] | None = None) -> dict[str, Any]:
        if ratings is None:
            ratings = [r for r in self.ratings.values() if r.key == hall.key]
        reasons = self.attention(hall, now, ratings)
        first = reasons[0][0] if reasons else 99
        summary = hall.summary or {}
        counts, windows, wait = summary.get("counts") or {}, summary.get("windows") or {}, summary.get("wait_today") or {}
        return {"key": hall.key, "district": hall.district, "hall": hall.hall_id, "name": hall.name or hall.hall_id,
                "rank": first, "level": "red" if first <= RED_UP_TO else "amber" if first < UNKNOWN else
                "grey" if first == UNKNOWN else "ok",
                "reasons": [text for _, text in reasons], "online": hall.online, "open": summary.get("open"),
                "waiting": _waiting(summary), "issued": counts.get("issued"), "served": counts.get("served"),
                "windows": f"{windows.get('staffed', 0)}/{windows.get('total', 0)}" if windows else "",
                "median_s": wait.get("median_s"), "p90_s": wait.get("p90_s"), "oldest_s": _oldest_wait(summary),
                "bad_open": _open_count(hall, ratings)}

    def city_view(self, now: datetime, tz: tzinfo = DEFAULT_TZ) -> dict[str, Any]:
        by_hall = self._by_hall()
        tiles = sorted((self.tile(h, now, by_hall.get(h.key, [])) for h in self.halls.values()),
                       key=lambda t: (t["rank"], t["name"]))
        return {"totals": self.totals(now, tiles), "tiles": tiles, "ratings": self.rating_rows(now, tz)}

    def totals(self, now: datetime, tiles: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        if tiles is None:
            by_hall = self._by_hall()
            tiles = [self.tile(h, now, by_hall.get(h.key, [])) for h in self.halls.values()]
        summaries = [h.summary for h in self.halls.values() if h.summary is not None]
        served = [(s["wait_today"].get("median_s"), s["counts"]["served"]) for s in summaries]
        weight = sum(n for m, n in served if m is not None)
        median = sum(m * n for m, n in served if m is not None) / weight if weight else None
        oldest = [w for w in (_oldest_wait(s) for s in summaries) if w is not None]
        return {"halls": len(self.halls), "online": sum(1 for h in self.halls.values() if h.online),
                "attention": sum(1 for t in tiles if t["rank"] <= RED_UP_TO),
                "waiting": sum(_waiting(s) for s in summaries),
                "issued": sum(s["counts"]["issued"] for s in summaries),
                "served": sum(s["counts"]["served"] for s in summaries),
                "left": sum(s["counts"]["left"] for s in summaries),
                "median_s": median, "oldest_s": max(oldest) if oldest else None,
                "bad": sum(s["ratings"]["bad"] for s in summaries), "bad_open": sum(t["bad_open"] for t in tiles),
                "bad_overdue": sum(1 for r in self.ratings.values() if rating_status(r, now) == "red")}

    def rating_rows(self, now: datetime, tz: tzinfo = DEFAULT_TZ, key: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for r in self.ratings.values():
            if key is not None and r.key != key:
                continue
            hall = self.halls.get(r.key)
            contact = ("done", "已联系 " + r.contacted_at.astimezone(tz).strftime("%H:%M")) if r.contacted_at \
                else _clock(r.raised_at, r.contact_by, now)
            fix = _clock(r.raised_at, r.fix_by, now) if r.fix_by else ("none", "—")
            rows.append({"id": r.id, "key": r.key, "hall": hall.name if hall and hall.name else r.key,
                         "number": r.number, "service": _service_name(hall, r.service), "window": r.window, "score": r.score,
                         "raised": r.raised_at.astimezone(tz).strftime("%m-%d %H:%M"),
                         "contact": {"state": contact[0], "text": contact[1]},
                         "fix": {"state": fix[0], "text": fix[1]}, "status": rating_status(r, now)})
        order = {"red": 0, "amber": 1, "ok": 2}
        rows.sort(key=lambda row: (order[row["status"]], row["raised"]))
        return rows

    def hall_view(self, key: str, now: datetime, tz: tzinfo = DEFAULT_TZ) -> dict[str, Any] | None:
        hall = self.halls.get(key)
        if hall is None:
            return None
        summary = hall.summary or {}
        return {"tile": self.tile(hall, now), "services": summary.get("services") or [],
                "counts": summary.get("counts") or {}, "ratings_today": summary.get("ratings") or {},
                "devices_offline": summary.get("devices_offline") or [], "outbox": summary.get("outbox") or {},
                "at": hall.summary_at.astimezone(tz).strftime("%H:%M:%S") if hall.summary_at else None,
                "skew_s": hall.skew_s, "ratings": self.rating_rows(now, tz, key),
                "recent": [{"type": a["type"], "at": _short(a["at"], tz)} for a in hall.recent]}


def _service_name(hall: Hall | None, code: str) -> str:
    """The service's name from the hall's summary (alerts may name it by code)."""
    for service in ((hall.summary or {}).get("services") or []) if hall is not None else []:
        if service.get("code") == code and service.get("name"):
            return str(service["name"])
    return code


def _open_count(hall: Hall, ratings: list[BadRating]) -> int:
    """The hall's open 差评: those we hold, or the summary's count when it says more (alerts are not
    retained: a 差评 raised before hall-city's session existed is known only by the count)."""
    counted = ((hall.summary or {}).get("ratings") or {}).get("bad_open") or 0
    return max(len(ratings), int(counted))


def rating_status(rating: BadRating, now: datetime) -> str:
    """The worst of a 差评's running clocks: ok, amber (last quarter of the time) or red (past due)."""
    states = [] if rating.contacted_at else [_clock(rating.raised_at, rating.contact_by, now)[0]]
    if rating.fix_by is not None:
        states.append(_clock(rating.raised_at, rating.fix_by, now)[0])
    return "red" if "red" in states else "amber" if "amber" in states else "ok"


def _clock(start: datetime, deadline: datetime, now: datetime) -> tuple[str, str]:
    left = (deadline - now).total_seconds()
    if left < 0:
        return "red", f"超时 {_minutes_text(-left)}"
    span = max((deadline - start).total_seconds(), 1.0)
    return ("amber" if left <= span * AMBER_SHARE else "ok"), f"剩 {_minutes_text(left)}"


def _minutes_text(seconds: float) -> str:
    minutes = int(abs(seconds) // 60)
    if minutes >= 48 * 60:
        return f"{minutes // 1440} 天 {minutes % 1440 // 60} 小时"
    if minutes > 60:
        return f"{minutes // 60} 小时 {minutes % 60} 分"
    return f"{minutes} 分钟"


def _short(value: str | None, tz: tzinfo) -> str:
    try:
        return parse_time(value, "at").astimezone(tz).strftime("%H:%M:%S")
    except Malformed:
        return ""


def _waiting(summary: dict[str, Any]) -> int:
    return sum(int(s.get("waiting") or 0) for s in summary.get("services") or [])


def _oldest_wait(summary: dict[str, Any] | None) -> float | None:
    waits = [s.get("oldest_wait_s") for s in (summary or {}).get("services") or []]
    waits = [w for w in waits if w is not None]
    return max(waits) if waits else None
