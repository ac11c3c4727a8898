"""City view at scale (issue 20): N simulated halls → a real Mosquitto → a real `hall-city` → its 大屏 SSE.

Each simulated hall is a real paho client logging in with its own city account (`hallctl city-credentials`'
store, CityCredentialStore: one account per hall, written once at the end; the passwd/ACL/conf of
write_city_mosquitto_config, tuned as hall-city --demo does, plus `max_connections -1`; Mosquitto started by
the bench with the fd limit raised to the hard limit). A hall publishes a retained `online`,
a retained contract-shaped `summary` every `--interval` s (waiting counts that move; `counts.issued` is the
hall's publish sequence number, which the 大屏's tile shows as `issued`), and a QoS 1 `alert/bad_rating`
(a 差评 with a fresh uuid) every `--alert-every` s, first at a random phase. The halls are spread over
`--workers` processes, each driving its clients from one selector loop (paho's external-loop API: one
thread per client would not fit 5,000 halls).

An aiohttp SSE client on the city page (`/events`) records when each hall's `issued` first reaches each
value and when each 差评 id first appears. Latency = that wall time − the wall time the worker published it
(same machine, `time.time()`); a summary overtaken by its successor before a push counts as delivered when
the page shows a later one (the page shows the latest state). Nothing lost: every 差评 id on the page once
(hall-city's /healthz `duplicates` 0), every hall's last summary on the page, and hall-city's message
counter = messages published. Baseline in the same run: a paho publisher → Mosquitto → paho subscriber hop
(probe account, 5 messages/s, under the same load). CPU (cores, over the publishing window) and peak RSS of
hall-city and Mosquitto from /proc.

Accounts use 101 PBKDF2 iterations (Mosquitto's own default) instead of the store's 20,000: hashing 5,000
passwords at 20,000 would take the bench minutes and the broker as long to check them at connect.
Loopback only, ephemeral ports, a temporary folder; it kills only the processes it started, by pid.
Run: ``.venv/bin/python bench/city.py [--halls 500,5000] [--seconds 30]``. As a soak of hall-city:
``--halls 50 --seconds 1800``: it also prints hall-city's RSS start → end, errors logged and exit at SIGTERM,
and exits 1 unless every run met its target and hall-city survived (tests/test_city_soak.py: the short form).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import heapq
import json
import multiprocessing
import os
import random
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hall_city.demo import DISTRICT  # noqa: E402
from hall_controller.bus.city_accounts import (  # noqa: E402
    HALL_CITY,
    CityCredentialStore,
    hall_username,
    write_city_mosquitto_config,
)
from hall_controller.bus.credentials import write_private  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
TZ = ZoneInfo("Asia/Shanghai")
PROBE = "bench-probe"
OBSERVER = "bench-observer"      # the probe's subscriber: a read-only service account like hall-city's
SERVICES = (("A", "法律咨询", "A"), ("B", "法律援助", "B"), ("C", "公证", "C"))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds == seconds else "n/a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# ---------------------------------------------------------------------------------------------- the halls


def summary_payload(hall: str, seq: int, rng: random.Random) -> bytes:
    """A busy hall's summary (the contract's schema); `counts.issued` = seq so the page's tile shows it."""
    at = datetime.now(TZ)
    services = []
    for code, name, prefix in SERVICES:
        waiting = rng.randrange(0, 15)
        services.append({"code": code, "name": name, "prefix": prefix, "waiting": waiting,
                         "oldest_wait_s": 60.0 * rng.randrange(1, 25) if waiting else None})
    return json.dumps({
        "schema": 1, "hall": {"id": hall, "name": f"大厅 {hall}", "district": DISTRICT, "code": hall[-4:]},
        "at": at.isoformat(), "seq": seq, "open": True, "windows": {"staffed": rng.randrange(2, 7), "total": 8},
        "services": services, "wait_today": {"median_s": 300.0 + rng.randrange(300), "p90_s": 1200.0},
        "counts": {"issued": seq, "served": max(0, seq - 12), "left": 2, "no_show": 1},
        "ratings": {"count": 40, "good": 38, "bad": 1, "bad_open": 0}, "devices_offline": [],
        "outbox": {"pending": 0, "dead": 0}}, ensure_ascii=False).encode()


