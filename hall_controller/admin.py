"""Admin ops for operator commands: through the running daemon when it is reachable, else directly
on the hall database (`hallctl status`, `reset-day`, `appointment add`, …).

Which broker: `--mqtt-url` when given, else the address the running daemon recorded in its runtime
file (the demo moves off a busy port), else the config's. Whatever goes wrong on the way (refused,
wrong password, no answer, no daemon of this hall on that broker) is said in one line, Chinese and
English, and the command falls back to the database — except a change while the runtime file names
a live daemon: writing the database behind its back would fight its in-memory state, so that one
stops (`AdminUnavailable`) and changes nothing.

The offline path builds a HallService on the caller's clock: the command line passes the clock it
was given (the wall clock in production, a test's clock in tests), so a CLI run never judges "today"
or "due" by another clock than the daemon it stands in for.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from dataclasses import dataclass, replace
from typing import Any

from .bus.url import MqttEndpoint, config_endpoint, parse_mqtt_url
from .clock import Clock, SystemClock
from .config import HallConfig
from .setup_hall import client_password, load_or_create_secret, passwords_path

log = logging.getLogger(__name__)

ADMIN_ID = "admin"
CONNECT_TIMEOUT = 3.0       # TCP connect, then MQTT CONNACK + SUBACK: a hung broker costs this much
STATUS_WAIT = 1.0           # the daemon's retained `online` arrives right after SUBACK when it runs
STATUS_WAIT_RECORDED = 3.0  # … longer when the runtime file says a daemon is alive there
REQUEST_TIMEOUT = 5.0


class AdminUnavailable(Exception):
    """The daemon could not be reached for a change the database must not take behind its back."""


@dataclass(frozen=True)
class Target:
    """The broker to try and where its address came from ("--mqtt-url", "runtime_file", "config")."""

    host: str
    port: int
    username: str
    password: str | None
    address_from: str
    daemon_pid: int | None = None    # a live daemon recorded in the runtime file
    tls: bool = False                # mqtts: the broker's certificate checked against `ca`
    ca: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Problem:
    """Why the daemon was not reached, for the one line the operator sees."""

    zh: str
    en: str


def mqtt_url_arg(text: str) -> str:
    """argparse `type` for --mqtt-url: reject a malformed address before anything runs."""
    import argparse

    try:
        parse_mqtt_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def admin_target(config: HallConfig, mqtt_url: str | MqttEndpoint | None = None) -> Target | None:
    """--mqtt-url (with --ca, else the config's mqtt.ca for mqtts), else the running daemon's runtime
    file, else the config's broker; None if none."""
    from .daemon import read_runtime, split_hostport

    record = read_runtime(config)
    configured = config_endpoint(config)
    if mqtt_url:    # wins over the runtime file, which still says whether a daemon is alive
        endpoint = mqtt_url if isinstance(mqtt_url, MqttEndpoint) else parse_mqtt_url(mqtt_url)
        if endpoint.tls and endpoint.ca is None:
            endpoint = replace(endpoint, ca=config.mqtt_ca)
        user = endpoint.username or ADMIN_ID
        password = endpoint.password if endpoint.password is not None else client_password(config, user)
        return Target(endpoint.host, endpoint.port, user, password, "--mqtt-url", record["pid"] if record else None,
                      endpoint.tls, endpoint.ca)
    password = client_password(config, ADMIN_ID)
    if record is not None:
        # the daemon on the config's TLS broker: the same check of its certificate
        tls = configured is not None and configured.tls and (configured.host, configured.port) == (
            record["host"], record["port"])
        return Target(record["host"], record["port"], ADMIN_ID, password, "runtime_file", record["pid"],
                      tls, configured.ca if tls and configured else None)
    if config.mqtt_listen:
        host, port = split_hostport(config.mqtt_listen)
        return Target(host, port, ADMIN_ID, password, "config")
    if configured is not None:
        return Target(configured.host, configured.port, ADMIN_ID, password, "config", None, configured.tls,
                      configured.ca)
    return None


class _QuietClient(logging.Filter):
    """Keep the admin client's own log lines (refused, lost …) off the operator's terminal: the one
    line this module prints says it; they still show at DEBUG."""

    def __init__(self, client_id: str) -> None:
        super().__init__()
        self.client_id = client_id

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args[:1] == (self.client_id,) and not logging.getLogger(__name__).isEnabledFor(logging.DEBUG))


