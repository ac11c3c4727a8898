"""Open on the right days: the State Council's holiday schedule (chinese-calendar) and the site's own
days over the weekly opening hours, one rule (hall_controller.hall_calendar) for engine, kiosk,
`hallctl status` and the daemon's start-up check.

Test halls open Mon–Fri 09:00–17:00 (the sample hall opens around the clock every day and does not
follow the schedule, so the suite passes on any date, 1 October included). National Day 2026: 1–7
October closed, Saturday 10 October a make-up working day (调休上班).
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from hall_controller import hall_calendar as hc
from hall_controller.bus.client import CommandError, HallClient
from hall_controller.cli import main as hallctl
from hall_controller.clock import ManualClock
from hall_controller.config import ConfigError, load_config, parse_config
from hall_controller.daemon import DaemonOptions, HallDaemon
from hall_controller.service import Actor
from kiosk_ui.kiosk import KioskModel, KioskWindow

from .conftest import sample_data
from .harness import Hall, no_devices, wait_until

TZ = ZoneInfo("Asia/Shanghai")
WEEKDAY_HOURS = {"mon": "09:00-17:00", "tue": "09:00-17:00", "wed": "09:00-17:00", "thu": "09:00-17:00",
                 "fri": "09:00-17:00", "sat": "closed", "sun": "closed"}
NATIONAL_DAY = [date(2026, 10, d) for d in range(1, 8)]      # Thu 1 … Wed 7: closed, weekdays too
MAKE_UP_SATURDAY = date(2026, 10, 10)
ORDINARY_SUNDAY = date(2026, 11, 22)


def at(day: date, hhmm: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day.isoformat()}T{hhmm}").replace(tzinfo=TZ)


def office_hall(calendar: dict[str, Any] | None = None) -> dict[str, Any]:
    data = sample_data()
    data["hall"]["opening_hours"] = dict(WEEKDAY_HOURS)
    data["hall"]["calendar"] = {"holidays": "cn", **(calendar or {})}
    return data


def config_of(calendar: dict[str, Any] | None = None):
    return parse_config(office_hall(calendar), "hall.yaml")


def first_uncovered_year() -> int:
    years = hc.schedule_years()
    assert years is not None and years[1] >= 2026       # the pin: chinese-calendar>=1.11 knows 2026
    return years[1] + 1


# ------------------------------------------------------------------ the rule, plain

def test_national_holidays_close_and_the_make_up_saturday_opens_with_weekday_hours() -> None:
    c = config_of()
    for day in NATIONAL_DAY:
        plan = c.day_plan(day)
        assert (plan.basis, plan.holiday, plan.spans) == (hc.HOLIDAY, "国庆节", ()), day
        assert not c.is_open(at(day)) and "国庆节放假" in c.closed_text(at(day))
    assert [d.weekday() for d in NATIONAL_DAY if d.weekday() < 5] == [3, 4, 0, 1, 2]   # weekdays among them
    saturday = c.day_plan(MAKE_UP_SATURDAY)
    assert MAKE_UP_SATURDAY.weekday() == 5 and saturday.basis == hc.WORKDAY
    assert saturday.spans == c.opening_hours["mon"] and saturday.hours_text == "09:00–17:00"
    assert c.is_open(at(MAKE_UP_SATURDAY, "09:00")) and c.is_open(at(MAKE_UP_SATURDAY, "16:59"))
    assert not c.is_open(at(MAKE_UP_SATURDAY, "08:59")) and not c.is_open(at(MAKE_UP_SATURDAY, "17:01"))
    assert "09:00–17:00" in c.closed_text(at(MAKE_UP_SATURDAY, "08:00"))
    assert not c.is_open(at(ORDINARY_SUNDAY)) and c.day_plan(ORDINARY_SUNDAY).basis == hc.WEEKDAY
    assert c.is_open(at(date(2026, 10, 12))) and c.is_open(at(date(2026, 11, 23)))
    # hall time, not UTC: 2026-10-08 00:30 in Beijing is still 7 October in UTC
    assert not c.is_open(datetime(2026, 10, 7, 16, 30, tzinfo=ZoneInfo("UTC")))
    assert c.day_plan(date(2026, 10, 8)).basis == hc.WEEKDAY
    # positive control: by weekday only, the same hall would open on 1 October and not on the 10th
    weekly = config_of({"holidays": "none"})
    assert weekly.is_open(at(NATIONAL_DAY[0])) and not weekly.is_open(at(MAKE_UP_SATURDAY))


def test_site_overrides_win_over_the_schedule_both_ways_and_per_day_hours() -> None:
    c = config_of({"closed": [date(2026, 10, 12), "2026-10-10"], "open": [date(2026, 10, 5), "2026-11-22"],
                   "hours": {date(2026, 12, 24): "09:00-12:00", "2026-10-09": ["08:00-10:00", "14:00-15:00"],
                             date(2026, 11, 23): "closed"}})
    assert not c.is_open(at(date(2026, 10, 12))) and c.day_plan(date(2026, 10, 12)).basis == hc.SITE_CLOSED
    assert not c.is_open(at(MAKE_UP_SATURDAY))                       # the site closes a make-up day
    assert c.is_open(at(date(2026, 10, 5))) and c.day_plan(date(2026, 10, 5)).basis == hc.SITE_OPEN   # a holiday
    assert c.is_open(at(ORDINARY_SUNDAY)) and c.day_plan(ORDINARY_SUNDAY).spans == c.opening_hours["mon"]
    assert c.is_open(at(date(2026, 12, 24), "11:59")) and not c.is_open(at(date(2026, 12, 24), "13:00"))
    assert "09:00–12:00" in c.closed_text(at(date(2026, 12, 24), "13:00"))
    assert [c.is_open(at(date(2026, 10, 9), t)) for t in ("08:30", "12:00", "14:30", "16:00")] == \
        [True, False, True, False]
    assert not c.is_open(at(date(2026, 11, 23))) and c.day_plan(date(2026, 11, 23)).basis == hc.SITE_HOURS
    # workday_as picks the hours of make-up and open days
    fri = office_hall({"workday_as": "fri"})
    fri["hall"]["opening_hours"]["fri"] = "09:00-15:00"
    assert parse_config(fri).day_plan(MAKE_UP_SATURDAY).hours_text == "09:00–15:00"


def test_a_date_the_schedule_does_not_cover_opens_by_weekday_and_is_reported_once() -> None:
    c = config_of()
    year = first_uncovered_year()
    new_year = date(year, 1, 1)
    for offset in range(14):                           # no exception, weekday hours
        day = new_year + timedelta(days=offset)
        plan = c.day_plan(day)
        assert plan.basis == hc.UNCOVERED and c.is_open(at(day)) is (day.weekday() < 5), day
    if year == 2027:                                    # chinese-calendar 1.11: 1 January 2027, a Friday, opens
        assert c.is_open(at(date(2027, 1, 1))) and c.day_plan(date(2027, 1, 1)).basis == hc.UNCOVERED
    watch = hc.CoverageWatch(c.calendar)
    assert watch.check(date(year - 1, 11, 1)) is None                   # more than 30 days ahead: not yet
    warning = watch.check(date(year - 1, 12, 20))
    assert warning is not None and f"{year}-01-01" in warning and "chinese-calendar" in warning
    assert "按星期" in warning and "opens by weekday" in warning                      # Chinese, then English
    assert watch.check(date(year - 1, 12, 21)) is None and watch.check(new_year) is None   # once per run
    # days the site decided are not reported; a hall without the schedule never is
    assert hc.CoverageWatch(config_of({"closed": [new_year]}).calendar).check(new_year) is not None
    assert hc.CoverageWatch(config_of({"holidays": "none"}).calendar).check(new_year) is None
    status = c.calendar_status(at(new_year))
    assert "节假日安排未覆盖" in status and "注意：" in status and f"{year}-01-01" in status
    assert "国庆节放假" in c.calendar_status(at(NATIONAL_DAY[0])) and "注意" not in c.calendar_status(at(NATIONAL_DAY[0]))


def test_the_sample_hall_is_usable_at_any_hour_of_any_day() -> None:
    sample = parse_config(sample_data(), "sample.yaml")
    assert sample.calendar.holidays == "none"
    for moment in (at(NATIONAL_DAY[0], "03:00"), at(NATIONAL_DAY[4], "23:59"), at(ORDINARY_SUNDAY, "00:00"),
                   at(date(2027, 1, 1), "12:00"), at(date(2027, 2, 10), "10:00")):
        assert sample.is_open(moment), moment
    # positive control: the sample's hours with the schedule on would close on 1 October
    data = sample_data()
    data["hall"]["calendar"]["holidays"] = "cn"
    assert not parse_config(data).is_open(at(NATIONAL_DAY[0], "03:00"))


BAD_CALENDARS = [
    ({"holidays": "yes"}, "hall.calendar.holidays", "cn, none"),
    ({"workday_as": "someday"}, "hall.calendar.workday_as", "weekday"),
    ({"workday_as": "sat"}, "hall.calendar.workday_as", "no opening hours"),
    ({"closed": ["2026-13-01"]}, "hall.calendar.closed[0]", "YYYY-MM-DD"),
    ({"closed": "2026-12-31"}, "hall.calendar.closed", "must be a list"),
    ({"open": [date(2026, 10, 3), 20261004]}, "hall.calendar.open[1]", "YYYY-MM-DD"),
    ({"closed": [date(2026, 12, 31)], "open": ["2026-12-31"]}, "hall.calendar.open[0]", "also in hall.calendar.closed"),
    ({"hours": {"2026-12-24": "9-12"}}, "hall.calendar.hours.2026-12-24", "must be a span HH:MM-HH:MM"),
    ({"hours": {"Christmas": "09:00-12:00"}}, "hall.calendar.hours.Christmas", "YYYY-MM-DD"),
    ({"hours": {date(2026, 12, 24): "17:00-09:00"}}, "hall.calendar.hours.2026-12-24", "ends before it starts"),
    ({"hours": {date(2026, 12, 31): "closed"}, "closed": [date(2026, 12, 31)]}, "hall.calendar.hours.2026-12-31",
     "also in hall.calendar.closed"),
    ({"holiday": "cn"}, "hall.calendar.holiday", "unknown field"),
]


@pytest.mark.parametrize(("calendar", "field", "words"), BAD_CALENDARS, ids=[b[1] + ":" + b[2] for b in BAD_CALENDARS])
def test_bad_calendar_values_name_the_field(calendar: dict[str, Any], field: str, words: str) -> None:
    data = office_hall()
    data["hall"]["calendar"] = calendar
    with pytest.raises(ConfigError) as err:
        parse_config(data, "hall.yaml")
    assert any(f == field and words in m for f, m in err.value.problems), err.value.problems
    assert f"hall.yaml: {field}: " in str(err.value)


def test_not_a_mapping_and_a_missing_package_are_config_errors(monkeypatch) -> None:
    data = office_hall()
    data["hall"]["calendar"] = "cn"
    with pytest.raises(ConfigError, match=r"hall\.calendar: must be a mapping"):
        parse_config(data)
    monkeypatch.setitem(sys.modules, "chinese_calendar", None)           # `import chinese_calendar` fails
    with pytest.raises(ConfigError, match=r"hall\.calendar\.holidays: cn needs the chinese-calendar package"):
        parse_config(office_hall())
    assert parse_config(office_hall({"holidays": "none"})).is_open(at(date(2026, 10, 12)))
    assert hc.schedule_day(date(2026, 10, 1)) is None               # without it: nothing known, nothing raised


def test_config_file_dates_as_yaml_writes_them(tmp_path: Path) -> None:
    data = office_hall()
    data["hall"]["calendar"] = yaml.safe_load(
        "{holidays: cn, closed: [2026-12-31], open: ['2026-10-08'], hours: {2026-12-24: '09:00-12:00'}}")
    path = tmp_path / "hall.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    c = load_config(path)
    assert c.calendar.closed == {date(2026, 12, 31)} and c.calendar.open == {date(2026, 10, 8)}
    assert not c.is_open(at(date(2026, 12, 31))) and c.is_open(at(date(2026, 10, 8)))
    assert c.day_plan(date(2026, 12, 24)).hours_text == "09:00–12:00"


# ------------------------------------------------------------------ the daemon, the kiosk, hallctl

def office_daemon(tmp_path: Path, calendar: dict[str, Any]) -> Hall:
    """A hall open Mon–Fri 09:00–17:00 under the holiday schedule, its daemon in-process on a manual
    clock that starts on 1 October 2026, 10:00."""
    def office(data: dict[str, Any]) -> None:
        no_devices(data)
        data["hall"]["opening_hours"] = dict(WEEKDAY_HOURS)
        data["hall"]["calendar"] = copy.deepcopy(calendar)

    return Hall(tmp_path, mutate=office, clock=ManualClock(at(NATIONAL_DAY[0])))


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Hall]:
    hall = office_daemon(tmp_path, {"holidays": "cn", "closed": ["2026-10-13"], "hours": {"2026-10-14": "09:00-12:00"}})
    try:
        yield hall
    finally:
        hall.close()


def _issue(kiosk: HallClient) -> str:
    """The number issued, or the error code with its message."""
    try:
        return kiosk.request("issue_ticket", service="consult")["ticket"]["number"]
    except CommandError as exc:
        return f"{exc.code}: {exc.message}"


def test_the_daemon_and_kiosk_follow_the_holiday_schedule(qtbot, office: Hall, caplog, capsys) -> None:
    caplog.set_level(logging.WARNING, logger="hall_controller.daemon")
    kiosk_client = office.client("kiosk-2", "kiosk")
    bus = office.bus(qtbot, "kiosk-1", "kiosk")
    knows = KioskWindow(KioskModel(bus, office.config, office.clock), "示范区")    # --config: knows the days
    told = KioskWindow(KioskModel(bus, None, office.clock), "示范区")              # --mqtt-url: the daemon tells
    for window in (knows, told):
        qtbot.addWidget(window)
        window.resize(1920, 1080)
        window.show()

    # 1–7 October: closed, weekdays included; the kiosk with the config shows 暂停取号 at once
    for day in NATIONAL_DAY:
        office.clock.set(at(day))
        refused = _issue(kiosk_client)
        assert refused.startswith("closed: ") and "国庆节放假" in refused, (day, refused)
        knows.model.check_schedule()
        assert knows.stack.currentWidget() is knows.closed_page and "国庆节" in knows.closed_text.text()
    assert knows.closed_page.findChildren(type(knows.closed_text))[0].text() == "暂停取号"
    assert knows.grab().save(str(Path(office.config_path).parent / "kiosk-national-day.png"))
    # the kiosk without the config learns it from the daemon's `closed` reply
    qtbot.waitUntil(lambda: len(told._buttons) == 6 and told._buttons["consult"].isEnabled(), timeout=10_000)
    told._issue("consult")
    qtbot.waitUntil(lambda: told.stack.currentWidget() is told.closed_page, timeout=10_000)
    assert "国庆节" in told.closed_text.text()
    assert not caplog.records                                 # 2026 is covered: nothing to report at start

    # Saturday 10 October, a make-up working day: weekday hours
    office.clock.set(at(MAKE_UP_SATURDAY, "08:30"))
    assert _issue(kiosk_client).startswith("closed: 当前不在服务时间")
    office.clock.set(at(MAKE_UP_SATURDAY))
    assert _issue(kiosk_client) == "A001"
    knows.model.check_schedule()
    assert knows.stack.currentWidget() is not knows.closed_page
    # an ordinary Sunday, then the site's closed Tuesday and its short Wednesday
    office.clock.set(at(date(2026, 10, 11)))
    assert _issue(kiosk_client).startswith("closed: ")
    office.clock.set(at(date(2026, 10, 12)))
    assert _issue(kiosk_client) == "A001"                    # a new business day
    office.clock.set(at(date(2026, 10, 13)))
    assert _issue(kiosk_client).startswith("closed: ")
    office.clock.set(at(date(2026, 10, 14), "11:00"))
    assert _issue(kiosk_client) == "A001"
    office.clock.set(at(date(2026, 10, 14), "12:30"))
    assert "09:00–12:00" in _issue(kiosk_client)

    # the schedule's data end within 30 days: said once, in the log, by the running daemon
    year = first_uncovered_year()
    office.clock.set(at(date(year - 1, 12, 20)))
    wait_until(lambda: any("chinese-calendar" in r.getMessage() for r in caplog.records), 10, "the coverage warning")
    new_year = date(year, 1, 1)                               # 1 January 2027 with chinese-calendar 1.11
    office.clock.set(at(new_year))
    knows.model.check_schedule()                              # no exception in the kiosk either
    result = _issue(kiosk_client)
    assert (result == "A001") is (new_year.weekday() < 5), result          # by weekday: a Friday opens
    assert (knows.stack.currentWidget() is knows.closed_page) is (new_year.weekday() >= 5)
    time.sleep(2.5)                                            # two more ticks of the daemon's clock loop
    warnings = [r.getMessage() for r in caplog.records if "chinese-calendar" in r.getMessage()]
    assert len(warnings) == 1 and f"{year}-01-01" in warnings[0] and "按星期" in warnings[0]

    # hallctl status says today's plan and the warning, in one place
    capsys.readouterr()
    assert hallctl(["--log-level", "ERROR", "status", "--config", str(office.config_path)], clock=office.clock) == 0
    out = capsys.readouterr().out
    assert "开放日历（国务院节假日安排）" in out and "节假日安排未覆盖" in out and "注意：" in out
    assert knows.grab().save(str(Path(office.config_path).parent / "kiosk-new-year.png"))


def test_the_daemon_reports_an_uncovered_date_once_at_start(tmp_path: Path, caplog) -> None:
    """Started on a date the schedule has no data for: one warning (Chinese, then English) at start,
    none on the ticks after; the hall serves by weekday."""
    year = first_uncovered_year()
    monday = next(date(year, 1, d) for d in range(1, 8) if date(year, 1, d).weekday() == 0)
    config = replace(config_of(), mqtt_listen=None, mqtt_url=None, devices=(), upstream_url=None,
                     secret_path=str(tmp_path / "hall.secret"))
    clock = ManualClock(at(monday))                           # 2027-01-04 with chinese-calendar 1.11
    caplog.set_level(logging.WARNING, logger="hall_controller.daemon")
    daemon = HallDaemon(config, DaemonOptions(db_url=f"sqlite:///{tmp_path}/hall.db"), clock=clock)
    daemon.start()
    try:
        said = [r for r in caplog.records if "chinese-calendar" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.WARNING
        assert "今天按星期" in said[0].getMessage() and f"from {monday} the hall opens by weekday" in said[0].getMessage()
        clock.advance(days=1)
        time.sleep(2.5)                                         # ticks on a new date: not said again
        assert len([r for r in caplog.records if "chinese-calendar" in r.getMessage()]) == 1
        assert daemon.service is not None
        ticket = daemon.service.execute(Actor("kiosk-1", "kiosk"), "issue_ticket", {"service": "consult"})
        assert ticket["ticket"]["number"] == "A001"
    finally:
        daemon.stop()