def alert_payload(hall: str, alert_id: str) -> bytes:
    now = datetime.now(TZ)
    return json.dumps({
        "id": alert_id, "type": "bad_rating", "at": now.isoformat(), "hall": {"id": hall, "district": DISTRICT},
        "ticket": {"number": "B017", "service": "B", "window": 3}, "score": 1, "level": "很不满意",
        "raised_at": now.isoformat(), "contact_by": (now + timedelta(hours=1)).isoformat(),
        "fix_by": (now + timedelta(hours=72)).isoformat()}, ensure_ascii=False).encode()


class SimHall:
    def __init__(self, hall: str, password: str, port: int) -> None:
        self.hall = hall
        self.prefix = f"city/{DISTRICT}/{hall}"
        username = hall_username(DISTRICT, hall)
        self.connected = False
        self.refused = False
        self.acked = 0
        self.seq = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username, password)
        self.client.will_set(f"{self.prefix}/online", json.dumps({"online": False, "at": None, "will": True}),
                             qos=1, retain=True)
        self.client.max_inflight_messages_set(50)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=30)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.refused = True
            return
        self.connected = True
        client.publish(f"{self.prefix}/online", json.dumps({"online": True, "at": datetime.now(TZ).isoformat(),
                                                             "version": "bench"}), qos=1, retain=True)

    def _on_publish(self, client: Any, userdata: Any, mid: Any, reason: Any, properties: Any) -> None:
        self.acked += 1


class Worker:
    """Some halls in one process, driven by one selector loop."""

    def __init__(self, port: int, halls: list[tuple[str, str]], seed: int) -> None:
        self.sel = selectors.DefaultSelector()
        self.rng = random.Random(seed)
        self.halls: list[SimHall] = []
        self.errors = 0
        self.touched: set[SimHall] = set()
        for hall, password in halls:
            try:
                sim = SimHall(hall, password, port)
            except OSError:
                self.errors += 1
                continue
            self.halls.append(sim)
            self.touched.add(sim)
            self.sel.register(sim.client.socket(), selectors.EVENT_READ, sim)
        self.last_misc = 0.0

    def step(self, timeout: float) -> None:
        """Read what arrived, write what is queued (only for the clients touched: scanning 1,250 clients
        every 20 ms would eat the CPU hall-city needs)."""
        for key, _ in self.sel.select(timeout):
            sim: SimHall = key.data
            self.touched.add(sim)
            if sim.client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                self._drop(sim)
        touched, self.touched = self.touched, set()
        for sim in touched:
            if sim.client.want_write():
                sim.client.loop_write()
                if sim.client.want_write():
                    self.touched.add(sim)       # the socket was full: again next step
        now = time.monotonic()
        if now - self.last_misc >= 1.0:
            self.last_misc = now
            for sim in self.halls:
                sim.client.loop_misc()
                if sim.client.want_write():
                    self.touched.add(sim)       # a keepalive ping

    def _drop(self, sim: SimHall) -> None:
        sim.connected = False
        sock = sim.client.socket()
        if sock is not None:
            try:
                self.sel.unregister(sock)
            except (KeyError, ValueError):
                pass

    def run(self, start: float, seconds: float, interval: float, alert_every: float
            ) -> tuple[dict[str, list[tuple[int, float]]], list[tuple[str, float]], int]:
        sent: dict[str, list[tuple[int, float]]] = {s.hall: [] for s in self.halls}
        alerts: list[tuple[str, float]] = []
        due: list[tuple[float, int, str]] = []
        for i in range(len(self.halls)):
            heapq.heappush(due, (start + self.rng.random() * interval, i, "summary"))
            heapq.heappush(due, (start + self.rng.random() * alert_every, i, "alert"))
        published = 0
        end = start + seconds
        while True:
            now = time.time()
            if now >= end:
                break
            while due and due[0][0] <= now:
                when, i, kind = heapq.heappop(due)
                sim = self.halls[i]
                if kind == "summary":
                    heapq.heappush(due, (when + interval, i, kind))
                    if sim.connected:
                        sim.seq += 1
                        sim.client.publish(f"{sim.prefix}/summary", summary_payload(sim.hall, sim.seq, self.rng),
                                           qos=1, retain=True)
                        sent[sim.hall].append((sim.seq, time.time()))
                        self.touched.add(sim)
                        published += 1
                else:
                    heapq.heappush(due, (when + alert_every, i, kind))
                    if sim.connected:
                        alert_id = str(uuid.uuid4())
                        sim.client.publish(f"{sim.prefix}/alert/bad_rating", alert_payload(sim.hall, alert_id),
                                           qos=1, retain=False)
                        alerts.append((alert_id, time.time()))
                        self.touched.add(sim)
                        published += 1
            self.step(max(0.0, min(0.02, (due[0][0] - time.time()) if due else 0.02)))
        return sent, alerts, published


