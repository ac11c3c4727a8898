"""The staff roster `hallctl staff` manages: rows of the `staff` table laid over the config's `staff:`.

The roster the hall serves with is the config's clerks, each with its database row (same id) laid over
it field by field (a NULL column keeps the config's value), plus the clerks that exist only in the
database. So a clerk from the YAML can be disabled or given a new PIN without editing the file, and
the YAML stays the starting point. `plan` checks a change whole before any of it applies: it refuses
with every problem found (the entry or CSV row, the field, in Chinese and English) or returns the rows
to write, the changes to record and the roster after them. PIN hashes are stored and compared, never
returned: `listing` says only whether a clerk has one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..config import POSITIONS, HallConfig, Staff
from .schema import staff as staff_table

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
JOB_RE = re.compile(r"^\d{1,8}$")          # typed on a window keypad to log in
PIN_RE = re.compile(r"^\d{4,8}$")          # typed on a window keypad too
NAME_MAX = 32
MAX_ENTRIES = 2000
DERIVED_PREFIX = "S"                        # id of a new clerk given only a job number: S + job number
FIELDS = ("job_number", "name", "position", "windows", "active", "pin_hash")
# field -> (Chinese, English) as the operator reads it; the PIN's hash is "the PIN" to them
LABELS = {"id": ("编号", "id"), "job_number": ("工号", "job number"), "name": ("姓名", "name"),
          "position": ("岗位", "position"), "windows": ("窗口", "windows"), "active": ("状态", "active"),
          "pin_hash": ("密码", "PIN"), "pin": ("密码", "PIN")}
SOURCES = {"config": "config", "database": "数据库", "config+database": "config+数据库"}


class RosterInvalid(ValueError):
    """A roster change refused whole; `problems` are one line each, Chinese / English."""

    SHOWN = 30

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:self.SHOWN]
        more = len(problems) - len(shown)
        tail = [f"……另有 {more} 处问题 / … and {more} more"] if more else []
        super().__init__("\n".join(shown + tail))


@dataclass(frozen=True)
class Plan:
    """What a checked change does: rows to write, changes to record (`staff_changed`), the roster after."""

    rows: dict[str, dict[str, Any]]       # every database row after the change, by id
    written: list[dict[str, Any]]         # the rows that change (to upsert)
    changes: list[dict[str, Any]]         # {id, job_number, action, fields, row?, derived_id?}
    unchanged: list[dict[str, Any]]       # {id, row?}: entries that change nothing
    staff: tuple[Staff, ...]


# ---------------------------------------------------------------------------------------- checks

def _check_id(value: Any, _windows: Collection[int]) -> tuple[str, str] | None:
    if not isinstance(value, str) or not ID_RE.match(value):
        return ("须为 1–32 位字母、数字或 _ . -（以字母或数字开头）",
                "must be 1-32 of A-Z a-z 0-9 _ . - starting with a letter or digit")
    return None


def _check_job(value: Any, _windows: Collection[int]) -> tuple[str, str] | None:
    if not isinstance(value, str) or not JOB_RE.match(value):
        return f"「{value}」须为 1–8 位数字（在窗口键盘上输入）", f"{value!r} must be 1-8 digits (keypad login)"
    return None


def _check_name(value: Any, _windows: Collection[int]) -> tuple[str, str] | None:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX:
        return f"不能为空，最多 {NAME_MAX} 个字", f"must not be empty, at most {NAME_MAX} characters"
    return None


def _check_position(value: Any, _windows: Collection[int]) -> tuple[str, str] | None:
    if value not in POSITIONS:
        return (f"未知岗位「{value}」，可选：{'、'.join(POSITIONS)}",
                f"unknown position {value!r} (one of {', '.join(POSITIONS)})")
    return None


def _check_windows(value: Any, windows: Collection[int]) -> tuple[str, str] | None:
    if not isinstance(value, (list, tuple)) or any(isinstance(n, bool) or not isinstance(n, int) for n in value):
        return "须为窗口号列表", "must be a list of window numbers"
    unknown = [n for n in value if n not in windows]
    if unknown:
        have = "、".join(str(n) for n in sorted(windows))
        return (f"没有{'、'.join(f'{n}号' for n in unknown)}窗口（本大厅窗口：{have}）",
                f"no window {', '.join(map(str, unknown))} in this hall (windows: {', '.join(map(str, sorted(windows)))})")
    if len(set(value)) != len(value):
        return "窗口号重复", "a window is listed twice"
    return None


def _check_active(value: Any, _windows: Collection[int]) -> tuple[str, str] | None:
    return None if isinstance(value, bool) else ("须为 true 或 false", "must be true or false")


def _check_pin_hash(value: Any, _windows: Collection[int]) -> tuple[str, str] | None:
    if not isinstance(value, str) or not value.startswith("pbkdf2_sha256$") or value.count("$") != 3:
        return "不是 hallctl 生成的密码散列", "not a PIN hash made by hallctl"
    return None


_CHECKS = {"id": _check_id, "job_number": _check_job, "name": _check_name, "position": _check_position,
           "windows": _check_windows, "active": _check_active, "pin_hash": _check_pin_hash}


def field_problem(field: str, value: Any, windows: Collection[int]) -> tuple[str, str] | None:
    """(Chinese, English) of what is wrong with `value` for `field`, or None."""
    return _CHECKS[field](value, windows)


def pin_problem(pin: str) -> tuple[str, str] | None:
    """A PIN is typed on the window keypad: 4-8 digits. Checked before it is hashed (only the hash travels)."""
    if not PIN_RE.match(pin):
        return "须为 4–8 位数字", "must be 4-8 digits"
    return None


def _where(entry: Mapping[str, Any], index: int) -> tuple[str, str]:
    row = entry.get("row")
    if isinstance(row, int) and not isinstance(row, bool):
        return f"第{row}行", f"row {row}"
    return f"第{index + 1}条", f"entry {index + 1}"


def problem_line(where: tuple[str, str], field: str | None, zh: str, en: str) -> str:
    """`第3行 岗位（position）：… / row 3, position: …`: where, which field, what, in both languages."""
    if field is None:
        return f"{where[0]}：{zh} / {where[1]}: {en}"
    label_zh, label_en = LABELS[field]
    return f"{where[0]} {label_zh}（{label_en}）：{zh} / {where[1]}, {label_en}: {en}"


# ---------------------------------------------------------------------------------------- the roster

def _staff_of(row: Mapping[str, Any]) -> Staff:
    """A clerk who exists only in the database."""
    return Staff(row["id"], row.get("job_number") or "", row.get("name") or "", row.get("position") or "",
                 row.get("pin_hash") or "", tuple(row.get("windows") or ()), row.get("active") is not False)


def _overlay(member: Staff, row: Mapping[str, Any]) -> Staff:
    changes = {f: row[f] for f in FIELDS if row.get(f) is not None}
    if "windows" in changes:
        changes["windows"] = tuple(changes["windows"])
    return replace(member, **changes)


def effective(base: Sequence[Staff], rows: Mapping[str, Mapping[str, Any]]) -> list[tuple[Staff, str]]:
    """(clerk, source) of the roster in force: the config's clerks with their rows laid over them
    ("config" or "config+database"), then the database's own ("database")."""
    ids = {m.id for m in base}
    out = [(_overlay(m, rows[m.id]), "config+database") if m.id in rows else (m, "config") for m in base]
    out += [(_staff_of(row), "database") for sid, row in rows.items() if sid not in ids]
    return out


