"""The monthly statistics report 《××区公共法律服务统计月报表》 (due upstream by the 25th).

Computed from the service records of `records.build_service_record`, so the report and the
records the upstream holds agree. Definitions (口径), also printed on the report:
- a record is counted in the month (and day) of its `issued_at`, in the hall's local time;
- 取号数 = records (completed visits, no-shows and tickets cancelled at day end unserved);
  办结数 = records that were served (neither a no-show nor cancelled);
- 等候时长 = issue → first call (all records that were called); 办理时长 = start → finish (served);
- averages are arithmetic means rounded to 0.1 s; P90 is the nearest-rank 90th percentile
  (`percentile`): the value at rank ⌈0.9·n⌉ of the n values sorted ascending;
- 满意率 = share of ratings of 4 or 5 among rated records; 未评价数 = served records without a rating.
"""

from __future__ import annotations

import calendar
import html
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

SCORES = (1, 2, 3, 4, 5)
SATISFIED_MIN_SCORE = 4
UNSERVED = frozenset({"no_show", "cancelled"})  # record outcomes that are not 办结
HALL_SUFFIX = "公共法律服务中心"

# (key in a stats dict, Chinese column header, kind) — one list drives the XLSX and the HTML.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("issued", "取号数", "int"),
    ("served", "办结数", "int"),
    ("no_show", "过号未到数", "int"),
    ("transfers", "转办次数", "int"),
    ("over_limit", "超时办结数", "int"),
    ("wait_avg", "平均等候时长(秒)", "seconds"),
    ("wait_p90", "等候时长P90(秒)", "seconds"),
    ("handling_avg", "平均办理时长(秒)", "seconds"),
    ("handling_p90", "办理时长P90(秒)", "seconds"),
    ("rated", "评价数", "int"),
    *((f"score_{s}", f"{s}分", "int") for s in SCORES),
    ("satisfaction_rate", "满意率", "percent"),
    ("not_rated", "未评价数", "int"),
)

DEFINITIONS = (
    "统计口径:按取号时间(本中心当地时间)计入所属月份和日期。",
    "取号数:已办结、过号未到及日终未办理而取消的号票数;办结数:不含过号未到和取消。",
    "等候时长:取号至首次叫号;办理时长:开始办理至办结。平均值保留一位小数。",
    "P90:最近秩法第90百分位数,即将n个数值升序排列后第⌈0.9n⌉个数值。",
    "满意率:评分4分及以上的评价数占评价数的比例;未评价数:办结但未评价的号票数。",
    "超时办结数:办理时长超过该事项办结时限的号票数。",
)


