"""Hall bus latency and throughput over MQTT, against the embedded broker (and, with ``--mosquitto``,
a private Mosquitto 2.0 started from the generated password file and ACL).

For each broker it prints:

(a) bare broker round trip: a paho publisher (the daemon account) → the broker → a paho subscriber
    (the display account), one message at a time, QoS 0 as events travel, with the daemon's paho
    client class and TCP_NODELAY on both sockets, an event-sized payload; no daemon running.
    p50/p99 over ``--messages`` messages back to back, then over ``--calls`` messages at (b)'s pace.
(b) call → display: 8 window clients (HallClient), all busy, each calling ``call_next`` with
    ``finish_current`` (the keypad's "next": finish the visitor, call the next one), from just before
    ``request("call_next")`` to the display client (HallClient, role display) receiving that ticket's
    ``ticket_called`` event, matched by ticket id. p50/p99 over ``--calls`` calls. Each window calls
    on its own random schedule (exponential gaps, ``--call-rate`` calls/s over the 8 windows; a window
    whose reply comes late calls at once), so calls of different windows overlap as they do in a hall,
    at a rate thousands of times a real hall's (8 windows calling every few minutes). The tickets
    are the ones issued in (d). Then, for capacity: the same 8 windows calling back to back with no
    gap (``--saturated-calls``; the latency there is queueing: 8 calls in flight wait for each
    other), and one window calling alone (the floor without contention).
(c) (b)/(a) at p50, like for like: (a) is measured twice, back to back and at (b)'s pace (random
    gaps, ``--call-rate`` messages/s), and (c) divides by the paced one. On a machine that idles
    between messages every hop pays for waking a CPU and a thread (on the development VM a paced
    hop takes 3-4× a back-to-back one); (b) pays that on each of its hops, so dividing it by a
    back-to-back (a) would charge the daemon for the machine's idle wake-ups. The ratio against the
    back-to-back (a) is printed too. (b) runs with ``sqlite_sync: full`` (the default: the call is
    on disk, fsync'd, before anyone hears of it) and again with ``normal``, showing the fsync's share.
(d) ticket issue throughput: 8 kiosk clients (kiosk-1..8; kiosk-3..8 are added to the hall)
    issuing ``--tickets`` tickets in parallel, and the p99 of one ``issue_ticket`` request, with
    ``sqlite_sync: full`` (the default: fsync per commit) and again with ``sqlite_sync: normal``.

Every client subscribes to what its role's app listens to (``topics.subscriptions``): kiosks the
waiting counts, windows the counts and their own window, the display the calls and window states.
The daemon runs in a child process, its embedded broker in a child of the daemon (as `hallctl run`
starts them; (a) measures that same broker process alone), and the kiosk and window clients in ``--client-procs`` worker processes (they are other machines in the hall; in one
process their message handling would saturate its GIL and throttle the measurement). Times taken in
different processes compare because ``perf_counter`` is CLOCK_MONOTONIC on Linux. The CPU each
process used (in cores) is printed per phase: on a small machine the load generators compete with
the daemon for CPUs. ``--in-process`` runs the daemon in the bench process instead.
Loopback only, ephemeral ports, a temporary SQLite database; everything it starts it stops by pid.
Run: ``.venv/bin/python bench/mqtt_latency.py [--mosquitto | --mosquitto-nodelay]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from hall_controller.bus.broker_process import BrokerProcess
from hall_controller.bus.client import DirectWriteClient, HallClient, set_nodelay
from hall_controller.bus.credentials import DAEMON_CLIENT_ID, CredentialStore
from hall_controller.bus.mosquitto import write_mosquitto_config
from hall_controller.config import sample_config_text

HALL = "demo"
MOSQUITTO = "/usr/sbin/mosquitto"
WINDOWS = range(1, 9)
KIOSKS = [f"kiosk-{n}" for n in range(1, 9)]
# Tickets issued per round, in the proportions the 8 windows' main services call them:
# windows 1-3 consult, 4-5 legal aid, 6 mediation, 7 notary, 8 general.
SERVICE_MIX = ["consult", "legal_aid", "consult", "mediation", "consult", "legal_aid", "notary", "general"]
EVENT_SIZE = 830  # bytes of a ticket_called event (ticket, window, announcement) as the daemon sends it
WARMUP = 100
ALONE_CALLS = 150  # after (b): one window calls on its own, to show the latency without contention
TARGET_RATIO = 10.0
TARGET_RATE = 500.0
TARGET_ISSUE_P99_MS = 20.0


# ---------------------------------------------------------------------------------------- helpers
def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`, in the unit given."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of a process so far: this one for None."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """How busy each process was during a phase, in cores (1.0 = one CPU all the time)."""

    def __init__(self, processes: dict[str, int | None]) -> None:
        self.processes = processes
        self._start = {label: cpu_seconds(pid) for label, pid in processes.items()}
        self._wall = time.perf_counter()

    def report(self) -> str:
        wall = time.perf_counter() - self._wall
        return ", ".join(f"{label} {(cpu_seconds(pid) - self._start[label]) / wall:.2f}"
                         for label, pid in self.processes.items()) + " cores"


@dataclass
class Hall:
    """A hall folder: config (no devices, 8 kiosks), credential store, clear passwords."""

    directory: Path
    config_path: Path
    passwords: dict[str, str]
    roles: dict[str, tuple[str, int | None]]


def make_hall(directory: Path, sqlite_sync: str) -> Hall:
    directory.mkdir(parents=True)
    data = yaml.safe_load(sample_config_text())
    data["devices"] = []
    for window in data["windows"]:
        window["devices"] = []
    data["clients"] += [{"id": k, "role": "kiosk"} for k in KIOSKS if k not in ("kiosk-1", "kiosk-2")]
    data["sqlite_sync"] = sqlite_sync
    data["database"] = f"sqlite:///{directory / 'hall.db'}"
    data["mqtt"] = {"listen": "127.0.0.1:0"}
    config_path = directory / "hall.yaml"
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    store = CredentialStore(directory / "credentials.yaml")
    passwords, roles = {}, {}
    for client in data["clients"]:
        passwords[client["id"]] = store.add_or_reset(client["id"], client["role"], client.get("window"))
        roles[client["id"]] = (client["role"], client.get("window"))
    return Hall(directory, config_path, passwords, roles)


# ---------------------------------------------------------------------------------------- servers
class ChildServer:
    """The daemon in a child process (this script in `--serve` mode): prints `ready PORT [BROKER_PID]`,
    stops when its stdin closes."""

    def __init__(self, config_path: str, mqtt_url: str | None) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", config_path,
               *(["--mqtt-url", mqtt_url] if mqtt_url else [])]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) not in (2, 3) or line[0] != "ready":
            self.stop()
            raise RuntimeError(f"daemon for {config_path} did not start ({line})")
        self.port = int(line[1])
        self.pid: int | None = self.proc.pid
        self.broker_pid = int(line[2]) if len(line) == 3 else None  # the daemon's embedded broker child

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class InProcessServer:
    """The daemon in this process (`--in-process`)."""

    def __init__(self, config_path: str, mqtt_url: str | None) -> None:
        self.daemon = start_daemon(config_path, mqtt_url)
        self.port = daemon_port(self.daemon)
        self.pid: int | None = None  # this process
        self.broker_pid = broker_pid(self.daemon)

    def stop(self) -> None:
        self.daemon.stop()


def start_daemon(config_path: str, mqtt_url: str | None) -> Any:
    """The hall daemon; without `mqtt_url` its embedded broker runs in a child of its own."""
    from hall_controller.config import load_config
    from hall_controller.daemon import DaemonOptions, HallDaemon

    options = DaemonOptions(mqtt_url=mqtt_url) if mqtt_url else DaemonOptions(mqtt_listen="127.0.0.1:0")
    daemon = HallDaemon(load_config(config_path), options, config_path=config_path)
    daemon.start()
    if daemon.bridge is None or not daemon.bridge.connected:
        daemon.stop()
        raise RuntimeError("the daemon is not connected to the broker")
    return daemon


def broker_pid(daemon: Any) -> int | None:
    """The pid of the daemon's embedded broker child process, if it has one."""
    return daemon.broker.pid if daemon.broker is not None else None


