"""The hall daemon process: wires config, store, service, clock, broker, bus bridge and the rest.

Parts are started in dependency order and stopped in reverse; each later part (devices, upstream)
is optional so the core runs on its own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import __version__, sdnotify
from .clock import Clock, SystemClock
from .config import HallConfig, load_config
from .hall_calendar import CoverageWatch
from .monitoring import Monitoring
from .scans import command_payload_limit
from .service import HallService
from .setup_hall import load_or_create_secret
from .store import Store

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
EMULATOR_PROBE_SECONDS = 2.0


@dataclass
class DaemonOptions:
    db_url: str | None = None
    mqtt_listen: str | None = None
    mqtt_url: str | None = None
    upstream_url: str | None = None
    upstream_token: str | None = None
    device_urls: dict[str, str] = field(default_factory=dict)   # device id -> url (overrides "emulated")
    emulator_control: str | None = None   # HOST:PORT of `hall-emu run --control` (overrides emulator.control)


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


# ---------------------------------------------------------------------- runtime file
# The daemon records the MQTT address it actually got (the demo moves off a busy port; `--mqtt-listen`
# overrides the config), so that `hallctl status` & co. reach the daemon the config names rather than
# whatever answers at the configured port.

def runtime_path(config: HallConfig) -> Path:
    """`<state folder>/run/hall-<id>.json`: beside the hall's secret, so the demo folder and a
    production install each have their own."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", config.hall_id)
    return Path(config.secret_path).parent / "run" / f"hall-{name}.json"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux), to tell a live daemon from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, another user's
        return True
    except OSError:
        return False
    return True


def write_runtime(config: HallConfig, host: str, port: int, *, started_at: str, broker: str,
                  metrics: str | None = None) -> dict[str, Any] | None:
    """Record where this process's daemon serves MQTT and /metrics ("HOST:PORT", or None) (never a
    password); None if it cannot be written."""
    record: dict[str, Any] = {"hall_id": config.hall_id, "host": host, "port": port, "broker": broker,
                              "pid": os.getpid(), "process_start": _process_start(os.getpid()),
                              "started_at": started_at, "version": __version__, "metrics": metrics}
    path = runtime_path(config)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the runtime file %s (%s): hallctl commands will use the config's MQTT "
                    "address or --mqtt-url", path, exc)
        return None
    log.info("runtime file %s: mqtt %s:%d", path, host, port)
    return record


