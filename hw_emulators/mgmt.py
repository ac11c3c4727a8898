"""Emulator of the upstream management system (公共法律服务管理系统), DESIGN §7 and §9.

It speaks the HTTP JSON API the hall's forwarder talks to, keeps what it accepted in SQLite so
tests and operators can inspect it, and injects faults (5xx, 4xx, slow, hang, reset) so that the
forwarder's retry and dead-letter paths can be exercised without the real system. Fault modes
`401` and `403` refuse the hall's credentials as a real system does after a token was revoked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from hall_controller.clock import Clock, SystemClock
from hall_controller.logsetup import setup_logging

logger = logging.getLogger(__name__)

FAULT_MODES = ("5xx", "4xx", "401", "403", "slow", "hang", "reset")
DEFAULT_SLOW_MS = 1000
MAX_BODY_BYTES = 64 * 1024 * 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    idempotency_key TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS service_records (
    seq INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scans (
    seq INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    content_type TEXT,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS monthly_reports (
    seq INTEGER PRIMARY KEY,
    hall TEXT NOT NULL,
    month TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (hall, month)
);
CREATE TABLE IF NOT EXISTS sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO sequence (id, value) VALUES (1, 0);
"""


class BadRequest(Exception):
    """A client error answered with a JSON body; `message` is shown to the caller as is."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Store:
    """SQLite persistence; one connection behind a lock so ':memory:' works across threads.

    Every accepted item gets a number from one shared sequence (`seq`), so a test can check
    that the forwarder uploaded a record's scans before the record itself.
    """

    def __init__(self, db_path: str | None, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(db_path or ":memory:", check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _now_iso(self) -> str:
        return self._clock.now().isoformat(timespec="microseconds")

    def _next_seq(self) -> int:
        self._conn.execute("UPDATE sequence SET value = value + 1 WHERE id = 1")
        return self._conn.execute("SELECT value FROM sequence WHERE id = 1").fetchone()[0]

    def count_attempt(self, key: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO attempts (idempotency_key, attempts) VALUES (?, 1) "
                "ON CONFLICT (idempotency_key) DO UPDATE SET attempts = attempts + 1",
                (key,),
            )

    def add_record(self, key: str, body: Any) -> bool:
        """Store a record; False when the key was accepted before."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if self._conn.execute(
                    "SELECT 1 FROM service_records WHERE idempotency_key = ?", (key,)
                ).fetchone():
                    return False
                self._conn.execute(
                    "INSERT INTO service_records (seq, idempotency_key, body, received_at) VALUES (?, ?, ?, ?)",
                    (self._next_seq(), key, json.dumps(body, ensure_ascii=False), self._now_iso()),
                )
                return True
            finally:
                self._conn.execute("COMMIT")

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT r.seq, r.idempotency_key, r.body, r.received_at, COALESCE(a.attempts, 0) "
                "FROM service_records r LEFT JOIN attempts a USING (idempotency_key) ORDER BY r.seq"
            ).fetchall()
        return [
            {"idempotency_key": key, "body": json.loads(body), "attempts": attempts, "seq": seq,
             "received_at": received_at}
            for seq, key, body, received_at, attempts in rows
        ]

    def put_scan(self, sha256: str, content_type: str | None, data: bytes) -> bool:
        """Store scan bytes; False when that hash is already stored."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if self._conn.execute("SELECT 1 FROM scans WHERE sha256 = ?", (sha256,)).fetchone():
                    return False
                self._conn.execute(
                    "INSERT INTO scans (seq, sha256, content_type, size, data, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (self._next_seq(), sha256, content_type, len(data), data, self._now_iso()),
                )
                return True
            finally:
                self._conn.execute("COMMIT")

    def scans(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, sha256, content_type, size, received_at FROM scans ORDER BY seq"
            ).fetchall()
        return [
            {"sha256": sha, "content_type": ctype, "size": size, "seq": seq, "received_at": received_at}
            for seq, sha, ctype, size, received_at in rows
        ]

    def scan_data(self, sha256: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM scans WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])

    def add_report(self, hall: str, month: str, body: Any) -> bool:
        """Store a monthly report; False when that hall already reported that month."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if self._conn.execute(
                    "SELECT 1 FROM monthly_reports WHERE hall = ? AND month = ?", (hall, month)
                ).fetchone():
                    return False
                self._conn.execute(
                    "INSERT INTO monthly_reports (seq, hall, month, body, received_at) VALUES (?, ?, ?, ?, ?)",
                    (self._next_seq(), hall, month, json.dumps(body, ensure_ascii=False), self._now_iso()),
                )
                return True
            finally:
                self._conn.execute("COMMIT")

    def reports(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, hall, month, body, received_at FROM monthly_reports ORDER BY seq"
            ).fetchall()
        return [
            {"hall": hall, "month": month, "body": json.loads(body), "seq": seq, "received_at": received_at}
            for seq, hall, month, body, received_at in rows
        ]


