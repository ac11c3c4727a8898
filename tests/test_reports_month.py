"""Monthly report figures against hand-computed values; XLSX and HTML output."""

from __future__ import annotations

import pytest
from openpyxl import load_workbook

from hall_controller.upstream.reports import (
    METRICS,
    compute_month_report,
    percentile,
    render_html,
    write_html,
    write_xlsx,
)

HALL = {"code": "demo", "name": "示范区公共法律服务中心"}
SERVICES = {"consult": "法律咨询", "legal_aid": "法律援助", "mediation": "人民调解"}


def rec(service, window, staff, issued, wait, handling, *, no_show=False, transfers=0, over=False, score=None):
    return {
        "service": service, "window": window, "staff_id": staff, "issued_at": issued,
        "wait_seconds": wait, "handling_seconds": handling,
        "outcome": "no_show" if no_show else "completed",
        "transfers": [{"to_service": service}] * transfers, "over_limit": over,
        "rating": None if score is None else {"score": score},
    }


RECORDS = [
    rec("consult", 1, "S001", "2024-05-06T09:00:00+08:00", 60, 300, score=5),
    rec("consult", 1, "S001", "2024-05-06T10:00:00+08:00", 120, 600, transfers=1, score=4),
    rec("consult", 2, "S002", "2024-05-06T11:00:00+08:00", 180, 900, over=True, score=3),
    rec("consult", 2, "S002", "2024-05-07T09:00:00+08:00", 240, None, no_show=True),
    rec("legal_aid", 4, "S004", "2024-05-07T10:00:00+08:00", 30, 1200, transfers=2, over=True),
    rec("legal_aid", 4, "S004", "2024-05-31T23:59:59+08:00", 90, 1800, score=1),
    rec("complaint", 8, None, "2024-05-20T14:00:00+08:00", 10, 20, score=5),
    # outside May in the hall's local time: ignored
    rec("consult", 1, "S001", "2024-06-01T00:00:00+08:00", 999, 999, score=1),
    rec("consult", 1, "S001", "2024-04-30T23:59:59+08:00", 999, 999, score=1),
]


@pytest.fixture(scope="module")
def report():
    return compute_month_report(RECORDS, month="2024-05", hall=HALL, services=SERVICES)