def daemon_port(daemon: Any) -> int:
    return int(daemon.mqtt_address[1])


def serve(config_path: str, mqtt_url: str | None) -> int:
    """Child-process mode."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("amqtt", "transitions", "alembic", "hall_controller"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds through the `finally` below
    daemon = start_daemon(config_path, mqtt_url)
    print(f"ready {daemon_port(daemon)} {broker_pid(daemon) or ''}".strip(), flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        daemon.stop()
    return 0


class MosquittoProcess:
    """A private Mosquitto on an ephemeral port, from the files `hallctl mqtt-config` writes."""

    def __init__(self, hall: Hall, *, nodelay: bool = False) -> None:
        self.port = free_port()
        files = write_mosquitto_config(hall.directory / "mosquitto", HALL,
                                       CredentialStore(hall.directory / "credentials.yaml"),
                                       port=self.port, bind_address="127.0.0.1")
        conf = files.conf_file.read_text()
        if os.geteuid() == 0:  # as root mosquitto drops to `mosquitto`, who cannot read the 0600 files
            conf += "user root\n"
        if nodelay and "set_tcp_nodelay" not in conf:
            conf += "set_tcp_nodelay true\n"
        self.nagle = "set_tcp_nodelay true" not in conf
        conf_path = hall.directory / "mosquitto" / "bench.conf"
        conf_path.write_text(conf)
        self.log = (hall.directory / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf_path)], stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 5
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited, see {hall.directory / 'mosquitto.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("mosquitto did not listen in time") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


# ---------------------------------------------------------------------------------------- (a)
def bare_round_trip(port: int, hall: Hall, daemon_password: str, count: int, mean_gap: float = 0.0) -> list[float]:
    """Publisher → broker → subscriber, one message in flight; returns the latencies in seconds.
    With `mean_gap` the messages leave at random exponential gaps of that mean, as the calls of (b)."""
    received = threading.Event()
    expected = [-1]

    def on_message(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if int(message.payload[:8]) == expected[0]:
            received.set()

    def connect(user: str, password: str, on_msg: Any = None) -> mqtt.Client:
        client = DirectWriteClient(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311)
        client.username_pw_set(user, password)
        client.on_socket_open = set_nodelay
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        if on_msg is not None:
            client.on_message = on_msg
        client.connect("127.0.0.1", port, keepalive=30)
        client.loop_start()
        wait_for(client.is_connected, 10, f"{user} to connect")
        if on_msg is not None:
            client.subscribe(f"hall/{HALL}/event/#", qos=0)
            if not subscribed.wait(5):
                raise TimeoutError("no SUBACK")
        return client

    sub = connect("display-1", hall.passwords["display-1"], on_message)
    pub = connect(DAEMON_CLIENT_ID, daemon_password)
    filler = b"x" * (EVENT_SIZE - 8)
    latencies: list[float] = []
    rng = random.Random("bare")
    try:
        for i in range(count + WARMUP):
            if mean_gap > 0:
                time.sleep(rng.expovariate(1 / mean_gap))
            received.clear()
            expected[0] = i
            start = time.perf_counter()
            pub.publish(f"hall/{HALL}/event/bench", b"%08d" % i + filler, qos=0)
            if not received.wait(5):
                raise TimeoutError(f"message {i} not delivered")
            if i >= WARMUP:
                latencies.append(time.perf_counter() - start)
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()
    return latencies


# ---------------------------------------------------------------------------------------- (b), (d)
@contextmanager
def clients(port: int, passwords: dict[str, str], roles: dict[str, tuple[str, int | None]],
            ids: list[str]) -> Iterator[dict[str, HallClient]]:
    connected: dict[str, HallClient] = {}
    try:
        for cid in ids:
            role, window = roles[cid]
            client = HallClient(cid, passwords[cid], "127.0.0.1", port, HALL, role=role, window=window)
            connected[cid] = client
            client.connect(timeout=10)
        yield connected
    finally:
        for client in connected.values():
            client.close()


def run_parallel(workers: list[Callable[[], None]]) -> tuple[float, float]:
    """Start the workers together; returns (start, end) on the perf_counter clock (CLOCK_MONOTONIC on
    Linux: the same clock in every process, so times from worker processes compare)."""
    barrier = threading.Barrier(len(workers) + 1)
    errors: list[BaseException] = []

    def run(work: Callable[[], None]) -> None:
        barrier.wait()
        try:
            work()
        except BaseException as exc:  # reported after join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    end = time.perf_counter()
    if errors:
        raise errors[0]
    return start, end


def issue_load(kiosks: dict[str, HallClient], counts: dict[str, int]) -> dict[str, Any]:
    """Each kiosk issues its count of tickets, one request at a time, all kiosks at once."""
    latencies: dict[str, list[float]] = {k: [] for k in kiosks}

    def worker(kiosk_id: str) -> Callable[[], None]:
        index = KIOSKS.index(kiosk_id)

        def work() -> None:
            for i in range(counts[kiosk_id]):
                service = SERVICE_MIX[(index + i * len(KIOSKS)) % len(SERVICE_MIX)]
                start = time.perf_counter()
                kiosks[kiosk_id].request("issue_ticket", timeout=30, service=service)
                latencies[kiosk_id].append(time.perf_counter() - start)
        return work

    start, end = run_parallel([worker(k) for k in kiosks])
    return {"start": start, "end": end, "latencies": [x for lat in latencies.values() for x in lat]}


def call_load(windows: dict[str, HallClient], per_window: int, mean_gap: float) -> dict[str, Any]:
    """Each window calls `per_window` times (finishing the previous visitor), all windows at once:
    with `mean_gap` > 0 on its own schedule of exponential gaps (random phase), else back to back."""
    lock = threading.Lock()
    sent: dict[str, float] = {}
    replies: list[float] = []
    empty = [0]

    def worker(client: HallClient) -> Callable[[], None]:
        rng = random.Random(client.client_id)  # reproducible schedules

        def work() -> None:
            due = time.perf_counter() + (rng.uniform(0, mean_gap) if mean_gap > 0 else 0.0)
            for _ in range(per_window):
                if mean_gap > 0:
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    due += rng.expovariate(1 / mean_gap)
                start = time.perf_counter()
                ticket = client.request("call_next", timeout=30, finish_current=True)["ticket"]
                done = time.perf_counter()
                with lock:
                    replies.append(done - start)
                    if ticket is None:
                        empty[0] += 1
                    else:
                        sent[ticket["id"]] = start
        return work

    start, end = run_parallel([worker(c) for c in windows.values()])
    return {"start": start, "end": end, "sent": sent, "replies": replies, "empty": empty[0]}


def run_command(cs: dict[str, HallClient], command: str, arg: Any) -> Any:
    if command == "login":
        for cid, client in cs.items():
            if cid.startswith("window-"):
                client.request("login", staff_id=f"S00{cid.split('-')[1]}", pin="1234")
        return None
    if command == "issue":
        return issue_load({k: c for k, c in cs.items() if k in arg}, arg)
    if command == "call":
        per_window, only, mean_gap = arg
        return call_load({k: c for k, c in cs.items() if k.startswith("window-") and (not only or k in only)},
                         per_window, mean_gap)
    raise ValueError(command)


def worker_main(conn: Any, port: int, passwords: dict[str, str], roles: dict[str, tuple[str, int | None]],
                ids: list[str]) -> None:
    """A worker process hosting some of the kiosk and window clients (entry point for multiprocessing)."""
    try:
        with clients(port, passwords, roles, ids) as cs:
            conn.send(("ok", None))
            while (message := conn.recv())[0] != "close":
                try:
                    conn.send(("ok", run_command(cs, message[0], message[1])))
                except Exception as exc:
                    conn.send(("error", repr(exc)))
    except Exception as exc:
        conn.send(("error", repr(exc)))


class ClientGroup:
    """Some kiosk and window clients in a worker process (or, with `local`, on threads of this one)."""

    def __init__(self, port: int, hall: Hall, ids: list[str], *, local: bool) -> None:
        self.ids = ids
        self.local = local
        self._result: tuple[str, Any] | None = None
        self._thread: threading.Thread | None = None
        if local:
            self._stack = clients(port, hall.passwords, hall.roles, ids)
            self._clients = self._stack.__enter__()
            return
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=worker_main, args=(child, port, hall.passwords, hall.roles, ids),
                                 daemon=True)
        self._proc.start()
        self.pid: int | None = self._proc.pid

    def started(self) -> None:
        if not self.local:
            self.result(timeout=60)

    def send(self, command: str, arg: Any) -> None:
        if not self.local:
            self._conn.send((command, arg))
            return

        def run() -> None:
            try:
                self._result = ("ok", run_command(self._clients, command, arg))
            except Exception as exc:
                self._result = ("error", repr(exc))
        self._thread = threading.Thread(target=run)
        self._thread.start()

    def result(self, timeout: float = 300) -> Any:
        if self.local:
            assert self._thread is not None
            self._thread.join(timeout)
            status, value = self._result or ("error", "no result")
        else:
            if not self._conn.poll(timeout):
                raise TimeoutError(f"client worker {self.ids} gave no answer")
            status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"client worker {self.ids}: {value}")
        return value

    def close(self) -> None:
        if self.local:
            self._stack.__exit__(None, None, None)
            return
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("close", None))
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


@contextmanager
def client_groups(port: int, hall: Hall, procs: int) -> Iterator[list[ClientGroup]]:
    """The 8 kiosks and 8 windows, spread over `procs` worker processes (0: threads of this process)."""
    count = max(procs, 1)
    ids = [*KIOSKS, *(f"window-{n}" for n in WINDOWS)]
    groups: list[ClientGroup] = []
    try:
        for i in range(count):
            groups.append(ClientGroup(port, hall, ids[i::count], local=procs == 0))
        for group in groups:
            group.started()
        yield groups
    finally:
        for group in groups:
            group.close()


def broadcast(groups: list[ClientGroup], command: str, arg: Callable[[ClientGroup], Any]) -> list[Any]:
    for group in groups:
        group.send(command, arg(group))
    return [group.result() for group in groups]


@dataclass
class IssueResult:
    tickets: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.tickets / self.seconds


def issue_tickets(groups: list[ClientGroup], total: int) -> IssueResult:
    counts = {k: total // len(KIOSKS) + (i < total % len(KIOSKS)) for i, k in enumerate(KIOSKS)}
    results = broadcast(groups, "issue", lambda g: {k: n for k, n in counts.items() if k in g.ids})
    start, end = min(r["start"] for r in results), max(r["end"] for r in results)
    return IssueResult(total, end - start, [x for r in results for x in r["latencies"]])


@dataclass
class CallResult:
    latencies: list[float]   # call_next sent -> display got ticket_called
    replies: list[float]     # call_next sent -> reply
    empty: int
    rate: float              # calls/s achieved


def call_tickets(groups: list[ClientGroup], display: HallClient, total: int, only: str | None = None,
                 rate: float = 0.0) -> CallResult:
    """`total` calls over the 8 windows at once (at `rate` calls/s in all, 0: back to back), or by the
    window client `only` alone."""
    per_window = total if only else math.ceil(total / len(WINDOWS))
    lock = threading.Lock()
    received: dict[str, float] = {}

    def on_called(event: dict[str, Any]) -> None:
        now = time.perf_counter()
        ticket_id = (event.get("ticket") or {}).get("id")
        with lock:
            received.setdefault(ticket_id, now)

    unsubscribe = display.subscribe_events(on_called, types=["ticket_called"])
    try:
        mean_gap = len(WINDOWS) / rate if rate > 0 and not only else 0.0
        started = time.perf_counter()
        results = broadcast([g for g in groups if not only or only in g.ids], "call",
                            lambda g: (per_window, [only] if only else [], mean_gap))
        seconds = time.perf_counter() - started
        sent = {t: s for r in results for t, s in r["sent"].items()}
        wait_for(lambda: all(t in received for t in sent), 30, "every ticket_called at the display")
    finally:
        unsubscribe()
    with lock:
        latencies = [received[t] - s for t, s in sent.items()]
    return CallResult(latencies, [x for r in results for x in r["replies"]], sum(r["empty"] for r in results),
                      len(sent) / seconds)


# ---------------------------------------------------------------------------------------- (e)
def stock_client(port: int, user: str, password: str, topic: str, on_message: Callable[..., None], *, qos: int,
                 nodelay: bool) -> mqtt.Client:
    """A stock `paho.mqtt.client.Client` (Nagle on unless `nodelay`) subscribed to `topic` at `qos`."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    if nodelay:
        client.on_socket_open = set_nodelay
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    wait_for(client.is_connected, 10, f"{user} to connect")
    client.subscribe(topic, qos=qos)
    if not subscribed.wait(5):
        raise TimeoutError("no SUBACK")
    return client