class _FaultState:
    """The injected fault, shared by handler threads; a condition wakes requests held by 'hang'."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._fault: dict[str, Any] | None = None
        self._generation = 0
        self._stopping = False

    def set(self, mode: str, ms: int | None, count: int | None) -> dict[str, Any]:
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0):
            raise ValueError("ms must be a non-negative number")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer")
        with self._cond:
            self._fault = {"mode": mode, "ms": ms, "count": count}
            self._generation += 1
            self._cond.notify_all()
            return dict(self._fault)

    def clear(self) -> None:
        with self._cond:
            self._fault = None
            self._generation += 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def current(self) -> dict[str, Any] | None:
        with self._cond:
            return None if self._fault is None else dict(self._fault)

    def take(self) -> tuple[dict[str, Any], int] | None:
        """The fault for one API request (consuming one of `count`), with the generation it belongs to."""
        with self._cond:
            if self._fault is None:
                return None
            fault = dict(self._fault)
            generation = self._generation
            if self._fault["count"] is not None:
                self._fault["count"] -= 1
                if self._fault["count"] <= 0:
                    self._fault = None
            return fault, generation

    def hold(self, generation: int, ms: float | None) -> None:
        """Block until the fault is changed or cleared, the emulator stops, or `ms` elapse."""
        deadline = None if ms is None else time.monotonic() + ms / 1000
        with self._cond:
            while not self._stopping and self._generation == generation:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._cond.wait(remaining)


def _filter_appointments(appointments: Iterable[dict[str, Any]], hall: str, day: str) -> list[dict[str, Any]]:
    return [a for a in appointments if a.get("hall", hall) == hall and a.get("date") == day]


def validate_appointments(data: Any) -> list[dict[str, Any]]:
    """Check an appointment list: objects with a `date` (YYYY-MM-DD) and optionally a `hall` code."""
    if not isinstance(data, list):
        raise ValueError("appointments must be a list / 预约数据必须是列表")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"appointment #{i} is not an object / 第{i}条预约不是对象")
        try:
            date.fromisoformat(str(item.get("date")))
        except ValueError:
            raise ValueError(f"appointment #{i} needs date YYYY-MM-DD / 第{i}条预约缺少日期") from None
    return [dict(item) for item in data]


def load_appointments(path: str | Path) -> list[dict[str, Any]]:
    """Read appointments from a JSON (by extension) or YAML file."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if str(path).lower().endswith(".json") else yaml.safe_load(text)
    return validate_appointments(data or [])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: MgmtEmulator


def _server_class(host: str) -> type[_Server]:
    if ":" not in host:
        return _Server
    return type("_Server6", (_Server,), {"address_family": socket.AF_INET6})