def worker_main(conn: Any, port: int, halls: list[tuple[str, str]], seed: int, interval: float,
                alert_every: float) -> None:
    """Entry point of a worker process: connect, report, wait for the start time, publish, report."""
    raise_nofile()
    worker = Worker(port, halls, seed)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(s.connected or s.refused for s in worker.halls):
        worker.step(0.05)
    conn.send(("connected", sum(s.connected for s in worker.halls), len(halls)))
    start, seconds = conn.recv()
    while time.time() < start:
        worker.step(0.02)
    sent, alerts, published = worker.run(start, seconds, interval, alert_every)
    online = sum(1 for s in worker.halls if s.seq or s.connected)
    drain = time.monotonic() + 10
    while time.monotonic() < drain and (worker.touched or any(s.client.want_write() for s in worker.halls)):
        worker.step(0.02)
    for _ in range(50):
        worker.step(0.02)
    acked = sum(s.acked for s in worker.halls)
    conn.send(("done", sent, alerts, published + online, acked, sum(not s.connected for s in worker.halls)))
    conn.recv()         # the bench has what it needs from the page: disconnect
    for sim in worker.halls:
        sim.client.disconnect()
        sim.client.loop_write()


# ---------------------------------------------------------------------------------------------- the page


class PageWatcher:
    """The 大屏's SSE stream: when each hall's `issued` changes and when each 差评 id first shows."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.issued: dict[str, list[tuple[int, float]]] = {}
        self.ratings: dict[str, float] = {}
        self.rating_rows_max = 0
        self.events = 0
        self.parse_s = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self.thread.start()

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self.url + "events") as resp:
            buf = b""
            while not self.stop.is_set():
                try:
                    chunk = await asyncio.wait_for(resp.content.readany(), 0.5)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buf += chunk
                while (end := buf.find(b"\n\n")) >= 0:
                    message, buf = buf[:end], buf[end + 2:]
                    self._message(message, time.time())

    def _message(self, message: bytes, at: float) -> None:
        data = next((line[6:] for line in message.split(b"\n") if line.startswith(b"data: ")), None)
        if data is None:
            return
        started = time.perf_counter()
        view = orjson.loads(data)
        self.events += 1
        for tile in view.get("tiles") or []:
            issued = tile.get("issued")
            if issued is None:
                continue
            seen = self.issued.setdefault(tile["key"], [])
            if not seen or seen[-1][0] != issued:
                seen.append((issued, at))
        rows = view.get("ratings") or []
        self.rating_rows_max = max(self.rating_rows_max, len(rows))
        for row in rows:
            self.ratings.setdefault(row["id"], at)
        self.parse_s += time.perf_counter() - started

    def shown(self, key: str, seq: int) -> float | None:
        """When the page first showed this hall at `seq` or later."""
        seen = self.issued.get(key) or []
        values = [v for v, _ in seen]
        i = bisect.bisect_left(values, seq)
        return seen[i][1] if i < len(seen) else None


# ---------------------------------------------------------------------------------------------- baseline


class Probe:
    """A paho publisher → Mosquitto → paho subscriber hop on the same broker, under the load."""

    def __init__(self, port: int, password: str, observer_password: str) -> None:
        self.latencies: list[float] = []
        self.topic = f"city/{DISTRICT}/{PROBE}/alert/probe"
        self.sent = 0
        self.sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-probe-sub")
        self.sub.username_pw_set(OBSERVER, observer_password)
        self.sub.on_message = lambda c, u, m: self.latencies.append(time.time() - json.loads(m.payload)["sent"])
        self.sub.on_connect = lambda c, u, f, r, p: c.subscribe(self.topic, qos=1)
        self.sub.connect("127.0.0.1", port)
        self.sub.loop_start()
        self.pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=hall_username(DISTRICT, PROBE))
        self.pub.username_pw_set(hall_username(DISTRICT, PROBE), password)
        self.pub.on_publish = lambda c, u, mid, r, p: self._acked()
        self.pub.connect("127.0.0.1", port)
        self.pub.loop_start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            # an alert-shaped message (hall-city takes it as an unknown alert type): the same size class
            self.pub.publish(self.topic, json.dumps({"id": str(uuid.uuid4()), "type": "probe", "sent": time.time(),
                                                     "pad": "x" * 800}), qos=1)


    def _acked(self) -> None:
        self.sent += 1          # accepted by the broker: hall-city must get it too

    def close(self) -> None:
        self.stop.set()
        time.sleep(0.5)
        for client in (self.pub, self.sub):
            client.disconnect()
            client.loop_stop()


# ---------------------------------------------------------------------------------------------- one run


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return dict(json.loads(reply.read()))


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def start_hall_city(work: Path, port: int, password: str) -> tuple[subprocess.Popen[str], str]:
    write_private(work / "hall-city-password", password + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hall_city.cli", "--mqtt-url", f"mqtt://{HALL_CITY}@127.0.0.1:{port}",
         "--password-file", str(work / "hall-city-password"), "--listen", "127.0.0.1:0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=(work / "hall-city.log").open("w"), text=True, preexec_fn=raise_nofile)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("hall-city serving "):
            url = line.split()[-1].rstrip("/") + "/"
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, url
    raise RuntimeError("hall-city exited: see " + str(work / "hall-city.log"))


class Sampler:
    """RSS of each process: the first sample, the last and the peak (a soak judges start → end)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def sample(self) -> None:
        for name, pid in self.pids.items():
            rss = rss_mb(pid)
            self.first.setdefault(name, rss)
            self.last[name] = rss
            self.peak[name] = max(self.peak[name], rss)


