"""The 月报表 of a month still running (every ticket issued counts, open visits shown as such, 截至),
and the charts of the XLSX (openpyxl) and HTML (inline SVG) reports."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from openpyxl import load_workbook
from openpyxl.chart import BarChart, LineChart

from hall_controller.cli import main as hallctl
from hall_controller.upstream.reports import chart_series, compute_month_report, render_html, write_xlsx
from hall_controller.upstream.service import build_month_report

from .conftest import TZ
from .harness import KIOSK, Hall, service_hall, tablet, window


def serve_many(hall: Hall, count: int, *, rate_first: int) -> list[dict]:
    """`count` visits at windows 1-3, five seconds apart; the first `rate_first` are rated 5, 4, 3 in turn."""
    for n in (1, 2, 3):
        hall.run(window(n), "login", staff_id=f"S00{n}", pin="1234")
    finished = []
    for i in range(count):
        n = i % 3 + 1
        hall.run(KIOSK, "issue_ticket", service="consult")
        hall.run(window(n), "call_next")
        hall.clock.advance(seconds=5)
        finished.append(hall.run(window(n), "finish")["ticket"])
    for i, ticket in enumerate(finished[:rate_first]):
        hall.run(tablet(ticket["window"]), "rate", ticket=ticket["id"], score=5 - i % 3)
    return finished


def test_a_running_month_counts_every_ticket_issued_and_says_as_of(tmp_path, capsys):
    hall = service_hall(tmp_path)
    try:
        serve_many(hall, 30, rate_first=24)        # 6 visits still inside their rating time
        now = hall.clock.now()
        report = build_month_report(hall.store.engine, hall.config, "2026-11", now=now)
        t = report["totals"]
        assert (t["issued"], t["served"], t["rated"], t["rating_pending"], t["not_rated"], t["open"]) == (
            30, 30, 24, 6, 0, 6)
        assert report["as_of"] == now.astimezone(TZ).isoformat(timespec="seconds")

        hall.run(KIOSK, "issue_ticket", service="legal_aid")   # waiting, not served yet
        hall.run(KIOSK, "issue_ticket", service="mediation")
        t = build_month_report(hall.store.engine, hall.config, "2026-11", now=now)["totals"]
        assert (t["issued"], t["served"], t["open"], t["rating_pending"]) == (32, 30, 8, 6)

        assert hallctl(["report", "month", "2026-11", "--config", str(hall.config_path), "--out",
                        str(tmp_path / "out")], clock=hall.clock) == 0
        assert "取号 32" in capsys.readouterr().out
        html = (tmp_path / "out" / "report-310101-demo-2026-11.html").read_text(encoding="utf-8")
        assert "截至 2026-11-23 09:02" in html

        # After the rating time the six are 未评价 and closed; the month is over on 1 December.
        hall.clock.advance(minutes=3)
        hall.service.tick()
        december = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)
        report = build_month_report(hall.store.engine, hall.config, "2026-11", now=december)
        t = report["totals"]
        assert (t["issued"], t["served"], t["rated"], t["not_rated"], t["rating_pending"]) == (32, 30, 24, 6, 0)
        assert t["open"] == 2 and report["as_of"] is None
    finally:
        hall.close()


def rec(day: int, window: int | None, wait: int, score: int | None) -> dict:
    return {"service": "consult", "window": window, "staff_id": "S001", "wait_seconds": wait,
            "issued_at": f"2024-05-{day:02d}T10:00:00+08:00", "handling_seconds": 300, "outcome": "completed",
            "transfers": [], "over_limit": False, "rating": None if score is None else {"score": score}}


RECORDS = [rec(2, 1, 60, 5), rec(2, 1, 180, 4), rec(2, 2, 600, 1), rec(3, 2, 1200, 5), rec(3, 3, 30, None),
           rec(31, 1, 120, 2)]


def test_chart_series_from_the_report():
    report = compute_month_report(RECORDS, "2024-05", {"code": "x", "name": "某区公共法律服务中心"}, {})
    series = chart_series(report)
    assert len(series["days"]) == 31 and series["days"][:3] == ["01", "02", "03"]
    assert series["visits"][:3] == [0, 3, 2] and series["visits"][30] == 1
    assert series["wait_minutes"][:3] == [None, 4.7, 10.2]             # (60+180+600)/3 s, (1200+30)/2 s
    assert series["windows"] == ["1号窗口", "2号窗口", "3号窗口"]
    assert series["satisfaction"] == [66.7, 50.0, None]                 # 2 of 3, 1 of 2, no rating


def test_xlsx_has_openpyxl_charts_drawn_from_the_figures(tmp_path):
    report = compute_month_report(RECORDS, "2024-05", {"code": "x", "name": "某区公共法律服务中心"}, {})
    path = tmp_path / "r.xlsx"
    write_xlsx(report, path)
    summary = load_workbook(path)["汇总"]
    charts = summary._charts
    assert len(charts) == 2
    daily, windows = charts
    assert isinstance(daily, BarChart) and isinstance(windows, BarChart)
    assert [type(c) for c in daily._charts] == [BarChart, LineChart]   # bars + the wait line
    assert "每日" in str(daily.title.tx.rich.p[0].r[0].t) and "满意率" in str(windows.title.tx.rich.p[0].r[0].t)
    # The referenced cells hold the report's figures.
    refs = [s.val.numRef.f for c in daily._charts for s in c.series] + [s.val.numRef.f for s in windows.series]
    assert refs == ["'汇总'!$AA$5:$AA$35", "'汇总'!$AB$5:$AB$35", "'汇总'!$AA$38:$AA$40"]
    assert [summary.cell(row=r, column=27).value for r in (5, 6, 7, 35)] == [0, 3, 2, 1]
    assert summary["AB6"].value == 4.7 and summary["AA38"].value == 66.7 and summary["AA40"].value is None


def test_html_has_inline_svg_charts(tmp_path):
    report = compute_month_report(RECORDS, "2024-05", {"code": "x", "name": "某区公共法律服务中心"}, {})
    text = render_html(report)
    svgs = re.findall(r"<svg .*?</svg>", text)
    assert len(svgs) == 2
    daily, windows = svgs
    assert "每日取号数与平均等候时长" in daily and "各窗口满意率" in windows
    bars = re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', daily)
    assert len(bars) == 31
    heights = [float(h) for _, h in bars]
    assert heights[1] > heights[2] > 0 and heights[0] == 0 and heights[1] == pytest.approx(1.5 * heights[2], abs=0.1)
    assert daily.count("<circle") == 3                                 # a wait point on each day with visits
    assert "66.7%" in windows and "50.0%" in windows and "无评价" in windows
    assert "截至" not in text                                          # no clock given: not marked as running
