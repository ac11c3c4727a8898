"""Which days, and which hours of a day, the hall is open: the one rule the engine (refuses tickets
with `closed`), the kiosk (暂停取号), `hallctl status` and the daemon's start-up check all use.

A day's hours come from, first to last (the first that says something wins):
1. the site's `hall.calendar.hours` for that date (its own hours, or `closed`);
2. the site's `hall.calendar.closed` dates (closed) and `hall.calendar.open` dates (open with the
   hours of `workday_as`, Monday by default);
3. the State Council's holiday schedule (`holidays: cn`, from the `chinese-calendar` package): a
   national holiday is closed even on a weekday; a make-up working day (调休上班, e.g. Saturday
   10 October 2026) is open with the hours of `workday_as`;
4. the weekly `hall.opening_hours` of that weekday.
A date the schedule has no data for yet (chinese-calendar 1.11.0 knows 2004–2026 and raises
NotImplementedError for 2027) is taken by its weekday and reported (`CoverageWatch`, `status_line`);
it never stops the hall.

Pure: no I/O and no clock (callers pass the day); chinese-calendar is a data library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

Span = tuple[time, time]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
HOLIDAY_SOURCES = ("cn", "none")   # cn: the State Council's schedule (chinese-calendar); none: weekdays only
LOOKAHEAD_DAYS = 30                # an uncovered date this close is reported at start, so IT has time to act

# what a day's plan rests on
WEEKDAY, HOLIDAY, WORKDAY, SITE_CLOSED, SITE_OPEN, SITE_HOURS, UNCOVERED = (
    "weekday", "holiday", "workday", "site_closed", "site_open", "site_hours", "uncovered")


def _schedule_lib() -> Any:
    """chinese_calendar, or None when it is not installed (config validation says so for `holidays: cn`)."""
    try:
        import chinese_calendar
    except ImportError:
        return None
    return chinese_calendar


def schedule_available() -> bool:
    return _schedule_lib() is not None


def schedule_version() -> str:
    lib = _schedule_lib()
    return str(getattr(lib, "__version__", "?")) if lib is not None else "(not installed)"


def schedule_years() -> tuple[int, int] | None:
    """The years the installed schedule has data for, e.g. (2004, 2026); None without the package."""
    lib = _schedule_lib()
    if lib is None or not lib.holidays:
        return None
    return min(lib.holidays).year, max(lib.holidays).year


def schedule_day(day: date) -> tuple[str, str | None] | None:
    """The State Council's word on `day`: (HOLIDAY, name) for a national holiday, (WORKDAY, name) for a
    make-up working day, (WEEKDAY, None) for an ordinary day; None when the schedule has no data for it."""
    lib = _schedule_lib()
    if lib is None:
        return None
    try:
        _rest, name = lib.get_holiday_detail(day)
    except NotImplementedError:     # a year the installed package does not know yet
        return None
    chinese = _chinese_name(lib, name)
    if day in lib.workdays:
        return WORKDAY, chinese
    if day in lib.holidays:
        return HOLIDAY, chinese
    return WEEKDAY, None


def _chinese_name(lib: Any, name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    for holiday in lib.Holiday:
        if holiday.value == name:
            return str(holiday.chinese)
    return name


@dataclass(frozen=True)
class DayPlan:
    """One date's opening hours and why."""

    day: date
    spans: tuple[Span, ...]
    basis: str                    # WEEKDAY, HOLIDAY, WORKDAY, SITE_*, UNCOVERED
    holiday: str | None = None    # 国庆节 … (a holiday or the holiday a make-up working day belongs to)

    @property
    def is_open_day(self) -> bool:
        return bool(self.spans)

    def open_at(self, moment: time) -> bool:
        return any(start <= moment <= end for start, end in self.spans)

    @property
    def hours_text(self) -> str:
        """09:00–12:00、13:30–17:00; 全天 for around the clock; 不开放 when closed."""
        if not self.spans:
            return "不开放"
        if self.spans == ((time(0, 0), time(23, 59, 59, 999999)),):
            return "全天"
        return "、".join(f"{s:%H:%M}–{'24:00' if e == time(23, 59, 59, 999999) else f'{e:%H:%M}'}"
                        for s, e in self.spans)

    @property
    def reason_text(self) -> str:
        """Why the day has these hours, in Chinese."""
        return {
            HOLIDAY: f"{self.holiday or '法定节假日'}放假",
            WORKDAY: f"调休上班（{self.holiday}）" if self.holiday else "调休上班",
            SITE_CLOSED: "本中心安排闭厅",
            SITE_OPEN: "本中心安排开放",
            SITE_HOURS: "本中心当日特别安排",
            UNCOVERED: "节假日安排未覆盖，按常规安排",
        }.get(self.basis, "常规安排")

    def closed_text(self, moment: time) -> str:
        """What a visitor reads when the hall is closed at `moment` (kiosk closed screen, `closed` reply)."""
        if self.basis == HOLIDAY:
            return f"今日{self.holiday or '法定节假日'}放假，不在服务时间，请在工作日前来办理"
        if not self.spans:
            return "今日不在服务时间，请在工作日前来办理"
        return f"当前不在服务时间，请在办公时间内取号（今日办公时间 {self.hours_text}）"


