"""Hall configuration: YAML on disk, frozen dataclasses in memory.

Validation collects every problem with the file, the dotted field path and what is wrong, so an
IT person can fix a config in one pass instead of one error per restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from device_profiles import device_errors
from drivers.registry import DEVICE_KINDS

from .hall_calendar import HOLIDAY_SOURCES, DayPlan, HallCalendar, schedule_available, status_line
from .voice.settings import VoiceConfig, parse_voice

ROLES = ("kiosk", "window", "tablet", "display", "admin", "web")
PRIORITY_CLASSES = ("appointment", "green", "elderly", "normal")
POSITIONS = ("综合接待岗", "法律咨询岗", "法律援助岗", "人民调解岗", "公证岗", "司法鉴定岗", "值班律师岗", "其他")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PREFIX_RE = re.compile(r"^[A-Z]$")
_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SPAN_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
PIN_ITERATIONS = 60_000


class ConfigError(ValueError):
    """One or more problems in a hall config; `problems` lists (field, message)."""

    def __init__(self, file: str, problems: list[tuple[str, str]]):
        self.file = file
        self.problems = problems
        self.field = problems[0][0] if problems else ""
        self.message = problems[0][1] if problems else ""
        lines = [f"{file}: {fld}: {msg}" for fld, msg in problems]
        super().__init__("invalid hall config\n" + "\n".join(lines))


@dataclass(frozen=True)
class PriorityPolicy:
    appointment: bool = True
    green_channel: bool = False
    elderly: bool = True


@dataclass(frozen=True)
class Service:
    code: str
    prefix: str
    name: str
    time_limit_minutes: int
    priority: PriorityPolicy
    materials: tuple[str, ...]
    category: str


@dataclass(frozen=True)
class WindowService:
    service: str
    weight: int


@dataclass(frozen=True)
class Window:
    number: int
    name: str
    services: tuple[WindowService, ...]
    devices: tuple[str, ...]

    def weight_of(self, service: str) -> int | None:
        for ws in self.services:
            if ws.service == service:
                return ws.weight
        return None


@dataclass(frozen=True)
class Staff:
    id: str
    job_number: str
    name: str
    position: str
    pin_hash: str                       # "" = no PIN set yet: cannot log in with a PIN
    windows: tuple[int, ...] = ()       # the windows the clerk may log in at; () = any (hallctl staff)
    active: bool = True                 # False: disabled by `hallctl staff disable`, login refused

    def may_work_at(self, window: int) -> bool:
        return not self.windows or window in self.windows


@dataclass(frozen=True)
class ClientConfig:
    id: str
    role: str
    window: int | None = None


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    kind: str
    profile: str
    url: str
    address: int | None = None
    window: int | None = None
    kiosk: str | None = None
    bus: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rules:
    """Queue rules (DESIGN §4); all durations in minutes unless named otherwise."""

    elderly_age: int = 60
    priority_ratio: int = 3
    max_recalls: int = 3
    reinstate_minutes: int = 30
    appointment_early_minutes: int = 30
    appointment_late_minutes: int = 15
    time_limit_warn_ratio: float = 0.8
    day_reset: time = time(0, 0)
    recent_calls: int = 10
    rating_minutes: int = 3
    # A card taken off a kiosk's reader is dropped after this long without a touch on that kiosk.
    card_idle_seconds: int = 20


@dataclass(frozen=True)
class HallConfig:
    hall_id: str
    hall_code: str
    name: str
    district: str
    timezone: str
    opening_hours: dict[str, tuple[tuple[time, time], ...]]
    rules: Rules
    services: tuple[Service, ...]
    windows: tuple[Window, ...]
    staff: tuple[Staff, ...]
    clients: tuple[ClientConfig, ...]
    devices: tuple[DeviceConfig, ...]
    database: str
    sqlite_sync: str
    mqtt_listen: str | None
    mqtt_url: str | None
    upstream_url: str | None
    upstream_token: str | None
    emulator_control: str | None
    profiles_dir: str | None
    credentials_path: str
    secret_path: str
    source: str = "<memory>"
    upstream_report_day: int = 25      # the 月报表 of the previous month is due upstream by this day
    display_notice: str = ""           # the hall display's scrolling notice line (display.notice)
    scan_max_bytes: int = 10 * 1024 * 1024   # largest document scan accepted (scans.max_mb)
    scan_retention_days: int = 30            # scan images kept this long after the upstream has them
    # Masked names, keyed ID hashes and scans of a visit are purged this long after it closed and its
    # record reached the upstream (privacy.retention_days, DESIGN §8; hall_controller.store.retention).
    privacy_retention_days: int = 180
    voice: VoiceConfig = VoiceConfig()  # announcements: template, repeats, late policy, clip pack (voice:)
    calendar: HallCalendar = HallCalendar()  # holidays and the site's own days (hall.calendar), over opening_hours
    metrics_listen: str | None = None  # HOST:PORT of /metrics and /healthz (monitoring.listen); None: not served
    mqtt_ca: str | None = None   # mqtt.ca: the hall CA an mqtts:// broker's certificate must chain to (hallctl tls init)
    # The visitor's phone page (web:, DESIGN §10): where hall-web listens, the address the QR codes
    # carry (public_url, or http://<listen> when not set), the visitor Wi-Fi (ssid, password) or None.
    web_listen: str | None = None
    web_public_url: str | None = None
    web_wifi: tuple[str, str] | None = None
    # The city broker this hall reports to (city:, DESIGN §11; hall_controller.uplink), all None without
    # one: mqtt(s) URL, its CA, the district (topic segment), the hall's city account and its password
    # file; the 差评 clocks the alerts carry (contact within minutes, 整改 within hours).
    city_url: str | None = None
    city_ca: str | None = None
    city_district: str | None = None
    city_username: str | None = None
    city_password_file: str | None = None
    city_contact_minutes: int = 60
    city_fix_hours: int = 72

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def service(self, code: str) -> Service:
        for s in self.services:
            if s.code == code:
                return s
        raise KeyError(code)

    def window(self, number: int) -> Window:
        for w in self.windows:
            if w.number == number:
                return w
        raise KeyError(number)

    def staff_member(self, staff_id: str) -> Staff | None:
        for s in self.staff:
            if s.id == staff_id or s.job_number == staff_id:
                return s
        return None

    def day_plan(self, day: date) -> DayPlan:
        """The hours of a date in the hall: site overrides, then the holiday schedule, then the weekday."""
        return self.calendar.plan(day, self.opening_hours)

    def is_open(self, now: datetime) -> bool:
        """Within the hall's hours at `now` (the engine refuses tickets outside; kiosks show 暂停取号):
        the one rule, hall_controller.hall_calendar, on the hall's local date and time."""
        local = now.astimezone(self.tz)
        return self.day_plan(local.date()).open_at(local.time())

    def closed_text(self, now: datetime) -> str:
        """Why no ticket now, for the visitor (holiday, closed day, or outside today's hours)."""
        local = now.astimezone(self.tz)
        return self.day_plan(local.date()).closed_text(local.time())

    def visit_url(self, token: str) -> str | None:
        """The phone page of one ticket, as its QR code carries it (None without web.public_url)."""
        return f"{self.web_public_url}/t/{token}" if self.web_public_url else None

    @property
    def hall_page_url(self) -> str | None:
        """The hall page (扫码看排队) the display's QR code carries."""
        return f"{self.web_public_url}/" if self.web_public_url else None

    @property
    def wifi_qr(self) -> str | None:
        """The visitor Wi-Fi's join QR payload (phone cameras act on it), or None without web.wifi."""
        return wifi_qr_payload(*self.web_wifi) if self.web_wifi else None

    def calendar_status(self, now: datetime) -> str:
        """`hallctl status`'s line on today's hours and why; a warning when the holiday schedule runs out."""
        local = now.astimezone(self.tz)
        return status_line(self.day_plan(local.date()), self.calendar, local)


