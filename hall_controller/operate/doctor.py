"""`hallctl doctor`: one command an IT person runs on a sick hall; one line per check, Chinese and English.

Checks: the config; the database (reachable, writable, migrations at head) and free disk space; the
upstream outbox; the broker (reachable as `admin`; with Mosquitto, its password file and ACL as
`hallctl mqtt-config` would write them now); the daemon (answers `status`, its version); every device
(online, else what it expects beside what is plugged in, from `devices scan`'s listing); the upstream
(reachable, token accepted, its clock against the hall's); the voice pack and an audio output; every
app client online.

Each check runs on its own thread with its own deadline and its own try/except, so a broker that is
down, a database another program holds locked or an upstream that hangs costs its own line and never
the others: the whole run takes about `--timeout` plus a little. A line is ✔ ok, ! warning (exit 0
still), ✘ fail (exit 1) or – not checked here; each failing line says what to do, in Chinese. No line
carries a secret: passwords and tokens are never printed, URLs are shown with their password masked.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .. import __version__
from ..admin import Target, admin_target
from ..clock import Clock
from ..config import ConfigError, DeviceConfig, HallConfig, parse_config
from ..redact import redact_text, redact_url, register_secret
from ..setup_hall import passwords_path
from . import devices_scan
from .paths import HallPaths

log = logging.getLogger(__name__)

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "✔", WARN: "!", FAIL: "✘", SKIP: "–"}
DEFAULT_TIMEOUT = 5.0
GRACE = 1.5                         # a check's thread may overrun its own timeouts by this much
DISK_WARN, DISK_FAIL = 1 << 30, 200 << 20
CLOCK_WARN, CLOCK_FAIL = 30.0, 300.0
SLOW_UPSTREAM_S = 2.0
FLAP_WINDOW = timedelta(minutes=10)   # a device that went offline this often in this long is not well,
FLAP_COUNT = 3                        # even when it happens to be online at the moment of the check
STATUS_GRACE = 1.0                  # the daemon's retained status arrives right after SUBACK when it runs
# Config sections whose problems do not stop the other checks: the config is checked again without them.
OPTIONAL_SECTIONS = ("voice", "display", "scans")
KIND_LABELS = {"controller": ("通讯控制器", "controller"), "card_reader": ("身份证阅读器", "card reader"),
               "printer": ("打印机", "printer"), "speaker": ("扬声器", "speaker"), "camera": ("高拍仪", "camera")}
HOSTED_ZH = {"led": "窗口屏", "keypad": "呼叫器"}


# ---------------------------------------------------------------------------------------- results

@dataclass
class Line:
    """One check's verdict. `zh` says what was found; `todo` (Chinese) what to do when it is not ok."""

    check: str
    status: str
    label_zh: str
    label_en: str
    zh: str
    en: str
    todo: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def text_zh(self) -> str:
        todo = f" → {self.todo}" if self.todo and self.status in (WARN, FAIL) else ""
        return f"{self.zh}{todo}"

    def render(self) -> str:
        return f"{MARKS[self.status]} {self.label_zh} / {self.label_en}: {self.text_zh()} / {self.en}"

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "status": self.status,
                "zh": f"{self.label_zh}：{self.text_zh()}", "en": f"{self.label_en}: {self.en}", "detail": self.detail}


