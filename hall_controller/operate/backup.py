"""`hallctl backup` and `hallctl restore` (DESIGN §12): the hall's data in one file, and back.

A backup is one gzip'd tar: `manifest.json` first (format and version, hall id, database kind and
Alembic revision, when it was taken by the hall's clock, product version, the SHA-256 and size of
every member), then the database, the hall secret (the keyed ID hashes only match with it) and the
credential store (the clients' password hashes; their clear passwords too when readable). It is
written 0600 under a temporary name and renamed into place, so a backup is either whole or absent.

The daemon keeps serving while `hallctl backup` runs: SQLite is copied with the online backup API in
one step (a consistent snapshot; WAL lets the daemon's writer go on) and stored as a plain database
file; PostgreSQL with `pg_dump --format=custom` (a snapshot too), its password handed over in
PGPASSWORD, never on the command line. `--dir DIR --keep N` names the file by hall id and the clock's
UTC time and deletes this hall's older backups in DIR beyond the newest N.

`hallctl restore FILE` only restores into a stopped hall (the daemon's runtime file says whether one
runs). It reads and checks the whole file first — manifest, every checksum, the hall id, the database
kind, a revision this software knows, an intact database — into a staging folder, and only then
touches anything: a SQLite database is renamed over the hall's (the previous one, with its -wal/-shm,
is kept beside it as `<name>.before-restore-<time>`); PostgreSQL is restored with
`pg_restore --clean --if-exists` in one transaction. Then the migrations run (`hallctl db upgrade`),
so a backup of an older release is served by this one. A truncated, damaged or foreign file, or a
backup of another hall, is refused with a message that says so and nothing is changed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url

from .. import __version__
from ..clock import Clock
from ..config import HallConfig, load_config
from ..daemon import read_runtime
from ..files import atomic_replace, fsync_dir
from ..setup_hall import passwords_path
from ..store import MIGRATIONS, make_engine, upgrade

log = logging.getLogger(__name__)

FORMAT = "hall-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_MEMBERS = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
SECRET, CREDENTIALS, PASSWORDS = "hall.secret", "credentials.yaml", "client-passwords.yaml"
MEMBER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
BACKUP_NAME = re.compile(r"^hall-backup-(?P<hall>[a-z0-9_-]+)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.tar\.gz$")
MANIFEST_MAX = 1 << 20
CHUNK = 1 << 20
PG_TIMEOUT = 3600


class BackupError(Exception):
    """A backup or restore refused or failed; the message (Chinese, then English) says what to do."""


def _refused(why: str, en: str) -> BackupError:
    return BackupError(f"恢复被拒绝：{why}。现有数据未作任何改动。\nrestore refused: {en}; nothing was changed.")


# ------------------------------------------------------------------------------------ the database

@dataclass(frozen=True)
class Database:
    """The hall database a command works on: its URL (the config's, or --db)."""

    url: str

    @property
    def kind(self) -> str:
        backend = make_url(self.url).get_backend_name()
        if backend not in DATABASE_MEMBERS:
            raise BackupError(f"不支持备份此类数据库：{backend} / cannot back up a {backend} database")
        return backend

    @property
    def path(self) -> Path:
        """The SQLite file."""
        name = make_url(self.url).database
        if not name or name == ":memory:":
            raise BackupError("数据库不是文件，无法备份 / the database is not a file")
        return Path(name)


def pg_command(program: str, url: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """`program` (pg_dump, pg_restore) for the database at `url`: argv without any password (every
    user sees argv in `ps`), the environment with PGPASSWORD."""
    u = make_url(url)
    argv = [program, "--no-password", *args]
    if u.host:
        argv += ["--host", u.host]
    if u.port:
        argv += ["--port", str(u.port)]
    if u.username:
        argv += ["--username", u.username]
    argv += ["--dbname", u.database or ""]
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    if u.password:
        env["PGPASSWORD"] = u.password
    if isinstance(u.query.get("sslmode"), str):
        env["PGSSLMODE"] = u.query["sslmode"]
    return argv, env


def _run_pg(program: str, url: str, *args: str) -> None:
    argv, env = pg_command(program, url, *args)
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("%s failed to run: %s", program, exc)
        raise BackupError(f"{program} 无法运行（{exc.__class__.__name__}），请安装 postgresql-client / "
                          f"{program} could not run; install postgresql-client") from None
    if done.returncode != 0:
        log.error("%s exited %d: %s", program, done.returncode, done.stderr.strip()[-2000:])
        raise BackupError(f"{program} 失败（退出码 {done.returncode}，详情见日志）/ {program} failed "
                          f"(exit {done.returncode}, see the log)")


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    q = {"tickets": "SELECT count(*) FROM tickets", "open_tickets": "SELECT count(*) FROM tickets WHERE closed_at IS NULL",
         "outbox_pending": "SELECT count(*) FROM outbox WHERE status = 'pending'"}
    return {k: conn.execute(sql).fetchone()[0] for k, sql in q.items()}


def _dump_sqlite(db: Database, target: Path) -> tuple[str | None, dict[str, int]]:
    """A consistent copy of the live SQLite database (one backup step), as a plain database file."""
    if not db.path.is_file():
        raise BackupError(f"数据库文件不存在：{db.path} / no database file at {db.path}")
    with closing(sqlite3.connect(db.path, timeout=30)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)                 # pages=-1: the whole database under one read transaction
        dst.execute("PRAGMA journal_mode=DELETE")
        revision = dst.execute("SELECT version_num FROM alembic_version").fetchone()
        counts = _sqlite_counts(dst)
    _side_files_to_owner(db.path)
    return (revision[0] if revision else None), counts


def _dump_postgres(db: Database, target: Path) -> tuple[str | None, dict[str, int]]:
    engine = make_engine(db.url)
    try:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            counts = {"tickets": conn.execute(text("SELECT count(*) FROM tickets")).scalar_one(),
                      "open_tickets": conn.execute(text("SELECT count(*) FROM tickets WHERE closed_at IS NULL"))
                      .scalar_one(),
                      "outbox_pending": conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'pending'"))
                      .scalar_one()}
    except Exception as exc:
        log.error("cannot read the database: %s", exc)
        raise BackupError("无法连接数据库（详情见日志）/ cannot reach the database (see the log)") from None
    finally:
        engine.dispose()
    _run_pg("pg_dump", db.url, "--format=custom", "--file", str(target))
    return revision, counts


# ------------------------------------------------------------------------------------ writing

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_in(source: Path, staged: Path, what: str) -> None:
    try:
        staged.write_bytes(source.read_bytes())
    except OSError as exc:
        log.error("cannot read %s: %s", source, exc)
        raise BackupError(f"无法读取{what} {source}（{exc.strerror}），请以 root 或 hall 用户运行 / "
                          f"cannot read {source}: run as root or the hall user") from None


def _write_archive(out: Path, manifest: dict[str, Any], staged: dict[str, Path]) -> None:
    """The archive at `out`, 0600, whole or not at all (temporary name, fsync, rename)."""
    mtime = int(datetime.fromisoformat(manifest["created_at"]).timestamp())
    with atomic_replace(out, mode=0o600) as fh, tarfile.open(fileobj=fh, mode="w:gz", compresslevel=6) as tar:
        body = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
        tar.addfile(_tarinfo(MANIFEST, len(body), mtime), io.BytesIO(body))
        for name, path in staged.items():
            with path.open("rb") as member:
                tar.addfile(_tarinfo(name, path.stat().st_size, mtime), member)


def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o600
    return info


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    seconds: float
    manifest: dict[str, Any]


def create_backup(config: HallConfig, db: Database, out: Path, clock: Clock) -> BackupResult:
    """Write a backup of the hall to `out` (see the module); read back and checked before it returns."""
    started = time.monotonic()
    kind = db.kind
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".hall-backup-") as tmp:
        staging = Path(tmp)
        member = DATABASE_MEMBERS[kind]
        dump = _dump_sqlite if kind == "sqlite" else _dump_postgres
        revision, counts = dump(db, staging / member)
        staged = {member: staging / member}
        for name, source, what in ((SECRET, Path(config.secret_path), "大厅密钥"),
                                   (CREDENTIALS, Path(config.credentials_path), "客户端凭据")):
            _copy_in(source, staging / name, what)
            staged[name] = staging / name
        passwords = passwords_path(config)
        if passwords.is_file() and os.access(passwords, os.R_OK):
            _copy_in(passwords, staging / PASSWORDS, "客户端密码")
            staged[PASSWORDS] = staging / PASSWORDS
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "hall_id": config.hall_id,
            "hall_name": config.name, "created_at": clock.now().astimezone(UTC).isoformat(timespec="seconds"),
            "product_version": __version__,
            "database": {"kind": kind, "member": member, "alembic_revision": revision, "counts": counts},
            "members": {name: {"sha256": _sha256(path), "size": path.stat().st_size} for name, path in staged.items()},
        }
        _write_archive(out, manifest, staged)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".hall-backup-check-") as check:
        read_backup(out, Path(check))               # what was written reads back whole
    return BackupResult(out, out.stat().st_size, time.monotonic() - started, manifest)


