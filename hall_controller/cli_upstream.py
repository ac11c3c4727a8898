"""`hallctl` commands for the upstream link: `outbox`, `appointment add|list`, `report month`.

They work on the hall database directly (read-only, or a single-statement change the running
daemon's forwarder picks up at its next poll), except `appointment add`, which goes through the
running daemon as an admin op when it is reachable, so its engine learns the booking at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from .admin import admin_op
from .clock import Clock
from .config import HallConfig, load_config
from .store import make_engine
from .store.records import bad_ratings
from .store.roster import load_rows, with_roster
from .store.schema import appointments
from .upstream.client import UpstreamClient
from .upstream.forwarder import IDLE_POLL_SECONDS, Forwarder
from .upstream.reports import write_html, write_xlsx
from .upstream.service import KIND_LABELS, build_month_report, month_bounds, report_key

SOURCES = ("phone", "letter", "in_person", "online")
SOURCE_LABELS = {"phone": "电话", "letter": "信函", "in_person": "现场", "online": "网上(12348)"}
STATUS_LABELS = {"booked": "已预约", "checked_in": "已签到", "cancelled": "已取消"}
# The operator view never sends, so its client only has to be constructible.
_UNUSED_URL = "http://127.0.0.1"

ConfigAdder = Callable[..., argparse.ArgumentParser]   # (parser, *, db=False, daemon=False): --config (--db, --mqtt-url)


def add_commands(sub: argparse._SubParsersAction, with_config: ConfigAdder) -> None:
    """Register the upstream commands on `hallctl`."""
    sp = with_config(sub.add_parser("outbox", help="upstream outbox: counts, dead letters, retry"), db=True)
    retry = sp.add_mutually_exclusive_group()
    retry.add_argument("--retry", metavar="KEY", help="re-queue one dead record")
    retry.add_argument("--retry-all", action="store_true", help="re-queue every dead record")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_outbox)

    appt = sub.add_parser("appointment", help="appointments (预约)").add_subparsers(dest="appointment_command",
                                                                                  required=True)
    sp = with_config(appt.add_parser("add", help="add a booking (phone, letter, in person)"), db=True, daemon=True)
    sp.add_argument("--code", required=True)
    sp.add_argument("--service", required=True, help="service code, e.g. consult")
    sp.add_argument("--start", required=True, metavar="ISO", help="slot start, e.g. 2026-11-23T10:00 (hall time)")
    sp.add_argument("--source", choices=SOURCES, default="in_person")
    sp.add_argument("--name")
    sp.set_defaults(func=cmd_appointment_add)
    sp = with_config(appt.add_parser("list", help="bookings from a day on"), db=True)
    sp.add_argument("--from", dest="since", metavar="YYYY-MM-DD", help="first day (default today)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_appointment_list)

    report = sub.add_parser("report", help="statistics reports").add_subparsers(dest="report_command", required=True)
    sp = with_config(report.add_parser("month", help="the monthly report (月报表) as JSON, XLSX and HTML"), db=True)
    sp.add_argument("month", metavar="YYYY-MM")
    sp.add_argument("--out", default=".", metavar="DIR", help="output folder (default: current folder)")
    sp.set_defaults(func=cmd_report_month)

    sp = with_config(sub.add_parser("ratings", help="差评 (scores 1-2) and their follow-up (回访/整改)"), db=True,
                     daemon=True)
    sp.add_argument("--open", action="store_true", help="only 差评 still waiting for a follow-up")
    sp.add_argument("--resolve", metavar="TICKET", help="record the follow-up of this 差评 (ticket id or number)")
    sp.add_argument("--note", help="the follow-up text (with --resolve)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_ratings)


def _local(config: HallConfig, stamp: str | None) -> str:
    """A stored UTC time as hall time for people."""
    if not stamp:
        return "-"
    return datetime.fromisoformat(stamp).astimezone(config.tz).strftime("%Y-%m-%d %H:%M:%S")


# -- outbox -----------------------------------------------------------------------------------------

def _forwarder(engine: Engine, config: HallConfig, clock: Clock) -> Forwarder:
    client = UpstreamClient(config.upstream_url or _UNUSED_URL, config.upstream_token or "")
    return Forwarder(engine, client, clock)


def _engine(args: argparse.Namespace, config: HallConfig) -> Engine:
    """The hall database: `--db`, else the config's."""
    return make_engine(args.db or config.database)