class Shared:
    """A value computed once on its own thread and waited for by several checks (the bus probe, the
    listing of ports): a check that waits past its deadline gets TimeoutError, never a hang."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name=f"doctor-{name}", daemon=True).start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:   # handed to every check that waits for it
            self._error = exc
        finally:
            self._done.set()

    def get(self, timeout: float) -> Any:
        if not self._done.wait(max(0.0, timeout)):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class Context:
    config: HallConfig
    raw: dict[str, Any]
    base_dir: Path
    clock: Clock
    timeout: float
    db_url: str
    mqtt_url: str | None
    mosquitto_dir: Path | None
    deadline: float = 0.0
    bus: Shared | None = None
    listing: Shared | None = None

    def remaining(self) -> float:
        return max(0.1, self.deadline - time.monotonic())


@dataclass(frozen=True)
class Check:
    """A unit run on its own thread; `names` are the (check, label_zh, label_en) its lines replace
    with a timeout line when it does not finish in time."""

    run: Callable[[Context], list[Line]]
    names: tuple[tuple[str, str, str], ...]


# ---------------------------------------------------------------------------------------- config

def _problem_section(field_name: str) -> str:
    return field_name.replace("[", ".").replace(" ", ".").split(".", 1)[0]


def load_for_doctor(path: Path) -> tuple[HallConfig | None, dict[str, Any], list[Line]]:
    """(config, raw YAML, the config's lines). A config whose only problems are in optional sections
    (voice, display, scans) is checked again without them, so the other checks still run."""
    label = ("配置", "config")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except OSError as exc:
        return None, {}, [Line("config", FAIL, *label, f"无法读取 {path}（{exc.strerror or exc}）",
                               f"cannot read {path}", "用 --config 指定大厅配置文件，或先运行 hallctl init")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"第 {mark.line + 1} 行" if mark else ""
        return None, {}, [Line("config", FAIL, *label, f"{path} 不是有效的 YAML（{where}）",
                               f"{path} is not valid YAML", "按提示的行改正缩进或引号")]
    try:
        config = parse_config(data, str(path), path.parent.resolve())
        return config, data, [Line("config", OK, *label, f"{path} 有效（大厅 {config.hall_id}，{len(config.devices)} 台设备，"
                                   f"{len(config.clients)} 个客户端）", f"{path} is valid")]
    except ConfigError as exc:
        problems = exc.problems
    lines = [Line("config", FAIL, *label, f"{path}：{fld}：{msg}", f"{path}: {fld}: {msg}", "按提示改正配置后重启守护进程")
             for fld, msg in problems]
    sections = {_problem_section(fld) for fld, _ in problems}
    if isinstance(data, dict) and sections <= set(OPTIONAL_SECTIONS):
        try:
            trimmed = {k: v for k, v in data.items() if k not in sections}
            return parse_config(trimmed, str(path), path.parent.resolve()), data, lines
        except ConfigError:
            pass
    return None, data if isinstance(data, dict) else {}, lines


# ---------------------------------------------------------------------------------------- database

def _engine(url: str, timeout: float) -> Any:
    """A short-lived engine of our own: a lock or a dead server costs `timeout`, not the store's 30 s."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    if url.startswith("sqlite"):
        return create_engine(url, poolclass=NullPool, connect_args={"timeout": timeout, "check_same_thread": False})
    return create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": max(1, int(timeout))})


# What a low-level error means, for the operator's line (the raw text goes to the log only).
_ERROR_WORDS = (
    (("password authentication failed", "authentication"), "用户名或口令错误", "authentication failed"),
    (("does not exist",), "数据库不存在", "database does not exist"),
    (("refused",), "连接被拒绝", "connection refused"),
    (("timed out", "timeout"), "无应答（超时）", "timed out"),
    (("reset",), "连接被重置", "connection reset"),
    (("name or service not known", "nodename", "getaddrinfo", "resolve"), "主机名无法解析", "host name not resolved"),
    (("certificate", "ssl"), "TLS 证书校验失败", "TLS certificate check failed"),
    (("locked", "busy"), "被锁定", "locked"),
    (("permission", "readonly", "read-only"), "没有权限", "permission denied"),
)


def error_words(exc: BaseException | str) -> tuple[str, str]:
    """(Chinese, English) for an error, by what its text says; the raw text is logged at INFO."""
    text = str(exc)
    log.info("doctor: %s", redact_text(text.splitlines()[0] if text else type(exc).__name__))
    lower = text.lower()
    for words, zh, en in _ERROR_WORDS:
        if any(w in lower for w in words):
            return zh, en
    return "出错（--log-level INFO 可见原文）", "error (see --log-level INFO)"


def _sqlite_file(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///"):])
    return None


def _migration_state(conn: Any) -> tuple[str | None, str]:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from ..store import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head() or "?"
    return MigrationContext.configure(conn).get_current_revision(), head


def _writable(engine: Any, url: str, timeout: float) -> str | None:
    """None when a write could start now; else why not (Chinese)."""
    if url.startswith("sqlite"):
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(min(timeout, 2.0) * 1000)}")
            cur.execute("BEGIN IMMEDIATE")
            raw.rollback()
        except Exception as exc:
            zh, en = error_words(exc)
            if en == "locked":
                return "数据库被锁定（另一个程序正持有写锁）"
            return f"无法写入（{zh}）"
        finally:
            raw.close()
        return None
    from sqlalchemy import text as sql

    with engine.connect() as conn:
        if conn.execute(sql("SELECT pg_is_in_recovery()")).scalar():
            return "数据库为只读备库（recovery）"
    return None


def check_database(ctx: Context) -> list[Line]:
    url, shown = ctx.db_url, redact_url(ctx.db_url)
    label = ("数据库", "database")
    file = _sqlite_file(url)
    if file is not None and not file.exists():
        return [Line("database", FAIL, *label, f"{shown} 不存在", f"{shown} does not exist",
                     "运行 hallctl init（新大厅）或用 hallctl restore 恢复备份")]
    engine = _engine(url, min(ctx.timeout, 3.0))
    try:
        with engine.connect() as conn:
            current, head = _migration_state(conn)
        locked = _writable(engine, url, ctx.timeout)
    except Exception as exc:
        zh, en = error_words(exc)
        return [Line("database", FAIL, *label, f"{shown} 无法连接（{zh}）", f"{shown} unreachable ({en})",
                     "检查数据库服务是否运行、地址与口令是否正确")]
    finally:
        engine.dispose()
    detail = {"url": shown, "revision": current, "head": head}
    if locked:
        return [Line("database", FAIL, *label, f"{shown}：{locked}", f"{shown}: not writable ({'locked' if '锁' in locked else 'read-only'})",
                     "找出并结束占用数据库的程序（如 sqlite3 命令行、备份脚本），或重启守护进程", detail)]
    if current != head:
        return [Line("database", FAIL, *label, f"{shown} 可写，但迁移不是最新（{current or '空'}，最新 {head}）",
                     f"{shown} writable, migrations at {current}, head {head}",
                     "停止守护进程后运行 hallctl db upgrade" if current else "运行 hallctl init 或 hallctl db upgrade", detail)]
    return [Line("database", OK, *label, f"{shown} 可写，迁移为最新（{head}）", f"writable, migrations at head ({head})",
                 detail=detail)]


def _free_space_line(folder: Path, usage: Callable[[str], Any]) -> Line:
    free = usage(str(folder)).free
    gib = free / (1 << 30)
    label = ("磁盘空间", "disk space")
    detail = {"folder": str(folder), "free_bytes": free}
    text = f"{folder} 剩余 {gib:.1f} GiB" if free >= 1 << 30 else f"{folder} 剩余 {free >> 20} MiB"
    en = f"{folder}: {gib:.2f} GiB free"
    if free < DISK_FAIL:
        return Line("disk", FAIL, *label, text, en, "立即清理磁盘（旧日志、旧备份 hallctl backup 轮换），否则数据库将无法写入", detail)
    if free < DISK_WARN:
        return Line("disk", WARN, *label, text, en, "尽快清理磁盘或扩容", detail)
    return Line("disk", OK, *label, text, en, detail=detail)


def disk_folders(ctx: Context) -> list[Path]:
    """The database's folder and the state folder, one per file system."""
    folders = []
    file = _sqlite_file(ctx.db_url)
    if file is not None:
        folders.append(file.parent)
    state = HallPaths().state
    folders.append(state if state.is_dir() else Path(ctx.config.secret_path).parent)
    seen: set[int] = set()
    out = []
    for folder in folders:
        try:
            dev = folder.stat().st_dev
        except OSError:
            continue
        if dev not in seen:
            seen.add(dev)
            out.append(folder)
    return out


def check_disk(ctx: Context, usage: Callable[[str], Any] = shutil.disk_usage) -> list[Line]:
    return [_free_space_line(folder, usage) for folder in disk_folders(ctx)] or [
        Line("disk", WARN, "磁盘空间", "disk space", "找不到数据库或状态文件夹", "no folder to check", "检查配置中的 database")]


def check_outbox(ctx: Context) -> list[Line]:
    from ..upstream.client import UpstreamClient
    from ..upstream.forwarder import Forwarder

    label = ("上报发件箱", "upstream outbox")
    engine = _engine(ctx.db_url, min(ctx.timeout, 3.0))
    try:
        summary = Forwarder(engine, UpstreamClient("http://127.0.0.1", ""), ctx.clock).outbox_summary(dead_limit=5)
    except Exception as exc:
        zh, en = error_words(exc)
        return [Line("outbox", FAIL, *label, f"无法读取（{zh}）", f"cannot read the outbox ({en})", "先解决数据库的问题")]
    finally:
        engine.dispose()
    pending, dead = summary["pending"], summary["dead"]
    detail = {"pending": pending, "dead": dead, "oldest_pending_at": summary["oldest_pending_at"],
              "dead_keys": [r["record_key"] for r in summary["dead_records"]]}
    en = f"{pending} pending, {dead} dead"
    if dead:
        return [Line("outbox", FAIL, *label, f"{dead} 条上报失败（死信），{pending} 条待发送", en,
                     "hallctl outbox 查看原因，改正后 hallctl outbox --retry-all", detail)]
    oldest = summary["oldest_pending_at"]
    age = _age_hours(ctx.clock, oldest)
    if age is not None and age >= 1:
        return [Line("outbox", WARN, *label, f"{pending} 条待发送，最早的已等待 {age:.0f} 小时", en + f", oldest {age:.0f} h",
                     "检查上级系统的连通与令牌（见下方上级系统各行）", detail)]
    return [Line("outbox", OK, *label, f"{pending} 条待发送，无失败记录", en, detail=detail)]


def _age_hours(clock: Clock, stamp: Any) -> float | None:
    if not stamp:
        return None
    try:
        then = stamp if isinstance(stamp, datetime) else datetime.fromisoformat(str(stamp))
        if then.tzinfo is None:
            then = then.replace(tzinfo=UTC)
        return (clock.now() - then).total_seconds() / 3600
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------- broker, daemon

@dataclass
class BusView:
    """What the broker and the daemon showed the doctor's admin connection."""

    target: Target | None
    problem: tuple[str, str, str] | None = None    # (zh, en, todo) when the broker could not be used
    hall_status: dict[str, Any] | None = None
    devices: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)
    reply: dict[str, Any] | None = None
    refused_filters: list[str] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.target is not None and self.problem is None