def read_runtime(config: HallConfig) -> dict[str, Any] | None:
    """The running daemon's record, or None when there is none or it is stale (its process is gone)."""
    path = runtime_path(config)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        pid, host, port = int(record["pid"]), str(record["host"]), int(record["port"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.debug("ignoring unreadable runtime file %s: %s", path, exc)
        return None
    if not _pid_alive(pid):
        log.debug("ignoring stale runtime file %s: pid %d is not running", path, pid)
        return None
    started = record.get("process_start")
    if started and _process_start(pid) not in (None, started):
        log.debug("ignoring stale runtime file %s: pid %d is another process now", path, pid)
        return None
    return {**record, "pid": pid, "host": host, "port": port, "path": str(path)}


def remove_runtime(config: HallConfig, record: dict[str, Any]) -> None:
    """Remove the runtime file if it still holds `record` (another daemon may have replaced it)."""
    path = runtime_path(config)
    try:
        if json.loads(path.read_text(encoding="utf-8")) == record:
            path.unlink()
    except (OSError, ValueError):
        pass


class HallDaemon:
    def __init__(self, config: HallConfig, options: DaemonOptions | None = None, *, clock: Clock | None = None,
                 config_path: str | None = None):
        self.options = options or DaemonOptions()
        if self.options.emulator_control:
            config = replace(config, emulator_control=self.options.emulator_control)
        self.config = config
        self.clock = clock or SystemClock()
        self.config_path = config_path
        self.store: Store | None = None
        self.service: HallService | None = None
        self.broker = None
        self.bridge = None
        self.devices = None
        self.upstream = None
        self.uplink = None      # uplink.CityUplink when `city:` is set
        self.mqtt_address: tuple[str, int] | None = None
        self._runtime: dict[str, Any] | None = None
        self._parts: list[Any] = []
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.monitoring: Monitoring | None = None
        self.last_tick = time.monotonic()    # of the last clock tick that succeeded (health, watchdog)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        url = self.options.db_url or self.config.database
        secret = load_or_create_secret(self.config.secret_path)
        self.store = Store(url, sqlite_sync=self.config.sqlite_sync)
        loader = (lambda: load_config(self.config_path)) if self.config_path else None
        self.service = HallService(self.config, self.store, self.clock, secret=secret, config_loader=loader)
        self.monitoring = Monitoring(self)
        self._start_bus()
        if self.bridge is not None:
            self.bridge.on_command = self.monitoring.observe_command
        metrics = self._start_monitoring()
        if self.mqtt_address:
            self._runtime = write_runtime(self.config, *self.mqtt_address, started_at=self.clock.now().isoformat(),
                                          broker="embedded" if self.broker is not None else "external",
                                          metrics=metrics)
        self._start_devices()
        self._start_upstream()
        self._start_uplink()
        self._coverage = CoverageWatch(self.config.calendar)
        self._check_calendar()
        self.last_tick = time.monotonic()   # the service ticked when it was built; a slow start is no hang
        self._ticker = threading.Thread(target=self._tick_loop, name="hall-clock", daemon=True)
        self._ticker.start()
        log.info("hall %s (%s) serving, database %s", self.config.hall_id, self.config.name, _safe_url(url))

    def _start_bus(self) -> None:
        listen = self.options.mqtt_listen or (None if self.options.mqtt_url else self.config.mqtt_listen)
        mqtt_url = self.options.mqtt_url or (None if self.options.mqtt_listen else self.config.mqtt_url)
        if not listen and not mqtt_url:
            log.warning("no MQTT broker configured: the daemon serves no clients")
            return
        from .bus.bridge import MqttBridge
        from .bus.broker_process import BrokerProcess
        from .bus.credentials import DAEMON_CLIENT_ID, CredentialStore
        from .bus.limits import broker_packet_limit

        credentials = CredentialStore(self.config.credentials_path)
        tls: dict[str, Any] = {}
        if listen:
            host, port = split_hostport(listen)
            # A child process: amqtt is pure Python and would share the hall service's GIL.
            self.broker = BrokerProcess(host, port, self.config.credentials_path, hall_id=self.config.hall_id,
                                        max_packet=broker_packet_limit(self.config.scan_max_bytes))
            self.broker.start()
            self.mqtt_address = (host, self.broker.port)
            # The daemon's own account on its own broker: a fresh password each start.
            username = DAEMON_CLIENT_ID
            password = credentials.add_or_reset(DAEMON_CLIENT_ID, "daemon")
        else:
            # mqtts:// with the config's mqtt.ca; the password from the URL, else systemd's credential
            # (LoadCredential=mqtt-password), else the hall's client-passwords file: never on the command line.
            from .bus.url import parse_mqtt_url, password_from_files
            from .setup_hall import client_password

            endpoint = parse_mqtt_url(mqtt_url, ca=self.config.mqtt_ca)
            self.mqtt_address = (endpoint.host, endpoint.port)
            username = endpoint.username or DAEMON_CLIENT_ID
            password = endpoint.password
            if password is None:
                password = password_from_files() or client_password(self.config, username) or ""
            tls = {"tls": True, "ca": endpoint.ca} if endpoint.tls else {}
            log.info("broker %s", endpoint)
        assert self.service is not None
        self.bridge = MqttBridge(self.service, self.config.hall_id, self.mqtt_address[0], self.mqtt_address[1],
                                 username, password, credentials, version=__version__, **tls,
                                 max_payload=command_payload_limit(self.config.scan_max_bytes),
                                 timezone=self.config.timezone)
        self.bridge.start()

    def _start_monitoring(self) -> str | None:
        """Serve /metrics and /healthz on monitoring.listen; the bound "HOST:PORT" (port 0 resolved)."""
        if not self.config.metrics_listen or self.monitoring is None:
            return None
        address = self.monitoring.serve(*split_hostport(self.config.metrics_listen))
        return f"{address[0]}:{address[1]}" if address else None

    def watchdog_problem(self) -> str | None:
        """Why the systemd watchdog must not be fed now (clock tick stuck, database silent), or None."""
        if self.monitoring is None:
            return "not started"
        return self.monitoring.health.watchdog_problem()

    def _start_devices(self) -> None:
        """Open the hall's devices (LED screens, keypads, …); each failing device only goes offline."""
        if not self.config.devices:
            return
        from .devices import DeviceManager

        self._check_emulator()
        assert self.service is not None
        self.devices = DeviceManager(self.config, self.service, device_urls=self.options.device_urls)
        self.devices.start()

    def _check_emulator(self) -> None:
        """Say at once, and loudly, when devices left at `url: emulated` cannot find the emulator:
        otherwise they only show offline, one by one, with nothing pointing at the address. (Their links
        resolve `emulated://` themselves, through the same EmulatorDirectory, and retry until it answers.)"""
        from drivers.transport import EMULATED, EmulatorDirectory, TransportError

        emulated = [d.id for d in self.config.devices
                    if d.url == EMULATED and d.id not in self.options.device_urls]
        if not emulated:
            return
        control = self.config.emulator_control
        if not control:
            log.error("%d device(s) are `url: emulated` but no emulator control address is set: give "
                      "hallctl run --emulator HOST:PORT (where hall-emu run --control listens) or "
                      "emulator.control in the config", len(emulated))
            return
        try:
            served = EmulatorDirectory(control, timeout=EMULATOR_PROBE_SECONDS).devices()
        except TransportError as exc:
            log.error("emulator control API at %s not reachable (%s): the %d emulated device(s) stay offline "
                      "until it answers. Is hall-emu run --control listening there? Else give "
                      "hallctl run --emulator HOST:PORT or set emulator.control", control, exc.__cause__ or exc,
                      len(emulated))
            return
        missing = [dev for dev in emulated if dev not in served]
        if missing:
            log.warning("the emulator at %s does not serve %s: those devices stay offline", control,
                        ", ".join(missing))
        else:
            log.info("emulated devices served by the emulator at %s", control)

    def _start_upstream(self) -> None:
        """Forward closed visits, sync appointments, submit monthly reports (when an upstream is set)."""
        url = self.options.upstream_url or self.config.upstream_url
        if not url:
            log.warning("no management system configured: service records wait in the outbox")
            return
        from .upstream.service import UpstreamService

        assert self.service is not None and self.store is not None
        self.upstream = UpstreamService(self.config, self.service, self.store, url=url,
                                        token=self.options.upstream_token or self.config.upstream_token,
                                        clock=self.clock)
        self.upstream.start()

    def _start_uplink(self) -> None:
        """Report to the city broker (`city:`, DESIGN §11) on its own thread; the hall never waits on it."""
        if not self.config.city_url:
            return
        from .uplink import CityUplink

        assert self.service is not None and self.store is not None
        uplink = CityUplink(self.config, self.service, self.store, self.clock, version=__version__)
        if uplink.start():
            self.uplink = uplink

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                assert self.service is not None
                self.service.tick()
                self.last_tick = time.monotonic()
                self._check_calendar()
            except Exception:
                log.exception("clock tick failed")

    def _check_calendar(self) -> None:
        """Say once, at start or when the date comes within reach, that the holiday schedule has no data
        for a coming date (the hall then opens by weekday there)."""
        warning = self._coverage.check(self.clock.now().astimezone(self.config.tz).date())
        if warning:
            log.warning("%s", warning)

    def stop(self) -> None:
        if self._runtime is not None:
            remove_runtime(self.config, self._runtime)
            self._runtime = None
        if self.monitoring is not None:
            self.monitoring.stop()
        self._stop.set()
        if self._ticker:
            self._ticker.join(timeout=5)
        for part in (self.uplink, self.upstream, self.devices, self.bridge, self.broker):
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    log.exception("stopping %s failed", type(part).__name__)
        if self.store:
            self.store.close()


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def run_daemon(config_path: str, options: DaemonOptions) -> int:
    config = load_config(config_path)
    daemon = HallDaemon(config, options, config_path=config_path)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    daemon.start()
    if daemon.mqtt_address:
        log.info("mqtt broker at %s:%d", *daemon.mqtt_address)
    log.info("ready")
    sdnotify.ready(f"服务中 serving hall {config.hall_id}")
    interval = sdnotify.watchdog_interval()
    feeder = sdnotify.WatchdogFeeder(interval, daemon.watchdog_problem) if interval else None
    if feeder is not None:
        feeder.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sdnotify.stopping("正在停止 stopping")
        if feeder is not None:
            feeder.stop()
        daemon.stop()
        log.info("stopped")
    return 0