def cmd_outbox(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    engine = _engine(args, config)
    try:
        forwarder = _forwarder(engine, config, args.clock)
        if args.retry or args.retry_all:
            count = forwarder.retry_dead(None if args.retry_all else args.retry)
            if args.retry and not count:
                print(f"没有失败记录 {args.retry} / no dead record with that key", file=sys.stderr)
                return 1
            print(f"已重新排队 {count} 条，运行中的守护进程将在{IDLE_POLL_SECONDS:.0f}秒内重新发送"
                  f" / re-queued {count}")
            return 0
        summary = forwarder.outbox_summary()
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    print("上报发件箱 / upstream outbox" + (f"  → {config.upstream_url}" if config.upstream_url else ""))
    print(f"  待发送 pending: {summary['pending']}    已送达 delivered: {summary['delivered']}"
          f"    上报失败（需处理） dead: {summary['dead']}    待上传扫描件 scans waiting: {summary['scans_waiting']}")
    print(f"  最早待发送 oldest pending: {_local(config, summary['oldest_pending_at'])}"
          f"    下次尝试 next attempt: {_local(config, summary['next_attempt_at'])}")
    if summary["dead_records"]:
        print("上报失败（需处理）/ dead records (hallctl outbox --retry KEY | --retry-all):")
        for row in summary["dead_records"]:
            print(f"  {row['record_key']}  {KIND_LABELS.get(row['kind'], row['kind'])}  "
                  f"尝试 {row['attempts']} 次  创建 {_local(config, row['created_at'])}  错误: {row['last_error']}")
    return 0


# -- appointments -----------------------------------------------------------------------------------

def cmd_appointment_add(args: argparse.Namespace) -> int:
    from .bus.client import CommandError
    from .domain import DomainError

    config = load_config(args.config)
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        print(f"--start 须为 ISO 时间，例如 2026-11-23T10:00 / not an ISO time: {args.start}", file=sys.stderr)
        return 2
    op_args: dict[str, Any] = {"code": args.code, "service": args.service, "source": args.source,
                               "start_at": (start if start.tzinfo else start.replace(tzinfo=config.tz)).isoformat()}
    if args.name:
        op_args["name"] = args.name
    try:
        result = admin_op(config, "add_appointment", op_args, clock=args.clock, db_url=args.db,
                          mqtt_url=args.mqtt_url)
    except (DomainError, CommandError) as exc:
        print(f"预约未添加 / not added: {exc.message}", file=sys.stderr)
        return 1
    appt = result["appointment"]
    print(f"已添加预约 {appt['code']}：{config.service(appt['service']).name}  "
          f"{_local(config, appt['start_at'])}  {SOURCE_LABELS.get(appt['source'], appt['source'])}")
    return 0


def cmd_appointment_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    since = args.since or args.clock.now().astimezone(config.tz).date().isoformat()
    engine = _engine(args, config)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(appointments.c.data).where(appointments.c.day >= since)).scalars().all()
    finally:
        engine.dispose()
    items = sorted((json.loads(r) for r in rows), key=lambda a: (a["start_at"], a["code"]))
    for item in items:
        item.pop("id_hash", None)
    if args.json:
        print(json.dumps(items, ensure_ascii=False, indent=2))
        return 0
    print(f"{since} 起的预约 / appointments from {since}: {len(items)}")
    services = {s.code: s.name for s in config.services}
    for a in items:
        print(f"  {a['code']}  {_local(config, a['start_at'])}  {services.get(a['service'], a['service'])}  "
              f"{SOURCE_LABELS.get(a['source'], a['source'])}  {a['name_masked'] or '-'}  "
              f"{STATUS_LABELS.get(a['status'], a['status'])}")
    return 0


# -- monthly report ---------------------------------------------------------------------------------

def cmd_report_month(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        month_bounds(args.month)
    except ValueError:
        print(f"月份须为 YYYY-MM / month must be YYYY-MM: {args.month}", file=sys.stderr)
        return 2
    engine = _engine(args, config)
    try:
        report = build_month_report(engine, config, args.month, now=args.clock.now())
    finally:
        engine.dispose()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = report_key(config, args.month)
    paths = [out / f"{name}.{ext}" for ext in ("json", "xlsx", "html")]
    paths[0].write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    write_xlsx(report, paths[1])
    write_html(report, paths[2])
    totals = report["totals"]
    print(f"《{report['title']}》{args.month}：取号 {totals['issued']}，办结 {totals['served']}，"
          f"过号 {totals['no_show']}，主动离队 {totals['left']}，评价 {totals['rated']}")
    for path in paths:
        print(path)
    return 0


# -- 差评 and their follow-up -------------------------------------------------------------------------

def staff_label(config: HallConfig, staff_id: str | None) -> str:
    """A clerk as people name them: 王芳（1001） (name and job number); an id the config no longer
    knows stays as it is, none is '-'."""
    staff = config.staff_member(staff_id) if staff_id else None
    return f"{staff.name}（{staff.job_number}）" if staff else (staff_id or "-")


def cmd_ratings(args: argparse.Namespace) -> int:
    from .bus.client import CommandError
    from .domain import DomainError

    config = load_config(args.config)
    if args.resolve:
        if not (args.note or "").strip():
            print("请用 --note 填写回访或整改情况 / --note is required with --resolve", file=sys.stderr)
            return 2
        try:
            result = admin_op(config, "resolve_bad_rating", {"ticket": args.resolve, "note": args.note},
                              clock=args.clock, db_url=args.db, mqtt_url=args.mqtt_url)
        except (DomainError, CommandError) as exc:
            print(f"未记录 / not recorded: {exc.message}", file=sys.stderr)
            return 1
        bad = result["bad_rating"]
        print(f"已记录 {bad['ticket']['number']}号差评的回访：{bad['follow_up']['note']}")
        return 0
    engine = _engine(args, config)
    try:
        items = bad_ratings(engine, open_only=args.open)
        config = with_roster(config, load_rows(engine))     # name clerks added by `hallctl staff` too
    finally:
        engine.dispose()
    if args.json:
        for b in items:     # the clerk as named on screen and in the report, beside the id
            b["staff"] = staff_label(config, b["ticket"]["staff_id"]) if b["ticket"]["staff_id"] else None
        print(json.dumps(items, ensure_ascii=False, indent=2))
        return 0
    waiting = sum(1 for b in items if b["follow_up"] is None)
    print(f"差评 / bad ratings: {len(items)}（待回访 open: {waiting}）")
    services = {s.code: s.name for s in config.services}
    for b in items:
        t, follow = b["ticket"], b["follow_up"]
        state = (f"已回访 {_local(config, follow['at'])} {follow['by']}：{follow['note']}" if follow
                 else "待回访")
        print(f"  {_local(config, b['rated_at'])}  {t['number']}  {t['window']}号窗口  {staff_label(config, t['staff_id'])}  "
              f"{services.get(t['service'], t['service'])}  {b['score']}分 {b['level']}  {state}  [{t['id']}]")
    return 0