def _tcp_problem(host: str, port: int, timeout: float) -> tuple[str, str] | None:
    """None when something accepts a TCP connection at host:port, else why not (Chinese, English)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        return "连接被拒绝", "connection refused"
    except TimeoutError:
        return f"{timeout:g} 秒内无应答", f"no answer within {timeout:g} s"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return f"网络不通（{why}）", why
    return None


class _Probe:
    """One MQTT 3.1.1 connection as `admin`: retained status, devices and client statuses, then `status`."""

    def __init__(self, config: HallConfig, target: Target, deadline: float) -> None:
        from ..bus.topics import HallTopics

        self.config, self.target, self.deadline = config, target, deadline
        self.topics = HallTopics(config.hall_id)
        self.view = BusView(target)
        self.request_id = uuid.uuid4().hex
        self.connack, self.suback, self.status_seen, self.replied = (threading.Event() for _ in range(4))
        self.refused: str | None = None
        self.granted: list[Any] = []

    def remaining(self) -> float:
        return max(0.05, self.deadline - time.monotonic())

    def on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            self.refused = str(reason)
        self.connack.set()

    def on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
        self.granted = list(reasons)
        self.suback.set()

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        info = self.topics.parse(message.topic)
        try:
            value = json.loads(message.payload) if message.payload else None
        except ValueError:
            return
        if info is None:
            return
        if info.kind == "status":
            self.view.hall_status = value
            self.status_seen.set()
        elif info.kind == "device" and value is not None:
            self.view.devices[str(info.key)] = value
        elif info.kind == "client_status":
            self.view.clients[str(info.key)] = value
        elif info.kind == "reply" and isinstance(value, dict) and value.get("id") == self.request_id:
            self.view.reply = value
            self.replied.set()

    def run(self) -> BusView:
        import paho.mqtt.client as mqtt

        t = self.target
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=t.username, protocol=mqtt.MQTTv311,
                             clean_session=True)
        client.username_pw_set(t.username, t.password)
        if getattr(t, "tls", False):    # mqtts: the broker's certificate checked against the hall CA
            client.tls_set(ca_certs=getattr(t, "ca", None))
        client.on_connect, client.on_subscribe, client.on_message = self.on_connect, self.on_subscribe, self.on_message
        client.connect_timeout = self.remaining()
        try:
            client.connect(t.host, t.port, keepalive=30)
            client.loop_start()
            self._converse(client)
        except (OSError, ValueError) as exc:     # ssl.SSLError is an OSError: a certificate the CA does not sign
            zh, en = error_words(exc)
            self.view.problem = (f"无法连接 {t.address}（{zh}）", f"cannot connect to {t.address} ({en})", "检查 MQTT 服务是否运行；TLS 时检查 CA 证书（--ca 或 mqtt.ca）")
        finally:
            client.disconnect()
            client.loop_stop()
        return self.view

    def _converse(self, client: Any) -> None:
        t = self.target
        if not self.connack.wait(self.remaining()):
            self.view.problem = (f"{t.address} 的 MQTT 服务未在时限内应答", f"no CONNACK from {t.address}",
                                 "检查 MQTT 服务是否卡住（systemctl status mosquitto / hall-daemon）")
            return
        if self.refused:
            self.view.problem = (f"{t.address} 的 MQTT 服务拒绝了 {t.username} 的用户名或密码（{self.refused}）",
                                 f"broker at {t.address} refused {t.username} ({self.refused})",
                                 f"用 hallctl client add {t.username} --role admin 重设密码，再运行 hallctl mqtt-config "
                                 "并重启 mosquitto")
            return
        root = self.topics.root
        filters = [self.topics.status, f"{root}/device/+", f"{root}/client/+/status", self.topics.reply(t.username)]
        client.subscribe([(f, 0) for f in filters])
        if not self.suback.wait(self.remaining()):
            self.view.problem = (f"{t.address} 未确认订阅", f"no SUBACK from {t.address}", "检查 MQTT 服务是否卡住")
            return
        self.view.refused_filters = [f for f, r in zip(filters, self.granted, strict=False)
                                     if getattr(r, "is_failure", False)]
        self.status_seen.wait(min(STATUS_GRACE, self.remaining()))
        status = self.view.hall_status
        if isinstance(status, dict) and status.get("state") == "online":
            client.publish(self.topics.cmd(t.username), json.dumps({"id": self.request_id, "op": "status"}), qos=0)
            self.replied.wait(self.remaining())


def probe_bus(config: HallConfig, mqtt_url: str | None, timeout: float) -> BusView:
    """Reach the daemon's broker as `admin` (the address as `hallctl status` finds it)."""
    target = admin_target(config, mqtt_url)
    if target is None:
        return BusView(None, ("配置中没有 MQTT 地址（mqtt.listen 或 mqtt.url）", "no MQTT address configured",
                              "在配置中设置 mqtt.listen 或 mqtt.url，或用 --mqtt-url 指定"))
    if target.password is None:
        return BusView(target, (f"{passwords_path(config)} 中没有 {target.username} 的密码",
                                f"no password for {target.username}", f"运行 hallctl client add {target.username} --role admin"))
    register_secret(target.password)
    problem = _tcp_problem(target.host, target.port, min(timeout, 3.0))
    if problem:
        return BusView(target, (f"无法连接 {target.address} 的 MQTT 服务（{problem[0]}）",
                                f"broker at {target.address}: {problem[1]}",
                                "启动 MQTT 服务（systemctl start mosquitto）或守护进程（systemctl start hall-daemon）；"
                                "地址不对时用 --mqtt-url"))
    return _Probe(config, target, time.monotonic() + timeout).run()