def backup_name(config: HallConfig, clock: Clock, folder: Path) -> Path:
    """`hall-backup-<hall>-<UTC time>.tar.gz` in `folder`, a new name even within one second."""
    stamp = clock.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"hall-backup-{config.hall_id}-{stamp}.tar.gz"
    n = 0
    while path.exists():
        n += 1
        path = folder / f"hall-backup-{config.hall_id}-{stamp}-{n}.tar.gz"
    return path


def rotate(folder: Path, hall_id: str, keep: int) -> list[Path]:
    """Delete this hall's backups in `folder` beyond the newest `keep`; returns the deleted ones."""
    found = []
    for path in folder.iterdir():
        match = BACKUP_NAME.match(path.name)
        if match and match["hall"] == hall_id and path.is_file() and not path.is_symlink():
            found.append(((match["stamp"], int(match["n"] or 0)), path))
    found.sort(reverse=True)
    removed = [path for _, path in found[keep:]]
    for path in removed:
        path.unlink()
        log.info("old backup removed: %s", path.name)
    return removed


# ------------------------------------------------------------------------------------ reading

def _manifest(tar: tarfile.TarFile, name: str) -> dict[str, Any]:
    try:
        info = tar.getmember(MANIFEST)
    except KeyError:
        raise _refused(f"{name} 不是大厅备份文件（没有备份清单）", f"{name} is not a hall backup (no manifest)") from None
    reader = tar.extractfile(info) if info.isfile() and info.size <= MANIFEST_MAX else None
    try:
        manifest = json.loads(reader.read()) if reader else None
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("members"), dict):
        raise _refused(f"{name} 不是大厅备份文件（清单不可读）", f"{name} is not a hall backup (unreadable manifest)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise _refused(f"{name} 由更新版本的软件创建（备份格式 {version}），请先升级本软件",
                       f"{name} was made by a newer version (format {version}); upgrade this software first")
    return manifest


