"""The daemon's `/healthz` and Prometheus `/metrics` (DESIGN §12), on `monitoring.listen`.

Each daemon has its own `CollectorRegistry` (tests run several daemons in one process); a custom
collector reads the live figures at scrape time from the parts the daemon holds (service, store,
devices, bridge), so nothing is counted twice or goes stale. The one figure that is observed as it
happens is the command latency: the MQTT bridge calls `observe_command(op, seconds)` through its
`on_command` hook (the bridge does not know this module). The HTTP server is wsgiref's, threaded,
on a daemon thread: a scrape never blocks the hall, and a port that cannot be bound only logs.

`Health` is the one health check: `/healthz` answers 200 while the database answers, the clock
tick runs and the bridge is connected, else 503 naming the part; the systemd watchdog is fed on the
same check without the bus (a broker outage is not cured by restarting the daemon).
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from . import __version__
from .clock import Clock
from .config import HallConfig
from .service import ALL_OPS, HallService
from .store import Store
from .store.outbox import backlog

log = logging.getLogger(__name__)

T = TypeVar("T")

#: seconds; a command of the hall is answered in milliseconds, a commit on a slow disk in tenths
COMMAND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DB_TIMEOUT_SECONDS = 3.0        # a database that takes longer for a one-row read is not serving
TICK_STALE_SECONDS = 15.0       # the clock tick runs every second; this long without one is a hang
NOT_APP_ROLES = ("admin", "daemon")   # clients that are not app PCs (hallctl, the daemon itself)

#: The exposed metric names (the doctor, the install's alert rules and the README name them).
METRICS = {
    "hall_info": "1, labels hall and version",
    "hall_open": "1 while the hall is within its opening hours",
    "hall_healthy": "1 ok / 0 failing per health check (label check: database, clock, bus), as /healthz",
    "hall_waiting_tickets": "tickets waiting, label service",
    "hall_oldest_wait_seconds": "how long the longest-waiting ticket has waited since issued, label service",
    "hall_store_commits_total": "database transactions written",
    "hall_store_commit_failures_total": "database transactions that failed",
    "hall_command_duration_seconds": "histogram of MQTT command latency (arrival to reply), label op",
    "hall_device_online": "1 online / 0 offline, labels device and kind",
    "hall_outbox_pending": "records waiting for the management system",
    "hall_outbox_dead": "records the management system refused for good (dead letters)",
    "hall_outbox_oldest_pending_seconds": "age of the oldest waiting record",
    "hall_client_online": "1 online / 0 offline per app client, labels client and role",
    "hall_bus_connected": "1 while the daemon is connected to the MQTT broker",
    "hall_announcements_queued": "announcements waiting or playing, label device (speaker)",
}
#: Exposed only by a hall with `city:` set (DESIGN §11, hall_controller.uplink).
CITY_METRICS = {
    "hall_city_connected": "1 while connected to the city broker",
    "hall_city_alerts_queued": "alerts for the city not yet acknowledged by its broker (a WAN cut grows it)",
}


class Sources(Protocol):
    """What is read at scrape time: the daemon's parts (None while not started or not configured)."""

    config: HallConfig
    clock: Clock
    service: HallService | None
    store: Store | None
    bridge: Any        # bus.bridge.MqttBridge: `connected`, `client_states()`
    devices: Any       # devices.DeviceManager: `driven()`, `stats()`
    last_tick: float   # time.monotonic() of the last clock tick that succeeded


# ---------------------------------------------------------------------------------- timed calls

class _Job(Generic[T]):
    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._fn = fn
        self.value: T | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.value = self._fn()
        except BaseException as exc:   # handed to the caller
            self.error = exc