def _bus(ctx: Context) -> BusView | None:
    assert ctx.bus is not None
    try:
        return ctx.bus.get(ctx.remaining())
    except TimeoutError:
        return None


def check_broker(ctx: Context) -> list[Line]:
    label = ("MQTT 服务", "broker")
    view = _bus(ctx)
    if view is None:
        return [Line("broker", FAIL, *label, "连接未在时限内完成", "connection did not finish in time", "检查 MQTT 服务是否卡住")]
    if not view.connected:
        zh, en, todo = view.problem or ("?", "?", "")
        return [Line("broker", FAIL, *label, zh, en, todo)]
    t = view.target
    assert t is not None
    where = {"runtime_file": "运行时文件", "config": "配置", "--mqtt-url": "--mqtt-url"}.get(t.address_from, t.address_from)
    detail = {"address": t.address, "address_from": t.address_from}
    if view.refused_filters:
        return [Line("broker", FAIL, *label, f"{t.address} 已连上，但 ACL 拒绝了 admin 的订阅：{'、'.join(view.refused_filters)}",
                     "connected, but the ACL refused admin's subscriptions", "运行 hallctl mqtt-config 重新生成 ACL 并重启 mosquitto",
                     detail)]
    return [Line("broker", OK, *label, f"{t.address} 以 admin 身份连接成功（地址取自{where}）",
                 f"connected to {t.address} as admin", detail=detail)]


def check_daemon(ctx: Context) -> list[Line]:
    label = ("守护进程", "daemon")
    view = _bus(ctx)
    todo = "查看守护进程：systemctl status hall-daemon、journalctl -u hall-daemon -n 50；需要时 systemctl restart hall-daemon"
    if view is None or not view.connected:
        return [Line("daemon", FAIL, *label, "无法判断（未连上 MQTT 服务）", "unknown: broker not reached", todo)]
    status = view.hall_status
    if not isinstance(status, dict):
        return [Line("daemon", FAIL, *label, f"MQTT 服务上没有大厅 {ctx.config.hall_id} 的守护进程", "no daemon of this hall "
                     "on the broker", todo)]
    version = status.get("version", "?")
    if status.get("state") != "online":
        return [Line("daemon", FAIL, *label, f"已离线（版本 {version}）", f"offline (version {version})", todo)]
    reply = view.reply
    if reply is None:
        return [Line("daemon", FAIL, *label, f"在线（版本 {version}）但未在时限内应答 status", f"online (version {version}) but "
                     "did not answer status in time", todo, {"version": version})]
    if not reply.get("ok"):
        error = reply.get("error") or {}
        return [Line("daemon", FAIL, *label, f"拒绝了 status：{error.get('message', '?')}", f"refused status: {error.get('code')}",
                     "检查 admin 客户端的角色（hallctl client add admin --role admin）", {"version": version})]
    result = reply.get("result") or {}
    detail = {"version": version, "started_at": status.get("started_at"), "day": result.get("day"), "seq": result.get("seq")}
    if version != __version__:
        return [Line("daemon", WARN, *label, f"应答正常，版本 {version} 与本命令的 {__version__} 不同", f"answers; version {version}, "
                     f"hallctl {__version__}", "升级后请重启守护进程：systemctl restart hall-daemon", detail)]
    return [Line("daemon", OK, *label, f"应答正常（版本 {version}，启动于 {_local(ctx, status.get('started_at'))}，"
                 f"营业日 {result.get('day')}）",
                 f"answers status (version {version})", detail=detail)]


def _local(ctx: Context, stamp: Any) -> str:
    """An ISO time as the hall's local time for people."""
    try:
        return datetime.fromisoformat(str(stamp)).astimezone(ctx.config.tz).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(stamp)