def _connect(config: HallConfig, target: Target, timeout: float) -> tuple[Any, Problem | None]:
    """A connected admin client on a broker where this hall's daemon is online, or (None, why not)."""
    from .bus.client import AuthenticationFailed, BusError, HallClient, TlsFailed
    from .bus.tls import TlsSetupError

    where = target.address
    if target.password is None:
        path = passwords_path(config)
        return None, Problem(f"{path} 中没有 {target.username} 的 MQTT 密码（可用 hallctl client add 重设）",
                             f"no MQTT password for {target.username} in {path}")
    try:  # nothing listening: say so now, not after the client's connect timeout
        socket.create_connection((target.host, target.port), timeout=timeout).close()
    except ConnectionRefusedError:
        return None, Problem(f"无法连接 {where} 的 MQTT 服务（连接被拒绝）", f"broker unreachable at {where} (connection refused)")
    except TimeoutError:
        return None, Problem(f"无法连接 {where} 的 MQTT 服务（{timeout:g} 秒内无应答）",
                             f"broker at {where} did not answer within {timeout:g} s")
    except OSError as exc:
        log.debug("TCP connect to %s failed: %s", where, exc)
        return None, Problem(f"无法连接 {where} 的 MQTT 服务（网络不通）",
                             f"broker unreachable at {where} ({exc.strerror or type(exc).__name__})")
    online = threading.Event()
    try:
        client = HallClient(target.username, target.password, target.host, target.port, config.hall_id,
                            role="admin", tls=target.tls, ca=target.ca)
    except TlsSetupError as exc:
        return None, Problem(str(exc).split(" / ")[0], f"cannot read the CA file {target.ca}")
    client.add_state_listener(lambda section, _key, _value: section == "hall" and online.set())
    try:
        client.connect(timeout=timeout)
    except TlsFailed as exc:
        log.debug("%s", exc)
        client.close()
        return None, Problem(f"无法验证 {where} 的服务器证书，请检查 CA 文件（--ca 或配置的 mqtt.ca）及地址是否与证书一致",
                             f"the certificate of the broker at {where} was refused ({client.tls_failure or exc}):"
                             f" check the CA file (--ca or mqtt.ca) and that the address is one the certificate names")
    except AuthenticationFailed as exc:
        log.debug("%s", exc)
        client.close()
        return None, Problem(f"{where} 的 MQTT 服务拒绝了 {target.username} 的用户名或密码",
                             f"broker at {where} refused the credentials of {target.username} (not authorised)")
    except BusError as exc:
        log.debug("%s", exc)
        client.close()
        return None, Problem(f"无法连接 {where} 的 MQTT 服务（{timeout:g} 秒内无应答）",
                             f"broker at {where} did not answer within {timeout:g} s")
    online.wait(STATUS_WAIT_RECORDED if target.daemon_pid else STATUS_WAIT)
    status = client.state.hall
    if not isinstance(status, dict) or status.get("state") != "online":
        client.close()
        if isinstance(status, dict):
            return None, Problem(f"大厅 {config.hall_id} 的守护进程已离线（{where}）",
                                 f"the hall daemon of {config.hall_id} at {where} is offline")
        return None, Problem(f"{where} 的 MQTT 服务上没有大厅 {config.hall_id} 的守护进程",
                             f"no hall daemon of {config.hall_id} on the broker at {where}")
    return client, None


def admin_client(config: HallConfig, timeout: float = CONNECT_TIMEOUT, *, mqtt_url: str | None = None) -> Any:
    """Connect to the running daemon's broker as `admin`; None if it cannot be reached."""
    target = admin_target(config, mqtt_url)
    if target is None:
        return None
    quiet = _QuietClient(target.username)
    logging.getLogger("hall_controller.bus.client").addFilter(quiet)
    try:
        client, problem = _connect(config, target, timeout)
    finally:
        logging.getLogger("hall_controller.bus.client").removeFilter(quiet)
    if problem is not None:
        log.info("daemon not reachable over MQTT: %s", problem.en)
    return client