def wifi_qr_payload(ssid: str, password: str) -> str:
    """`WIFI:T:WPA;S:<ssid>;P:<password>;;` with `\\ ; , : "` escaped by a backslash (the ZXing
    "Wi-Fi network config" format that iOS and Android cameras join from); an empty password is an
    open network (T:nopass)."""
    def esc(text: str) -> str:
        return "".join("\\" + c if c in '\\;,:"' else c for c in text)
    if not password:
        return f"WIFI:T:nopass;S:{esc(ssid)};;"
    return f"WIFI:T:WPA;S:{esc(ssid)};P:{esc(password)};;"


# --- PIN hashing -------------------------------------------------------------------------------

def hash_pin(pin: str, *, salt: bytes | None = None, iterations: int = PIN_ITERATIONS) -> str:
    """PBKDF2 so a leaked config does not reveal clerks' PINs."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, pin_hash: str) -> bool:
    try:
        algo, iterations, salt_hex, digest_hex = pin_hash.split("$")
    except ValueError:
        return False
    if algo != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt_hex), int(iterations))
    return hmac.compare_digest(digest.hex(), digest_hex)


# --- loading ------------------------------------------------------------------------------------

class _Checker:
    """Collects problems while walking the raw YAML tree."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def mapping(self, value: Any, path: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def seq(self, value: Any, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, f"must be a list, got {type(value).__name__}")
            return []
        return value

    def string(self, raw: dict, key: str, path: str, *, required: bool = True, default: str | None = None,
               pattern: re.Pattern[str] | None = None, hint: str = "") -> str | None:
        value = raw.get(key, default)
        if value is None:
            if required:
                self.add(f"{path}.{key}", "is required")
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            self.add(f"{path}.{key}", f"must be a non-empty string, got {value!r}")
            return None
        if pattern and not pattern.match(value):
            self.add(f"{path}.{key}", f"{value!r} is not valid{': ' + hint if hint else ''}")
            return None
        return value

    def integer(self, raw: dict, key: str, path: str, *, default: int | None = None, minimum: int | None = None,
                maximum: int | None = None, required: bool = False) -> int | None:
        value = raw.get(key, default)
        if value is None:
            if required:
                self.add(f"{path}.{key}", "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(f"{path}.{key}", f"must be an integer, got {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.add(f"{path}.{key}", f"must be at least {minimum}, got {value}")
            return None
        if maximum is not None and value > maximum:
            self.add(f"{path}.{key}", f"must be at most {maximum}, got {value}")
            return None
        return value

    def boolean(self, raw: dict, key: str, path: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.add(f"{path}.{key}", f"must be true or false, got {value!r}")
            return default
        return value

    def clock_time(self, raw: dict, key: str, path: str, default: str) -> time:
        value = raw.get(key, default)
        if not isinstance(value, str) or not _TIME_RE.match(value):
            self.add(f"{path}.{key}", f"must be a time HH:MM (00:00–23:59), got {value!r}")
            return time(0, 0)
        hh, mm = value.split(":")
        return time(int(hh), int(mm))

    def unknown_keys(self, raw: dict, allowed: set[str], path: str) -> None:
        for key in raw:
            if key not in allowed:
                self.add(f"{path}.{key}" if path else str(key),
                         f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _parse_span(text: Any, path: str, chk: _Checker) -> tuple[time, time] | None:
    if not isinstance(text, str) or not _SPAN_RE.match(text):
        chk.add(path, f"must be a span HH:MM-HH:MM, got {text!r}")
        return None
    start_s, end_s = text.split("-")
    start = time(int(start_s[:2]), int(start_s[3:]))
    end = time(23, 59, 59, 999999) if end_s == "24:00" else time(int(end_s[:2]), int(end_s[3:]))
    if int(end_s[:2]) == 24 and end_s != "24:00":
        chk.add(path, f"end time {end_s!r} is past 24:00")
        return None
    if end <= start:
        chk.add(path, f"span {text!r} ends before it starts")
        return None
    return start, end


def _opening_hours(raw: Any, chk: _Checker) -> dict[str, tuple[tuple[time, time], ...]]:
    path = "hall.opening_hours"
    if raw is None:
        raw = "00:00-24:00"
    if isinstance(raw, (str, list)):
        raw = {day: raw for day in WEEKDAYS}
    raw = chk.mapping(raw, path)
    hours: dict[str, tuple[tuple[time, time], ...]] = {}
    for day, spans in raw.items():
        if day not in WEEKDAYS:
            chk.add(f"{path}.{day}", f"unknown weekday (use {', '.join(WEEKDAYS)})")
            continue
        if spans in (None, "closed"):
            hours[day] = ()
            continue
        span_list = spans if isinstance(spans, list) else [spans]
        parsed = [_parse_span(s, f"{path}.{day}", chk) for s in span_list]
        hours[day] = tuple(p for p in parsed if p)
    for day in WEEKDAYS:
        hours.setdefault(day, ())
    return hours


def _calendar_date(value: Any, path: str, chk: _Checker) -> date | None:
    """A date as YAML gives it (2026-12-31 unquoted is a date; quoted, a string)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    chk.add(path, f"must be a date YYYY-MM-DD, got {value!r}")
    return None


def _calendar(raw: Any, opening_hours: dict[str, tuple[tuple[time, time], ...]], chk: _Checker) -> HallCalendar:
    """`hall.calendar`: {holidays: cn|none, workday_as: mon, closed: [dates], open: [dates],
    hours: {date: span(s) | closed}}; a date may appear in one of closed/open/hours only."""
    path = "hall.calendar"
    cal = chk.mapping(raw, path)
    chk.unknown_keys(cal, {"holidays", "workday_as", "closed", "open", "hours"}, path)
    holidays = _calendar_holidays(cal.get("holidays", "cn"), chk)
    workday_as = cal.get("workday_as", "mon")
    if workday_as not in WEEKDAYS:
        chk.add(f"{path}.workday_as", f"must be a weekday ({', '.join(WEEKDAYS)}), got {workday_as!r}")
        workday_as = "mon"
    seen: dict[date, str] = {}      # date -> the list it is in
    closed = _calendar_dates(cal, "closed", seen, chk)
    opened = _calendar_dates(cal, "open", seen, chk)
    hours = _calendar_hours(cal.get("hours"), seen, chk)
    if (holidays == "cn" or opened) and not opening_hours.get(workday_as):
        chk.add(f"{path}.workday_as", f"{workday_as} has no opening hours, so a make-up working day or an open "
                                      "day would stay closed: pick a weekday the hall opens")
    return HallCalendar(holidays=holidays, workday_as=workday_as, closed=closed, open=opened, hours=hours)


def _calendar_holidays(holidays: Any, chk: _Checker) -> str:
    """`hall.calendar.holidays`: cn needs its package installed; a bad value falls back to none."""
    if holidays not in HOLIDAY_SOURCES:
        chk.add("hall.calendar.holidays", f"must be one of {', '.join(HOLIDAY_SOURCES)} (cn = the State Council's "
                                          f"holiday schedule, none = weekdays only), got {holidays!r}")
        return "none"
    if holidays == "cn" and not schedule_available():
        chk.add("hall.calendar.holidays", "cn needs the chinese-calendar package (pip install chinese-calendar), "
                                          "or set holidays: none")
    return holidays


def _calendar_dates(cal: dict, key: str, seen: dict[date, str], chk: _Checker) -> frozenset[date]:
    """The dates of `hall.calendar.<key>`, each noted in `seen` (a date belongs to one list)."""
    path = f"hall.calendar.{key}"
    found = set()
    for i, value in enumerate(chk.seq(cal.get(key), path)):
        day = _calendar_date(value, f"{path}[{i}]", chk)
        if day is None:
            continue
        if day in seen and seen[day] != path:
            chk.add(f"{path}[{i}]", f"{day} is also in {seen[day]} (a date belongs to one list)")
        seen.setdefault(day, path)
        found.add(day)
    return frozenset(found)


def _calendar_hours(raw: Any, seen: dict[date, str], chk: _Checker) -> dict[date, tuple[tuple[time, time], ...]]:
    """`hall.calendar.hours`: {date: span(s) | closed}, a date not in closed/open."""
    hours: dict[date, tuple[tuple[time, time], ...]] = {}
    for key, spans in chk.mapping(raw, "hall.calendar.hours").items():
        day = _calendar_date(key, f"hall.calendar.hours.{key}", chk)
        if day is None:
            continue
        where = f"hall.calendar.hours.{day}"
        if day in seen:
            chk.add(where, f"{day} is also in {seen[day]} (a date belongs to one list)")
        if spans in (None, "closed"):
            hours[day] = ()
            continue
        span_list = spans if isinstance(spans, list) else [spans]
        hours[day] = tuple(p for p in (_parse_span(s, where, chk) for s in span_list) if p)
    return hours


_TOP_LEVEL_KEYS = {"hall", "rules", "services", "windows", "staff", "clients", "devices", "database", "mqtt",
                   "upstream", "emulator", "profiles_dir", "credentials", "secret_file", "sqlite_sync", "display",
                   "voice", "scans", "monitoring", "web", "privacy", "city"}


def parse_config(data: Any, source: str = "<memory>", base_dir: Path | None = None) -> HallConfig:
    """Validate a raw YAML tree; raise ConfigError listing every problem found.

    One function per section below; they run in file order so the problems read top to bottom, and
    a later section is checked against what the earlier ones defined (a window's services, a
    client's window)."""
    chk = _Checker()
    base_dir = base_dir or Path.cwd()
    root = chk.mapping(data, "(top level)")
    chk.unknown_keys(root, _TOP_LEVEL_KEYS, "")
    hall, hall_id, tz_name = _hall(root, chk)
    rules = _rules(root.get("rules"), chk)
    services, service_codes = _services(root.get("services"), chk)
    devices = _devices(root, base_dir, chk)
    windows = _windows(root.get("windows"), service_codes, devices, chk)
    staff = _staff(root.get("staff"), chk)
    clients = _clients(root.get("clients"), {w.number for w in windows}, chk)
    sqlite_sync, db = _database(root, chk)
    mqtt, upstream, report_day, emulator = _links(root, chk)
    opening_hours = _opening_hours(hall.get("opening_hours"), chk)
    calendar = _calendar(hall.get("calendar"), opening_hours, chk)
    notice = _display(root.get("display"), chk)
    scan_max_mb, scan_retention = _scans(root.get("scans"), chk)
    metrics_listen = _monitoring(root.get("monitoring"), chk)
    privacy_retention = _privacy(root.get("privacy"), chk)
    web_listen, web_public_url, web_wifi = _web(root.get("web"), chk)
    city = _city(root.get("city"), base_dir, chk)
    voice = parse_voice(root.get("voice"), chk.add, [s.prefix for s in services], [w.number for w in windows],
                        base_dir)
    if chk.problems:
        raise ConfigError(source, chk.problems)
    return HallConfig(
        hall_id=hall_id, hall_code=str(hall.get("code") or hall_id), name=str(hall.get("name") or hall_id),
        district=str(hall.get("district") or ""), timezone=tz_name,
        opening_hours=opening_hours, rules=rules,
        services=tuple(services), windows=tuple(windows), staff=tuple(staff), clients=tuple(clients),
        devices=tuple(devices), database=_sqlite_path(db, base_dir), sqlite_sync=sqlite_sync.upper(),
        mqtt_listen=mqtt.get("listen"), mqtt_url=mqtt.get("url"),
        mqtt_ca=_resolve(base_dir, mqtt["ca"]) if isinstance(mqtt.get("ca"), str) and mqtt["ca"] else None,
        upstream_url=upstream.get("url"), upstream_token=upstream.get("token"),
        emulator_control=emulator.get("control"),
        profiles_dir=_resolve(base_dir, root["profiles_dir"]) if root.get("profiles_dir") else None,
        credentials_path=_resolve(base_dir, str(root.get("credentials") or "credentials.yaml")),
        secret_path=_resolve(base_dir, str(root.get("secret_file") or "hall.secret")),
        source=source, upstream_report_day=report_day, display_notice=notice, voice=voice,
        scan_max_bytes=scan_max_mb * 1024 * 1024, scan_retention_days=scan_retention, calendar=calendar,
        metrics_listen=metrics_listen,
        privacy_retention_days=privacy_retention,
        web_listen=web_listen, web_public_url=web_public_url, web_wifi=web_wifi, **city,
    )


def _resolve(base_dir: Path, p: str) -> str:
    """A path in the config is relative to the config file's folder."""
    return str((base_dir / p).resolve()) if not Path(p).is_absolute() else p


def _sqlite_path(db: str, base_dir: Path) -> str:
    if db.startswith("sqlite:///") and not db.startswith("sqlite:////") and db != "sqlite:///:memory:":
        return "sqlite:///" + _resolve(base_dir, db[len("sqlite:///"):])
    return db


def _hall(root: dict, chk: _Checker) -> tuple[dict, str, str]:
    """`hall:` -> (the raw mapping, hall id, time zone name)."""
    hall = chk.mapping(root.get("hall"), "hall")
    if "hall" not in root:
        chk.add("hall", "is required")
    chk.unknown_keys(hall, {"id", "code", "name", "district", "timezone", "opening_hours", "calendar"}, "hall")
    hall_id = chk.string(hall, "id", "hall", pattern=re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$"),
                         hint="lowercase letters, digits, - and _ (used in MQTT topics)") or "invalid"
    tz_name = chk.string(hall, "timezone", "hall", default="Asia/Shanghai") or "Asia/Shanghai"
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        chk.add("hall.timezone", f"unknown time zone {tz_name!r} (e.g. Asia/Shanghai)")
        tz_name = "Asia/Shanghai"
    return hall, hall_id, tz_name


def _rules(raw: Any, chk: _Checker) -> Rules:
    raw_rules = chk.mapping(raw, "rules")
    chk.unknown_keys(raw_rules, {f for f in Rules.__dataclass_fields__}, "rules")
    ratio = raw_rules.get("time_limit_warn_ratio", 0.8)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio < 1:
        chk.add("rules.time_limit_warn_ratio", f"must be a number between 0 and 1, got {ratio!r}")
        ratio = 0.8
    return Rules(
        elderly_age=chk.integer(raw_rules, "elderly_age", "rules", default=60, minimum=50, maximum=120) or 60,
        priority_ratio=chk.integer(raw_rules, "priority_ratio", "rules", default=3, minimum=1, maximum=100) or 3,
        max_recalls=chk.integer(raw_rules, "max_recalls", "rules", default=3, minimum=0, maximum=20) or 0,
        reinstate_minutes=chk.integer(raw_rules, "reinstate_minutes", "rules", default=30, minimum=0) or 0,
        appointment_early_minutes=chk.integer(raw_rules, "appointment_early_minutes", "rules", default=30,
                                              minimum=0) or 0,
        appointment_late_minutes=chk.integer(raw_rules, "appointment_late_minutes", "rules", default=15,
                                             minimum=0) or 0,
        time_limit_warn_ratio=float(ratio),
        day_reset=chk.clock_time(raw_rules, "day_reset", "rules", "00:00"),
        recent_calls=chk.integer(raw_rules, "recent_calls", "rules", default=10, minimum=1, maximum=50) or 10,
        rating_minutes=chk.integer(raw_rules, "rating_minutes", "rules", default=3, minimum=0, maximum=60) or 0,
        card_idle_seconds=chk.integer(raw_rules, "card_idle_seconds", "rules", default=20, minimum=5,
                                      maximum=120) or 20,
    )


def _services(raw: Any, chk: _Checker) -> tuple[list[Service], dict[str, int]]:
    """`services:` -> (the valid services, every code named: a window may only serve those)."""
    services: list[Service] = []
    seen_codes: dict[str, int] = {}
    seen_prefixes: dict[str, str] = {}
    raw_services = chk.seq(raw, "services")
    if not raw_services:
        chk.add("services", "at least one service is required")
    for i, item in enumerate(raw_services):
        service = _service(i, item, seen_codes, seen_prefixes, chk)
        if service:
            services.append(service)
    return services, seen_codes


def _service(i: int, raw: Any, seen_codes: dict[str, int], seen_prefixes: dict[str, str],
             chk: _Checker) -> Service | None:
    path = f"services[{i}]"
    raw = chk.mapping(raw, path)
    chk.unknown_keys(raw, {"code", "prefix", "name", "time_limit_minutes", "priority", "materials",
                           "category"}, path)
    code = chk.string(raw, "code", path, pattern=_CODE_RE, hint="lowercase identifier like legal_aid")
    if code:
        path = f"services[{i}] ({code})"
        if code in seen_codes:
            chk.add(f"{path}.code", f"duplicate service code {code!r} (also services[{seen_codes[code]}])")
        seen_codes[code] = i
    prefix = chk.string(raw, "prefix", path, pattern=_PREFIX_RE, hint="one capital letter A–Z")
    if prefix:
        if prefix in seen_prefixes:
            chk.add(f"{path}.prefix", f"duplicate prefix {prefix!r} (already used by {seen_prefixes[prefix]!r})")
        seen_prefixes[prefix] = code or "?"
    name = chk.string(raw, "name", path)
    limit = chk.integer(raw, "time_limit_minutes", path, default=30, minimum=1, maximum=24 * 60)
    pol = chk.mapping(raw.get("priority"), f"{path}.priority")
    chk.unknown_keys(pol, {"appointment", "green_channel", "elderly"}, f"{path}.priority")
    policy = PriorityPolicy(
        appointment=chk.boolean(pol, "appointment", f"{path}.priority", True),
        green_channel=chk.boolean(pol, "green_channel", f"{path}.priority", False),
        elderly=chk.boolean(pol, "elderly", f"{path}.priority", True),
    )
    materials = chk.seq(raw.get("materials"), f"{path}.materials")
    for j, m in enumerate(materials):
        if not isinstance(m, str) or not m.strip():
            chk.add(f"{path}.materials[{j}]", f"must be a non-empty string, got {m!r}")
    category = raw.get("category", code or "")
    if not (code and prefix and name and limit):
        return None
    return Service(code, prefix, name, limit, policy, tuple(m for m in materials if isinstance(m, str)),
                   str(category))


def _devices(root: dict, base_dir: Path, chk: _Checker) -> list[DeviceConfig]:
    """`devices:`, each checked against its profile (the site's profiles_dir first) and its bus."""
    device_ids: dict[str, DeviceConfig] = {}
    devices: list[DeviceConfig] = []
    for i, raw in enumerate(chk.seq(root.get("devices"), "devices")):
        dev = _device(i, raw, device_ids, chk)
        if dev:
            device_ids[dev.id] = dev
            devices.append(dev)
    site_profiles = (base_dir / str(root["profiles_dir"])) if root.get("profiles_dir") else None
    for dev in devices:
        if dev.bus and (dev.bus not in device_ids or device_ids[dev.bus].kind != "controller"):
            chk.add(f"devices ({dev.id}).bus", f"{dev.bus!r} is not a controller device in this config")
        for field_name, message in device_errors(dev.profile, dev.kind, dev.address, dev.options, site_profiles):
            chk.add(f"devices ({dev.id}).{field_name}", message)
    return devices


def _device(i: int, raw: Any, device_ids: dict[str, DeviceConfig], chk: _Checker) -> DeviceConfig | None:
    path = f"devices[{i}]"
    raw = chk.mapping(raw, path)
    chk.unknown_keys(raw, {"id", "kind", "profile", "url", "address", "window", "kiosk", "bus", "options"}, path)
    dev_id = chk.string(raw, "id", path)
    if dev_id:
        path = f"devices[{i}] ({dev_id})"
    kind = chk.string(raw, "kind", path)
    if kind and kind not in DEVICE_KINDS:
        chk.add(f"{path}.kind", f"unknown device kind {kind!r} (one of {', '.join(DEVICE_KINDS)})")
        kind = None
    on_bus = kind in ("led", "keypad")        # addressed on a controller's window bus, no URL of their own
    profile = chk.string(raw, "profile", path)
    url = chk.string(raw, "url", path, required=not on_bus, default=None)
    address = chk.integer(raw, "address", path, minimum=0, maximum=255, required=on_bus)
    window = chk.integer(raw, "window", path, minimum=1)
    bus = raw.get("bus")
    if on_bus and not bus:
        chk.add(f"{path}.bus", "is required for LED screens and keypads (the controller id)")
    options = chk.mapping(raw.get("options"), f"{path}.options")
    if dev_id in device_ids:
        chk.add(f"{path}.id", f"duplicate device id {dev_id!r}")
    if not (dev_id and kind and profile):
        return None
    return DeviceConfig(dev_id, kind, profile, url or "", address, window, raw.get("kiosk"), bus, dict(options))


def _windows(raw: Any, service_codes: dict[str, int], devices: list[DeviceConfig],
             chk: _Checker) -> list[Window]:
    """`windows:`, then every device's window is checked against them."""
    windows: list[Window] = []
    seen_windows: set[int] = set()
    device_ids = {dev.id for dev in devices}
    raw_windows = chk.seq(raw, "windows")
    if not raw_windows:
        chk.add("windows", "at least one window is required")
    for i, item in enumerate(raw_windows):
        window = _window(i, item, seen_windows, service_codes, device_ids, chk)
        if window:
            windows.append(window)
    for dev in devices:
        if dev.window is not None and dev.window not in seen_windows:
            chk.add(f"devices ({dev.id}).window", f"window {dev.window} is not defined")
    return windows


def _window(i: int, raw: Any, seen_windows: set[int], service_codes: dict[str, int], device_ids: set[str],
            chk: _Checker) -> Window | None:
    path = f"windows[{i}]"
    raw = chk.mapping(raw, path)
    chk.unknown_keys(raw, {"number", "name", "services", "devices"}, path)
    number = chk.integer(raw, "number", path, minimum=1, maximum=999, required=True)
    if number is not None:
        path = f"windows[{i}] (window {number})"
        if number in seen_windows:
            chk.add(f"{path}.number", f"duplicate window number {number}")
        seen_windows.add(number)
    wservices = _window_services(raw.get("services"), path, service_codes, chk)
    wdevices = chk.seq(raw.get("devices"), f"{path}.devices")
    for dev_id in wdevices:
        if dev_id not in device_ids:
            chk.add(f"{path}.devices", f"unknown device {dev_id!r}")
    if number is None:
        return None
    return Window(number, str(raw.get("name") or f"{number}号窗口"), tuple(wservices),
                  tuple(str(d) for d in wdevices))


def _window_services(raw: Any, path: str, service_codes: dict[str, int], chk: _Checker) -> list[WindowService]:
    """A window's `services:`: codes or {service, weight}; the first listed weighs most by default."""
    wservices: list[WindowService] = []
    raw_ws = chk.seq(raw, f"{path}.services")
    if not raw_ws:
        chk.add(f"{path}.services", "a window must serve at least one service")
    for j, item in enumerate(raw_ws):
        spath = f"{path}.services[{j}]"
        if isinstance(item, str):
            item = {"service": item}
        item = chk.mapping(item, spath)
        code = chk.string(item, "service", spath)
        weight = chk.integer(item, "weight", spath, default=max(1, 10 - j), minimum=1, maximum=1000)
        if code and code not in service_codes:
            chk.add(f"{spath}.service", f"unknown service {code!r} (known: {', '.join(service_codes) or 'none'})")
        elif code and any(ws.service == code for ws in wservices):
            chk.add(f"{spath}.service", f"service {code!r} listed twice for this window")
        elif code and weight:
            wservices.append(WindowService(code, weight))
    return wservices


def _staff(raw: Any, chk: _Checker) -> list[Staff]:
    """`staff:`; an id and a job number are both login names, so neither may repeat either."""
    staff: list[Staff] = []
    seen_staff: set[str] = set()
    for i, item in enumerate(chk.seq(raw, "staff")):
        member = _staff_member(i, item, seen_staff, chk)
        if member:
            staff.append(member)
    return staff


def _staff_member(i: int, raw: Any, seen_staff: set[str], chk: _Checker) -> Staff | None:
    path = f"staff[{i}]"
    raw = chk.mapping(raw, path)
    chk.unknown_keys(raw, {"id", "job_number", "name", "position", "pin_hash"}, path)
    sid = chk.string(raw, "id", path)
    if sid:
        path = f"staff[{i}] ({sid})"
    job = chk.string(raw, "job_number", path, pattern=re.compile(r"^\d{1,8}$"), hint="digits only (keypad login)")
    name = chk.string(raw, "name", path)
    position = chk.string(raw, "position", path)
    if position and position not in POSITIONS:
        chk.add(f"{path}.position", f"unknown position {position!r} (one of {', '.join(POSITIONS)})")
    pin_hash = chk.string(raw, "pin_hash", path)
    if pin_hash and not pin_hash.startswith("pbkdf2_sha256$"):
        chk.add(f"{path}.pin_hash", "must be a pbkdf2_sha256 hash (use `hallctl hash-pin`)")
    for key in (sid, job):
        if key and key in seen_staff:
            chk.add(path, f"duplicate staff id or job number {key!r}")
        if key:
            seen_staff.add(key)
    if not (sid and job and name and position and pin_hash):
        return None
    return Staff(sid, job, name, position, pin_hash)


def _clients(raw: Any, window_numbers: set[int], chk: _Checker) -> list[ClientConfig]:
    clients: list[ClientConfig] = []
    seen_clients: set[str] = set()
    for i, item in enumerate(chk.seq(raw, "clients")):
        client = _client(i, item, seen_clients, window_numbers, chk)
        if client:
            clients.append(client)
    return clients


def _client(i: int, raw: Any, seen_clients: set[str], window_numbers: set[int],
            chk: _Checker) -> ClientConfig | None:
    path = f"clients[{i}]"
    raw = chk.mapping(raw, path)
    chk.unknown_keys(raw, {"id", "role", "window"}, path)
    cid = chk.string(raw, "id", path, pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"),
                     hint="letters, digits, - and _ (no MQTT wildcards)")
    if cid:
        path = f"clients[{i}] ({cid})"
    role = chk.string(raw, "role", path)
    if role and role not in ROLES:
        chk.add(f"{path}.role", f"unknown role {role!r} (one of {', '.join(ROLES)})")
        role = None
    window = chk.integer(raw, "window", path, minimum=1)
    if role == "tablet" and window is None:      # a window client without one is a supervisor's terminal
        chk.add(f"{path}.window", f"is required for role {role!r}")
    if window is not None and window not in window_numbers:
        chk.add(f"{path}.window", f"window {window} is not defined")
    if cid in seen_clients:
        chk.add(f"{path}.id", f"duplicate client id {cid!r}")
    if cid:
        seen_clients.add(cid)
    if not (cid and role):
        return None
    return ClientConfig(cid, role, window)


def _database(root: dict, chk: _Checker) -> tuple[str, str]:
    """(`sqlite_sync`, `database` URL as written)."""
    sqlite_sync = root.get("sqlite_sync", "full")
    if sqlite_sync not in ("full", "normal"):
        chk.add("sqlite_sync", f"must be full (survives a power cut) or normal (survives a crash), got {sqlite_sync!r}")
        sqlite_sync = "full"
    db = root.get("database", "sqlite:///hall.db")
    if not isinstance(db, str) or "://" not in db:
        chk.add("database", f"must be an SQLAlchemy URL like sqlite:///hall.db, got {db!r}")
        db = "sqlite:///hall.db"
    return sqlite_sync, db


def _links(root: dict, chk: _Checker) -> tuple[dict, dict, int, dict]:
    """`mqtt:`, `upstream:` and `emulator:` -> (mqtt, upstream, upstream.report_day, emulator)."""
    mqtt = chk.mapping(root.get("mqtt"), "mqtt")
    chk.unknown_keys(mqtt, {"listen", "url", "ca"}, "mqtt")
    if mqtt.get("ca") is not None and not isinstance(mqtt["ca"], str):
        chk.add("mqtt.ca", f"must be the path of the hall CA certificate (ca.crt), got {mqtt['ca']!r}")
    upstream = chk.mapping(root.get("upstream"), "upstream")
    chk.unknown_keys(upstream, {"url", "token", "report_day"}, "upstream")
    report_day = chk.integer(upstream, "report_day", "upstream", default=25, minimum=1, maximum=28) or 25
    emulator = chk.mapping(root.get("emulator"), "emulator")
    chk.unknown_keys(emulator, {"control"}, "emulator")
    if emulator.get("control") is not None:
        _check_hostport(emulator["control"], "emulator.control", chk)
    if mqtt.get("listen") is not None:
        _check_hostport(mqtt["listen"], "mqtt.listen", chk)
    return mqtt, upstream, report_day, emulator


def _display(raw: Any, chk: _Checker) -> str:
    """`display.notice`: the hall display's scrolling line."""
    display = chk.mapping(raw, "display")
    chk.unknown_keys(display, {"notice"}, "display")
    return chk.string(display, "notice", "display", required=False) or ""


def _scans(raw: Any, chk: _Checker) -> tuple[int, int]:
    """`scans:` -> (max_mb, retention_days)."""
    scan_cfg = chk.mapping(raw, "scans")
    chk.unknown_keys(scan_cfg, {"max_mb", "retention_days"}, "scans")
    scan_max_mb = chk.integer(scan_cfg, "max_mb", "scans", default=10, minimum=1, maximum=50) or 10
    scan_retention = chk.integer(scan_cfg, "retention_days", "scans", default=30, minimum=0, maximum=3650) or 0
    return scan_max_mb, scan_retention


def _privacy(raw: Any, chk: _Checker) -> int:
    """`privacy.retention_days`: days a closed, delivered visit keeps its holder's personal data."""
    privacy = chk.mapping(raw, "privacy")
    chk.unknown_keys(privacy, {"retention_days"}, "privacy")
    return chk.integer(privacy, "retention_days", "privacy", default=180, minimum=1, maximum=3650) or 180


_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def _web(raw: Any, chk: _Checker) -> tuple[str | None, str | None, tuple[str, str] | None]:
    """`web:` {listen, public_url, wifi: {ssid, password} | null} -> (listen, public_url, wifi).

    public_url is what the QR codes carry, so it must be an address phones on the hall LAN reach;
    without it the listen address is used, unless that is a wildcard (0.0.0.0), which no phone can open."""
    web = chk.mapping(raw, "web")
    chk.unknown_keys(web, {"listen", "public_url", "wifi"}, "web")
    listen = web.get("listen")
    if listen is not None:
        _check_hostport(listen, "web.listen", chk)
    public_url = web.get("public_url")
    if public_url is not None:
        if not isinstance(public_url, str) or not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", public_url):
            chk.add("web.public_url", f"must be an http(s) URL such as http://192.168.10.2:8080, got {public_url!r}")
            public_url = None
        else:
            public_url = public_url.rstrip("/")
    elif isinstance(listen, str) and ":" in listen:
        if listen.rsplit(":", 1)[0] in _WILDCARD_HOSTS:
            chk.add("web.public_url", f"is required when web.listen is {listen!r}: the address phones open "
                                      "from the QR code, e.g. http://192.168.10.2:8080")
        else:
            public_url = f"http://{listen}"
    return listen, public_url, _web_wifi(web.get("wifi"), chk)


def _web_wifi(raw: Any, chk: _Checker) -> tuple[str, str] | None:
    """`web.wifi`: the visitor network's SSID and WPA password, printed as a join QR (null: none)."""
    if raw is None:
        return None
    wifi = chk.mapping(raw, "web.wifi")
    chk.unknown_keys(wifi, {"ssid", "password"}, "web.wifi")
    ssid = chk.string(wifi, "ssid", "web.wifi")
    password = wifi.get("password", "")
    if password is None:
        password = ""
    if not isinstance(password, str) or (password and not 8 <= len(password) <= 63):
        chk.add("web.wifi.password", "must be the WPA password (8–63 characters), or empty for an open network")
        return None
    if ssid and len(ssid.encode()) > 32:
        chk.add("web.wifi.ssid", f"must be at most 32 bytes, got {len(ssid.encode())}")
        return None
    return (ssid, password) if ssid else None


_DISTRICT_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _city(raw: Any, base_dir: Path, chk: _Checker) -> dict[str, Any]:
    """`city:` {url, ca?, district, username, password_file, follow_up?} -> the HallConfig city_* fields
    (none when `city` is null: the hall reports to no city broker)."""
    if raw is None:
        return {}
    city = chk.mapping(raw, "city")
    chk.unknown_keys(city, {"url", "ca", "district", "username", "password_file", "follow_up"}, "city")
    url = chk.string(city, "url", "city", pattern=re.compile(r"^(mqtts?|tcp)://[^\s]+$"),
                     hint="mqtts://HOST:8883 (or mqtt://HOST:1883)")
    district = chk.string(city, "district", "city", pattern=_DISTRICT_RE,
                          hint="letters, digits, - and _ (at most 32; an MQTT topic segment), e.g. '310101'")
    username = chk.string(city, "username", "city")
    password_file = chk.string(city, "password_file", "city")
    ca = chk.string(city, "ca", "city", required=False)
    follow = chk.mapping(city.get("follow_up"), "city.follow_up")
    chk.unknown_keys(follow, {"contact_minutes", "fix_hours"}, "city.follow_up")
    contact = chk.integer(follow, "contact_minutes", "city.follow_up", default=60, minimum=1, maximum=7 * 24 * 60)
    fix = chk.integer(follow, "fix_hours", "city.follow_up", default=72, minimum=1, maximum=90 * 24)
    return {"city_url": url, "city_ca": _resolve(base_dir, ca) if ca else None, "city_district": district,
            "city_username": username,
            "city_password_file": _resolve(base_dir, password_file) if password_file else None,
            "city_contact_minutes": contact or 60, "city_fix_hours": fix or 72}


def _monitoring(raw: Any, chk: _Checker) -> str | None:
    """`monitoring.listen`: HOST:PORT of the daemon's /metrics and /healthz (port 0: any free one)."""
    monitoring = chk.mapping(raw, "monitoring")
    chk.unknown_keys(monitoring, {"listen"}, "monitoring")
    listen = monitoring.get("listen")
    if listen is not None:
        _check_hostport(listen, "monitoring.listen", chk)
    return listen if isinstance(listen, str) else None


def _check_hostport(value: Any, path: str, chk: _Checker) -> None:
    if not isinstance(value, str) or ":" not in value or not value.rsplit(":", 1)[1].isdigit():
        chk.add(path, f"must be HOST:PORT, got {value!r}")


def load_config(path: str | Path) -> HallConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    return parse_config(data, str(path), path.parent.resolve())


def sample_config_text() -> str:
    """The demo hall of DESIGN §9, with fresh PIN hashes for the demo PIN 1234."""
    template = resources.files("hall_controller").joinpath("sample_hall.yaml").read_text(encoding="utf-8")
    pin = hash_pin("1234", iterations=20_000)
    return template.replace("__DEMO_PIN_HASH__", pin)