def check_mosquitto(ctx: Context) -> list[Line]:
    """Only for a hall on Mosquitto: its password file and ACL are what `hallctl mqtt-config` writes now."""
    from ..bus.credentials import CredentialStore
    from ..bus.mosquitto import acl_file_text, password_file_text

    folder = ctx.mosquitto_dir or HallPaths().mosquitto_files
    label = ("Mosquitto 口令与 ACL", "Mosquitto passwd/ACL")
    store = CredentialStore(ctx.config.credentials_path)
    wanted = {"passwd": password_file_text(store), "acl": acl_file_text(ctx.config.hall_id, store)}
    stale = []
    for name, text in wanted.items():
        try:
            if (folder / name).read_text(encoding="utf-8") != text:
                stale.append(name)
        except OSError as exc:
            stale.append(f"{name}（{exc.strerror or exc}）")
    todo = f"运行 hallctl mqtt-config {folder}，然后 systemctl reload mosquitto"
    if stale:
        return [Line("mosquitto", FAIL, *label, f"{folder} 中的 {'、'.join(stale)} 与凭据库不一致", f"{folder}: {', '.join(stale)} "
                     "out of date", todo, {"folder": str(folder)})]
    return [Line("mosquitto", OK, *label, f"{folder} 中的 passwd 与 acl 与凭据库一致（{len(store.clients())} 个客户端）",
                 f"{folder}: as generated", detail={"folder": str(folder)})]


# ---------------------------------------------------------------------------------------- devices

def _alsa_cards(path: Path = Path("/proc/asound/cards")) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line.split("]:", 1)[1].strip() for line in lines if "]:" in line]


def _emulator_state(control: str | None, device_id: str, timeout: float) -> str:
    """What the device emulator says of a `url: emulated` device (Chinese)."""
    import urllib.request

    if not control:
        return "未配置 emulator.control"
    try:
        with urllib.request.urlopen(f"http://{control}/state", timeout=timeout) as response:
            state = json.load(response)
    except (OSError, ValueError) as exc:
        log.debug("emulator control at %s: %s", control, exc)
        return f"设备模拟器 {control} 未应答"
    for entry in state.get("devices", []) if isinstance(state, dict) else []:
        if isinstance(entry, dict) and entry.get("id") == device_id:
            fault = entry.get("fault")
            return f"设备模拟器 {control} 中该设备处于故障 {fault.get('mode')}" if isinstance(fault, dict) \
                else f"设备模拟器 {control} 中该设备正常"
    return f"设备模拟器 {control} 未提供该设备"


def expected_text(dev: DeviceConfig, config: HallConfig, listing: devices_scan.Listing | None, timeout: float) -> str:
    """Where an offline device should be and what is there (Chinese), from its url and its profile."""
    url = dev.url
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    present = listing.summary() if listing is not None else "未能列出"
    if url == "emulated":
        return f"期望 模拟设备（{_emulator_state(config.emulator_control, dev.id, timeout)}）"
    if scheme == "usb":
        usb_id = url.split("://", 1)[1].split("?", 1)[0].lower()
        there = listing is not None and any(d.usb_id == usb_id for d in listing.usb)
        seen = "该 USB 设备在，但打不开（hall 用户需在 lp 组，或设备被 usblp 占用）" if there else f"未找到该 USB 设备；现有 {present}"
        return f"期望 {url}；{seen}"
    if scheme in ("socket", "tcp", "rfc2217"):
        parts = urlsplit(url)
        problem = _tcp_problem(parts.hostname or "", parts.port, min(timeout, 1.0)) if parts.port else ("缺少端口", "")
        return f"期望 {redact_url(url)}（{'TCP 可连接，但设备无应答' if problem is None else 'TCP ' + problem[0]}）"
    if scheme == "audio":
        cards = _alsa_cards()
        return f"期望 {url}；声卡：{'、'.join(cards) if cards else '无（/proc/asound/cards 为空）'}"
    if url.startswith("/"):
        seen = "端口存在，但设备无应答（检查电源、接线与波特率）" if os.path.exists(url) else f"端口不存在；现有 {present}"
        hint = _profile_ids(dev, config)
        return f"期望 {url}；{seen}{hint}"
    return f"期望 {redact_url(url)}；现有 {present}"


def _profile_ids(dev: DeviceConfig, config: HallConfig) -> str:
    from device_profiles import ProfileError, load_profile

    try:
        t = load_profile(dev.profile, config.profiles_dir).transport
    except ProfileError:
        return ""
    ids = [*t.get("usb_ids", []), *t.get("usb_serial_ids", [])]
    return f"（此型号常见 USB 标识 {'、'.join(ids)}）" if ids else ""


def recent_offline(ctx: Context) -> dict[str, int]:
    """Device id -> how often it went offline within FLAP_WINDOW (the event log in the database)."""
    from sqlalchemy import select

    from ..store.schema import events

    since = ctx.clock.now() - FLAP_WINDOW
    counts: dict[str, int] = {}
    engine = _engine(ctx.db_url, min(ctx.timeout, 2.0))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(events.c.ts, events.c.payload).where(events.c.type == "device_offline")
                                .order_by(events.c.seq.desc()).limit(1000)).all()
    except Exception:
        log.debug("device events not readable", exc_info=True)
        return counts
    finally:
        engine.dispose()
    for ts, payload in rows:
        try:
            if datetime.fromisoformat(ts) < since:
                break
            device = str(json.loads(payload).get("device"))
        except (TypeError, ValueError, AttributeError):
            continue
        counts[device] = counts.get(device, 0) + 1
    return counts


