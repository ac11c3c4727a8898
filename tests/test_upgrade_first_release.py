"""Upgrades keep data (issue 18 item 10): a database the first release wrote is upgraded with
`hallctl db upgrade` and served by today's daemon with every ticket intact.

The fixture (tests/fixtures/first_release/hall.sql) was written by the first release's own code and
migration 0001; its README says how. Whatever migrations exist now, the chain is run to head.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from alembic.script import ScriptDirectory

from hall_controller.cli import main as hallctl
from hall_controller.clock import ManualClock
from hall_controller.domain import CardData
from hall_controller.store import MIGRATIONS
from hw_emulators.mgmt import MgmtEmulator

from .harness import KIOSK, NOW, PIN, Hall, init_hall, wait_until, window

FIXTURE = Path(__file__).parent / "fixtures" / "first_release"
TOKEN = "upgrade-token"
TICKET_COLUMNS = "id, day, epoch, prefix, seq_no, number, service, status, priority, window_no, person_key, " \
                 "issued_at, closed_at"


def _load_dump(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.executescript((FIXTURE / "hall.sql").read_text(encoding="utf-8"))
    conn.close()


def _query(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _hallctl(*args: str, clock: ManualClock | None = None) -> tuple[int, str]:
    out = StringIO()
    with redirect_stdout(out):
        code = hallctl(["--log-level", "WARNING", *args], clock=clock)
    return code, out.getvalue()


def test_the_first_release_database_is_upgraded_and_served_with_every_ticket(tmp_path):
    old_db = tmp_path / "first-release.db"
    _load_dump(old_db)
    assert _query(old_db, "SELECT version_num FROM alembic_version") == [("0001",)]
    tickets_before = _query(old_db, f"SELECT {TICKET_COLUMNS} FROM tickets ORDER BY issued_at")
    data_before = dict(_query(old_db, "SELECT id, data FROM tickets"))
    outbox_before = dict(_query(old_db, "SELECT record_key, payload FROM outbox"))
    assert {t[7] for t in tickets_before} == {"waiting", "called", "serving", "finished", "no_show"}
    assert len(outbox_before) == 2

    # hallctl db upgrade --config … --db …: the operator's command, on the old file, in a hall folder
    # that has the first release's secret (the keyed ID hashes in the old file were made with it)
    hall_dir = tmp_path / "hall"
    hall_dir.mkdir()
    shutil.copy(FIXTURE / "hall.secret", hall_dir / "hall.secret")
    config_path = init_hall(hall_dir)
    code, out = _hallctl("db", "upgrade", "--config", str(config_path), "--db", f"sqlite:///{old_db}")
    assert code == 0 and "database at head" in out, out
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert _query(old_db, "SELECT version_num FROM alembic_version") == [(head,)]
    assert _query(old_db, f"SELECT {TICKET_COLUMNS} FROM tickets ORDER BY issued_at") == tickets_before
    assert dict(_query(old_db, "SELECT id, data FROM tickets")) == data_before

    # today's daemon on it, the same business day
    clock = ManualClock(NOW)            # 2026-11-23 10:00 in the hall: the fixture's day, 10 min later

    def on_old_db(data: dict) -> None:
        data["database"] = f"sqlite:///{old_db}"

    with MgmtEmulator(token=TOKEN) as emu:
        hall = Hall(hall_dir, mutate=on_old_db, clock=clock, upstream_url=emu.url, upstream_token=TOKEN)
        try:
            snap = hall.service.snapshot()
            assert snap["day"] == "2026-11-23" and snap["epoch"] == 0
            assert {k: q["waiting"] for k, q in snap["queues"].items() if q["waiting"]} == {
                "consult": 1, "legal_aid": 1}                                       # A005, B001
            current = {int(n): (w["status"], w["ticket"]["number"] if w["ticket"] else None)
                       for n, w in snap["windows"].items() if w["staff"]}
            assert current == {1: ("idle", None), 2: ("idle", None), 3: ("serving", "A004"), 4: ("calling", "B002")}

            code, out = _hallctl("status", "--config", str(hall.config_path), clock=clock)
            print(out)
            assert code == 0 and "来源：守护进程" in out
            assert "法律咨询(A) 1人" in out and "法律援助(B) 1人" in out
            assert "3号窗口  办理中  张伟  当前 A004" in out and "4号窗口  呼叫中" in out and "B002" in out

            # the old records go out, as they were written
            wait_until(lambda: len(emu.received_records()) >= 2, 15, "the first release's records upstream")
            received = {r["idempotency_key"]: r["body"] for r in emu.received_records()}
            assert {k: json.loads(v) for k, v in outbox_before.items()} == received

            # numbering continues; the open no-show can be put back; the card holder is the same person
            assert hall.run(KIOSK, "issue_ticket", service="consult")["ticket"]["number"] == "A006"
            assert hall.run(KIOSK, "issue_ticket", service="legal_aid")["ticket"]["number"] == "B003"
            assert hall.run(window(3), "reinstate", number="A003")["ticket"]["status"] == "waiting"
            hall.service.card_inserted("kiosk-1", CardData("李四", "310101194501011238", "男", "19450101"))
            again = hall.run(KIOSK, "issue_ticket", service="legal_aid", use_card=True)["ticket"]
            assert again["number"] == "B002"                  # held already: printed again, not a second one
            hall.run(window(3), "finish")                      # the old serving visit closes and is recorded
            clock.advance(minutes=5)
            hall.service.tick()
            a004 = next(t[0] for t in tickets_before if t[5] == "A004")
            wait_until(lambda: a004 in {r["idempotency_key"] for r in emu.received_records()}, 15,
                       "the old serving visit's record upstream")
            hall.run(window(1), "logout")
            hall.run(window(1), "login", staff_id="S001", pin=PIN)
            assert hall.run(window(1), "call_next")["ticket"]["number"] == "A003"   # reinstated: first in line
        finally:
            hall.close()
        keys = [r["idempotency_key"] for r in emu.received_records()]
    assert len(keys) == len(set(keys)) == 3
    numbers = _query(old_db, "SELECT number FROM tickets WHERE day = '2026-11-23' AND epoch = 0")
    assert len(numbers) == len(set(numbers)) == 9
    after = {t[0]: t for t in _query(old_db, f"SELECT {TICKET_COLUMNS} FROM tickets")}
    for before in tickets_before:
        assert after[before[0]][:7] == before[:7]       # id, day, epoch, prefix, seq_no, number, service


def test_the_fixture_is_the_first_release_schema():
    """The dump is the old schema (migration 0001 as released, before its later edits), so the test
    above upgrades what a first-release hall has on disk, not today's schema."""
    dump = (FIXTURE / "hall.sql").read_text(encoding="utf-8")
    for table in ("hall_state", "events", "tickets", "windows", "appointments", "commands", "outbox", "scans"):
        assert f"CREATE TABLE {table} " in dump, table
    assert "INSERT INTO alembic_version VALUES('0001')" in dump
    assert "ix_outbox_due" in dump and "AUTOINCREMENT" not in dump