class MgmtEmulator:
    """In-process management-system emulator; `hall-emu mgmt` wraps it (see `main_mgmt`)."""

    def __init__(
        self,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        db_path: str | None = None,
        token: str | None = None,
        appointments: list[dict[str, Any]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._listen = listen
        self._clock = clock or SystemClock()   # stamps `received_at`
        self._db_path = db_path
        self.token = token
        self._appointments = validate_appointments(appointments or [])
        self._appointments_lock = threading.Lock()
        self.fault = _FaultState()
        self.store: _Store | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("emulator not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> MgmtEmulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self.store = _Store(self._db_path, self._clock)
        server = _server_class(self._listen[0])(self._listen, _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="mgmt-emulator", daemon=True
        )
        self._thread.start()
        logger.info("management-system emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.fault.stop()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.store is not None:
            self.store.close()
        self.store = None
        self._server = None
        self._thread = None

    def __enter__(self) -> MgmtEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _require_store(self) -> _Store:
        if self.store is None:
            raise RuntimeError("emulator not started")
        return self.store

    def received_records(self) -> list[dict[str, Any]]:
        """Accepted service records in acceptance order with the attempt count of their key."""
        return self._require_store().records()

    def received_scans(self) -> list[dict[str, Any]]:
        return self._require_store().scans()

    def received_reports(self) -> list[dict[str, Any]]:
        return self._require_store().reports()

    def set_fault(self, mode: str, ms: int | None = None, count: int | None = None) -> dict[str, Any]:
        """Inject a fault into the next `count` API requests (all of them when None)."""
        fault = self.fault.set(mode, ms, count)
        logger.info("fault set: %s", fault)
        return fault

    def clear_fault(self) -> None:
        self.fault.clear()
        logger.info("fault cleared")

    def set_appointments(self, appointments: list[dict[str, Any]]) -> None:
        checked = validate_appointments(appointments)
        with self._appointments_lock:
            self._appointments = checked

    def appointments(self, hall: str | None = None, day: str | None = None) -> list[dict[str, Any]]:
        with self._appointments_lock:
            items = list(self._appointments)
        if hall is None or day is None:
            return items
        return _filter_appointments(items, hall, day)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "hall-emu-mgmt/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        logger.debug("%s - %s", self.address_string(), format % args)

    # -- plumbing ---------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send_json(status, {"error": code, "message": message})

    def _read_body(self) -> bytes:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise BadRequest(400, "bad_request", "Content-Length 无效 / invalid Content-Length") from None
        if length < 0:
            raise BadRequest(400, "bad_request", "Content-Length 无效 / invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise BadRequest(413, "too_large", "请求体过大 / request body too large")
        return self.rfile.read(length)

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(400, "bad_request", f"请求体不是有效的 JSON / request body is not valid JSON: {exc}") from None

    def _json_object(self, body: bytes) -> dict[str, Any]:
        data = self._json(body)
        if not isinstance(data, dict):
            raise BadRequest(400, "bad_request", "请求体必须是 JSON 对象 / request body must be a JSON object")
        return data

    def _dispatch(self, method: str) -> None:
        try:
            parts = urlsplit(self.path)
            body = self._read_body()
            if parts.path.startswith("/_"):
                self._control(method, parts.path, body)
            elif parts.path.startswith("/api/v1/"):
                self._api(method, parts.path, parse_qs(parts.query), body)
            else:
                raise BadRequest(404, "not_found", f"未知路径 / unknown path: {parts.path}")
        except BadRequest as exc:
            self._error(exc.status, exc.code, exc.message)
        except (ConnectionError, TimeoutError):
            logger.debug("client went away during %s %s", method, self.path)
            self.close_connection = True
        except Exception:
            logger.exception("emulator error on %s %s", method, self.path)
            self._error(500, "internal", "模拟器内部错误 / emulator internal error")

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # -- control API ------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> None:
        emu = self.server.emulator
        getters: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "/_received/service-records": emu.received_records,
            "/_received/scans": emu.received_scans,
            "/_received/monthly-reports": emu.received_reports,
        }
        if path in getters:
            self._require_method(method, "GET")
            self._send_json(200, getters[path]())
        elif path == "/_fault":
            self._require_method(method, "GET", "POST", "DELETE")
            if method == "GET":
                self._send_json(200, emu.fault.current())
            elif method == "DELETE":
                emu.clear_fault()
                self._send_json(200, None)
            else:
                spec = self._json_object(body)
                try:
                    fault = emu.set_fault(str(spec.get("mode")), spec.get("ms"), spec.get("count"))
                except ValueError as exc:
                    raise BadRequest(400, "bad_request", f"故障参数无效 / invalid fault: {exc}") from None
                self._send_json(200, fault)
        elif path == "/_appointments":
            self._require_method(method, "GET", "POST")
            if method == "POST":
                try:
                    emu.set_appointments(self._json(body))
                except ValueError as exc:
                    raise BadRequest(400, "bad_request", str(exc)) from None
            self._send_json(200, emu.appointments())
        else:
            raise BadRequest(404, "not_found", f"未知路径 / unknown path: {path}")

    @staticmethod
    def _require_method(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise BadRequest(405, "method_not_allowed", f"不支持的方法 / method not allowed: {method}")

    # -- upstream API -----------------------------------------------------------------------

    def _api(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        emu = self.server.emulator
        store = emu._require_store()
        key = self.headers.get("Idempotency-Key", "").strip()
        if path == "/api/v1/service-records" and key:
            store.count_attempt(key)
        if not self._apply_fault():
            return
        self._check_auth(emu.token)
        if path == "/api/v1/service-records":
            self._require_method(method, "POST")
            self._post_record(store, key, body)
        elif path.startswith("/api/v1/scans/"):
            self._require_method(method, "PUT")
            self._put_scan(store, path.removeprefix("/api/v1/scans/"), body)
        elif path == "/api/v1/appointments":
            self._require_method(method, "GET")
            self._get_appointments(emu, query)
        elif path == "/api/v1/monthly-reports":
            self._require_method(method, "POST")
            self._post_report(store, body)
        else:
            raise BadRequest(404, "not_found", f"未知路径 / unknown path: {path}")

    def _post_record(self, store: _Store, key: str, body: bytes) -> None:
        """A service record, once per Idempotency-Key (a repeat is 409, as the real system answers)."""
        record = self._json_object(body)
        if not key:
            raise BadRequest(400, "bad_request", "缺少 Idempotency-Key 请求头 / Idempotency-Key header required")
        if store.add_record(key, record):
            self._send_json(201, {"status": "created", "idempotency_key": key})
        else:
            self._error(409, "duplicate", f"记录已接收 / record already received: {key}")

    def _get_appointments(self, emu: MgmtEmulator, query: dict[str, list[str]]) -> None:
        hall = (query.get("hall") or [""])[0]
        day = (query.get("date") or [""])[0]
        try:
            date.fromisoformat(day)
        except ValueError:
            raise BadRequest(400, "bad_request", "需要 hall 与 date=YYYY-MM-DD / hall and date=YYYY-MM-DD required") from None
        if not hall:
            raise BadRequest(400, "bad_request", "需要 hall 与 date=YYYY-MM-DD / hall and date=YYYY-MM-DD required")
        self._send_json(200, {"hall": hall, "date": day, "appointments": emu.appointments(hall, day)})

    def _post_report(self, store: _Store, body: bytes) -> None:
        """A 月报表, once per hall and month."""
        report = self._json_object(body)
        hall = report.get("hall")
        hall_code = hall.get("code") if isinstance(hall, dict) else hall
        month = report.get("month")
        if not isinstance(hall_code, str) or not hall_code or not isinstance(month, str) \
                or not re.fullmatch(r"\d{4}-\d{2}", month):
            raise BadRequest(422, "invalid", "月报表需要 hall.code 与 month=YYYY-MM / report needs hall.code and month")
        if store.add_report(hall_code, month, report):
            self._send_json(201, {"status": "created", "hall": hall_code, "month": month})
        else:
            self._error(409, "duplicate", f"该月报表已接收 / report already received: {hall_code} {month}")

    def _put_scan(self, store: _Store, sha256: str, data: bytes) -> None:
        sha256 = sha256.lower()
        if not _SHA256_RE.match(sha256):
            raise BadRequest(400, "bad_request", "路径中的 sha256 无效 / invalid sha256 in path")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise BadRequest(400, "checksum_mismatch", f"内容校验失败 / sha256 mismatch: got {actual}")
        if store.put_scan(sha256, self.headers.get("Content-Type"), data):
            self._send_json(201, {"status": "created", "sha256": sha256, "size": len(data)})
        else:
            self._send_json(200, {"status": "exists", "sha256": sha256, "size": len(data)})

    def _check_auth(self, token: str | None) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given or (token is not None and given != token):
            raise BadRequest(401, "unauthorized", "身份验证失败 / missing or invalid bearer token")

    def _apply_fault(self) -> bool:
        """Apply the injected fault; False when the request must not be handled further."""
        taken = self.server.emulator.fault.take()
        if taken is None:
            return True
        fault, generation = taken
        mode, ms = fault["mode"], fault["ms"]
        logger.debug("injecting fault %s into %s %s", mode, self.command, self.path)
        if mode == "5xx":
            self._error(503, "unavailable", "服务暂不可用(模拟故障)/ service unavailable (injected)")
            return False
        if mode == "4xx":
            self._error(422, "rejected", "请求被拒绝(模拟故障)/ request rejected (injected)")
            return False
        if mode in ("401", "403"):
            self._error(int(mode), "unauthorized" if mode == "401" else "forbidden",
                        "凭据无效或无权限(模拟故障)/ credentials refused (injected)")
            return False
        if mode == "slow":
            time.sleep((DEFAULT_SLOW_MS if ms is None else ms) / 1000)
            return True
        if mode == "hang":
            self.server.emulator.fault.hold(generation, ms)
            self.close_connection = True
            return False
        # reset: RST instead of FIN, as a crashed proxy or firewall would do
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
        return False


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def main_mgmt(argv: list[str] | None = None) -> int:
    """`hall-emu mgmt`: serve the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="hall-emu mgmt", description="管理系统模拟器 / management-system emulator")
    parser.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 8700),
                        help="HOST:PORT to listen on; port 0 picks a free port (default 127.0.0.1:8700)")
    parser.add_argument("--db", default=None, help="SQLite file for received data (default: in memory)")
    parser.add_argument("--token", default=None, help="bearer token to require (default: any non-empty token)")
    parser.add_argument("--appointments", default=None, help="JSON or YAML file with a list of appointments")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    try:
        appointments = load_appointments(args.appointments) if args.appointments else []
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"hall-emu mgmt: cannot load appointments: {exc}", file=sys.stderr)
        return 2
    emulator = MgmtEmulator(listen=args.listen, db_path=args.db, token=args.token, appointments=appointments)
    try:
        emulator.start()
    except OSError as exc:
        print(f"hall-emu mgmt: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    logger.info("ready %s", emulator.url)
    print(f"ready {emulator.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main_mgmt())