def soak_verdict(city: subprocess.Popen[str], log: Path, sampler: Sampler) -> bool:
    """hall-city as a soak sees it: alive through the run, no error logged, a clean exit at SIGTERM,
    RSS start → end."""
    alive = city.poll() is None
    city.terminate()
    try:
        code: int | None = city.wait(15)
    except subprocess.TimeoutExpired:
        code = None
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    errors = sum(1 for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback"))
    print(f"hall-city soak: alive through the run {'yes' if alive else 'NO'}, errors logged {errors}, exit at stop "
          f"{code}, RSS start → end {sampler.first.get('hall-city', 0):.0f} → {sampler.last.get('hall-city', 0):.0f} MB",
          flush=True)
    return alive and errors == 0 and code == 0


class BulkStore(CityCredentialStore):
    """The city account store, written once after adding thousands of halls (each `add` rewrites the
    whole file: fine for `hallctl city-credentials add`, quadratic for a bench of 5,000)."""

    deferred = True

    def _write(self, entries: dict[str, Any]) -> None:
        if not self.deferred:
            super()._write(entries)
            return
        self._entries, self._stamp = entries, self._file_stamp()

    def flush(self) -> None:
        self.deferred = False
        self._write(dict(self._entries))


def city_broker(work: Path, port: int, halls: list[str], passwords: dict[str, str]) -> Path:
    """The city's accounts (one per hall, hall-city's, the probe observer's) and its Mosquitto config as
    `hallctl city-credentials mosquitto` writes it, tuned as hall-city --demo does, with no connection limit."""
    store = BulkStore(work / "city-credentials", iterations=101)
    for service in (HALL_CITY, OBSERVER):
        passwords[service] = store.add_service(service)[1]
    for hall in halls:
        account, password = store.add_hall(hall, DISTRICT)
        passwords[account.username] = password
    store.flush()
    files = write_city_mosquitto_config(work / "mosquitto", store, port=port, bind_address="127.0.0.1")
    text = files.conf_file.read_text().replace("persistence true", "persistence false")
    if os.geteuid() == 0:
        text += "user root\n"     # as root mosquitto drops to `mosquitto`, who cannot read our 0600 files
    write_private(files.conf_file, text + "max_connections -1\n")
    return files.conf_file


def run_one(n: int, args: argparse.Namespace) -> bool:
    work = Path(tempfile.mkdtemp(prefix=f"city-bench-{n}-"))
    procs: list[subprocess.Popen[Any]] = []
    workers: list[tuple[Any, Any]] = []
    print(f"== {n} halls, {args.seconds:.0f} s, a summary every {args.interval:g} s and a 差评 every "
          f"{args.alert_every:g} s per hall, {args.workers} worker processes ==", flush=True)
    try:
        halls = [f"h{i:05d}" for i in range(n)]
        port = free_port()
        t = time.monotonic()
        conf = city_broker(work, port, [*halls, PROBE], passwords := {})
        broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=(work / "mosquitto.log").open("w"), preexec_fn=raise_nofile)
        procs.append(broker)
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() is None, 10, "mosquitto")
        city, url = start_hall_city(work, port, passwords[HALL_CITY])
        procs.append(city)
        wait_for(lambda: get_json(url + "healthz")["broker"], 20, "hall-city's broker connection")
        page = PageWatcher(url)
        page.start()
        print(f"accounts + broker + hall-city ready in {time.monotonic() - t:.1f} s", flush=True)

        t = time.monotonic()
        connected = start_workers(workers, port, halls, passwords, args)
        print(f"halls connected: {connected}/{n} in {time.monotonic() - t:.1f} s", flush=True)
        wait_for(lambda: get_json(url + "healthz")["halls"] >= connected, 60,
                 "hall-city to see every hall online")

        sampler = Sampler({"hall-city": city.pid, "mosquitto": broker.pid,
                           **{f"worker{i}": proc.pid for i, (proc, _) in enumerate(workers)}})
        probe = Probe(port, passwords[hall_username(DISTRICT, PROBE)], passwords[OBSERVER])
        start = time.time() + 1.0
        for _, conn in workers:
            conn.send((start, args.seconds))
        cpu0 = {name: cpu_seconds(pid) for name, pid in sampler.pids.items()}
        while time.time() < start:
            time.sleep(0.05)
        probe.thread.start()
        w0 = time.monotonic()
        while time.time() < start + args.seconds:
            sampler.sample()
            time.sleep(0.5)
        window = time.monotonic() - w0
        cpu = {name: (cpu_seconds(pid) - cpu0[name]) / window for name, pid in sampler.pids.items()}
        probe.close()

        sent, alerts, published, acked, dropped = collect(workers)
        # the page catches up: every hall's last summary and every 差评 on it, or 30 s
        last = {h: v[-1][0] for h, v in sent.items() if v}
        key = f"{DISTRICT}/" + "{}"

        def caught_up() -> bool:
            return all(page.shown(key.format(h), seq) is not None for h, seq in last.items()) and \
                all(a in page.ratings for a, _ in alerts) and \
                get_json(url + "healthz")["messages"] >= published + probe.sent

        try:
            wait_for(caught_up, 30, "the page to show every last summary and 差评")
        except RuntimeError as exc:
            print(f"!! {exc}", flush=True)
        sampler.sample()
        health = get_json(url + "healthz")
        page.stop.set()
        met = report(n, sent, alerts, published, acked, dropped, page, health, probe, cpu, sampler, key)
        return soak_verdict(city, work / "hall-city.log", sampler) and met
    finally:
        stop_all(workers, procs)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def start_workers(workers: list[tuple[Any, Any]], port: int, halls: list[str], passwords: dict[str, str],
                  args: argparse.Namespace) -> int:
    """The worker processes, each with its share of the halls; returns how many halls connected."""
    ctx = multiprocessing.get_context("spawn")
    for i in range(args.workers):
        part = [(h, passwords[hall_username(DISTRICT, h)]) for h in halls[i::args.workers]]
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(theirs, port, part, i, args.interval, args.alert_every),
                           daemon=True)
        proc.start()
        workers.append((proc, mine))
    connected = 0
    for _, conn in workers:
        if not conn.poll(180):
            raise RuntimeError("a worker did not connect its halls within 180 s")
        connected += conn.recv()[1]
    return connected