def stock_client_calls(port: int, hall: Hall, calls: int, *, qos: int, nodelay: bool) -> list[float]:
    """(e) call → display as an integrator writes it with stock paho-mqtt: `paho.mqtt.client.Client`
    (Nagle on unless `nodelay`), subscriptions and commands at `qos`, the display a second stock
    client. Window 1 calls the next consult visitor (finishing the current one) `calls` times, one
    call at a time; returns call_next sent → ticket_called at the display, in seconds."""
    lock = threading.Lock()
    seen: dict[str, float] = {}
    reply = threading.Event()

    def connect(user: str, topic: str, on_message: Callable[..., None]) -> mqtt.Client:
        return stock_client(port, user, hall.passwords[user], topic, on_message, qos=qos, nodelay=nodelay)

    def on_event(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        ticket = (json.loads(message.payload).get("ticket") or {}).get("id")
        with lock:
            seen.setdefault(ticket, now)

    def on_reply(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        replies.append(json.loads(message.payload))
        reply.set()

    replies: list[dict[str, Any]] = []
    with clients(port, hall.passwords, hall.roles, ["kiosk-1"]) as cs:
        for _ in range(calls + WARMUP // 10 + 1):
            cs["kiosk-1"].request("issue_ticket", service="consult")
    display = connect("display-1", f"hall/{HALL}/event/ticket_called", on_event)
    window = connect("window-1", f"hall/{HALL}/reply/window-1", on_reply)

    def request(op: str, **args: Any) -> dict[str, Any]:
        reply.clear()
        window.publish(f"hall/{HALL}/cmd/window-1", json.dumps({"id": os.urandom(8).hex(), "op": op, **args}), qos=qos)
        if not reply.wait(5):
            raise TimeoutError(f"no reply to {op}")
        answer = replies[-1]
        if not answer.get("ok"):
            raise RuntimeError(f"{op}: {answer}")
        return answer["result"]

    latencies: list[float] = []
    try:
        request("login", staff_id="S001", pin="1234")
        for i in range(calls + WARMUP // 10):
            start = time.perf_counter()
            ticket = request("call_next", finish_current=True)["ticket"]["id"]
            wait_for(lambda t=ticket: t in seen, 5, "ticket_called at the stock display")
            if i >= WARMUP // 10:
                latencies.append(seen[ticket] - start)
        request("finish")
        request("logout")
    finally:
        for client in (window, display):
            client.disconnect()
            client.loop_stop()
    return latencies


def bench_stock(work: Path, args: argparse.Namespace) -> None:
    """(e) alone, against the daemon with its embedded broker."""
    print("\n== (e) stock paho-mqtt clients (no HallClient), embedded broker ==", flush=True)
    hall = make_hall(work / "stock", "full")
    daemon = (InProcessServer if args.in_process else ChildServer)(str(hall.config_path), None)
    try:
        for qos, nodelay in ((1, False), (0, False), (1, True)):
            found = stock_client_calls(daemon.port, hall, args.stock_calls, qos=qos, nodelay=nodelay)
            label = f"QoS {qos} subs and commands, {'TCP_NODELAY' if nodelay else 'Nagle on (stock)'}"
            print(f"(e) {label:44s} {len(found):5d} calls    p50 {ms(pct(found, 50))}  p99 {ms(pct(found, 99))}",
                  flush=True)
    finally:
        daemon.stop()


# ---------------------------------------------------------------------------------------- one broker
def bench_broker(label: str, work: Path, args: argparse.Namespace, mosquitto: bool) -> None:
    """(a)-(d) on one broker, for each sqlite_sync; the verdicts at the end."""
    print(f"\n== {label} ==", flush=True)
    make_server: Callable[..., Any] = InProcessServer if args.in_process else ChildServer
    issue: dict[str, IssueResult] = {}
    bare: list[float] = []
    bare_paced: list[float] = []
    calls: dict[str, CallResult] = {}
    for sync in ("full", "normal"):
        hall = make_hall(work / f"{'mosquitto' if mosquitto else 'embedded'}-{sync}", sync)
        broker: Any = None
        daemon: Any = None
        try:
            daemon_password = CredentialStore(hall.directory / "credentials.yaml").add_or_reset(
                DAEMON_CLIENT_ID, "daemon")
            if mosquitto:
                broker = MosquittoProcess(hall, nodelay=args.mosquitto_nodelay)
                if sync == "full" and broker.nagle:
                    print("    (the generated conf has no `set_tcp_nodelay true`: Nagle's algorithm is on; "
                          "compare --mosquitto-nodelay)")
            else:  # the process the daemon starts as its embedded broker (BrokerProcess), alone
                broker = BrokerProcess("127.0.0.1", 0, hall.directory / "credentials.yaml", hall_id=HALL)
                broker.start()
            port = broker.port
            if sync == "full":
                bare, bare_paced = bare_broker(port, hall, daemon_password, args)
            if mosquitto:
                daemon = make_server(str(hall.config_path), f"mqtt://{DAEMON_CLIENT_ID}:{daemon_password}@127.0.0.1:{port}")
            else:
                broker.stop()          # the daemon brings its own embedded broker
                broker = None
                daemon = make_server(str(hall.config_path), None)
                port = daemon.port
            issue[sync], calls[sync] = hall_load(port, hall, args, sync, bench_processes(daemon, broker), bare)
        finally:
            for part in (daemon, broker):
                if part is not None:
                    part.stop()
    verdicts(issue, calls, bare, bare_paced)


def bare_broker(port: int, hall: Hall, daemon_password: str, args: argparse.Namespace
                ) -> tuple[list[float], list[float]]:
    """(a) back to back and at (b)'s pace: (latencies, paced latencies)."""
    bare = bare_round_trip(port, hall, daemon_password, args.messages)
    print(f"(a) bare broker round trip       {len(bare):5d} msgs     p50 {ms(pct(bare, 50))}"
          f"  p99 {ms(pct(bare, 99))}", flush=True)
    bare_paced = bare_round_trip(port, hall, daemon_password, args.calls, 1 / args.call_rate)
    print(f"    at (b)'s pace ({args.call_rate:g}/s)   {len(bare_paced):5d} msgs     "
          f"p50 {ms(pct(bare_paced, 50))}  p99 {ms(pct(bare_paced, 99))}", flush=True)
    return bare, bare_paced


def bench_processes(daemon: Any, broker: Any) -> dict[str, int | None]:
    """The processes whose CPU is measured: the daemon (unless in this process), its broker, the bench."""
    processes: dict[str, int | None] = {} if daemon.pid is None else {"daemon": daemon.pid}
    if broker is not None:
        processes["mosquitto"] = broker.pid
    elif daemon.broker_pid is not None:
        processes["broker"] = daemon.broker_pid
    processes["bench" if daemon.pid is not None else "bench + daemon"] = None
    return processes


def hall_load(port: int, hall: Hall, args: argparse.Namespace, sync: str, processes: dict[str, int | None],
              bare: list[float]) -> tuple[IssueResult, CallResult]:
    """(d) issue throughput and (b) paced calls against the daemon (with sync full also the capacity
    and the floor); the client groups' processes join `processes`."""
    with clients(port, hall.passwords, hall.roles, ["display-1"]) as cs, \
            client_groups(port, hall, args.client_procs) as groups:
        for group in groups:
            if not group.local:
                processes[f"clients {len([p for p in processes if p.startswith('clients')]) + 1}"] = group.pid
        broadcast(groups, "login", lambda g: None)
        meter = CpuMeter(processes)
        result = issue_tickets(groups, args.tickets)
        print(f"(d) issue, 8 kiosks, sync {sync:6s} {result.tickets:5d} tickets  "
              f"p50 {ms(pct(result.latencies, 50))}  p99 {ms(pct(result.latencies, 99))}  "
              f"{result.rate:5.0f} tickets/s", flush=True)
        print(f"    cpu: {meter.report()}")
        meter = CpuMeter(processes)
        paced = call_tickets(groups, cs["display-1"], args.calls, rate=args.call_rate)
        empty = f", {paced.empty} found the queue empty" if paced.empty else ""
        print(f"(b) call → display, sync {sync:6s} {len(paced.latencies):5d} calls    "
              f"p50 {ms(pct(paced.latencies, 50))}  p99 {ms(pct(paced.latencies, 99))}", flush=True)
        print(f"    (8 busy windows on random schedules, {args.call_rate:g} calls/s offered, "
              f"{paced.rate:.0f} made{empty}; call_next reply p50 {ms(pct(paced.replies, 50)).strip()})")
        print(f"    cpu: {meter.report()}")
        if sync == "full":
            capacity(groups, cs["display-1"], args, processes, bare)
    return result, paced


def capacity(groups: list[Any], display: Any, args: argparse.Namespace, processes: dict[str, int | None],
             bare: list[float]) -> None:
    """8 windows calling back to back, then window 1 alone (the floor)."""
    meter = CpuMeter(processes)
    rush = call_tickets(groups, display, args.saturated_calls)
    print(f"    capacity: 8 windows back to back, {len(rush.latencies)} calls, {rush.rate:.0f} calls/s, "
          f"p50 {ms(pct(rush.latencies, 50)).strip()}, p99 {ms(pct(rush.latencies, 99)).strip()} "
          f"(8 calls always in flight queue behind each other)")
    print(f"    cpu: {meter.report()}")
    alone = call_tickets(groups, display, ALONE_CALLS, only="window-1")
    print(f"    floor: window 1 alone, {len(alone.latencies)} calls, "
          f"p50 {ms(pct(alone.latencies, 50)).strip()}, p99 {ms(pct(alone.latencies, 99)).strip()} "
          f"((b)/(a) from it: {pct(alone.latencies, 50) / pct(bare, 50):.1f})", flush=True)


def verdicts(issue: dict[str, IssueResult], calls: dict[str, CallResult], bare: list[float],
             bare_paced: list[float]) -> None:
    """(c) and (d) against their targets."""
    for sync, paced in calls.items():
        ratio = pct(paced.latencies, 50) / pct(bare_paced, 50)
        hot = pct(paced.latencies, 50) / pct(bare, 50)
        print(f"(c) (b)/(a) at p50, sync {sync:6s} {ratio:6.1f}          target ≤ {TARGET_RATIO:g}: "
              f"{verdict(ratio <= TARGET_RATIO)}   (against back-to-back (a): {hot:.1f})")
    for sync, result in issue.items():
        p99 = pct(result.latencies, 99) * 1000
        ok = result.rate >= TARGET_RATE and p99 <= TARGET_ISSUE_P99_MS
        print(f"(d) sync {sync:6s}                 {result.rate:6.0f} tickets/s, p99 {p99:.1f} ms   "
              f"target ≥ {TARGET_RATE:g}/s and p99 ≤ {TARGET_ISSUE_P99_MS:g} ms: {verdict(ok)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=2000, help="(a) messages (default %(default)s)")
    p.add_argument("--calls", type=int, default=1000, help="(b) calls over the 8 windows (default %(default)s)")
    p.add_argument("--call-rate", type=float, default=80.0,
                   help="(b) calls per second offered by the 8 windows together (default %(default)s)")
    p.add_argument("--saturated-calls", type=int, default=500,
                   help="(b) capacity run: calls over the 8 windows back to back (default %(default)s)")
    p.add_argument("--tickets", type=int, default=2000,
                   help="(d) tickets over the 8 kiosks, per sync mode (default %(default)s)")
    p.add_argument("--mosquitto", action="store_true", help="also run against a private Mosquitto")
    p.add_argument("--mosquitto-only", action="store_true", help="run against a private Mosquitto only")
    p.add_argument("--mosquitto-nodelay", action="store_true",
                   help="add `set_tcp_nodelay true` to the generated Mosquitto conf (implies --mosquitto)")
    p.add_argument("--in-process", action="store_true", help="run the daemon in this process")
    p.add_argument("--client-procs", type=int, default=2, metavar="N",
                   help="worker processes for the 8 kiosk and 8 window clients; 0: threads of this process "
                        "(default %(default)s; the display client always runs here)")
    p.add_argument("--stock", action="store_true",
                   help="only (e): call → display with stock paho-mqtt clients (Nagle, QoS 1), as an integrator "
                        "writes them")
    p.add_argument("--stock-calls", type=int, default=200, help="(e) calls per variant (default %(default)s)")
    p.add_argument("--dir", help="where to make the temporary halls (default: the system temp dir)")
    p.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    p.add_argument("--mqtt-url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.mqtt_url)
    args.mosquitto = args.mosquitto or args.mosquitto_nodelay or args.mosquitto_only
    if args.tickets < (args.calls + args.saturated_calls + ALONE_CALLS) * 1.2:
        p.error("--tickets must be at least 1.2 × the calls of (b) (--calls, --saturated-calls and the "
                f"{ALONE_CALLS} alone): (b) calls the tickets (d) issued")
    if args.mosquitto and not os.access(MOSQUITTO, os.X_OK):
        p.error(f"--mosquitto: {MOSQUITTO} not found")
    work = Path(tempfile.mkdtemp(prefix="hall-mqtt-bench-", dir=args.dir))
    started = time.perf_counter()
    print(f"hall bus bench: loopback, hall {HALL!r}, SQLite (WAL) under {work}, the daemon "
          f"{'in this process' if args.in_process else 'in a child process'}, kiosk and window clients in "
          f"{args.client_procs or 'no'} worker process(es), {os.cpu_count()} CPUs")
    try:
        if args.stock:
            bench_stock(work, args)
        elif not args.mosquitto_only:
            bench_broker("embedded broker (amqtt, the daemon's child process)", work, args, mosquitto=False)
        if args.mosquitto:
            nodelay = " + set_tcp_nodelay" if args.mosquitto_nodelay else ""
            bench_broker(f"Mosquitto (generated password file + ACL{nodelay})", work, args, mosquitto=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ndone in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
