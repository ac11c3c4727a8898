"""Issue -> call -> finish cycles per second with durable commits (SQLite and PostgreSQL).

Every command is acknowledged only after the database commit that holds it. Two loads:
- sequential: one client at a time, so every command is its own transaction;
- hall: 8 window threads (each: a kiosk issues, the window calls and finishes), as in a busy hall;
  commands that arrive while a commit is in flight share the next one (group commit).
SQLite runs in WAL mode with synchronous=FULL (fsync per commit; survives a power cut) and, for
comparison, NORMAL (survives kill -9, not a power cut). Run: .venv/bin/python bench/engine.py
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import yaml

from hall_controller.clock import ManualClock
from hall_controller.config import parse_config, sample_config_text
from hall_controller.service import Actor, HallService
from hall_controller.store import Store

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MAIN_SERVICE = {1: "consult", 2: "consult", 3: "consult", 4: "legal_aid", 5: "legal_aid", 6: "mediation",
                7: "notary", 8: "general"}


def _hall(url: str, sync: str) -> tuple[HallService, Store, ManualClock]:
    config = parse_config(yaml.safe_load(sample_config_text()), "sample")
    clock = ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    store = Store(url, sqlite_sync=sync)
    service = HallService(config, store, clock, secret=b"bench")
    for n in MAIN_SERVICE:
        service.execute(Actor(f"window-{n}", "window", n), "login", {"staff_id": f"S00{n}", "pin": "1234"})
    return service, store, clock


def _cycles(service: HallService, window: int, count: int, clock: ManualClock | None) -> None:
    kiosk = Actor("kiosk-1", "kiosk")
    actor = Actor(f"window-{window}", "window", window)
    for i in range(count):
        service.execute(kiosk, "issue_ticket", {"service": MAIN_SERVICE[window]})
        if service.execute(actor, "call_next", {})["ticket"] is not None:
            service.execute(actor, "finish", {})
        if clock is not None:
            clock.advance(seconds=1)
            if i % 100 == 99:
                service.tick()      # the daemon's clock: closes unrated visits in one transaction


def sequential(url: str, cycles: int, sync: str = "FULL") -> float:
    service, store, clock = _hall(url, sync)
    start = time.perf_counter()
    _cycles(service, 3, cycles, clock)
    elapsed = time.perf_counter() - start
    store.close()
    return cycles / elapsed


def hall_load(url: str, cycles: int, sync: str = "FULL", threads: int = 8) -> float:
    service, store, _clock = _hall(url, sync)
    per_thread = cycles // threads
    workers = [threading.Thread(target=_cycles, args=(service, n, per_thread, None)) for n in range(1, threads + 1)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    service.tick()
    store.close()
    return per_thread * threads / elapsed


def raw_commit_rate(path: Path, sync: str, n: int = 2000) -> float:
    """Bare SQLite commits/s on this disk: the ceiling fsync puts on any durable design."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    start = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (b) VALUES (?)", ("x" * 300,))
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


def _pg_url() -> tuple[str, str]:
    name = f"hall_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, name


def _drop_pg(name: str) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cycles", type=int, default=4000)
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    print(f"issue→call→finish cycles per second ({args.cycles} cycles per run, 3 acknowledged commands each)")
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            seq = sequential(f"sqlite:///{Path(tmp) / f'seq-{sync}.db'}", args.cycles, sync)
            hall = hall_load(f"sqlite:///{Path(tmp) / f'hall-{sync}.db'}", args.cycles, sync)
            raw = raw_commit_rate(Path(tmp) / f"raw-{sync}.db", sync)
            print(f"  sqlite WAL synchronous={sync:6}  sequential {seq:7,.0f}/s   hall (8 windows) {hall:7,.0f}/s"
                  f"   (bare SQLite: {raw:,.0f} commits/s)")
    if not args.skip_postgres:
        url, name = _pg_url()
        try:
            seq = sequential(url, args.cycles)
        finally:
            _drop_pg(name)
        url, name = _pg_url()
        try:
            hall = hall_load(url, args.cycles)
        finally:
            _drop_pg(name)
        print(f"  postgresql synchronous_commit=on  sequential {seq:7,.0f}/s   hall (8 windows) {hall:7,.0f}/s")
    print("target: >= 1,000 cycles/s on SQLite (with fsync per commit: synchronous=FULL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