class TimedCall(Generic[T]):
    """`fn()` on a helper thread, waited for at most `timeout` s (TimeoutError after). A call that
    hangs is not started again: later callers wait on the same one, so a hung database costs one
    thread, not one per scrape."""

    def __init__(self, fn: Callable[[], T], timeout: float, what: str) -> None:
        self._fn, self.timeout, self.what = fn, timeout, what
        self._lock = threading.Lock()
        self._job: _Job[T] | None = None

    def __call__(self) -> T:
        with self._lock:
            if self._job is None or not self._job.thread.is_alive():
                self._job = _Job(self._fn, f"probe-{self.what}")
                self._job.thread.start()
            job = self._job
        job.thread.join(self.timeout)
        if job.thread.is_alive():
            raise TimeoutError(f"{self.what}: no answer within {self.timeout:g} s")
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- health

CHECK_TEXTS = {
    "database": "数据库无响应，请查看守护进程日志 (database not answering; see the daemon log)",
    "clock": "时钟任务停滞，守护进程可能卡死 (clock tick stuck; the daemon may hang)",
    "bus": "未连接MQTT代理，终端无法通信 (not connected to the MQTT broker; apps cannot reach the hall)",
}


class Health:
    """The daemon's health: database, clock tick and bus, each `ok` or what is wrong (no raw errors:
    those go to the log, once per failure)."""

    def __init__(self, sources: Sources, *, db_timeout: float = DB_TIMEOUT_SECONDS,
                 tick_stale: float = TICK_STALE_SECONDS) -> None:
        self._sources = sources
        self._tick_stale = tick_stale
        self._ping = TimedCall(self._ping_store, db_timeout, "database")
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def _ping_store(self) -> None:
        store = self._sources.store
        if store is None:
            raise RuntimeError("no store")
        store.ping()

    def problems(self, *, bus: bool = True) -> dict[str, str]:
        """The failing parts -> what to tell a person; empty when healthy. `bus=False` for the
        watchdog: a broker outage is not cured by restarting the daemon."""
        problems: dict[str, str] = {}
        try:
            self._ping()
        except Exception as exc:
            problems["database"] = CHECK_TEXTS["database"]
            self._note("database", f"health: the database does not answer: {exc}")
        age = time.monotonic() - self._sources.last_tick
        if age > self._tick_stale:
            problems["clock"] = CHECK_TEXTS["clock"]
            self._note("clock", f"health: no successful clock tick for {age:.0f} s")
        bridge = self._sources.bridge
        if bus and bridge is not None and not bridge.connected:
            problems["bus"] = CHECK_TEXTS["bus"]
            self._note("bus", "health: the bridge is not connected to the broker")
        with self._lock:
            for part in self._failing - problems.keys():
                log.info("health: %s ok again", part)
            self._failing &= problems.keys()
        return problems

    def _note(self, part: str, message: str) -> None:
        with self._lock:
            if part in self._failing:
                return
            self._failing.add(part)
        log.warning("%s", message)

    def parts(self) -> list[str]:
        """The checks made: the bus only where the daemon has one."""
        return ["database", "clock"] + (["bus"] if self._sources.bridge is not None else [])

    def watchdog_problem(self) -> str | None:
        """What keeps the systemd watchdog from being fed (sdnotify.WatchdogFeeder), or None."""
        return ", ".join(self.problems(bus=False)) or None

    def report(self) -> tuple[int, dict[str, Any]]:
        """`/healthz`: (HTTP status, JSON body)."""
        problems = self.problems()
        body: dict[str, Any] = {
            "status": "fail" if problems else "ok", "hall": self._sources.config.hall_id, "version": __version__,
            "checks": {part: problems.get(part, "ok") for part in self.parts()},
        }
        if problems:
            body["failing"] = sorted(problems)
        return (503 if problems else 200), body


# ---------------------------------------------------------------------------------- metrics