def percentile(values: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile: the smallest value such that at least p% of the values are <= it,
    i.e. element ⌈p·n/100⌉ (1-based) of the sorted values. Integer arithmetic, so that 90% of 10
    is exactly rank 9. None for no values."""
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-p * len(ordered) // 100)  # ceil without floating point
    return ordered[rank - 1]


def _average(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _score(record: dict[str, Any]) -> int | None:
    rating = record.get("rating")
    score = rating.get("score") if isinstance(rating, dict) else None
    return score if isinstance(score, int) and not isinstance(score, bool) and score in SCORES else None


def _stats(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """All report figures for one group of records."""
    served = [r for r in records if r.get("outcome") not in UNSERVED]
    waits = [r["wait_seconds"] for r in records if r.get("wait_seconds") is not None]
    handlings = [r["handling_seconds"] for r in served if r.get("handling_seconds") is not None]
    scores = [s for s in (_score(r) for r in served) if s is not None]
    stats: dict[str, Any] = {
        "issued": len(records),
        "served": len(served),
        "no_show": sum(1 for r in records if r.get("outcome") == "no_show"),
        "transfers": sum(len(r.get("transfers") or []) for r in records),
        "over_limit": sum(1 for r in served if r.get("over_limit")),
        "wait_avg": _average(waits),
        "wait_p90": percentile(waits, 90),
        "handling_avg": _average(handlings),
        "handling_p90": percentile(handlings, 90),
        "rated": len(scores),
    }
    for s in SCORES:
        stats[f"score_{s}"] = scores.count(s)
    good = sum(1 for s in scores if s >= SATISFIED_MIN_SCORE)
    stats["satisfaction_rate"] = round(good / len(scores), 4) if scores else None
    stats["not_rated"] = len(served) - len(scores)
    return stats


def _group(records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable]) -> dict[Any, list]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def _issued_date(record: dict[str, Any], tz: tzinfo | None = None) -> date | None:
    """The issue date in `tz` (the hall's zone; records carry UTC times from the daemon's clock)."""
    issued = record.get("issued_at")
    if not issued:
        return None
    moment = datetime.fromisoformat(issued)
    return (moment.astimezone(tz) if tz is not None else moment).date()


def compute_month_report(
    records: Iterable[dict[str, Any]],
    month: str,
    hall: dict[str, Any],
    services: dict[str, str],
    *,
    tz: tzinfo | None = None,
) -> dict[str, Any]:
    """The 月报表 for `month` ("YYYY-MM") of `hall` ({"code", "name", "district"?}); `services`
    maps service codes to names in report order. Records outside the month are ignored; days are
    taken in `tz` (the hall's time zone), or in each time's own offset when None."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    year, mon = int(match.group(1)), int(match.group(2))
    days = [date(year, mon, d) for d in range(1, calendar.monthrange(year, mon)[1] + 1)]
    selected = [r for r in records if (d := _issued_date(r, tz)) is not None and (d.year, d.month) == (year, mon)]

    name = hall.get("name") or hall.get("code") or ""
    district = hall.get("district") or name.removesuffix(HALL_SUFFIX)
    by_service = _group(selected, lambda r: r.get("service"))
    by_window = _group(selected, lambda r: r.get("window"))
    by_staff = _group(selected, lambda r: r.get("staff_id"))
    by_day = _group(selected, lambda r: _issued_date(r, tz))
    service_codes = list(services) + sorted(c for c in by_service if c not in services)
    return {
        "title": f"{district}公共法律服务统计月报表",
        "hall": {"code": hall.get("code"), "name": name, "district": district},
        "month": month,
        "period": {"from": days[0].isoformat(), "to": days[-1].isoformat()},
        "totals": _stats(selected),
        "by_service": [
            {"service": code, "name": services.get(code, code), **_stats(by_service.get(code, []))}
            for code in service_codes
        ],
        "by_window": [
            {"window": w, **_stats(by_window[w])}
            for w in sorted(by_window, key=lambda w: (w is None, w if w is not None else 0))
        ],
        "by_staff": [
            {"staff_id": s, **_stats(by_staff[s])}
            for s in sorted(by_staff, key=lambda s: (s is None, s or ""))
        ],
        "by_day": [{"date": d.isoformat(), **_stats(by_day.get(d, []))} for d in days],
    }


# -- rendering ------------------------------------------------------------------------------

TOTAL_LABEL = "合计"

# (report section, sheet / section title, label column header, label of one row)
_TABLES: tuple[tuple[str, str, str, Callable[[dict[str, Any]], str]], ...] = (
    ("by_service", "按服务", "服务类别", lambda row: row["name"]),
    ("by_window", "按窗口", "窗口", lambda row: "未分配" if row["window"] is None else f"{row['window']}号窗口"),
    ("by_staff", "按人员", "工作人员(工号)", lambda row: row["staff_id"] or "未登记"),
    ("by_day", "按日", "日期", lambda row: row["date"]),
)


def _subtitle(report: dict[str, Any]) -> str:
    return f"填报单位:{report['hall']['name']}    统计期间:{report['period']['from']} 至 {report['period']['to']}"


def _format(value: Any, kind: str) -> str:
    """Printed form of a figure; '—' where there is nothing to average or rate."""
    if value is None:
        return "—"
    if kind == "percent":
        return f"{value * 100:.1f}%"
    if kind == "seconds":
        return str(value) if isinstance(value, int) else f"{value:.1f}"
    return str(value)


def write_xlsx(report: dict[str, Any], path: str | Path) -> None:
    """Workbook with sheets 汇总, 按服务, 按窗口, 按人员, 按日; each table ends with a 合计 row."""
    bold = Font(bold=True)
    wb = Workbook()
    summary = wb.active
    summary.title = "汇总"
    summary.append([report["title"]])
    summary.append([_subtitle(report)])
    summary.append([])
    summary.append(["指标", "数值"])
    for key, header, kind in METRICS:
        summary.append([header, report["totals"][key]])
        cell = summary.cell(row=summary.max_row, column=2)
        if kind == "percent":
            cell.number_format = "0.0%"
    summary.append([])
    summary.append(["说明"])
    for line in DEFINITIONS:
        summary.append([line])
    for cell in (summary["A1"], summary["A4"], summary["B4"]):
        cell.font = bold
    summary["A1"].font = Font(bold=True, size=14)
    summary.column_dimensions["A"].width = 22
    summary.column_dimensions["B"].width = 14

    for section, title, label_header, label in _TABLES:
        ws = wb.create_sheet(title)
        ws.append([f"{report['title']}({title})"])
        ws["A1"].font = Font(bold=True, size=14)
        ws.append([_subtitle(report)])
        ws.append([label_header, *(header for _, header, _ in METRICS)])
        rows = [(label(row), row) for row in report[section]] + [(TOTAL_LABEL, report["totals"])]
        for text, stats in rows:
            ws.append([text, *(stats[key] for key, _, _ in METRICS)])
        for col, (_, _, kind) in enumerate(METRICS, start=2):
            for (cell,) in ws.iter_rows(min_row=4, min_col=col, max_col=col):
                if kind == "percent":
                    cell.number_format = "0.0%"
                elif kind == "seconds":
                    cell.number_format = "0.0"
        for cell in ws[3] + ws[ws.max_row]:
            cell.font = bold
        for cell in ws[3]:
            cell.alignment = Alignment(wrap_text=True, horizontal="center", vertical="center")
        ws.column_dimensions["A"].width = 18
        for col in range(2, len(METRICS) + 2):
            ws.column_dimensions[get_column_letter(col)].width = 11
        ws.freeze_panes = "B4"
        ws.page_setup.orientation = "landscape"
        ws.page_setup.fitToWidth = 1
        ws.sheet_properties.pageSetUpPr.fitToPage = True
    wb.save(path)


_CSS = """
@page { size: A4 landscape; margin: 12mm; }
body { font-family: "SimSun", "Songti SC", "Noto Serif CJK SC", serif; font-size: 10pt; color: #000; }
h1 { text-align: center; font-size: 18pt; margin: 0 0 4pt; }
p.sub { text-align: center; margin: 0 0 12pt; }
h2 { font-size: 12pt; margin: 14pt 0 4pt; }
table { border-collapse: collapse; width: 100%; page-break-inside: auto; }
th, td { border: 1px solid #000; padding: 2pt 4pt; text-align: right; }
th { background: #eee; text-align: center; }
td.label { text-align: left; white-space: nowrap; }
tr.total td { font-weight: bold; }
thead { display: table-header-group; }
tr { page-break-inside: avoid; }
section { page-break-before: always; }
ol.notes { font-size: 9pt; }
"""


def _html_table(label_header: str, rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (label_header, *(h for _, h, _ in METRICS)))
    body = []
    for i, (text, stats) in enumerate(rows):
        cls = ' class="total"' if i == len(rows) - 1 else ""
        cells = "".join(f"<td>{html.escape(_format(stats[k], kind))}</td>" for k, _, kind in METRICS)
        body.append(f'<tr{cls}><td class="label">{html.escape(text)}</td>{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    """A printable A4-landscape page in Chinese: key figures, then one table per breakdown."""
    title = html.escape(report["title"])
    summary_rows = "".join(
        f'<tr><td class="label">{html.escape(header)}</td><td>{html.escape(_format(report["totals"][key], kind))}</td></tr>'
        for key, header, kind in METRICS
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{title} {html.escape(report['month'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
        f'<p class="sub">{html.escape(_subtitle(report))}</p>',
        '<h2>汇总</h2><table style="width:auto"><thead><tr><th>指标</th><th>数值</th></tr></thead>',
        f"<tbody>{summary_rows}</tbody></table>",
    ]
    for index, (section, heading, label_header, label) in enumerate(_TABLES):
        rows = [(label(row), row) for row in report[section]] + [(TOTAL_LABEL, report["totals"])]
        opening = "<section>" if index else "<div>"
        closing = "</section>" if index else "</div>"
        parts.append(f"{opening}<h2>{html.escape(heading)}</h2>{_html_table(label_header, rows)}{closing}")
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in DEFINITIONS)
    parts.append(f'<h2>说明</h2><ol class="notes">{notes}</ol></body></html>')
    return "\n".join(parts)


def write_html(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(render_html(report), encoding="utf-8")