@dataclass(frozen=True)
class HallCalendar:
    """`hall.calendar` of the config: the holiday schedule in use and the site's overrides."""

    holidays: str = "cn"
    workday_as: str = "mon"
    closed: frozenset[date] = frozenset()
    open: frozenset[date] = frozenset()
    hours: Mapping[date, tuple[Span, ...]] = field(default_factory=dict)

    def plan(self, day: date, weekly: Mapping[str, tuple[Span, ...]]) -> DayPlan:
        """The hours of `day` (a date in the hall's zone) under the rule in this module's docstring."""
        if day in self.hours:
            return DayPlan(day, tuple(self.hours[day]), SITE_HOURS)
        if day in self.closed:
            return DayPlan(day, (), SITE_CLOSED)
        workday_hours = tuple(weekly.get(self.workday_as, ()))
        if day in self.open:
            return DayPlan(day, workday_hours, SITE_OPEN)
        own = tuple(weekly.get(WEEKDAYS[day.weekday()], ()))
        if self.holidays != "cn":
            return DayPlan(day, own, WEEKDAY)
        said = schedule_day(day)
        if said is None:
            return DayPlan(day, own, UNCOVERED)
        basis, name = said
        if basis == HOLIDAY:
            return DayPlan(day, (), HOLIDAY, name)
        if basis == WORKDAY:
            return DayPlan(day, workday_hours, WORKDAY, name)
        return DayPlan(day, own, WEEKDAY)

    def first_uncovered(self, first: date, days: int = LOOKAHEAD_DAYS) -> date | None:
        """The first date in [first, first + days] that the holiday schedule has no data for and no site
        override decides; None when all are covered (or the hall does not follow the schedule)."""
        if self.holidays != "cn":
            return None
        for offset in range(days + 1):
            day = first + timedelta(days=offset)
            if day in self.hours or day in self.closed or day in self.open:
                continue
            if schedule_day(day) is None:
                return day
        return None


def uncovered_warning(day: date, today: date) -> str:
    """The operator's warning (Chinese, then English) for a date the schedule does not cover."""
    years = schedule_years()
    known = f"{years[0]}–{years[1]}年" if years else "（未安装）"
    when = "今天" if day == today else f"{day.isoformat()} 起"
    known_en = f"{years[0]}-{years[1]}" if years else "nothing (not installed)"
    return (f"节假日安排（chinese-calendar {schedule_version()}）只有{known}的数据：{when}按星期的开放时间开放，"
            f"法定节假日和调休不会自动生效。请升级 chinese-calendar，或在 hall.calendar 的 closed/open/hours 中登记"
            f" / the holiday schedule (chinese-calendar {schedule_version()}) covers {known_en} only: from "
            f"{day.isoformat()} the hall opens by weekday, without public holidays or make-up working days. "
            f"Upgrade chinese-calendar or list the days under hall.calendar (closed/open/hours)")


class CoverageWatch:
    """Reports, once per run, the first date within LOOKAHEAD_DAYS the schedule does not cover. The
    daemon asks at start and on each tick (cheap: it looks again only when the hall's date changes)."""

    def __init__(self, calendar: HallCalendar, days: int = LOOKAHEAD_DAYS) -> None:
        self.calendar, self.days = calendar, days
        self._looked: date | None = None
        self.reported: date | None = None

    def check(self, today: date) -> str | None:
        """The warning to log, the first time an uncovered date comes within range; else None."""
        if self.reported is not None or today == self._looked:
            return None
        self._looked = today
        day = self.calendar.first_uncovered(today, self.days)
        if day is None:
            return None
        self.reported = day
        return uncovered_warning(day, today)


def status_line(plan: DayPlan, calendar: HallCalendar, now_local: datetime) -> str:
    """`hallctl status`'s line: today's hours and why, and a warning when the schedule runs out soon."""
    weekday = WEEKDAY_NAMES[plan.day.weekday()]
    source = {"cn": "国务院节假日安排", "none": "不按节假日"}.get(calendar.holidays, calendar.holidays)
    state = "开放中" if plan.open_at(now_local.time()) else "未开放"
    hours = f"办公时间 {plan.hours_text}" if plan.spans else "全天不开放"
    line = f"开放日历（{source}）：今天 {plan.day.isoformat()} {weekday} {plan.reason_text}，{hours}，现在{state}"
    day = calendar.first_uncovered(plan.day)
    if day is not None:
        line += "\n注意：" + uncovered_warning(day, plan.day)
    return line
