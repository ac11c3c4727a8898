"""Issue -> call -> finish cycles per second with durable commits (SQLite and PostgreSQL).

Each command is its own transaction, committed before the next one starts, as in the daemon.
SQLite runs in WAL mode with synchronous=FULL (fsync on every commit) and, for comparison,
synchronous=NORMAL (survives kill -9, not a power cut). Run: .venv/bin/python bench/engine.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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

KIOSK = Actor("kiosk-1", "kiosk")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def run(url: str, cycles: int, sync: str = "FULL") -> float:
    config = parse_config(yaml.safe_load(sample_config_text()), "sample")
    clock = ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    store = Store(url, sqlite_sync=sync)
    service = HallService(config, store, clock, secret=b"bench")
    windows = [Actor(f"window-{n}", "window", n) for n in (1, 2, 3)]
    for i, w in enumerate(windows):
        service.execute(w, "login", {"staff_id": f"S00{i + 1}", "pin": "1234"})
    start = time.perf_counter()
    for i in range(cycles):
        w = windows[i % 3]
        service.execute(KIOSK, "issue_ticket", {"service": "consult"})
        service.execute(w, "call_next", {})
        service.execute(w, "finish", {})
        clock.advance(seconds=1)
        if i % 100 == 99:
            service.tick()      # the daemon's clock: closes unrated visits in one transaction
    elapsed = time.perf_counter() - start
    store.close()
    return cycles / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cycles", type=int, default=3000)
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            rate = run(f"sqlite:///{Path(tmp) / f'bench-{sync}.db'}", args.cycles, sync)
            print(f"sqlite (WAL, synchronous={sync}): {rate:,.0f} cycles/s "
                  f"({3 * rate:,.0f} commits/s) over {args.cycles} cycles")
    if not args.skip_postgres:
        name = f"hall_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            rate = run(PG_ADMIN.rsplit("/", 1)[0] + "/" + name, args.cycles)
            print(f"postgresql (synchronous_commit=on): {rate:,.0f} cycles/s over {args.cycles} cycles")
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print("target: >= 1,000 cycles/s on SQLite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