def test_percentile_nearest_rank():
    values = [15, 20, 35, 40, 50]
    assert [percentile(values, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert percentile(list(range(1, 11)), 90) == 9  # rank exactly 9, no float rounding up to 10
    assert percentile(list(range(1, 101)), 90) == 90
    assert percentile([3, 1, 2], 90) == 3  # unsorted input; rank ceil(2.7) = 3
    assert percentile([7], 90) == 7
    assert percentile([], 90) is None
    with pytest.raises(ValueError):
        percentile([1], 0)


def test_totals(report):
    t = report["totals"]
    assert (t["issued"], t["served"], t["no_show"], t["transfers"], t["over_limit"]) == (7, 6, 1, 3, 2)
    # waits 10 30 60 90 120 180 240: mean 730/7 = 104.29; rank ceil(6.3) = 7
    assert (t["wait_avg"], t["wait_p90"]) == (104.3, 240)
    # handling 20 300 600 900 1200 1800: mean 4820/6 = 803.33; rank ceil(5.4) = 6
    assert (t["handling_avg"], t["handling_p90"]) == (803.3, 1800)
    assert [t[f"score_{s}"] for s in range(1, 6)] == [1, 0, 1, 1, 2]
    assert (t["rated"], t["satisfaction_rate"], t["not_rated"]) == (5, 0.6, 1)


def test_by_service(report):
    rows = {r["service"]: r for r in report["by_service"]}
    assert [r["service"] for r in report["by_service"]] == ["consult", "legal_aid", "mediation", "complaint"]
    consult = rows["consult"]
    assert consult["name"] == "法律咨询"
    assert (consult["issued"], consult["served"], consult["no_show"], consult["transfers"]) == (4, 3, 1, 1)
    assert (consult["wait_avg"], consult["wait_p90"]) == (150.0, 240)  # 60 120 180 240; rank ceil(3.6)=4
    assert (consult["handling_avg"], consult["handling_p90"]) == (600.0, 900)  # rank ceil(2.7) = 3
    assert (consult["rated"], consult["satisfaction_rate"], consult["not_rated"]) == (3, 0.6667, 0)
    aid = rows["legal_aid"]
    assert (aid["issued"], aid["transfers"], aid["over_limit"]) == (2, 2, 1)
    assert (aid["wait_avg"], aid["wait_p90"], aid["handling_avg"], aid["handling_p90"]) == (60.0, 90, 1500.0, 1800)
    assert (aid["rated"], aid["score_1"], aid["satisfaction_rate"], aid["not_rated"]) == (1, 1, 0.0, 1)
    mediation = rows["mediation"]
    assert (mediation["name"], mediation["issued"], mediation["wait_avg"], mediation["satisfaction_rate"]) == (
        "人民调解", 0, None, None)
    assert rows["complaint"]["name"] == "complaint" and rows["complaint"]["satisfaction_rate"] == 1.0


def test_by_window_staff_and_day(report):
    assert [(r["window"], r["issued"], r["served"]) for r in report["by_window"]] == [
        (1, 2, 2), (2, 2, 1), (4, 2, 2), (8, 1, 1)]
    assert [(r["staff_id"], r["issued"]) for r in report["by_staff"]] == [
        ("S001", 2), ("S002", 2), ("S004", 2), (None, 1)]
    s001 = report["by_staff"][0]
    assert (s001["wait_avg"], s001["handling_avg"], s001["satisfaction_rate"]) == (90.0, 450.0, 1.0)
    days = report["by_day"]
    assert len(days) == 31 and days[0]["date"] == "2024-05-01" and days[-1]["date"] == "2024-05-31"
    assert {d["date"]: d["issued"] for d in days if d["issued"]} == {
        "2024-05-06": 3, "2024-05-07": 2, "2024-05-20": 1, "2024-05-31": 1}
    assert sum(d["issued"] for d in days) == report["totals"]["issued"]


def test_header(report):
    assert report["title"] == "示范区公共法律服务统计月报表"
    assert report["hall"] == {"code": "demo", "name": "示范区公共法律服务中心", "district": "示范区"}
    assert report["period"] == {"from": "2024-05-01", "to": "2024-05-31"}
    february = compute_month_report([], "2024-02", {"code": "x", "name": "某中心", "district": "浦东新区"}, {})
    assert february["title"] == "浦东新区公共法律服务统计月报表"
    assert len(february["by_day"]) == 29 and february["totals"]["issued"] == 0


@pytest.mark.parametrize("month", ["2024-13", "2024-5", "May 2024"])
def test_bad_month(month):
    with pytest.raises(ValueError):
        compute_month_report([], month, HALL, SERVICES)


def test_xlsx_sheets_headers_and_totals(report, tmp_path):
    path = tmp_path / "report.xlsx"
    write_xlsx(report, path)
    wb = load_workbook(path)
    assert wb.sheetnames == ["汇总", "按服务", "按窗口", "按人员", "按日"]

    summary = wb["汇总"]
    assert summary["A1"].value == "示范区公共法律服务统计月报表"
    figures = {row[0]: row[1] for row in summary.iter_rows(min_row=5, max_col=2, values_only=True) if row[0]}
    assert figures["取号数"] == 7 and figures["满意率"] == 0.6 and figures["等候时长P90(秒)"] == 240

    headers = ["取号数", "办结数", "过号未到数", "主动离队数", "转办次数", "超时办结数", "平均等候时长(秒)", "等候时长P90(秒)",
               "平均办理时长(秒)", "办理时长P90(秒)", "评价数", "1分", "2分", "3分", "4分", "5分", "满意率", "未评价数",
               "待评价数", "差评数", "差评已回访数", "差评待回访数", "未结束数"]
    totals = [report["totals"][key] for key, _, _ in METRICS]
    expected_rows = {"按服务": 4, "按窗口": 4, "按人员": 4, "按日": 31}
    for name, count in expected_rows.items():
        rows = list(wb[name].iter_rows(values_only=True))
        assert rows[2][1:] == tuple(headers)
        body, last = rows[3:-1], rows[-1]
        assert len(body) == count
        assert last[0] == "合计" and list(last[1:]) == totals
    service_rows = list(wb["按服务"].iter_rows(min_row=4, values_only=True))
    assert service_rows[0][:3] == ("法律咨询", 4, 3)
    assert [r[0] for r in wb["按窗口"].iter_rows(min_row=4, max_col=1, values_only=True)] == [
        "1号窗口", "2号窗口", "4号窗口", "8号窗口", "合计"]
    assert [r[0] for r in wb["按人员"].iter_rows(min_row=4, max_col=1, values_only=True)][-2:] == ["未登记", "合计"]


def test_html_is_printable_chinese(report, tmp_path):
    path = tmp_path / "report.html"
    write_html(report, path)
    text = path.read_text(encoding="utf-8")
    assert text == render_html(report)
    assert '<meta charset="utf-8">' in text and "@page" in text
    assert "<h1>示范区公共法律服务统计月报表</h1>" in text
    for heading in ("汇总", "按服务", "按窗口", "按人员", "按日", "说明"):
        assert f"<h2>{heading}</h2>" in text
    assert text.count('<tr class="total">') == 4
    assert "60.0%" in text and "66.7%" in text and "104.3" in text and "—" in text


def test_html_escapes_names(tmp_path):
    report = compute_month_report([], "2024-05", {"code": "x", "name": "<b>区</b>公共法律服务中心"}, {"a": "<i>"})
    text = render_html(report)
    assert "<b>" not in text and "&lt;b&gt;" in text and "&lt;i&gt;" in text