def collect(workers: list[tuple[Any, Any]]
            ) -> tuple[dict[str, list[tuple[int, float]]], list[tuple[str, float]], int, int, int]:
    """What the workers published (per hall: seq and wall time), their 差评, and the counts."""
    sent: dict[str, list[tuple[int, float]]] = {}
    alerts: list[tuple[str, float]] = []
    published = acked = dropped = 0
    for _, conn in workers:
        if not conn.poll(60):
            raise RuntimeError("a worker did not finish")
        _, s, a, p, k, d = conn.recv()
        sent.update(s)
        alerts += a
        published, acked, dropped = published + p, acked + k, dropped + d
    return sent, alerts, published, acked, dropped


def stop_all(workers: list[tuple[Any, Any]], procs: list[subprocess.Popen[Any]]) -> None:
    """Our children only, by their handles: the workers (disconnect first), hall-city, Mosquitto."""
    for _, conn in workers:
        try:
            conn.send("bye")
        except OSError:
            pass
    for proc, _ in workers:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    for child in reversed(procs):
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def report(n: int, sent: dict[str, list[tuple[int, float]]], alerts: list[tuple[str, float]], published: int,
           acked: int, dropped: int, page: PageWatcher, health: dict[str, Any], probe: Probe,
           cpu: dict[str, float], sampler: Sampler, key: str) -> bool:
    lat: list[float] = []
    missing = 0
    for hall, values in sent.items():
        for seq, at in values:
            shown = page.shown(key.format(hall), seq)
            if shown is None:
                missing += 1
            else:
                lat.append(max(0.0, shown - at))
    alert_lat = [page.ratings[a] - at for a, at in alerts if a in page.ratings]
    lost_alerts = sum(1 for a, _ in alerts if a not in page.ratings)
    summaries = sum(len(v) for v in sent.values())
    last_ok = sum(1 for h, v in sent.items() if v and page.shown(key.format(h), v[-1][0]) is not None)
    target = 1.0 if n <= 500 else 2.0
    worst = pct(lat + alert_lat, 0.99)
    print(f"published: {summaries} summaries, {len(alerts)} 差评 alerts, {published} messages incl. online; "
          f"PUBACKed {acked}; halls disconnected during the run {dropped}")
    expected = published + probe.sent
    print(f"hall-city /healthz: messages {health['messages']} (of {expected} published, {probe.sent} of them the "
          f"probe's), halls "
          f"{health['halls']}, malformed {health['malformed']}, duplicates {health['duplicates']}, "
          f"pushes {health['pushes']}")
    print(f"page: {page.events} SSE events, parse {page.parse_s:.1f} s; last summary shown for {last_ok}/"
          f"{len([v for v in sent.values() if v])} halls; summaries never reached {missing}; "
          f"差评 on the page {len(alerts) - lost_alerts}/{len(alerts)} (rows up to {page.rating_rows_max})")
    print(f"summary publish → page: p50 {ms(pct(lat, 0.5))}  p99 {ms(pct(lat, 0.99))}  max {ms(max(lat or [0]))}"
          f"  (n={len(lat)})")
    print(f"差评 publish → page:     p50 {ms(pct(alert_lat, 0.5))}  p99 {ms(pct(alert_lat, 0.99))}"
          f"  (n={len(alert_lat)})")
    print(f"bare hop paho → Mosquitto → paho (same broker, same load): p50 {ms(pct(probe.latencies, 0.5))}"
          f"  p99 {ms(pct(probe.latencies, 0.99))}  (n={len(probe.latencies)})")
    print(f"hall-city: CPU {cpu['hall-city']:.2f} cores, peak RSS {sampler.peak['hall-city']:.0f} MB; "
          f"mosquitto: CPU {cpu['mosquitto']:.2f} cores, peak RSS {sampler.peak['mosquitto']:.0f} MB; "
          f"the simulated halls' workers: CPU {sum(v for k, v in cpu.items() if k.startswith('worker')):.2f} cores "
          f"(of {os.cpu_count()})")
    lost = missing or lost_alerts or health["duplicates"] or health["messages"] < expected
    ok = worst <= target and not lost
    print(f"target p99 ≤ {target:g} s, nothing lost: {'MET' if ok else 'NOT MET'} "
          f"(p99 over summaries and 差评 {ms(worst)}; lost {'none' if not lost else 'SOME'})", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--halls", default="500,5000", help="hall counts, comma separated (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="publishing window per run")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between a hall's summaries")
    parser.add_argument("--alert-every", type=float, default=60.0, help="seconds between a hall's 差评")
    parser.add_argument("--workers", type=int, default=4, help="processes hosting the simulated halls")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args(argv)
    if not Path(MOSQUITTO).exists():
        print(f"{MOSQUITTO} missing: apt-get install mosquitto", file=sys.stderr)
        return 2
    raise_nofile()
    print(f"machine: {os.cpu_count()} CPUs, fd limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}", flush=True)
    failed = 0
    for n in (int(x) for x in args.halls.split(",")):
        try:
            failed += not run_one(n, args)
        except RuntimeError as exc:
            print(f"!! {n} halls: {exc}", flush=True)
            failed += 1
    return 1 if failed else 0      # 0 only when every run met its target and hall-city survived it (a soak)


if __name__ == "__main__":
    raise SystemExit(main())
