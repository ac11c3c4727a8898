"""The monthly statistics report 《××区公共法律服务统计月报表》 (due upstream by the 25th).

Computed from the service records of `records.build_service_record`, so the report and the
records the upstream holds agree. Definitions (口径), also printed on the report:
- a record is counted in the month (and day) of its `issued_at`, in the hall's local time;
- 取号数 = every ticket issued (completed visits, no-shows, tickets that left the line from the phone
  page, tickets cancelled at day end unserved, and visits still open when the report is made, marked
  `"open": true`); 主动离队数 = outcome `left` (我不排了), counted apart from 过号未到 (no_show);
  办结数 = records that were served (neither a no-show, nor left, nor cancelled, nor still waiting or in service);
  未结束数 = visits still open (waiting, in service, or finished and waiting for their rating);
- 等候时长 = issue → first call (all records that were called); 办理时长 = start → finish (served);
- averages are arithmetic means rounded to 0.1 s; P90 is the nearest-rank 90th percentile
  (`percentile`): the value at rank ⌈0.9·n⌉ of the n values sorted ascending;
- 满意率 = share of ratings of 4 or 5 among rated records; 未评价数 = served records without a rating
  whose rating time is over; 待评价数 = finished visits still inside their rating time;
- 差评 = ratings of 1 or 2; 已回访 / 待回访 by the supervisor's follow-up (record field `follow_up`).
A report of a period not over yet carries `as_of` (the clock's time) and says 截至 … .
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
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

SCORES = (1, 2, 3, 4, 5)
SATISFIED_MIN_SCORE = 4
BAD_MAX_SCORE = 2                                # 差评: 1 非常不满意, 2 不满意
OPEN = "open"                                    # outcome of a visit still waiting or in service
LEFT = "left"                                    # left the line from the phone (我不排了), not a 过号
UNSERVED = frozenset({"no_show", LEFT, "cancelled", OPEN})  # record outcomes that are not 办结
HALL_SUFFIX = "公共法律服务中心"

# (key in a stats dict, Chinese column header, kind) — one list drives the XLSX and the HTML.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("issued", "取号数", "int"),
    ("served", "办结数", "int"),
    ("no_show", "过号未到数", "int"),
    ("left", "主动离队数", "int"),
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
    ("rating_pending", "待评价数", "int"),
    ("bad", "差评数", "int"),
    ("bad_followed_up", "差评已回访数", "int"),
    ("bad_open", "差评待回访数", "int"),
    ("open", "未结束数", "int"),
)

DEFINITIONS = (
    "统计口径:按取号时间(本中心当地时间)计入所属月份和日期。",
    "取号数:统计期间发出的全部号票,含已办结、过号未到、主动离队、日终未办理而取消及尚未结束的号票;"
    "办结数:不含过号未到、主动离队、取消及尚在等候或办理中的号票。",
    "主动离队数:访客在手机排队页面点“我不排了”离开队列的号票数,与过号未到数分开统计。",
    "未结束数:统计时仍在等候、办理中或办结后仍在评价时限内的号票。",
    "等候时长:取号至首次叫号;办理时长:开始办理至办结。平均值保留一位小数。",
    "P90:最近秩法第90百分位数,即将n个数值升序排列后第⌈0.9n⌉个数值。",
    "满意率:评分4分及以上的评价数占评价数的比例;未评价数:办结后评价时限内未评价的号票数;"
    "待评价数:办结后仍在评价时限内的号票数。",
    "差评:评分1分(非常不满意)或2分(不满意);已回访/待回访以值班负责人记录的回访整改为准。",
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
    bad = [r for r in served if (s := _score(r)) is not None and s <= BAD_MAX_SCORE]
    pending = sum(1 for r in served if r.get("open") and _score(r) is None)
    stats: dict[str, Any] = {
        "issued": len(records),
        "served": len(served),
        "no_show": sum(1 for r in records if r.get("outcome") == "no_show"),
        "left": sum(1 for r in records if r.get("outcome") == LEFT),
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
    stats["not_rated"] = len(served) - len(scores) - pending
    stats["rating_pending"] = pending
    stats["bad"] = len(bad)
    stats["bad_followed_up"] = sum(1 for r in bad if r.get("follow_up"))
    stats["bad_open"] = len(bad) - stats["bad_followed_up"]
    stats["open"] = sum(1 for r in records if r.get("open"))
    return stats


def _group(records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable]) -> dict[Any, list]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def staff_labels(staff: Iterable[Any]) -> dict[str, str]:
    """Staff id -> 王芳（1001） (name and job number) for the hall's staff (config `Staff` entries)."""
    return {s.id: f"{s.name}（{s.job_number}）" for s in staff}


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
    now: datetime | None = None,
    staff: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The 月报表 for `month` ("YYYY-MM") of `hall` ({"code", "name", "district"?}); `services`
    maps service codes to names in report order. Records outside the month are ignored; days are
    taken in `tz` (the hall's time zone), or in each time's own offset when None. `now` (from the
    caller's clock): when the month is not over at that time the report is marked as of then.
    `staff` maps staff ids to how people name them (王芳（1001）, see `staff_labels`); an id it does
    not know is shown as it is."""
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
    as_of = None
    if now is not None:
        local_now = now.astimezone(tz) if tz is not None else now
        if local_now.date() <= days[-1]:
            as_of = local_now.isoformat(timespec="seconds")
    return {
        "title": f"{district}公共法律服务统计月报表",
        "hall": {"code": hall.get("code"), "name": name, "district": district},
        "month": month,
        "period": {"from": days[0].isoformat(), "to": days[-1].isoformat()},
        "as_of": as_of,
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
            {"staff_id": s, "staff": (staff or {}).get(s, s) if s is not None else None, **_stats(by_staff[s])}
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
    ("by_staff", "按人员", "工作人员(工号)", lambda row: row.get("staff") or row["staff_id"] or "未登记"),
    ("by_day", "按日", "日期", lambda row: row["date"]),
)


def _subtitle(report: dict[str, Any]) -> str:
    text = f"填报单位:{report['hall']['name']}    统计期间:{report['period']['from']} 至 {report['period']['to']}"
    if report.get("as_of"):
        moment = datetime.fromisoformat(report["as_of"])
        text += f"    截至 {moment:%Y-%m-%d %H:%M}(本期尚未结束,未结束的号票单列)"
    return text


# -- charts: one set of series for the XLSX (openpyxl charts) and the HTML (inline SVG) -----------

def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _window_label(window: int | None) -> str:
    return "未分配" if window is None else f"{window}号窗口"


def chart_series(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the charts draw: per day visits and mean wait (minutes), per window satisfaction."""
    return {
        "days": [row["date"][-2:] for row in report["by_day"]],
        "visits": [row["issued"] for row in report["by_day"]],
        "wait_minutes": [_minutes(row["wait_avg"]) for row in report["by_day"]],
        "windows": [_window_label(row["window"]) for row in report["by_window"]],
        "satisfaction": [None if row["satisfaction_rate"] is None else round(row["satisfaction_rate"] * 100, 1)
                         for row in report["by_window"]],
    }


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1
    step = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    for factor in (1, 2, 5, 10):
        if value <= factor * step:
            return factor * step
    return 10 * step


def _svg_frame(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}" class="chart">',
            f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">'
            f"{html.escape(title)}</text>"]


def _svg_axis(x0: float, y0: float, plot_h: float, top: float, label: str, *, right: bool = False,
              colour: str = "#000") -> list[str]:
    """Round ticks from 0 to `top` (a `_nice_max`) on a vertical axis at x0 (labels left, or right)."""
    anchor, dx = ("start", 6) if right else ("end", -6)
    parts = [f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 - plot_h}" stroke="{colour}"/>']
    steps = 4 if f"{top:e}".startswith("2") else 5       # 20 → 5s; 10, 50, 100 → tenths and fifths
    for i in range(steps + 1):
        value = top * i / steps
        y = y0 - plot_h * i / steps
        text = f"{value:g}"
        parts.append(f'<text x="{x0 + dx}" y="{y + 4:.1f}" text-anchor="{anchor}" font-size="11" '
                     f'fill="{colour}">{text}</text>')
    lx = x0 + (44 if right else -44)
    parts.append(f'<text x="{lx}" y="{y0 - plot_h / 2:.1f}" font-size="12" text-anchor="middle" fill="{colour}" '
                 f'transform="rotate(-90 {lx} {y0 - plot_h / 2:.1f})">{html.escape(label)}</text>')
    return parts


def svg_daily_chart(series: dict[str, Any], width: int = 960, height: int = 320) -> str:
    """Bars: visits per day (left axis); line: mean wait in minutes (right axis)."""
    left, right, top, bottom = 60, 60, 36, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    y0 = top + plot_h
    n = max(len(series["days"]), 1)
    slot = plot_w / n
    vmax = _nice_max(max(series["visits"], default=0))
    waits = [w for w in series["wait_minutes"] if w is not None]
    wmax = _nice_max(max(waits, default=0))
    parts = _svg_frame(width, height, "每日取号数与平均等候时长")
    parts += _svg_axis(left, y0, plot_h, vmax, "取号数")
    parts += _svg_axis(left + plot_w, y0, plot_h, wmax, "平均等候(分钟)", right=True, colour="#c0392b")
    parts.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#000"/>')
    points = []
    for i, (day, visits, wait) in enumerate(zip(series["days"], series["visits"], series["wait_minutes"], strict=True)):
        x = left + slot * i
        bar_h = plot_h * visits / vmax
        parts.append(f'<rect x="{x + slot * 0.15:.1f}" y="{y0 - bar_h:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{bar_h:.1f}" fill="#4a7ebb"><title>{day}日 取号 {visits}</title></rect>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{y0 + 14}" text-anchor="middle" font-size="10">{day}</text>')
        if wait is not None:
            points.append((x + slot / 2, y0 - plot_h * wait / wmax, day, wait))
    if points:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#c0392b" stroke-width="2"/>')
        parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="#c0392b"><title>{day}日 平均等候 {w} 分钟'
                  f"</title></circle>" for px, py, day, w in points]
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" font-size="12">日期</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_window_chart(series: dict[str, Any], width: int = 960, height: int = 280) -> str:
    """Bars: satisfaction (%) per window; a window without ratings shows 无评价."""
    left, right, top, bottom = 60, 20, 36, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    y0 = top + plot_h
    n = max(len(series["windows"]), 1)
    slot = plot_w / n
    parts = _svg_frame(width, height, "各窗口满意率")
    parts += _svg_axis(left, y0, plot_h, 100, "满意率(%)")
    parts.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#000"/>')
    for i, (label, rate) in enumerate(zip(series["windows"], series["satisfaction"], strict=True)):
        x = left + slot * i
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{y0 + 14}" text-anchor="middle" font-size="11">'
                     f"{html.escape(label)}</text>")
        if rate is None:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{y0 - 6}" text-anchor="middle" font-size="10" '
                         f'fill="#888">无评价</text>')
            continue
        bar_h = plot_h * rate / 100
        width_bar = min(slot * 0.6, 80)
        parts.append(f'<rect x="{x + (slot - width_bar) / 2:.1f}" y="{y0 - bar_h:.1f}" width="{width_bar:.1f}" '
                     f'height="{bar_h:.1f}" fill="#27ae60"><title>{html.escape(label)} {rate}%</title></rect>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{y0 - bar_h - 4:.1f}" text-anchor="middle" '
                     f'font-size="11">{rate}%</text>')
    parts.append("</svg>")
    return "".join(parts)