def with_roster(config: HallConfig, rows: Mapping[str, Mapping[str, Any]]) -> HallConfig:
    """`config` with the roster in force as its `staff` (disabled clerks too: their names still show)."""
    return replace(config, staff=tuple(m for m, _ in effective(config.staff, rows)))


def listing(base: Sequence[Staff], rows: Mapping[str, Mapping[str, Any]],
            logged_in: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """The roster for `hallctl staff list`, in job-number order; `has_pin`, never the hash."""
    out = []
    for member, source in effective(base, rows):
        out.append({"id": member.id, "job_number": member.job_number, "name": member.name,
                    "position": member.position, "windows": list(member.windows), "active": member.active,
                    "has_pin": bool(member.pin_hash), "source": source,
                    "logged_in_at": (logged_in or {}).get(member.id)})
    return sorted(out, key=lambda e: (len(e["job_number"]), e["job_number"], e["id"]))


def _value(member: Staff, field: str) -> Any:
    value = getattr(member, field)
    return tuple(value) if field == "windows" else value


def _entry_id(entry: Mapping[str, Any], by_job: Mapping[str, Staff]) -> tuple[str | None, bool]:
    """The entry's id, or one derived from its job number (the clerk who has it, else S + job number)."""
    sid = entry.get("id")
    if sid is not None:
        return sid, False
    job = entry.get("job_number")
    if not isinstance(job, str) or not JOB_RE.match(job):
        return None, False
    owner = by_job.get(job)
    return (owner.id if owner else DERIVED_PREFIX + job), True


def _entry_problems(entry: Any, where: tuple[str, str], windows: Collection[int]) -> list[str]:
    if not isinstance(entry, dict):
        return [problem_line(where, None, "须为对象", "must be an object")]
    problems = [problem_line(where, None, f"未知字段「{key}」", f"unknown field {key!r}")
                for key in entry if key not in ("row", "id", *FIELDS)]
    for field in ("id", *FIELDS):
        if field in entry and (bad := field_problem(field, entry[field], windows)):
            problems.append(problem_line(where, field, *bad))
    if "id" not in entry and "job_number" not in entry:
        problems.append(problem_line(where, "job_number", "缺少工号", "missing"))
    return problems


class _Planner:
    """One `plan` call: the roster before, the entries, the problems found so far."""

    def __init__(self, base: Sequence[Staff], rows: Mapping[str, Mapping[str, Any]],
                 windows: Collection[int], new: bool) -> None:
        self.base = {m.id: m for m in base}
        self.before = {m.id: m for m, _ in effective(base, rows)}
        self.by_job = {m.job_number: m for m in self.before.values()}
        self.rows = {sid: dict(row) for sid, row in rows.items()}
        self.windows, self.new = windows, new
        self.problems: list[str] = []
        self.written: dict[str, dict[str, Any]] = {}
        self.changes: list[dict[str, Any]] = []
        self.unchanged: list[dict[str, Any]] = []
        self.where_of: dict[str, tuple[str, str]] = {}

    def entry(self, entry: Any, index: int, now: str) -> None:
        where = _where(entry if isinstance(entry, dict) else {}, index)
        bad = _entry_problems(entry, where, self.windows)
        if bad:
            self.problems += bad
            return
        sid, derived = _entry_id(entry, self.by_job)
        assert sid is not None
        if sid in self.where_of:
            first = self.where_of[sid]
            self.problems.append(problem_line(where, "id", f"与{first[0]}重复（{sid}）",
                                              f"same clerk as {first[1]} ({sid})"))
            return
        self.where_of[sid] = where
        given = {f: (tuple(entry[f]) if f == "windows" else entry[f]) for f in FIELDS if f in entry}
        before = self.before.get(sid)
        if before is not None and self.new:
            self.problems.append(problem_line(where, "id", f"{sid}（{before.name}，工号 {before.job_number}）已存在",
                                              f"{sid} already exists"))
            return
        if before is None:
            missing = [f for f in ("job_number", "name", "position") if f not in given]
            for f in missing:
                self.problems.append(problem_line(where, f, "新增人员须填写", "required for a new clerk"))
            if missing:
                return
            before = Staff(sid, "", "", "", "")
        fields = [f for f in FIELDS if f in given and (f == "pin_hash" or _value(before, f) != given[f])]
        row_ref = {"row": entry["row"]} if "row" in entry else {}
        if not fields:
            self.unchanged.append({"id": sid, **row_ref})
            return
        row = self.rows.get(sid) or {"id": sid, **dict.fromkeys(FIELDS)}
        config_member = self.base.get(sid)
        for f in fields:    # a config clerk's row keeps only what differs from the config
            same = config_member is not None and f != "pin_hash" and _value(config_member, f) == given[f]
            row[f] = None if same else given[f]
        row["updated_at"] = now
        self.rows[sid] = self.written[sid] = row
        action = "added" if sid not in self.before else "updated"
        self.changes.append({"id": sid, "job_number": given.get("job_number", before.job_number), "action": action,
                             "fields": ["pin" if f == "pin_hash" else f for f in fields], **row_ref,
                             **({"derived_id": True} if derived else {})})

    def unique(self, staff: Sequence[Staff]) -> None:
        """Ids and job numbers are both login names: each names one clerk (checked for the changed ones)."""
        owners: dict[str, list[Staff]] = {}
        for m in staff:
            for key in {m.id, m.job_number} - {""}:
                owners.setdefault(key, []).append(m)
        for change in self.changes:
            member = next(m for m in staff if m.id == change["id"])
            where = self.where_of[member.id]
            for key, field in ((member.job_number, "job_number"), (member.id, "id")):
                others = [o for o in owners.get(key, []) if o.id != member.id]
                if others:
                    o = others[0]
                    self.problems.append(problem_line(
                        where, field, f"「{key}」已是 {o.id}（{o.name}，工号 {o.job_number}）的登录名",
                        f"{key!r} already logs in {o.id} (job number {o.job_number})"))


def plan(base: Sequence[Staff], rows: Mapping[str, Mapping[str, Any]], entries: Any, windows: Collection[int],
         *, now: str, new: bool = False) -> Plan:
    """Check a roster change whole and say what it does, or raise RosterInvalid naming every problem.

    `entries`: [{id?, job_number?, name?, position?, windows?, active?, pin_hash?, row?}]: the fields
    given are set, the others kept; an entry without id names the clerk with its job number (or a new
    clerk S + job number); `row` is where the entry came from (a CSV row), for the messages. `new`:
    every entry must be a clerk who does not exist yet. A new clerk needs job number, name and position.
    """
    if not isinstance(entries, list) or not entries:
        raise RosterInvalid(["没有要修改的人员 / no clerks given"])
    if len(entries) > MAX_ENTRIES:
        raise RosterInvalid([f"一次最多 {MAX_ENTRIES} 人 / at most {MAX_ENTRIES} clerks at once"])
    planner = _Planner(base, rows, windows, new)
    for index, entry in enumerate(entries):
        planner.entry(entry, index, now)
    staff = tuple(m for m, _ in effective(base, planner.rows))
    if not planner.problems:
        planner.unique(staff)
    if planner.problems:
        raise RosterInvalid(planner.problems)
    return Plan(planner.rows, list(planner.written.values()), planner.changes, planner.unchanged, staff)


# ---------------------------------------------------------------------------------------- storage

def load_rows(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every row of the `staff` table, by id (windows as a tuple, active as bool or None)."""
    with engine.connect() as conn:
        found = conn.execute(select(staff_table)).mappings().all()
    rows = {}
    for r in found:
        windows = json.loads(r["windows"]) if r["windows"] is not None else None
        rows[r["id"]] = {"id": r["id"], "job_number": r["job_number"], "name": r["name"], "position": r["position"],
                         "windows": tuple(windows) if windows is not None else None,
                         "active": None if r["active"] is None else bool(r["active"]), "pin_hash": r["pin_hash"],
                         "updated_at": r["updated_at"]}
    return rows


def db_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A roster row as the `staff` table stores it (windows as JSON)."""
    windows = row.get("windows")
    return {"id": row["id"], "job_number": row.get("job_number"), "name": row.get("name"),
            "position": row.get("position"), "windows": None if windows is None else json.dumps(list(windows)),
            "active": row.get("active"), "pin_hash": row.get("pin_hash"), "updated_at": row["updated_at"]}