def offline_service(config: HallConfig, *, clock: Clock | None = None, db_url: str | None = None) -> Any:
    """A HallService on the hall database itself (`db_url`, else the config's), for when no daemon runs."""
    from .service import HallService
    from .store import Store

    return HallService(config, Store(db_url or config.database), clock or SystemClock(),
                       secret=load_or_create_secret(config.secret_path))


def _hint(target: Target | None) -> str:
    """What to do when the address may simply be the wrong one."""
    if target is not None and target.address_from == "config":
        return "（守护进程若在别的地址，请加 --mqtt-url mqtt://主机:端口）"
    return ""


def admin_call(config: HallConfig, op: str, args: dict[str, Any] | None = None, *, clock: Clock | None = None,
               db_url: str | None = None, mqtt_url: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run an admin op through the daemon when it runs, else directly on the database.

    Returns (result, reached): `reached` says where the answer came from (`via` daemon or database,
    the `mqtt` address tried and where that address came from)."""
    from .bus.client import BusError, CommandError
    from .domain import Actor
    from .service import READ_ONLY_OPS

    read_only = op in READ_ONLY_OPS
    target = admin_target(config, mqtt_url)
    problem: Problem | None
    if target is None:
        problem = Problem("配置中未设 MQTT 地址", "no MQTT address configured")
    else:
        quiet = _QuietClient(target.username)
        bus_log = logging.getLogger("hall_controller.bus.client")
        bus_log.addFilter(quiet)
        try:
            client, problem = _connect(config, target, CONNECT_TIMEOUT)
            if client is not None:
                try:
                    result = client.request(op, timeout=REQUEST_TIMEOUT, **(args or {}))
                    return result, {"via": "daemon", "mqtt": target.address, "address_from": target.address_from}
                except CommandError:
                    raise
                except BusError as exc:
                    log.debug("%s via %s: %s", op, target.address, exc)
                    problem = Problem(f"守护进程（{target.address}）未在 {REQUEST_TIMEOUT:g} 秒内应答",
                                      f"the daemon at {target.address} did not reply within {REQUEST_TIMEOUT:g} s")
                    if not read_only:   # it may have made the change: doing it again here could double it
                        raise AdminUnavailable(f"{problem.zh}，操作可能已执行也可能未执行，请用 hallctl status 核对"
                                               f" / {problem.en}: the change may or may not have been made") from None
                finally:
                    client.close()
        finally:
            bus_log.removeFilter(quiet)
    assert problem is not None
    reached = {"via": "database", "mqtt": target.address if target else None,
               "address_from": target.address_from if target else None}
    if not read_only and target is not None and target.daemon_pid is not None:
        raise AdminUnavailable(f"{problem.zh}；守护进程（pid {target.daemon_pid}）仍在运行，为免冲突未修改数据库，"
                               f"请稍后重试或用 --mqtt-url 指定其地址 / {problem.en}; the daemon "
                               f"(pid {target.daemon_pid}) is running, so the database was left unchanged")
    if read_only:
        print(f"{problem.zh}，改为直接读取数据库{_hint(target)} / {problem.en}, reading the database",
              file=sys.stderr)
    else:
        print(f"{problem.zh}，改为直接修改数据库{_hint(target)} / {problem.en}, changing the database directly",
              file=sys.stderr)
    service = offline_service(config, clock=clock, db_url=db_url)
    try:
        return service.execute(Actor("hallctl", "admin"), op, args or {}), reached
    finally:
        service.store.close()


def admin_op(config: HallConfig, op: str, args: dict[str, Any] | None = None, *, clock: Clock | None = None,
             db_url: str | None = None, mqtt_url: str | None = None) -> dict[str, Any]:
    """Run an admin op through the daemon when it runs, else directly on the database."""
    return admin_call(config, op, args, clock=clock, db_url=db_url, mqtt_url=mqtt_url)[0]