CHART_DATA_COLUMN = 26      # column Z of 汇总: the charts' figures, clear of the tables and the notes


def _xlsx_charts(wb: Workbook, report: dict[str, Any]) -> None:
    """Two openpyxl charts on the 汇总 sheet, beside the figures (rows 4-19), drawn from a data block in
    columns Z onward: per day visits (bars) and mean wait in minutes (line, right axis); satisfaction
    per window (bars)."""
    ws = wb["汇总"]
    series = chart_series(report)
    col = CHART_DATA_COLUMN

    def block(first_row: int, headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> int:
        for offset, header in enumerate(headers):
            ws.cell(row=first_row, column=col + offset, value=header).font = Font(bold=True)
        for i, values in enumerate(rows, start=1):
            for offset, value in enumerate(values):
                ws.cell(row=first_row + i, column=col + offset, value=value)
        return first_row + max(len(rows), 1)

    last = block(4, ("日", "取号数", "平均等候(分钟)"),
                 list(zip(series["days"], series["visits"], series["wait_minutes"], strict=True)))
    daily = BarChart()
    daily.title = "每日取号数与平均等候时长"
    daily.y_axis.title = "取号数"
    daily.x_axis.title = "日期"
    daily.add_data(Reference(ws, min_col=col + 1, min_row=4, max_row=last), titles_from_data=True)
    daily.set_categories(Reference(ws, min_col=col, min_row=5, max_row=last))
    wait = LineChart()
    wait.add_data(Reference(ws, min_col=col + 2, min_row=4, max_row=last), titles_from_data=True)
    wait.y_axis.axId = 200
    wait.y_axis.title = "平均等候(分钟)"
    wait.y_axis.crosses = "max"
    daily += wait
    daily.width, daily.height = 17, 8
    ws.add_chart(daily, "D4")

    top = last + 2
    last = block(top, ("窗口", "满意率(%)"), list(zip(series["windows"], series["satisfaction"], strict=True)))
    satisfaction = BarChart()
    satisfaction.title = "各窗口满意率"
    satisfaction.y_axis.title = "满意率(%)"
    satisfaction.y_axis.scaling.min, satisfaction.y_axis.scaling.max = 0, 100
    satisfaction.add_data(Reference(ws, min_col=col + 1, min_row=top, max_row=last), titles_from_data=True)
    satisfaction.set_categories(Reference(ws, min_col=col, min_row=top + 1, max_row=last))
    satisfaction.width, satisfaction.height = 14, 8
    ws.add_chart(satisfaction, "N4")


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
    wb = Workbook()
    _xlsx_summary(wb.active, report)
    _xlsx_charts(wb, report)
    for section, title, label_header, label in _TABLES:
        _xlsx_table(wb.create_sheet(title), report, report[section], title, label_header, label)
    wb.save(path)


def _xlsx_summary(summary: Any, report: dict[str, Any]) -> None:
    """The 汇总 sheet: every total, then the definitions (口径)."""
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
        cell.font = Font(bold=True)
    summary["A1"].font = Font(bold=True, size=14)
    summary.column_dimensions["A"].width = 22
    summary.column_dimensions["B"].width = 14


def _xlsx_table(ws: Any, report: dict[str, Any], groups: list[dict[str, Any]], title: str, label_header: str,
                label: Callable[[dict[str, Any]], str]) -> None:
    """One 按… sheet: a row per group with every metric, then 合计; printed landscape on one page wide."""
    bold = Font(bold=True)
    ws.append([f"{report['title']}({title})"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([_subtitle(report)])
    ws.append([label_header, *(header for _, header, _ in METRICS)])
    rows = [(label(row), row) for row in groups] + [(TOTAL_LABEL, report["totals"])]
    for text, stats in rows:
        ws.append([text, *(stats[key] for key, _, _ in METRICS)])
    formats = {"percent": "0.0%", "seconds": "0.0"}
    for col, (_, _, kind) in enumerate(METRICS, start=2):
        if kind in formats:
            for (cell,) in ws.iter_rows(min_row=4, min_col=col, max_col=col):
                cell.number_format = formats[kind]
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
div.charts svg { display: block; margin: 6pt 0; font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; }
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
        "<h2>图表</h2>",
        f'<div class="charts">{svg_daily_chart(chart_series(report))}{svg_window_chart(chart_series(report))}</div>',
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