class HallCollector(Collector):
    """The hall's live figures, read at each scrape; a part that cannot be read is left out (logged
    once) and the rest is still served."""

    def __init__(self, sources: Sources, health: Health, *, db_timeout: float = DB_TIMEOUT_SECONDS) -> None:
        self._sources = sources
        self._health = health
        self._outbox = TimedCall(self._read_outbox, db_timeout, "outbox")
        self._failing: set[str] = set()

    def describe(self) -> Iterable[Metric]:
        return []    # no names registered ahead: nothing is read at registration

    def collect(self) -> Iterator[Metric]:
        for part in (self._hall, self._checks, self._queues, self._store, self._devices, self._outbox_metrics,
                     self._clients, self._announcements, self._city):
            try:
                metrics = list(part())
            except Exception:
                if part.__name__ not in self._failing:
                    self._failing.add(part.__name__)
                    log.warning("metrics: cannot read %s", part.__name__.strip("_"), exc_info=True)
                continue
            self._failing.discard(part.__name__)
            yield from metrics

    def _now(self) -> datetime:
        return self._sources.clock.now()

    def _hall(self) -> Iterator[Metric]:
        config = self._sources.config
        info = GaugeMetricFamily("hall_info", "The hall daemon (always 1)", labels=["hall", "version"])
        info.add_metric([config.hall_id, __version__], 1)
        yield info
        yield GaugeMetricFamily("hall_open", "1 while the hall is within its opening hours",
                                value=int(config.is_open(self._now())))
        bridge = self._sources.bridge
        if bridge is not None:
            yield GaugeMetricFamily("hall_bus_connected", "1 while the daemon is connected to the MQTT broker",
                                    value=int(bridge.connected))

    def _checks(self) -> Iterator[Metric]:
        problems = self._health.problems()
        healthy = GaugeMetricFamily("hall_healthy", "1 ok, 0 failing: the checks of /healthz", labels=["check"])
        for check in self._health.parts():
            healthy.add_metric([check], int(check not in problems))
        yield healthy

    def _queues(self) -> Iterator[Metric]:
        service = self._sources.service
        if service is None:
            return
        now = self._now()
        waiting = GaugeMetricFamily("hall_waiting_tickets", "Tickets waiting to be called", labels=["service"])
        oldest = GaugeMetricFamily("hall_oldest_wait_seconds",
                                   "How long the longest-waiting ticket has waited since it was issued (0: none)",
                                   labels=["service"])
        for code, (count, since) in sorted(service.waiting_stats().items()):
            waiting.add_metric([code], count)
            oldest.add_metric([code], max(0.0, (now - since).total_seconds()) if since else 0.0)
        yield waiting
        yield oldest

    def _store(self) -> Iterator[Metric]:
        store = self._sources.store
        if store is None:
            return
        yield CounterMetricFamily("hall_store_commits", "Database transactions written (a group commit counts once)",
                                  value=store.commits)
        yield CounterMetricFamily("hall_store_commit_failures", "Database transactions that failed",
                                  value=store.commit_failures)

    def _devices(self) -> Iterator[Metric]:
        devices, service = self._sources.devices, self._sources.service
        if devices is None or service is None:
            return
        states = service.device_states()
        online = GaugeMetricFamily("hall_device_online", "1 online, 0 offline or not yet opened",
                                   labels=["device", "kind"])
        for device in devices.driven():
            online.add_metric([device.id, device.kind], int(bool(states.get(device.id, {}).get("online"))))
        yield online

    def _read_outbox(self) -> tuple[int, int, str | None]:
        store = self._sources.store
        if store is None or store.closed:
            raise RuntimeError("store closed")
        with store.engine.connect() as conn:
            return backlog(conn)

    def _outbox_metrics(self) -> Iterator[Metric]:
        if self._sources.store is None:
            return
        pending, dead, oldest = self._outbox()
        age = max(0.0, (self._now() - datetime.fromisoformat(oldest)).total_seconds()) if oldest else 0.0
        yield GaugeMetricFamily("hall_outbox_pending", "Records waiting for the management system", value=pending)
        yield GaugeMetricFamily("hall_outbox_dead", "Records the management system refused for good (dead letters)",
                                value=dead)
        yield GaugeMetricFamily("hall_outbox_oldest_pending_seconds", "Age of the oldest waiting record (0: none)",
                                value=age)

    def _clients(self) -> Iterator[Metric]:
        bridge = self._sources.bridge
        if bridge is None:
            return
        states = bridge.client_states()
        online = GaugeMetricFamily("hall_client_online", "1 while the app client says it is online (its retained "
                                   "status)", labels=["client", "role"])
        for client in self._sources.config.clients:
            if client.role not in NOT_APP_ROLES:
                online.add_metric([client.id, client.role], int(states.get(client.id) == "online"))
        yield online

    def _announcements(self) -> Iterator[Metric]:
        devices = self._sources.devices
        if devices is None:
            return
        queued = GaugeMetricFamily("hall_announcements_queued", "Announcements waiting or playing",
                                   labels=["device"])
        for device_id, figures in sorted(devices.stats().items()):
            if "announcements_queued" in figures:
                queued.add_metric([device_id], figures["announcements_queued"])
        yield queued

    def _city(self) -> Iterator[Metric]:
        uplink = getattr(self._sources, "uplink", None)    # uplink.CityUplink, with `city:` only
        if uplink is None:
            return
        yield GaugeMetricFamily("hall_city_connected", "1 while connected to the city broker",
                                value=int(uplink.connected))
        yield GaugeMetricFamily("hall_city_alerts_queued", "Alerts for the city not yet acknowledged by its broker",
                                value=uplink.alerts_queued)