def _extract(tar: tarfile.TarFile, name: str, expected: Any, staging: Path, file_name: str) -> None:
    """Member `name` into `staging`, its size and SHA-256 checked against the manifest."""
    if not MEMBER_NAME.match(name) or not isinstance(expected, dict):
        raise _refused(f"{file_name} 的清单有误（成员 {name!r}）", f"{file_name} has a bad manifest entry {name!r}")
    try:
        info = tar.getmember(name)
    except KeyError:
        raise _refused(f"{file_name} 不完整：缺少 {name}", f"{file_name} is incomplete: {name} is missing") from None
    reader = tar.extractfile(info) if info.isfile() else None
    if reader is None:
        raise _refused(f"{file_name} 中的 {name} 不是文件", f"{name} in {file_name} is not a file")
    digest, size = hashlib.sha256(), 0
    with (staging / name).open("wb") as out:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if digest.hexdigest() != expected.get("sha256") or size != expected.get("size"):
        raise _refused(f"{file_name} 已损坏：{name} 的校验和不符", f"{file_name} is damaged: checksum mismatch in {name}")


def read_backup(path: Path, staging: Path) -> dict[str, Any]:
    """Every member of the backup at `path` into `staging`, each checked; returns the manifest.
    Raises BackupError for anything that is not a whole hall backup."""
    name = path.name
    try:
        with tarfile.open(path, "r:gz") as tar:
            manifest = _manifest(tar, name)
            for member, expected in manifest["members"].items():
                _extract(tar, member, expected, staging, name)
            while tar.fileobj is not None and tar.fileobj.read(CHUNK):
                pass                        # to the end: gzip checks its length and CRC there
    except BackupError:
        raise
    except FileNotFoundError:
        raise BackupError(f"找不到备份文件 {path} / no such file: {path}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        log.info("backup %s unreadable: %s: %s", path, exc.__class__.__name__, exc)
        raise _refused(f"{name} 不完整或已损坏，或不是大厅备份文件（无法完整读出）",
                       f"{name} is truncated, damaged or not a hall backup (cannot be read whole)") from None
    database = manifest.get("database")
    if not isinstance(database, dict) or database.get("member") not in manifest["members"] \
            or DATABASE_MEMBERS.get(database.get("kind")) != database.get("member"):
        raise _refused(f"{name} 的清单缺少数据库", f"{name} has no database in its manifest")
    for required in (SECRET, CREDENTIALS):
        if required not in manifest["members"]:
            raise _refused(f"{name} 不完整：缺少 {required}", f"{name} is incomplete: {required} is missing")
    return manifest


def _known_revision(revision: Any) -> bool:
    from alembic.script import ScriptDirectory

    try:
        return isinstance(revision, str) and ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
    except Exception:       # alembic raises its own errors for an unknown revision
        return False


def _check_fits(manifest: dict[str, Any], config: HallConfig, db: Database, staging: Path, name: str) -> None:
    """The backup is of this hall, of this kind of database, from a schema this software knows, intact."""
    if manifest.get("hall_id") != config.hall_id:
        raise _refused(f"{name} 是大厅 {manifest.get('hall_id')!r} 的备份，本大厅是 {config.hall_id!r}",
                       f"{name} is a backup of hall {manifest.get('hall_id')!r}, this hall is {config.hall_id!r}")
    kind = manifest["database"]["kind"]
    if kind != db.kind:
        raise _refused(f"备份中是 {kind} 数据库，本大厅使用 {db.kind}（可用 --db 指定目标数据库）",
                       f"the backup holds a {kind} database, this hall uses {db.kind} (--db names the target)")
    revision = manifest["database"].get("alembic_revision")
    if not _known_revision(revision):
        raise _refused(f"备份的数据库版本 {revision} 比本软件新，请先升级本软件",
                       f"the backup's schema {revision} is newer than this software; upgrade it first")
    member = staging / manifest["database"]["member"]
    if kind == "sqlite":
        try:
            with closing(sqlite3.connect(f"file:{member}?mode=ro", uri=True)) as conn:
                ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError:
            ok = False
        if not ok:
            raise _refused(f"{name} 中的数据库已损坏", f"the database in {name} is damaged")
    else:
        try:
            readable = subprocess.run(["pg_restore", "--list", str(member)], capture_output=True,
                                      timeout=PG_TIMEOUT, check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("pg_restore failed to run: %s", exc)
            raise BackupError("pg_restore 无法运行，请安装 postgresql-client / pg_restore could not run; install "
                              "postgresql-client") from None
        if not readable:
            raise _refused(f"{name} 中的数据库转储不可读", f"the database dump in {name} cannot be read")


# ------------------------------------------------------------------------------------ restoring

def _refuse_if_running(config: HallConfig) -> None:
    running = read_runtime(config)
    if running:
        raise _refused(f"大厅守护进程正在运行（进程 {running['pid']}），请先停止它：sudo systemctl stop hall-daemon",
                       f"the hall daemon is running (pid {running['pid']}); stop it first: "
                       f"sudo systemctl stop hall-daemon")


def _owner_of(path: Path) -> os.stat_result | None:
    """The file's, else its folder's, owner: what a replaced file must keep (the daemon's user)."""
    for candidate in (path, path.parent):
        if candidate.exists():
            return candidate.stat()
    return None


def _take_owner(path: Path, like: os.stat_result | None, mode: int) -> None:
    os.chmod(path, mode)
    if like is not None and os.geteuid() == 0:
        os.chown(path, like.st_uid, like.st_gid)


def _side_files_to_owner(database: Path) -> None:
    """SQLite's -wal/-shm files left by this process (run as root) go to the database's owner, or the
    daemon (the `hall` user) could not open its own database."""
    if os.geteuid() != 0 or not database.exists():
        return
    like = database.stat()
    for suffix in ("-wal", "-shm"):
        side = database.with_name(database.name + suffix)
        if side.exists() and side.stat().st_uid != like.st_uid:
            _take_owner(side, like, stat.S_IMODE(like.st_mode))


def _replace_small(target: Path, data: bytes) -> None:
    """`target` replaced by `data` atomically, keeping its owner and mode (0600 when new)."""
    like = target.stat() if target.exists() else None

    def same_owner(fd: int) -> None:
        if like is not None and os.geteuid() == 0:
            os.fchown(fd, like.st_uid, like.st_gid)

    with atomic_replace(target, mode=stat.S_IMODE(like.st_mode) if like else 0o600, prepare=same_owner) as fh:
        fh.write(data)


def _swap_sqlite(staged: Path, target: Path, stamp: str) -> Path | None:
    """The staged database renamed over the hall's; the previous one (with its -wal/-shm, so nothing of
    it is lost) kept as `<name>.before-restore-<stamp>`, whose path is returned."""
    like = _owner_of(target)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o600
    _take_owner(staged, like, mode)
    aside = None
    if target.exists():
        aside = target.with_name(f"{target.name}.before-restore-{stamp}")
        os.replace(target, aside)
    for suffix in ("-wal", "-shm", "-journal"):
        stale = target.with_name(target.name + suffix)
        if stale.exists():
            if aside is not None:
                os.replace(stale, aside.with_name(aside.name + suffix))
            else:
                stale.unlink()
    os.replace(staged, target)
    fsync_dir(target.parent)
    return aside


def _revision_now(db: Database) -> str | None:
    engine = make_engine(db.url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def _keep_this_pcs_daemon_account(files: dict[str, Path], staging: Path, members: dict[str, Any]) -> None:
    """The daemon's own MQTT account belongs to this PC's install (its password is in the PC's
    /etc/hall/daemon-password, and Mosquitto's file is made from these hashes), not to the backup:
    its entry in the restored credentials (and clear passwords) is the one this PC has now."""
    from ..bus.credentials import DAEMON_CLIENT_ID

    for name in (CREDENTIALS, PASSWORDS):
        current, staged = files[name], staging / name
        if name not in members or not current.is_file():
            continue
        try:
            mine = (yaml.safe_load(current.read_text(encoding="utf-8")) or {}).get(DAEMON_CLIENT_ID)
            restored = yaml.safe_load(staged.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, AttributeError) as exc:
            log.warning("daemon account not carried over from %s: %s", current, exc)
            continue
        if not isinstance(restored, dict) or mine is None or restored.get(DAEMON_CLIENT_ID) == mine:
            continue
        restored[DAEMON_CLIENT_ID] = mine
        staged.write_text(yaml.safe_dump(restored, sort_keys=True, allow_unicode=True), encoding="utf-8")


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict[str, Any]
    kept: Path | None
    revision: str | None


@contextmanager
def _staging(db: Database, backup: Path) -> Iterator[Path]:
    """A folder beside the SQLite database (one file system: the swap is a rename), else beside the file."""
    folder = db.path.parent if db.kind == "sqlite" else backup.resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".hall-restore-") as tmp:
        yield Path(tmp)


def restore_backup(config: HallConfig, db: Database, backup: Path, clock: Clock) -> RestoreResult:
    """Restore `backup` into the stopped hall (see the module). Raises BackupError, changing nothing,
    for a running daemon or a file that is not a whole backup of this hall."""
    _refuse_if_running(config)
    with _staging(db, backup) as staging:
        manifest = read_backup(backup, staging)
        _check_fits(manifest, config, db, staging, backup.name)
        _refuse_if_running(config)            # started while the file was read?
        members = manifest["members"]
        files = {SECRET: Path(config.secret_path), CREDENTIALS: Path(config.credentials_path),
                 PASSWORDS: passwords_path(config)}
        _keep_this_pcs_daemon_account(files, staging, members)
        contents = {files[name]: (staging / name).read_bytes() for name in files if name in members}
        database = staging / manifest["database"]["member"]
        kept = None
        if db.kind == "sqlite":
            kept = _swap_sqlite(database, db.path, clock.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"))
        else:
            _run_pg("pg_restore", db.url, "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
                    "--no-owner", "--no-privileges", str(database))
        for target, data in contents.items():
            _replace_small(target, data)
    upgrade(db.url)                           # a backup of an older release: `hallctl db upgrade`
    if db.kind == "sqlite":
        _side_files_to_owner(db.path)
    return RestoreResult(manifest, kept, _revision_now(db))


# ------------------------------------------------------------------------------------ commands

def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def cmd_backup(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    db = Database(args.db or config.database)
    if args.keep and not args.dir:
        print("hallctl backup: --keep 只能与 --dir 一起用 / --keep goes with --dir", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else backup_name(config, args.clock, Path(args.dir))
    try:
        result = create_backup(config, db, out, args.clock)
        removed = rotate(Path(args.dir), config.hall_id, args.keep) if args.dir and args.keep else []
    except BackupError as exc:
        print(f"备份失败 / backup failed: {exc}", file=sys.stderr)
        return 1
    database = result.manifest["database"]
    print(f"备份完成 / backup written: {result.path}")
    print(f"  大厅 hall: {config.hall_id}  数据库 database: {database['kind']}（迁移版本 revision "
          f"{database['alembic_revision']}）  号票 tickets: {database['counts']['tickets']}")
    print(f"  大小 size: {_size(result.size)}  用时 took: {result.seconds:.1f} s")
    if removed:
        print(f"  已删除旧备份 / old backups removed: {len(removed)}（保留最新 {args.keep} 份 / keeping the newest "
              f"{args.keep}）")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    db = Database(args.db or config.database)
    try:
        result = restore_backup(config, db, Path(args.file), args.clock)
    except BackupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    m, database = result.manifest, result.manifest["database"]
    target = db.path if db.kind == "sqlite" else make_url(db.url).render_as_string(hide_password=True)
    print(f"已恢复 / restored: {args.file}")
    print(f"  大厅 hall: {m['hall_id']}  备份时间 taken: {m['created_at']}  软件版本 version: {m['product_version']}")
    print(f"  数据库 database: {database['kind']} → {target}  号票 tickets: {database['counts']['tickets']}")
    if database.get("alembic_revision") != result.revision:
        print(f"  已升级数据库 / migrated: {database.get('alembic_revision')} → {result.revision}")
    if result.kept:
        print(f"  原数据库已保留为 / the previous database was kept as: {result.kept}（确认无误后可删除 / "
              f"delete it once all is well）")
    print("  已恢复大厅密钥与客户端凭据 / hall secret and client credentials restored")
    print("下一步 / next: sudo systemctl start hall-daemon（用 Debian Mosquitto 时先执行 hallctl mqtt-config 并重启 "
          "mosquitto / with Debian's Mosquitto, run hallctl mqtt-config and restart it first）")
    return 0


def _keep(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("--keep must be at least 1")
    return n


def add_commands(sub: argparse._SubParsersAction, with_config: Any) -> None:
    """`hallctl backup` and `hallctl restore`."""
    sp = with_config(sub.add_parser("backup", help="back the hall up while it runs (database, secret, credentials)"),
                     db=True)
    where = sp.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="FILE", help="write the backup to FILE")
    where.add_argument("--dir", metavar="DIR", help="write hall-backup-<hall>-<UTC time>.tar.gz into DIR")
    sp.add_argument("--keep", type=_keep, metavar="N", help="with --dir: keep this hall's newest N backups there")
    sp.set_defaults(func=cmd_backup)
    sp = with_config(sub.add_parser("restore", help="restore a backup into the stopped hall"), db=True)
    sp.add_argument("file", metavar="FILE")
    sp.set_defaults(func=cmd_restore)
