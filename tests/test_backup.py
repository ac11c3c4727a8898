"""`hallctl backup` / `hallctl restore` (issue 18 item 3) on real parts.

- Under load: the daemon (a child process) serves three ticket issuers and three windows that close
  visits into the outbox while `hallctl backup` runs in its own process; the backup is restored into
  a fresh hall folder and a daemon started on it: every ticket acknowledged before the backup
  started is there, numbering continues without a duplicate, and the management-system emulator
  sees each record once. The figures are printed (`pytest -s`).
- PostgreSQL (the real server): pg_dump / pg_restore round trip in a throw-away database.
- Bad input: a truncated file, random bytes, a zip, a tar of something else, a damaged member, a
  newer format, another hall's backup, a restore while the daemon runs: each refused, the hall
  folder byte for byte as it was.
- Rotation (`--dir --keep`), a backup of the first release restored and migrated.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hall_controller.bus.client import BusError
from hall_controller.cli import main as hallctl
from hall_controller.clock import ManualClock
from hall_controller.operate.backup import pg_command
from hw_emulators.mgmt import MgmtEmulator

from .harness import (
    KIOSK,
    MONDAY,
    PIN,
    DaemonProcess,
    free_port,
    init_hall,
    no_devices,
    service_hall,
    wait_until,
    window,
)

FIXTURE = Path(__file__).parent / "fixtures" / "first_release"
TOKEN = "backup-token"


def _hallctl(*args: str, clock: ManualClock | None = None) -> int:
    return hallctl(["--log-level", "WARNING", *args], clock=clock)


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its SHA-256: what 'nothing was changed' is checked against."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _tickets(db: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    try:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT id, day, epoch, prefix, seq_no, number, service, status, closed_at FROM tickets")}
    finally:
        conn.close()


def _db_path(config_path: Path) -> Path:
    return config_path.parent / "hall.db"


def _hall_with_visits(folder: Path, visits: int = 3) -> Path:
    """A stopped hall folder with a few tickets (some served) on the manual clock of the service halls."""
    hall = service_hall(folder)
    try:
        hall.run(window(3), "login", staff_id="S003", pin=PIN)
        for _ in range(visits):
            hall.serve(3)
        hall.run(KIOSK, "issue_ticket", service="legal_aid")
    finally:
        hall.close()
    return hall.config_path


# ------------------------------------------------------------------------------------ under load

def _issuer(daemon: DaemonProcess, client_id: str, role: str, acked: list, stop: threading.Event) -> None:
    """Take tickets as fast as the daemon answers; `acked` gets (ticket id, number, monotonic time of the reply)."""
    client = daemon.client(client_id, role=role)
    rng = random.Random(client_id)
    try:
        while not stop.is_set():
            ticket = client.request("issue_ticket", timeout=5, service=rng.choice(["consult", "legal_aid", "mediation"]))
            acked.append((ticket["ticket"]["id"], ticket["ticket"]["number"], time.monotonic()))
    except BusError:
        if not stop.is_set():
            raise
    finally:
        client.close()


def _window(daemon: DaemonProcess, n: int, closed: list, stop: threading.Event) -> None:
    """Call, finish and rate visit after visit at window `n`: each closes into the outbox."""
    win = daemon.client(f"window-{n}", role="window", window=n)
    tablet = daemon.client(f"tablet-{n}", role="tablet", window=n)
    try:
        win.request("login", staff_id=f"S00{n}", pin=PIN)
        while not stop.is_set():
            ticket = win.request("call_next", timeout=5)["ticket"]
            if ticket is None:                 # nobody waiting for this window yet
                time.sleep(0.02)
                continue
            win.request("finish", timeout=5)
            tablet.request("rate", timeout=5, ticket=ticket["id"], score=5)
            closed.append(ticket["id"])
    finally:
        win.close()
        tablet.close()


def _outbox(config_path: Path) -> dict[str, Any]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert _hallctl("outbox", "--config", str(config_path), "--json") == 0
    return json.loads(buffer.getvalue())


@pytest.mark.slow
def test_a_backup_under_kiosk_load_restores_every_acknowledged_ticket(tmp_path):
    port = free_port()

    def hall_config(data: dict[str, Any]) -> None:
        no_devices(data)
        data["mqtt"]["listen"] = f"127.0.0.1:{port}"
        data["upstream"]["token"] = TOKEN
    config_path = init_hall(tmp_path / "hall", hall_config)
    backup = tmp_path / "backups" / "hall.tar.gz"
    backup.parent.mkdir()
    acked: list[tuple[str, str, float]] = []
    closed: list[str] = []
    with MgmtEmulator(token=TOKEN) as emu:
        daemon = DaemonProcess(config_path, port, "--upstream", emu.url)
        daemon.start()
        stop = threading.Event()
        workers = [threading.Thread(target=_issuer, args=(daemon, cid, role, acked, stop))
                   for cid, role in (("kiosk-1", "kiosk"), ("kiosk-2", "kiosk"), ("admin", "admin"))]
        workers += [threading.Thread(target=_window, args=(daemon, n, closed, stop)) for n in (1, 2, 3)]
        try:
            for worker in workers:
                worker.start()
            wait_until(lambda: len(acked) >= 150 and len(closed) >= 20, 60, "the hall under load", interval=0.05)
            started = time.monotonic()
            before = {tid for tid, _, at in acked if at < started}
            issued_at_start = len(acked)
            done = subprocess.run([sys.executable, "-m", "hall_controller.cli", "--log-level", "WARNING", "backup",
                                   "--config", str(config_path), "--out", str(backup)],
                                  capture_output=True, text=True, timeout=120, check=False)
            seconds = time.monotonic() - started
            during = len(acked) - issued_at_start
            assert done.returncode == 0, done.stderr
            wait_until(lambda: len(acked) >= issued_at_start + during + 30, 30, "tickets after the backup")
        finally:
            stop.set()
            for worker in workers:
                worker.join(15)
            assert daemon.terminate() == 0
        print(done.stdout)
        assert during > 0, "the kiosks were idle while the backup ran"

        # a fresh hall folder (its own secret and passwords until the restore), stopped
        port2 = free_port()

        def restored_config(data: dict[str, Any]) -> None:
            hall_config(data)
            data["mqtt"]["listen"] = f"127.0.0.1:{port2}"
        restored = init_hall(tmp_path / "restored", restored_config)
        assert _hallctl("restore", "--config", str(restored), str(backup)) == 0
        assert (restored.parent / "hall.secret").read_bytes() == (config_path.parent / "hall.secret").read_bytes()
        tickets = _tickets(_db_path(restored))
        lost = before - tickets.keys()
        assert not lost, f"{len(lost)} tickets acknowledged before the backup are missing"
        original = _tickets(_db_path(config_path))
        assert all(tickets[t][:6] == original[t][:6] for t in before)   # day, epoch, prefix, seq_no, number, service

        conn = sqlite3.connect(_db_path(restored))
        pending = {r[0] for r in conn.execute("SELECT record_key FROM outbox WHERE status = 'pending'")}
        conn.close()
        resent = pending & {r["idempotency_key"] for r in emu.received_records()}   # sent after the backup
        daemon2 = DaemonProcess(restored, port2, "--upstream", emu.url)
        daemon2.start()
        try:
            wait_until(lambda: _outbox(restored)["pending"] == 0, 60, "the restored outbox to drain", interval=0.2)
            kiosk = daemon2.client("kiosk-1", role="kiosk")
            try:
                new = [kiosk.request("issue_ticket", service=s)["ticket"] for s in ("consult", "legal_aid", "mediation")]
            finally:
                kiosk.close()
            summary = _outbox(restored)
        finally:
            assert daemon2.terminate() == 0
        received = emu.received_records()

    assert (summary["pending"], summary["dead"]) == (0, 0), summary
    after = _tickets(_db_path(restored))
    day_epoch = {(t[0], t[1]) for t in tickets.values()}
    for ticket in new:
        same_queue = [t[3] for t in tickets.values() if (t[0], t[1]) == (ticket["day"], ticket["epoch"])
                      and t[2] == ticket["number"][0]]
        assert int(ticket["number"][1:]) == max(same_queue, default=0) + 1, ticket["number"]
    numbers = [(t[0], t[1], t[4]) for t in after.values()]
    assert len(numbers) == len(set(numbers)), "a number was issued twice"
    keys = [r["idempotency_key"] for r in received]
    assert len(keys) == len(set(keys)), "the upstream accepted a record twice"
    conn = sqlite3.connect(_db_path(restored))
    payloads = dict(conn.execute("SELECT record_key, payload FROM outbox WHERE kind = 'service_record'").fetchall())
    closed_restored = {r[0] for r in conn.execute("SELECT id FROM tickets WHERE closed_at IS NOT NULL")}
    conn.close()
    assert closed_restored == payloads.keys() and closed_restored <= set(keys), "a closed visit was not delivered"
    bodies = {r["idempotency_key"]: r["body"] for r in received}
    attempts = {r["idempotency_key"]: r["attempts"] for r in received}
    assert all(attempts[k] >= 2 for k in resent), "a record sent after the backup was not sent again"
    assert all(bodies[k] == json.loads(p) for k, p in payloads.items())
    size = backup.stat().st_size
    took = done.stdout.split("用时 took: ")[1].split()[0]
    print(f"backup under load: {len(acked)} tickets issued by 3 clients, {len(closed)} visits closed by 3 "
          f"windows; {len(before)} acknowledged before the backup, {during} while it ran "
          f"({len(tickets)} in the backup, {len(day_epoch)} business day); backup {took} s as hallctl "
          f"reports it, {seconds:.2f} s for its process from start to exit, {size / 1024:.0f} KB of a {_db_path(config_path).stat().st_size / 1024:.0f} KB "
          f"database; restored: {len(closed_restored)} closed visits, each accepted upstream once ({len(pending)} "
          f"were pending in the backup, {len(resent)} of them sent after it and sent again: 409, kept once); "
          f"numbering continued at {', '.join(t['number'] for t in new)}")


# ------------------------------------------------------------------------------------ PostgreSQL

@pytest.mark.postgres
def test_postgresql_round_trip(tmp_path, pg_url):
    def on_pg(data: dict[str, Any]) -> None:
        data["database"] = pg_url
    clock = ManualClock(MONDAY)
    hall = service_hall(tmp_path, mutate=on_pg)
    try:
        hall.run(window(3), "login", staff_id="S003", pin=PIN)
        served = [hall.serve(3)["id"] for _ in range(3)]
        waiting = hall.run(KIOSK, "issue_ticket", service="legal_aid")["ticket"]
    finally:
        hall.close()
    engine = sa.create_engine(pg_url)

    def state() -> dict[str, Any]:
        with engine.connect() as conn:
            return {"tickets": dict(conn.execute(sa.text("SELECT id, status FROM tickets")).all()),
                    "outbox": sorted(conn.execute(sa.text("SELECT record_key FROM outbox")).scalars()),
                    "events": conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()}
    taken = state()
    assert set(served) <= taken["tickets"].keys() and taken["tickets"][waiting["id"]] == "waiting"
    backup = tmp_path / "pg.tar.gz"
    assert _hallctl("backup", "--config", str(hall.config_path), "--out", str(backup), clock=clock) == 0
    with tarfile.open(backup) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest["database"]["kind"] == "postgresql"
        assert tar.extractfile("database.pgdump").read(5) == b"PGDMP"      # pg_dump's custom format

    hall = service_hall(tmp_path, mutate=on_pg)                # the hall goes on after the backup
    try:
        later = hall.serve(3)["id"]
    finally:
        hall.close()
    assert later in state()["tickets"]
    assert _hallctl("restore", "--config", str(hall.config_path), str(backup), clock=clock) == 0
    assert state() == taken                                  # as it was when the backup was taken
    with engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert revision == manifest["database"]["alembic_revision"]


def test_the_postgresql_password_travels_in_the_environment_never_in_argv():
    argv, env = pg_command("pg_dump", "postgresql+psycopg://hall:s3cret-pw@db.example:5433/hall?sslmode=require",
                           "--format=custom")
    assert not any("s3cret-pw" in arg for arg in argv)
    assert env["PGPASSWORD"] == "s3cret-pw" and env["PGSSLMODE"] == "require"
    assert argv[:2] == ["pg_dump", "--no-password"]
    assert argv[argv.index("--host") + 1] == "db.example" and argv[argv.index("--dbname") + 1] == "hall"
    _, env = pg_command("pg_restore", "postgresql+psycopg://postgres@127.0.0.1/hall")
    assert "PGPASSWORD" not in env


# ------------------------------------------------------------------------------------ bad input

def _rewrite(backup: Path, out: Path, change: Any) -> None:
    """A copy of `backup` with its members passed through `change(name, bytes) -> bytes`."""
    with tarfile.open(backup) as src, tarfile.open(out, "w:gz") as dst:
        for info in src.getmembers():
            data = change(info.name, src.extractfile(info).read())
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


def _bad_files(tmp_path: Path, good: Path, other_hall: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the refusal must say)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    data = good.read_bytes()
    files: dict[str, tuple[Path, str]] = {}
    for name, cut in (("truncated", len(data) // 2), ("truncated-near-end", len(data) - 9), ("empty", 0)):
        (bad / name).write_bytes(data[:cut])
        files[name] = (bad / name, "不完整或已损坏")
    (bad / "random").write_bytes(random.Random(7).randbytes(50_000))
    files["random"] = (bad / "random", "不完整或已损坏")
    with zipfile.ZipFile(bad / "a.zip", "w") as z:
        z.writestr("manifest.json", "{}")
    files["zip"] = (bad / "a.zip", "不完整或已损坏")
    with tarfile.open(bad / "photos.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("photo.jpg")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\xff\xd8\xff\xe0"))
    files["other tar"] = (bad / "photos.tar.gz", "不是大厅备份文件")

    def flip_db(name: str, body: bytes) -> bytes:
        return body[:5000] + bytes([body[5000] ^ 0xFF]) + body[5001:] if name == "database.sqlite3" else body

    def newer(name: str, body: bytes) -> bytes:
        return json.dumps({**json.loads(body), "format_version": 99}).encode() if name == "manifest.json" else body

    def unknown_schema(name: str, body: bytes) -> bytes:
        if name != "manifest.json":
            return body
        manifest = json.loads(body)
        manifest["database"]["alembic_revision"] = "9999"
        return json.dumps(manifest).encode()
    for name, change, words in (("damaged member", flip_db, "校验和不符"), ("newer format", newer, "更新版本"),
                                ("newer schema", unknown_schema, "比本软件新")):
        _rewrite(good, bad / f"{name}.tar.gz", change)
        files[name] = (bad / f"{name}.tar.gz", words)
    files["other hall"] = (other_hall, "是大厅 'other' 的备份")
    return files


def test_a_truncated_damaged_or_foreign_file_is_refused_and_nothing_changes(tmp_path, capsys):
    config_path = _hall_with_visits(tmp_path / "hall")
    clock = ManualClock(MONDAY + timedelta(hours=1))
    good = tmp_path / "good.tar.gz"
    assert _hallctl("backup", "--config", str(config_path), "--out", str(good), clock=clock) == 0

    def other(data: dict[str, Any]) -> None:
        data["hall"]["id"] = "other"
    other_config = init_hall(tmp_path / "other", other)
    other_backup = tmp_path / "other.tar.gz"
    assert _hallctl("backup", "--config", str(other_config), "--out", str(other_backup), clock=clock) == 0
    files = _bad_files(tmp_path, good, other_backup)
    capsys.readouterr()

    _hall_with_visits(tmp_path / "hall", visits=1)           # the hall went on after the good backup
    before = _fingerprint(config_path.parent)
    for name, (path, words) in files.items():
        assert _hallctl("restore", "--config", str(config_path), str(path), clock=clock) == 1, name
        err = capsys.readouterr().err
        assert "恢复被拒绝" in err and "restore refused" in err and "nothing was changed" in err, (name, err)
        assert words in err, (name, err)
        assert _fingerprint(config_path.parent) == before, name
    print(err)
    assert _hallctl("restore", "--config", str(config_path), str(tmp_path / "nowhere.tar.gz"), clock=clock) == 1
    assert "找不到备份文件" in capsys.readouterr().err
    # the good one still restores, and the database it replaced is kept
    assert _hallctl("restore", "--config", str(config_path), str(good), clock=clock) == 0
    out = capsys.readouterr().out
    print(out)
    assert "已恢复 / restored" in out and "before-restore" in out
    kept = [p for p in config_path.parent.iterdir() if ".before-restore-" in p.name]
    assert [p.name for p in kept if not p.name.endswith(("-wal", "-shm"))] == [
        "hall.db.before-restore-20261123T020000Z"]
    assert len(_tickets(_db_path(config_path))) == 4 and len(_tickets(kept[0])) == 6


def test_a_restore_while_the_daemon_runs_is_refused(tmp_path, capsys):
    config_path = init_hall(tmp_path / "hall", no_devices)
    backup = tmp_path / "hall.tar.gz"
    daemon = DaemonProcess(config_path, free_port())
    daemon.start()
    try:
        client = daemon.client("kiosk-1", role="kiosk")
        client.request("issue_ticket", service="consult")
        client.close()
        assert _hallctl("backup", "--config", str(config_path), "--out", str(backup)) == 0
        capsys.readouterr()
        before = _fingerprint(config_path.parent)
        assert _hallctl("restore", "--config", str(config_path), str(backup)) == 1
        err = capsys.readouterr().err
        print(err)
        assert f"守护进程正在运行（进程 {daemon.proc.pid}）" in err and "systemctl stop hall-daemon" in err
        assert _fingerprint(config_path.parent) == before
    finally:
        assert daemon.terminate() == 0
    assert _hallctl("restore", "--config", str(config_path), str(backup)) == 0     # stopped: fine


# ------------------------------------------------------------------------------------ rotation, files

def test_rotation_keeps_this_halls_newest_backups(tmp_path, capsys):
    config_path = _hall_with_visits(tmp_path / "hall", visits=1)
    folder = tmp_path / "backups"
    folder.mkdir()
    foreign = [folder / "hall-backup-other-20200101T000000Z.tar.gz", folder / "notes.txt"]
    for path in foreign:
        path.write_text("not ours")
    clock = ManualClock(MONDAY)
    for _ in range(5):
        assert _hallctl("backup", "--config", str(config_path), "--dir", str(folder), "--keep", "3",
                        clock=clock) == 0
        clock.advance(days=1)
    assert _hallctl("backup", "--config", str(config_path), "--dir", str(folder), "--keep", "3", clock=clock) == 0
    assert _hallctl("backup", "--config", str(config_path), "--dir", str(folder), "--keep", "3", clock=clock) == 0
    out = capsys.readouterr().out
    print(out)
    assert "已删除旧备份 / old backups removed: 1（保留最新 3 份" in out
    ours = {p.name for p in folder.iterdir() if p.name.startswith("hall-backup-demo-")}
    assert ours == {"hall-backup-demo-20261127T010000Z.tar.gz", "hall-backup-demo-20261128T010000Z.tar.gz",
                    "hall-backup-demo-20261128T010000Z-1.tar.gz"}
    assert all(p.exists() for p in foreign)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "a temporary file was left"
    for path in folder.glob("hall-backup-demo-*"):
        assert path.stat().st_mode & 0o777 == 0o600
    with tarfile.open(folder / "hall-backup-demo-20261127T010000Z.tar.gz") as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert names == ["manifest.json", "database.sqlite3", "hall.secret", "credentials.yaml", "client-passwords.yaml"]
    assert manifest["hall_id"] == "demo" and manifest["created_at"] == "2026-11-27T01:00:00+00:00"
    assert manifest["database"]["counts"]["tickets"] == 2
    with pytest.raises(SystemExit):
        _hallctl("backup", "--config", str(config_path), "--dir", str(folder), "--keep", "0")


def test_a_backup_of_the_first_release_is_restored_and_migrated(tmp_path, capsys):
    """A backup taken by a hall still on the first release's schema (0001) restores into today's."""
    config_path = init_hall(tmp_path / "old", no_devices)
    db = _db_path(config_path)
    for path in config_path.parent.glob("hall.db*"):
        path.unlink()
    with sqlite3.connect(db) as conn:
        conn.executescript((FIXTURE / "hall.sql").read_text(encoding="utf-8"))
    conn.close()
    shutil.copy(FIXTURE / "hall.secret", config_path.parent / "hall.secret")
    backup = tmp_path / "old.tar.gz"
    assert _hallctl("backup", "--config", str(config_path), "--out", str(backup)) == 0
    assert "revision 0001" in capsys.readouterr().out
    fresh = init_hall(tmp_path / "new", no_devices)
    assert _hallctl("restore", "--config", str(fresh), str(backup)) == 0
    out = capsys.readouterr().out
    assert "已升级数据库 / migrated: 0001 →" in out
    assert _tickets(_db_path(fresh)) == _tickets(db)
    assert (fresh.parent / "hall.secret").read_text() == (FIXTURE / "hall.secret").read_text()
    assert os.stat(fresh.parent / "hall.secret").st_mode & 0o777 == 0o600


def test_restore_brings_the_clients_back_but_keeps_this_pcs_daemon_account(tmp_path):
    """On a new PC the install made the daemon's own MQTT password (Mosquitto and the daemon's unit
    have it): a restore takes every client of the backup except that one."""
    from hall_controller.bus.credentials import DAEMON_CLIENT_ID, CredentialStore, check_password
    from hall_controller.config import load_config
    from hall_controller.setup_hall import client_password, load_or_create_secret, save_password

    config_path = _hall_with_visits(tmp_path / "hall", visits=1)
    config = load_config(config_path)
    store = CredentialStore(config.credentials_path)
    save_password(config, DAEMON_CLIENT_ID, store.add_or_reset(DAEMON_CLIENT_ID, "daemon", password="old-pc-daemon"))
    kiosk_hash = store.get("kiosk-1").password_hash
    backup = tmp_path / "hall.tar.gz"
    assert _hallctl("backup", "--config", str(config_path), "--out", str(backup)) == 0

    new_pc = init_hall(tmp_path / "new-pc")                     # its own secret, passwords, daemon account
    config = load_config(new_pc)
    store = CredentialStore(config.credentials_path)
    save_password(config, DAEMON_CLIENT_ID, store.add_or_reset(DAEMON_CLIENT_ID, "daemon", password="new-pc-daemon"))
    store.add_or_reset("kiosk-9", "kiosk")
    assert _hallctl("restore", "--config", str(new_pc), str(backup)) == 0
    store = CredentialStore(config.credentials_path)
    assert store.get("kiosk-1").password_hash == kiosk_hash and store.get("kiosk-9") is None
    assert check_password("new-pc-daemon", store.get(DAEMON_CLIENT_ID).password_hash)
    assert client_password(config, DAEMON_CLIENT_ID) == "new-pc-daemon"
    assert client_password(config, "kiosk-1") == client_password(load_config(config_path), "kiosk-1")
    assert load_or_create_secret(config.secret_path) == load_or_create_secret(str(config_path.parent / "hall.secret"))
