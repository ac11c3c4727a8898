"""`hallctl staff`: the staff roster without editing the YAML (list, add, edit, disable, enable, set-pin, import).

The roster lives in the hall database over the config's `staff:` (hall_controller.store.roster). Every
change is an admin op (`staff_save`) on the running daemon, which applies it at once and logs out a
clerk who may no longer work where logged in; with no daemon it is written to the database and the next
start serves it. PINs are read from a hidden prompt or one line of stdin (`--pin-stdin`), never from the
command line (`ps` shows argv to everyone), and hashed here: only the hash travels, and it is never
printed or logged. `import` checks the whole file before anything is sent, and the daemon checks the
whole change again: a bad row means nothing applied, with the row and the field named.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import getpass
import io
import json
import logging
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..admin import admin_call
from ..bus.limits import SMALL_COMMAND_BYTES
from ..config import HallConfig, hash_pin, load_config
from ..store.roster import SOURCES, field_problem, pin_problem, problem_line

log = logging.getLogger(__name__)

# CSV headers (Chinese as a hall's Excel sheet has them, or English) -> field
HEADERS = {"工号": "job_number", "job_number": "job_number", "姓名": "name", "name": "name",
           "岗位": "position", "position": "position", "窗口": "windows", "windows": "windows",
           "编号": "id", "id": "id", "密码": "pin", "pin": "pin"}
REQUIRED = ("job_number", "name", "position")
ANY_WINDOW = {"", "全部", "任意", "不限", "*", "any", "all"}
_WINDOW_TOKEN = re.compile(r"(\d{1,3})(?:\s*[-~～至到]\s*(\d{1,3}))?\s*号?(?:窗口)?")
_WINDOW_SPLIT = re.compile(r"[;；、,，/\s]+")
# what a staff_save command may carry besides its entries, under the daemon's 16 KiB command limit
COMMAND_HEADROOM = 512


class StaffCommandError(Exception):
    """Refused before anything was sent: the message says why and what to do (Chinese / English)."""


# ---------------------------------------------------------------------------------------- small parts

def parse_windows(text: str) -> list[int]:
    """`1;2;3`, `1、2`, `1,2`, `3号`, `1-3`; empty or 全部 = any window ([])."""
    text = text.strip()
    if text.lower() in ANY_WINDOW:
        return []
    numbers: list[int] = []
    for token in filter(None, _WINDOW_SPLIT.split(text)):
        match = _WINDOW_TOKEN.fullmatch(token)
        if match is None:
            raise ValueError(token)
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first or last - first > 100:
            raise ValueError(token)
        numbers += [n for n in range(first, last + 1) if n not in numbers]
    return numbers


def read_pin(pin_stdin: bool) -> str:
    """The new PIN: one line of stdin with --pin-stdin, else typed twice at a hidden prompt. Checked
    here (4-8 digits) because only its hash leaves this process."""
    if pin_stdin:
        pin = sys.stdin.readline().rstrip("\r\n")
    else:
        prompt = getpass.getpass
        pin = prompt("新密码（4–8 位数字，输入时不显示）/ new PIN: ")
        if prompt("再输入一次 / again: ") != pin:
            raise StaffCommandError("两次输入的密码不一致，未修改 / the two PINs differ, nothing changed")
    bad = pin_problem(pin)
    if bad:
        raise StaffCommandError(f"密码{bad[0]}，未修改 / PIN {bad[1]}, nothing changed")
    return pin


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def windows_text(windows: list[int]) -> str:
    return "、".join(str(n) for n in windows) if windows else "全部"


def status_text(entry: dict[str, Any]) -> str:
    if not entry["active"]:
        return "停用"
    text = "在用" if entry["has_pin"] else "在用（未设密码）"
    if entry.get("logged_in_at") is not None:
        text += f"（{entry['logged_in_at']}号窗口已登录）"
    return text


def roster_table(entries: list[dict[str, Any]]) -> str:
    """The roster as an aligned Chinese table (工号 姓名 岗位 窗口 状态 来源 编号)."""
    head = ["工号", "姓名", "岗位", "窗口", "状态", "来源", "编号"]
    rows = [[e["job_number"], e["name"], e["position"], windows_text(e["windows"]), status_text(e),
             SOURCES.get(e["source"], e["source"]), e["id"]] for e in entries]
    widths = [max(_width(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(_pad(cell, widths[i]) for i, cell in enumerate(r)).rstrip() for r in [head, *rows]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- the daemon

def _call(args: argparse.Namespace, config: HallConfig, op: str, payload: dict[str, Any] | None = None
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """An admin op through the daemon, else on the database; a refusal becomes StaffCommandError."""
    from ..bus.client import CommandError
    from ..domain import DomainError

    try:
        return admin_call(config, op, payload, clock=args.clock, db_url=args.db, mqtt_url=args.mqtt_url)
    except (CommandError, DomainError) as exc:
        raise StaffCommandError(exc.message) from None


def _where_applied(reached: dict[str, Any]) -> str:
    if reached["via"] == "daemon":
        return f"已生效（守护进程 {reached['mqtt']}） / applied by the running daemon"
    return "已写入数据库，守护进程下次启动时生效 / written to the database; the daemon uses it when it starts"


def _roster(args: argparse.Namespace, config: HallConfig) -> list[dict[str, Any]]:
    return _call(args, config, "staff_list")[0]["staff"]


def _find(roster: list[dict[str, Any]], who: str) -> dict[str, Any]:
    """A clerk by id or job number (both are login names)."""
    for entry in roster:
        if who in (entry["id"], entry["job_number"]):
            return entry
    raise StaffCommandError(f"没有编号或工号为 {who} 的人员（hallctl staff list 可查看名册） / no clerk {who!r}")


def _save(args: argparse.Namespace, config: HallConfig, entries: list[dict[str, Any]], *, new: bool = False,
          dry_run: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = {"entries": entries, "new": new, "dry_run": dry_run}
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    if size > SMALL_COMMAND_BYTES - COMMAND_HEADROOM:
        fits = max(1, len(entries) * (SMALL_COMMAND_BYTES - COMMAND_HEADROOM) // size)
        raise StaffCommandError(f"一次修改的人数过多（{len(entries)} 人），请把文件分成每份不超过 {fits} 人，逐份导入"
                                f" / too many clerks in one change ({len(entries)}): split the file into parts"
                                f" of at most {fits}")
    return _call(args, config, "staff_save", payload)


def _changed_line(change: dict[str, Any], names: dict[str, str]) -> str:
    labels = {"job_number": "工号", "name": "姓名", "position": "岗位", "windows": "窗口", "active": "状态",
              "pin": "密码"}
    who = f"{change['id']}（工号 {change['job_number']}{'，' + names[change['id']] if change['id'] in names else ''}）"
    if change["action"] == "added":
        pin = "" if "pin" in change["fields"] else f"，未设密码：请用 hallctl staff set-pin {change['id']} 设置"
        return f"  新增 {who}{pin}"
    return f"  更新 {who}：{'、'.join(labels.get(f, f) for f in change['fields'])}"


def _report(result: dict[str, Any], reached: dict[str, Any], names: dict[str, str]) -> None:
    changes = result["changes"]
    added = sum(c["action"] == "added" for c in changes)
    print(f"新增 {added} 人，更新 {len(changes) - added} 人，无变化 {len(result['unchanged'])} 人"
          f" / added {added}, updated {len(changes) - added}, unchanged {len(result['unchanged'])}")
    for change in changes:
        print(_changed_line(change, names))
    for window in result.get("logged_out") or []:
        print(f"  {window}号窗口的登录已退出（该人员已停用或不能在此窗口登录） / logged out at window {window}")
    if not result.get("applied"):
        print("未修改（--dry-run） / nothing changed (--dry-run)" if changes else "名册无需修改 / nothing to change")
    else:
        print(_where_applied(reached))


# ---------------------------------------------------------------------------------------- commands

def cmd_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    roster, reached = _call(args, config, "staff_list")
    entries = roster["staff"]
    if args.json:
        print(json.dumps({"staff": entries, "reached": reached}, ensure_ascii=False, indent=2))
        return 0
    print(roster_table(entries))
    active = sum(e["active"] for e in entries)
    origin = "守护进程" if reached["via"] == "daemon" else "数据库（未连上守护进程）"
    print(f"共 {len(entries)} 人，在用 {active} 人，停用 {len(entries) - active} 人；来自{origin}")
    return 0


def _windows_arg(text: str) -> list[int]:
    try:
        return parse_windows(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"窗口「{exc}」无法识别，请写成 1,2,3 / bad windows {text!r}") from None


def cmd_add(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    entry: dict[str, Any] = {"job_number": args.job_number, "name": args.name, "position": args.position}
    if args.id:
        entry["id"] = args.id
    if args.windows is not None:
        entry["windows"] = args.windows
    _check_fields(config, [entry])
    entry["pin_hash"] = hash_pin(read_pin(args.pin_stdin))
    result, reached = _save(args, config, [entry], new=True)
    change = result["changes"][0]
    print(f"已新增 {change['id']} {args.name}（工号 {args.job_number}，{args.position}，"
          f"窗口 {windows_text(args.windows or [])}）")
    if change.get("derived_id"):
        print(f"未指定编号，按工号使用 {change['id']} / no id given: {change['id']} from the job number")
    print(_where_applied(reached))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    clerk = _find(_roster(args, config), args.who)
    entry: dict[str, Any] = {"id": clerk["id"]}
    for key in ("job_number", "name", "position", "windows"):
        if getattr(args, key) is not None:
            entry[key] = getattr(args, key)
    if len(entry) == 1:
        raise StaffCommandError("请至少给出 --job-number、--name、--position、--windows 之一 / nothing to change")
    _check_fields(config, [entry])
    result, reached = _save(args, config, [entry])
    _report(result, reached, {clerk["id"]: args.name or clerk["name"]})
    return 0


def _set_active(args: argparse.Namespace, active: bool) -> int:
    config = load_config(args.config)
    clerk = _find(_roster(args, config), args.who)
    result, reached = _save(args, config, [{"id": clerk["id"], "active": active}])
    word = "启用" if active else "停用"
    if not result["changes"]:
        print(f"{clerk['id']} {clerk['name']} 已是{word}状态，未修改 / already {'enabled' if active else 'disabled'}")
        return 0
    print(f"已{word} {clerk['id']} {clerk['name']}（工号 {clerk['job_number']}）")
    for window in result["logged_out"]:
        print(f"{window}号窗口的登录已退出 / logged out at window {window}")
    print(_where_applied(reached))
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_active(args, False)


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_active(args, True)


def cmd_set_pin(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    clerk = _find(_roster(args, config), args.who)
    pin_hash = hash_pin(read_pin(args.pin_stdin))
    _, reached = _save(args, config, [{"id": clerk["id"], "pin_hash": pin_hash}])
    print(f"已为 {clerk['id']} {clerk['name']}（工号 {clerk['job_number']}）设置新密码，旧密码不再有效")
    print(_where_applied(reached))
    return 0


def _check_fields(config: HallConfig, entries: list[dict[str, Any]]) -> None:
    """The fields given on the command line, checked here first (the daemon checks the change again)."""
    windows = [w.number for w in config.windows]
    problems = [problem_line(("参数", "argument"), key, *bad) for entry in entries for key, value in entry.items()
                if (bad := field_problem(key, value, windows))]
    if problems:
        raise StaffCommandError("\n".join(problems))


# ---------------------------------------------------------------------------------------- import

@dataclass
class CsvRoster:
    """A roster file read and checked: the entries to send, the PINs to hash, what to tell the operator."""

    encoding: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    pins: dict[int, str] = field(default_factory=dict)      # entry index -> PIN (hashed just before sending)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def decode_csv(data: bytes) -> tuple[str, str]:
    """(text, encoding name): UTF-8 with or without BOM, UTF-16 with BOM (Excel's Unicode text), else
    GB18030 (GBK, Excel's “CSV” on a Chinese Windows)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8"), "UTF-8（带 BOM）"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "UTF-16"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "GBK/GB18030"
    except UnicodeDecodeError:
        raise StaffCommandError("文件编码无法识别：请在 Excel 中另存为“CSV UTF-8（逗号分隔）” / unknown encoding: "
                                "save it from Excel as “CSV UTF-8”") from None


def _columns(header: list[str]) -> tuple[dict[int, str], list[str], list[str]]:
    """Column index -> field; the fields missing; the columns ignored."""
    columns: dict[int, str] = {}
    ignored = []
    for i, name in enumerate(header):
        key = HEADERS.get(name.strip().lstrip("\ufeff").lower()) or HEADERS.get(name.strip())
        if key is None:
            if name.strip():
                ignored.append(name.strip())
        elif key in columns.values():
            raise StaffCommandError(f"第1行（表头）：「{name.strip()}」列重复 / header: column {name.strip()!r} twice")
        else:
            columns[i] = key
    missing = [f for f in REQUIRED if f not in columns.values()]
    return columns, missing, ignored


def _cell(key: str, value: str, entry: dict[str, Any], where: tuple[str, str], problems: list[str]) -> str | None:
    """One cell into `entry` (a PIN is returned, never put there: only its hash is sent)."""
    if key == "windows":
        try:
            entry["windows"] = parse_windows(value)
        except ValueError as exc:
            problems.append(problem_line(where, "windows", f"「{exc}」无法识别，请写成 1;2;3",
                                         f"cannot read {str(exc)!r}: write 1;2;3"))
    elif key == "pin":
        if value and (bad := pin_problem(value)):
            problems.append(problem_line(where, "pin", *bad))
        return value or None
    elif value or key != "id":     # an empty id: derived from the job number
        entry[key] = value
    return None


def _row_entry(number: int, cells: list[str], columns: dict[int, str], windows: list[int],
               found: CsvRoster) -> None:
    """One data row into an entry (or problems naming its row and field)."""
    where = (f"第{number}行", f"row {number}")
    entry: dict[str, Any] = {"row": number}
    pin = None
    for i, key in columns.items():
        pin = _cell(key, cells[i].strip() if i < len(cells) else "", entry, where, found.problems) or pin
    for key, value in entry.items():
        if key != "row" and (bad := field_problem(key, value, windows)):
            found.problems.append(problem_line(where, key, *bad))
    if pin is not None:
        found.pins[len(found.entries)] = pin
    found.entries.append(entry)


def read_roster_csv(data: bytes, windows: list[int]) -> CsvRoster:
    """The rows of a roster file, every problem found (row, field); nothing is sent from here."""
    text, encoding = decode_csv(data)
    found = CsvRoster(encoding)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if not rows:
        raise StaffCommandError("文件是空的 / the file is empty")
    columns, missing, ignored = _columns(rows[0])
    if missing:
        names = "、".join({"job_number": "工号", "name": "姓名", "position": "岗位"}[f] for f in missing)
        raise StaffCommandError(f"第1行（表头）：缺少「{names}」列；表头应为 工号,姓名,岗位,窗口（或 job_number,name,"
                                f"position,windows） / header: missing {', '.join(missing)}")
    if ignored:
        found.notes.append(f"已忽略的列：{'、'.join(ignored)} / columns ignored: {', '.join(ignored)}")
    seen_jobs: dict[str, int] = {}
    for number, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        _row_entry(number, cells, columns, windows, found)
        job = found.entries[-1].get("job_number")
        if job and job in seen_jobs:
            found.problems.append(problem_line((f"第{number}行", f"row {number}"), "job_number",
                                               f"工号 {job} 与第{seen_jobs[job]}行重复", f"same as row {seen_jobs[job]}"))
        elif job:
            seen_jobs[job] = number
    if not found.entries:
        raise StaffCommandError("文件中没有人员行 / no clerks in the file")
    return found


def cmd_import(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StaffCommandError(f"无法读取 {path}（{exc.strerror}） / cannot read {path}") from None
    found = read_roster_csv(data, [w.number for w in config.windows])
    print(f"文件 {path.name}：{found.encoding}，{len(found.entries)} 行人员 / {len(found.entries)} rows")
    for note in found.notes:
        print(note)
    if found.problems:
        raise StaffCommandError("\n".join([*found.problems, "有错误，名册未作任何修改 / nothing was applied"]))
    for index, pin in found.pins.items():
        found.entries[index]["pin_hash"] = hash_pin(pin)
    try:
        result, reached = _save(args, config, found.entries, dry_run=args.dry_run)
    except StaffCommandError as exc:
        raise StaffCommandError(f"{exc}\n有错误，名册未作任何修改 / nothing was applied") from None
    names = {}
    for change in result["changes"]:
        entry = next(e for e in found.entries if e["row"] == change.get("row"))
        names[change["id"]] = entry.get("name", "")
        if change.get("derived_id") and change["action"] == "added":
            print(f"第{change['row']}行未填编号，新人员编号为 {change['id']}（S+工号）"
                  f" / row {change['row']}: new clerk, id {change['id']} from the job number")
        elif change.get("derived_id"):
            print(f"第{change['row']}行未填编号，按工号 {change['job_number']} 对应已有人员 {change['id']}"
                  f" / row {change['row']}: job number {change['job_number']} is {change['id']}")
    _report(result, reached, names)
    return 0


# ---------------------------------------------------------------------------------------- parser

def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A refusal is printed (stderr) with exit status 1; nothing was changed."""
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except StaffCommandError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    return run


def add_commands(sub: argparse._SubParsersAction, with_config: Any) -> None:
    """Adds `hallctl staff …`."""
    staff = sub.add_parser("staff", help="staff roster: list, add, edit, disable, enable, set-pin, import")
    cmds = staff.add_subparsers(dest="staff_command", required=True)

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sp = with_config(cmds.add_parser(name, help=help_text), db=True, daemon=True)
        sp.set_defaults(func=_guarded(func))
        return sp

    sp = command("list", "the roster: config and database, active and disabled", cmd_list)
    sp.add_argument("--json", action="store_true")
    pin_help = "read the PIN from one line of stdin instead of a hidden prompt (never give it as an argument)"
    sp = command("add", "add a clerk (asks for the PIN)", cmd_add)
    sp.add_argument("job_number", help="工号: 1-8 digits, typed on the window keypad")
    sp.add_argument("name", help="姓名")
    sp.add_argument("position", help="岗位, e.g. 法律咨询岗")
    sp.add_argument("--windows", type=_windows_arg, help="windows the clerk may log in at: 1,2,3 (default: any)")
    sp.add_argument("--id", help="staff id (default: S + job number)")
    sp.add_argument("--pin-stdin", action="store_true", help=pin_help)
    sp = command("edit", "change a clerk's job number, name, position or windows", cmd_edit)
    sp.add_argument("who", help="staff id or job number")
    sp.add_argument("--job-number")
    sp.add_argument("--name")
    sp.add_argument("--position")
    sp.add_argument("--windows", type=_windows_arg, help="1,2,3, or 全部 / any")
    for name, help_text, func in (("disable", "disable a clerk (logged out at once)", cmd_disable),
                                  ("enable", "enable a disabled clerk", cmd_enable)):
        command(name, help_text, func).add_argument("who", help="staff id or job number")
    sp = command("set-pin", "set a clerk's PIN (asks for it)", cmd_set_pin)
    sp.add_argument("who", help="staff id or job number")
    sp.add_argument("--pin-stdin", action="store_true", help=pin_help)
    sp = command("import", "add or update clerks from a CSV file (all rows or none)", cmd_import)
    sp.add_argument("file", help="CSV: 工号,姓名,岗位,窗口[,编号][,密码] (UTF-8 or GBK)")
    sp.add_argument("--dry-run", action="store_true", help="check the file and show what would change")