# ---------------------------------------------------------------------------------- HTTP

class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        """As WSGIServer's, without `socket.getfqdn`: a reverse DNS lookup can stall for seconds on a
        hall LAN without DNS."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("monitoring: %s %s", self.address_string(), format % args)


class Monitoring:
    """The registry, the collectors and the HTTP server of one daemon."""

    def __init__(self, sources: Sources) -> None:
        self.registry = CollectorRegistry()
        self.commands = Histogram("hall_command_duration_seconds",
                                  "MQTT command latency, from its arrival to the reply (queueing included)",
                                  ["op"], buckets=COMMAND_BUCKETS, registry=self.registry)
        self.health = Health(sources)
        self.registry.register(HallCollector(sources, self.health))
        ProcessCollector(registry=self.registry)
        self._metrics_app = make_wsgi_app(self.registry)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    def observe_command(self, op: str, seconds: float) -> None:
        """The bridge's on_command hook; an op no client may send is counted as `other` (the label set stays small)."""
        self.commands.labels(op if op in ALL_OPS else "other").observe(seconds)

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """WSGI: `/healthz`, `/metrics` (and `/`), else 404."""
        path = environ.get("PATH_INFO") or "/"
        if path == "/healthz":
            code, body = self.health.report()
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            start_response("200 OK" if code == 200 else "503 Service Unavailable",
                           [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store")])
            return [data]
        if path in ("/metrics", "/"):
            return self._metrics_app(environ, start_response)
        data = "未找到：请访问 /metrics 或 /healthz (not found: use /metrics or /healthz)\n".encode()
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(data)))])
        return [data]

    def serve(self, host: str, port: int) -> tuple[str, int] | None:
        """Listen on host:port (0: any free port) on a daemon thread; the bound address, or None when
        it cannot be bound (logged: the hall serves on without metrics)."""
        server_class = _Server6 if ":" in host else _Server
        try:
            server = make_server(host, port, self.app, server_class=server_class, handler_class=_QuietHandler)
        except OSError as exc:
            log.error("monitoring: cannot listen on %s:%d (%s): no /metrics or /healthz; set monitoring.listen "
                      "to a free HOST:PORT", host, port, exc)
            return None
        self._server = server
        self.address = (host, server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="monitoring-http", daemon=True)
        self._thread.start()
        log.info("monitoring: /metrics and /healthz at http://%s:%d/", *self.address)
        return self.address

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