def _device_line(dev: DeviceConfig, hosted: list[DeviceConfig], state: Any, ctx: Context,
                 listing: devices_scan.Listing | None, flaps: int = 0) -> Line:
    label_zh, label_en = KIND_LABELS.get(dev.kind, (dev.kind, dev.kind))
    label_zh = f"{label_zh} {dev.id}"
    counts: dict[str, int] = {}
    for member in hosted:
        counts[member.kind] = counts.get(member.kind, 0) + 1
    members = "，".join(f"{HOSTED_ZH.get(k, k)} {n} 台" for k, n in counts.items())
    members_en = ", ".join(f"{n} {k}" for k, n in counts.items())
    detail = {"device": dev.id, "kind": dev.kind, "url": redact_url(dev.url), "state": state,
              "hosted": [m.id for m in hosted]}
    detail["offline_recently"] = flaps
    if isinstance(state, dict) and state.get("online") and flaps >= FLAP_COUNT:
        minutes = int(FLAP_WINDOW.total_seconds() // 60)
        return Line(f"device:{dev.id}", FAIL, label_zh, label_en, f"在线，但最近 {minutes} 分钟掉线 {flaps} 次（接触不良、"
                    f"干扰或应答太慢）：{state.get('error') or ''}".rstrip("："), f"online, but went offline {flaps} times in "
                    f"{minutes} min", "检查数据线与接头、RS-485 终端电阻与接地；仍掉线时更换设备或适配器", detail)
    if isinstance(state, dict) and state.get("online"):
        zh = "在线" + (f"（经它连接的{members}同时在线）" if members else "")
        return Line(f"device:{dev.id}", OK, label_zh, label_en, zh, "online" + (f" with {members_en}" if members else ""),
                    detail=detail)
    why = str(state.get("error") or "原因未报告") if isinstance(state, dict) else "守护进程未报告其状态"
    offline = "离线" + (f"（经它连接的{members}同样离线）" if members else "")
    where = expected_text(dev, ctx.config, listing, min(ctx.remaining(), 1.5))
    detail["present"] = listing.summary() if listing is not None else None
    return Line(f"device:{dev.id}", FAIL, label_zh, label_en, f"{offline}：{why} — {where}",
                f"offline — expected {redact_url(dev.url)}", _device_todo(dev), detail)


def _device_todo(dev: DeviceConfig) -> str:
    if dev.url == "emulated":
        return (f"在设备模拟器的仪表盘上清除故障（或 DELETE /{dev.kind.replace('_', '-')}/{dev.id}/fault），"
                "模拟器未运行时启动 hall-emu run")
    return ("检查设备电源与数据线；运行 hallctl devices scan 看实际接在哪个端口，改正配置中的 url 后 "
            "systemctl restart hall-daemon")


def _link_groups(config: HallConfig) -> tuple[list[tuple[DeviceConfig, list[DeviceConfig]]], list[DeviceConfig]]:
    """(link-owning devices with the devices hosted on them, devices the daemon does not drive)."""
    from ..devices.handler import handler_for

    owners, undriven = [], []
    for dev in config.devices:
        if dev.bus:
            continue
        if handler_for(dev.kind) is None:
            undriven.append(dev)
        else:
            owners.append((dev, [d for d in config.devices if d.bus == dev.id]))
    return owners, undriven


def check_devices(ctx: Context) -> list[Line]:
    owners, undriven = _link_groups(ctx.config)
    view = _bus(ctx)
    listing = _listing(ctx)
    lines: list[Line] = []
    if view is None or not view.connected or view.hall_status is None:
        if owners:
            present = listing.summary() if listing is not None else "未能列出"
            lines.append(Line("devices", FAIL, "设备", "devices", f"无法得知 {len(owners)} 台设备的状态（守护进程不可达）；本机现有 "
                              f"{present}", "unknown: the daemon was not reached", "先解决 MQTT 服务与守护进程的问题"))
    else:
        states = dict((view.reply or {}).get("result", {}).get("devices") or {})
        states.update(view.devices)
        flaps = recent_offline(ctx)
        lines += [_device_line(dev, hosted, states.get(dev.id), ctx, listing, flaps.get(dev.id, 0))
                  for dev, hosted in owners]
    if undriven:
        ids = "、".join(d.id for d in undriven)
        lines.append(Line("devices:elsewhere", SKIP, "不由大厅电脑驱动的设备", "not driven here",
                          f"{ids}（由各窗口电脑上的应用读取，请在那台电脑上检查）", f"{len(undriven)} device(s) read by the window apps",
                          detail={"devices": [d.id for d in undriven]}))
    return lines


def _listing(ctx: Context) -> devices_scan.Listing | None:
    assert ctx.listing is not None
    try:
        return ctx.listing.get(min(ctx.remaining(), 3.0))
    except Exception:
        log.debug("listing not available", exc_info=True)
        return None


def check_audio(ctx: Context) -> list[Line]:
    label = ("音频输出", "audio output")
    speakers = [d for d in ctx.config.devices if d.kind == "speaker"]
    cards = _alsa_cards()
    cards_zh = "、".join(cards) if cards else "无"
    if not speakers:
        status = WARN if cards else FAIL
        return [Line("audio", status, *label, f"配置中没有扬声器设备，叫号无语音；本机声卡：{cards_zh}", "no speaker configured",
                     "在 devices 中加 kind: speaker，url: audio://default", {"alsa_cards": cards})]
    view = _bus(ctx)
    if view is None or not view.connected or view.hall_status is None:
        return [Line("audio", SKIP, *label, f"无法得知扬声器的状态（守护进程不可达）；本机声卡：{cards_zh}",
                     "speaker state unknown: the daemon was not reached", detail={"alsa_cards": cards})]
    states = view.devices
    online = [d.id for d in speakers if isinstance(states.get(d.id), dict) and states[d.id].get("online")]
    detail = {"speakers": [d.id for d in speakers], "online": online, "alsa_cards": cards}
    if online:
        return [Line("audio", OK, *label, f"扬声器 {'、'.join(online)} 在线；本机声卡：{cards_zh}", "speaker online", detail=detail)]
    if any(d.url.startswith("audio://") for d in speakers) and not cards:
        return [Line("audio", FAIL, *label, "扬声器使用本机声卡，但本机没有声卡（/proc/asound/cards 为空）", "no sound card",
                     "接上声卡/功放的音频线，检查 alsa 驱动（aplay -l）", detail)]
    return [Line("audio", FAIL, *label, f"扬声器 {'、'.join(d.id for d in speakers)} 不在线；本机声卡：{cards_zh}", "no speaker online",
                 "见上方扬声器一行", detail)]


def check_clients(ctx: Context) -> list[Line]:
    """Every app client (not the daemon, not admin: that is us) has its retained status online."""
    from ..bus.credentials import CredentialStore

    label = ("应用客户端", "app clients")
    roles = {c.id: c.role for c in ctx.config.clients}
    try:
        roles.update({c.client_id: c.role for c in CredentialStore(ctx.config.credentials_path).clients()})
    except Exception:
        log.debug("credential store not readable", exc_info=True)
    apps = sorted(cid for cid, role in roles.items() if role not in ("daemon", "admin"))
    view = _bus(ctx)
    if view is None or not view.connected:
        return [Line("clients", FAIL, *label, f"无法得知 {len(apps)} 个客户端的状态（未连上 MQTT 服务）", "unknown: broker not reached",
                     "先解决 MQTT 服务的问题")]
    online = [c for c in apps if isinstance(view.clients.get(c), dict) and view.clients[c].get("state") == "online"]
    never = [c for c in apps if c not in view.clients]
    off = [c for c in apps if c not in online and c not in never]
    detail = {"online": online, "offline": off, "never_connected": never}
    if len(online) == len(apps):
        return [Line("clients", OK, *label, f"{len(apps)} 个全部在线", f"all {len(apps)} online", detail=detail)]
    parts = [f"{len(online)}/{len(apps)} 在线"]
    if off:
        parts.append(f"离线：{'、'.join(off)}")
    if never:
        parts.append(f"从未连接：{'、'.join(never)}")
    return [Line("clients", FAIL, *label, "；".join(parts), f"{len(online)}/{len(apps)} online",
                 "到这些电脑上检查应用是否已启动（systemctl status hall-app 或重新登录）、网络能否到达大厅电脑", detail)]


# ---------------------------------------------------------------------------------------- upstream, voice

def _upstream_lines(ctx: Context, result: Any, elapsed: float, sent_at: datetime) -> list[Line]:
    url = redact_url(ctx.config.upstream_url or "")
    reach = ("上级系统", "upstream")
    token = ("上级系统令牌", "upstream token")
    clock = ("大厅时钟", "hall clock")
    detail = {"url": url, "status": result.status, "seconds": round(elapsed, 2)}
    if result.status is None:
        zh, en = error_words(result.message)
        return [Line("upstream", FAIL, *reach, f"{url} 无法连接（{zh}）", f"{url} unreachable ({en})",
                     "检查网络、代理与 upstream.url；hallctl outbox 可看待发送的记录", detail),
                Line("upstream_token", SKIP, *token, "未检查（上级系统无应答）", "not checked"),
                Line("clock", SKIP, *clock, "未检查（上级系统无应答）", "not checked")]
    lines = [_reach_line(url, result, elapsed, detail, reach)]
    if result.status in (401, 403, 407):
        lines.append(Line("upstream_token", FAIL, *token, f"被拒绝（HTTP {result.status}）", f"refused (HTTP {result.status})",
                          "向上级系统管理员索取新令牌，写入配置 upstream.token 后重启守护进程"))
    elif 200 <= result.status < 300:
        lines.append(Line("upstream_token", OK, *token, "已接受（预约查询成功）", "accepted"))
    else:
        lines.append(Line("upstream_token", SKIP, *token, f"未能判断（HTTP {result.status}）", "not known"))
    lines.append(_clock_line(ctx, result.date, sent_at + timedelta(seconds=elapsed / 2), clock))
    return lines


def _reach_line(url: str, result: Any, elapsed: float, detail: dict[str, Any], label: tuple[str, str]) -> Line:
    if result.status >= 500:
        return Line("upstream", FAIL, *label, f"{url} 出错（HTTP {result.status}：{result.message}）", f"HTTP {result.status}",
                    "上级系统故障，联系其管理员；记录留在发件箱，恢复后自动补发", detail)
    if 400 <= result.status < 500 and result.status not in (401, 403, 407):
        return Line("upstream", FAIL, *label, f"{url} 拒绝了请求（HTTP {result.status}：{result.message}）", f"HTTP {result.status}",
                    "检查 upstream.url 与大厅编码 hall.code 是否正确", detail)
    if elapsed > SLOW_UPSTREAM_S:
        return Line("upstream", WARN, *label, f"{url} 可达，但应答慢（{elapsed:.1f} 秒）", f"reachable, slow ({elapsed:.1f} s)",
                    "检查网络质量", detail)
    return Line("upstream", OK, *label, f"{url} 可达（HTTP {result.status}，{elapsed:.1f} 秒）", f"reachable (HTTP {result.status})",
                detail=detail)


def _clock_line(ctx: Context, header: str | None, hall_time: datetime, label: tuple[str, str]) -> Line:
    try:
        theirs = parsedate_to_datetime(header) if header else None
    except (TypeError, ValueError):
        theirs = None
    if theirs is None:
        return Line("clock", SKIP, *label, "上级系统的应答没有 Date 头，无法比较", "no Date header")
    # `Date` has whole seconds, cut off: the upstream's time is on average half a second later
    offset = (hall_time - theirs).total_seconds() - 0.5
    detail = {"offset_seconds": round(offset, 1), "upstream_date": header}
    ahead = "快" if offset > 0 else "慢"
    text = f"比上级系统{ahead} {abs(offset):.0f} 秒"
    en = f"{round(offset):+d} s against the upstream's Date"
    todo = "校准时间：timedatectl set-ntp true（检查 NTP 服务器能否到达）"
    if abs(offset) > CLOCK_FAIL:
        return Line("clock", FAIL, *label, text, en, todo + "；号码、预约与报表都按大厅时钟", detail)
    if abs(offset) > CLOCK_WARN:
        return Line("clock", WARN, *label, text, en, todo, detail)
    return Line("clock", OK, *label, f"与上级系统相差 {abs(offset):.0f} 秒", en, detail=detail)


def check_upstream(ctx: Context) -> list[Line]:
    from ..upstream.client import UpstreamClient

    if not ctx.config.upstream_url:
        return [Line("upstream", WARN, "上级系统", "upstream", "配置中未设 upstream.url，服务记录不会上报", "not configured",
                     "在配置中填写 upstream.url 与 upstream.token")]
    try:
        client = UpstreamClient(ctx.config.upstream_url, ctx.config.upstream_token or "", timeout=ctx.timeout)
    except ValueError as exc:
        return [Line("upstream", FAIL, "上级系统", "upstream", redact_text(str(exc)), "bad upstream.url", "改正 upstream.url")]
    now = ctx.clock.now()
    started = time.monotonic()
    result = client.appointments_result(ctx.config.hall_code, now.astimezone(ctx.config.tz).date())
    return _upstream_lines(ctx, result, time.monotonic() - started, now)


def check_voice(ctx: Context) -> list[Line]:
    from ..voice.settings import parse_voice

    label = ("语音包", "voice pack")
    problems: list[str] = []
    voice = parse_voice(ctx.raw.get("voice"), lambda fld, msg: problems.append(f"{fld}：{msg}"),
                        [s.prefix for s in ctx.config.services], [w.number for w in ctx.config.windows], ctx.base_dir)
    where = voice.pack or "内置语音包"
    if problems:
        return [Line("voice", FAIL, *label, f"{where} 不完整：{'；'.join(problems)}", "incomplete",
                     "补齐缺少的 WAV 片段（文件名见提示），或删去配置中的 voice.pack 改用内置语音包",
                     {"pack": str(where), "problems": problems})]
    return [Line("voice", OK, *label, f"{where} 完整（模板所需的片段都在）", "complete", detail={"pack": str(where)})]


# ---------------------------------------------------------------------------------------- running

CHECKS: tuple[Check, ...] = (
    Check(check_database, (("database", "数据库", "database"),)),
    Check(check_disk, (("disk", "磁盘空间", "disk space"),)),
    Check(check_outbox, (("outbox", "上报发件箱", "upstream outbox"),)),
    Check(check_broker, (("broker", "MQTT 服务", "broker"),)),
    Check(check_mosquitto, (("mosquitto", "Mosquitto 口令与 ACL", "Mosquitto passwd/ACL"),)),
    Check(check_daemon, (("daemon", "守护进程", "daemon"),)),
    Check(check_devices, (("devices", "设备", "devices"),)),
    Check(check_upstream, (("upstream", "上级系统", "upstream"),)),
    Check(check_voice, (("voice", "语音包", "voice pack"),)),
    Check(check_audio, (("audio", "音频输出", "audio output"),)),
    Check(check_clients, (("clients", "应用客户端", "app clients"),)),
)


def _uses_mosquitto(ctx: Context) -> bool:
    return bool(ctx.config.mqtt_url or ctx.mosquitto_dir or HallPaths().mosquitto_files.is_dir())


def _threaded(check: Check, ctx: Context) -> tuple[threading.Thread, list[list[Line]]]:
    box: list[list[Line]] = []

    def run() -> None:
        try:
            box.append(check.run(ctx))
        except Exception as exc:    # one check's bug must not cost the others
            log.warning("doctor check %s failed", check.names[0][0], exc_info=True)
            box.append([Line(name, FAIL, zh, en, f"检查出错（{error_words(exc)[0]}）", "the check itself failed",
                             "以 --log-level DEBUG 重跑并把输出交给维护人员") for name, zh, en in check.names])

    thread = threading.Thread(target=run, name=f"doctor-{check.names[0][0]}", daemon=True)
    thread.start()
    return thread, box


def run_checks(ctx: Context, checks: tuple[Check, ...] = CHECKS) -> list[Line]:
    """Every check at once, each on its own thread; one that is not done by the deadline is a ✘ line."""
    ctx.deadline = time.monotonic() + ctx.timeout + GRACE
    ctx.bus = Shared("bus", lambda: probe_bus(ctx.config, ctx.mqtt_url, ctx.timeout))
    ctx.listing = Shared("listing", devices_scan.scan)
    wanted = [c for c in checks if c.run is not check_mosquitto or _uses_mosquitto(ctx)]
    running = [(check, *_threaded(check, ctx)) for check in wanted]
    lines: list[Line] = []
    for check, thread, box in running:
        thread.join(max(0.0, ctx.deadline + GRACE - time.monotonic()))
        if box:
            lines += box[0]
        else:
            lines += [Line(name, FAIL, zh, en, f"未在 {ctx.timeout:g} 秒内完成", f"did not finish within {ctx.timeout:g} s",
                           "该部分可能卡住（网络或锁），单独排查后重跑") for name, zh, en in check.names]
    return lines


def doctor(config_path: Path, *, clock: Clock, timeout: float = DEFAULT_TIMEOUT, db_url: str | None = None,
           mqtt_url: str | None = None, mosquitto_dir: Path | None = None) -> list[Line]:
    config, raw, lines = load_for_doctor(config_path)
    if config is None:
        return lines
    if lines[0].status == FAIL:
        lines.append(Line("config", WARN, "配置", "config", f"其余检查按去掉 {'、'.join(OPTIONAL_SECTIONS)} 中出错部分的配置进行",
                          "other checks run without the faulty optional sections"))
    ctx = Context(config, raw, config_path.parent.resolve(), clock, timeout, db_url or config.database, mqtt_url,
                  mosquitto_dir)
    return lines + run_checks(ctx)


def cmd_doctor(args: argparse.Namespace) -> int:
    started = time.monotonic()
    lines = doctor(Path(args.config), clock=args.clock, timeout=args.timeout, db_url=args.db, mqtt_url=args.mqtt_url,
                   mosquitto_dir=Path(args.mosquitto_dir) if args.mosquitto_dir else None)
    failed = sum(1 for line in lines if line.status == FAIL)
    if args.json:
        print(json.dumps([line.as_json() for line in lines], ensure_ascii=False, indent=2, default=str))
    else:
        for line in lines:
            print(line.render())
        warned = sum(1 for line in lines if line.status == WARN)
        verdict = "全部通过" if not failed else f"{failed} 项未通过"
        print(f"{verdict}，{warned} 项警告（用时 {time.monotonic() - started:.1f} 秒） / {failed} failed, {warned} warnings")
    sys.stdout.flush()
    return 1 if failed else 0


def _timeout_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"须为秒数 / must be seconds, got {text!r}") from None
    if not 0.5 <= value <= 60:
        raise argparse.ArgumentTypeError("须在 0.5 到 60 秒之间 / must be 0.5-60 s")
    return value


def add_commands(sub: argparse._SubParsersAction, with_config: Any) -> None:
    """`hallctl doctor`."""
    sp = with_config(sub.add_parser("doctor", help="check everything a hall needs; one line per check"), db=True,
                     daemon=True)
    sp.add_argument("--json", action="store_true", help="a list of {check, ok, status, zh, en, detail}")
    sp.add_argument("--timeout", type=_timeout_arg, default=DEFAULT_TIMEOUT, metavar="S",
                    help="each check's time limit in seconds (default %(default)g)")
    sp.add_argument("--mosquitto-dir", metavar="DIR",
                    help=f"where `hallctl mqtt-config` wrote passwd and acl (default {HallPaths().mosquitto_files})")
    sp.set_defaults(func=cmd_doctor)

