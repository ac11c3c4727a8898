"""The visitor's phone pages under load: 500 and 2,000 open pages (SSE) on hall-web, a call at window 1,
and how long until every page has it — beside the bare MQTT hop on the same broker, in the same run.

Set-up (loopback, ephemeral ports, a temporary hall folder; everything started is stopped by pid):
the sample hall without devices, the daemon as `hallctl run` (its embedded broker; `--mosquitto`: a
private Mosquitto from the generated password file and ACL, as a production hall runs), hall-web as
`hall-web --config …` (its per-address limits lifted: every page comes from 127.0.0.1), window 1
logged in, `--tickets` tickets taken at kiosk-1 for 法律咨询.

Per phase (`--pages`, default 500 and 2000): that many EventSource connections to `/t/{token}/events`
(plain sockets read by one thread of this process over epoll, spread evenly over the tickets: a
hall where several phones follow each number), each page's first state awaited; then `--calls` calls
(`call_next`, finishing the previous visitor) every `--interval` s. For each call:

- call → page: from just before `request("call_next")` to each page receiving the push that shows the
  call (its line `A012 → 1号窗口` among the recent calls, or its own 请到1号窗口), per page;
- event → page: from the `ticket_called` event reaching a plain MQTT subscriber of the same broker (an
  admin client of the bench) to each page: hall-web's own share (its MQTT hop, the fan-out, the SSE
  write, and this process reading the sockets: a few µs each);
- bare hop: a paho publisher → the broker → a paho subscriber (kiosk-2's own status topic, read by the
  admin client), one message in flight, 3 before each call, event-sized;
- the first page: event → the first page of each call to have it (the fixed part, before the fan-out);
- the page hop over the bare hop at p50: (bare + event→page) / bare;
- hall-web's CPU (cores, over the calls), RSS after the pages opened and at the end, and how many
  `ticket_status` it asked the daemon per call (each ticket re-asked once per event that concerns it).

Run: ``.venv/bin/python bench/phone.py [--pages 500 2000] [--calls 40] [--tickets 200] [--mosquitto]``.
Targets (issue 19): at 500 pages p99 ≤ 100 ms and ≤ 5× the bare hop at p50, RSS ≤ 120 MiB; at 2,000
pages p99 ≤ 500 ms.
"""

from __future__ import annotations

import argparse
import json
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402

from hall_controller.bus.client import DirectWriteClient, HallClient, set_nodelay  # noqa: E402
from hall_controller.bus.credentials import DAEMON_CLIENT_ID, CredentialStore  # noqa: E402
from hall_controller.bus.mosquitto import write_mosquitto_config  # noqa: E402
from hall_controller.config import sample_config_text  # noqa: E402
from hall_controller.setup_hall import init_hall  # noqa: E402

HALL = "demo"
MOSQUITTO = "/usr/sbin/mosquitto"
EVENT_SIZE = 1500          # a ticket_called event is about this size
PROBES_PER_CALL = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def wait_line(proc: subprocess.Popen[str], suffix: str, timeout: float, what: str) -> list[str]:
    """Read `proc`'s stderr until a line ends with `suffix` (the rest keeps being drained in a thread)."""
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip())
            if line.rstrip().endswith(suffix):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout):
        proc.kill()
        raise RuntimeError(f"{what} not ready:\n" + "\n".join(lines[-20:]))
    return lines


# ---------------------------------------------------------------------------------------- the hall


@dataclass
class Hall:
    directory: Path
    config: Path
    passwords: dict[str, str]
    mqtt_port: int
    web_port: int
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def stop(self) -> None:
        for name in ("hall-web", "daemon", "mosquitto"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def start_hall(directory: Path, mosquitto: bool) -> Hall:
    data = yaml.safe_load(sample_config_text())
    data["devices"] = []
    for window in data["windows"]:
        window["devices"] = []
    mqtt_port, web_port = free_port(), free_port()
    data["web"]["listen"] = f"127.0.0.1:{web_port}"
    data["mqtt"] = {"listen": f"127.0.0.1:{mqtt_port}"}
    config = directory / "hall.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    init_hall(config, quiet=True)
    passwords = yaml.safe_load((directory / "client-passwords.yaml").read_text(encoding="utf-8"))
    hall = Hall(directory, config, passwords, mqtt_port, web_port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        run = [sys.executable, "-m", "hall_controller.cli", "run", "--config", str(config)]
        if mosquitto:
            store = CredentialStore(directory / "credentials.yaml")
            daemon_password = store.add_or_reset(DAEMON_CLIENT_ID, "daemon")
            files = write_mosquitto_config(directory / "mosquitto", HALL, store, port=mqtt_port, bind_address="127.0.0.1")
            conf = files.conf_file.read_text() + ("user root\n" if os.geteuid() == 0 else "")
            (directory / "mosquitto" / "bench.conf").write_text(conf)
            hall.procs["mosquitto"] = subprocess.Popen([MOSQUITTO, "-c", str(directory / "mosquitto" / "bench.conf")],
                                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
            time.sleep(0.5)
            run += ["--mqtt-url", f"mqtt://{DAEMON_CLIENT_ID}:{daemon_password}@127.0.0.1:{mqtt_port}"]
        else:
            run += ["--mqtt-listen", f"127.0.0.1:{mqtt_port}"]
        hall.procs["daemon"] = subprocess.Popen(run, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE, text=True, env=env)
        wait_line(hall.procs["daemon"], ": ready", 60, "the daemon")
        hall.procs["hall-web"] = subprocess.Popen(
            [sys.executable, "-m", "hall_web.cli", "--config", str(config), "--mqtt-url", f"mqtt://127.0.0.1:{mqtt_port}",
             "--listen", f"127.0.0.1:{web_port}", "--lookup-rate", "1000000", "--lookup-burst", "100000",
             "--max-streams-per-address", "100000", "--log-level", "WARNING"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert hall.procs["hall-web"].stdout is not None
        if not hall.procs["hall-web"].stdout.readline().startswith("hall-web serving"):
            raise RuntimeError("hall-web did not start")
    except BaseException:
        hall.stop()
        raise
    return hall


def client(hall: Hall, client_id: str, role: str, window: int | None = None) -> HallClient:
    c = HallClient(client_id, hall.passwords[client_id], "127.0.0.1", hall.mqtt_port, HALL, role=role, window=window)
    c.connect(timeout=10)
    return c


# ---------------------------------------------------------------------------------------- the bus side


class Watcher:
    """A plain paho subscriber (the admin account): when each ticket_called event reached the broker's
    subscribers, and the bare hop's probes from kiosk-2's status topic."""

    def __init__(self, hall: Hall) -> None:
        self.called: dict[str, float] = {}
        self.probe = threading.Event()
        self.expected = -1
        topic_status = f"hall/{HALL}/client/kiosk-2/status"
        self.sub = self._connect(hall, "admin", [(f"hall/{HALL}/event/ticket_called", 0), (topic_status, 0)])
        self.pub = self._connect(hall, "kiosk-2", [])
        self.topic = topic_status
        self.rng = random.Random(19)

    def _connect(self, hall: Hall, user: str, topics: list[tuple[str, int]]) -> mqtt.Client:
        c = DirectWriteClient(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}", protocol=mqtt.MQTTv311)
        c.username_pw_set(user, hall.passwords[user])
        c.on_socket_open = set_nodelay
        subscribed = threading.Event()
        c.on_subscribe = lambda *_: subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", hall.mqtt_port, keepalive=30)
        c.loop_start()
        deadline = time.monotonic() + 10
        while not c.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{user} did not connect")
            time.sleep(0.01)
        if topics:
            c.subscribe(topics)
            if not subscribed.wait(5):
                raise RuntimeError("no SUBACK")
        return c

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if message.topic.endswith("/ticket_called"):
            self.called[json.loads(message.payload)["ticket"]["number"]] = now
        elif json.loads(message.payload).get("probe") == self.expected:
            self.probe.set()

    def bare_hops(self, count: int) -> list[float]:
        hops = []
        for _ in range(count):
            self.expected = self.rng.randrange(1 << 30)
            self.probe.clear()
            payload = json.dumps({"state": "online", "probe": self.expected, "pad": "x" * EVENT_SIZE})
            start = time.perf_counter()
            self.pub.publish(self.topic, payload, qos=0)
            if not self.probe.wait(5):
                raise RuntimeError("a probe was lost")
            hops.append(time.perf_counter() - start)
            time.sleep(0.02)
        return hops

    def close(self) -> None:
        for c in (self.pub, self.sub):
            c.disconnect()
            c.loop_stop()


# ---------------------------------------------------------------------------------------- the pages


class Pages:
    """`count` EventSource connections read by one thread over epoll with plain sockets (aiohttp's
    client costs ~20 µs a message, which at 2,000 pages would measure this process, not hall-web);
    for the call being measured, when each page first received the bytes holding `target`."""

    def __init__(self, url: str, tokens: list[str], count: int) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.paths = [f"/t/{tokens[i % len(tokens)]}/events" for i in range(count)]
        self.target: bytes | None = None
        self.got: list[float | None] = [None] * count
        self.opened = 0
        self.failed: list[str] = []
        self.selector = selectors.DefaultSelector()
        self.stopped = False
        self.sockets: list[socket.socket] = []
        for i, path in enumerate(self.paths):
            sock = socket.create_connection(self.address, timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n"
                         "Accept: text/event-stream\r\n\r\n".encode())
            sock.setblocking(False)
            self.sockets.append(sock)
            self.selector.register(sock, selectors.EVENT_READ, [i, True, b""])   # index, waiting for the first state, tail
            if i % 100 == 99:
                time.sleep(0.05)         # as phones come, not a SYN flood
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopped:
            for key, _ in self.selector.select(0.1):
                now = time.perf_counter()
                page = key.data
                try:
                    data = key.fileobj.recv(262144)       # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data, page[1] = b"", False
                    self.failed.append(type(exc).__name__)
                if not data:
                    self.selector.unregister(key.fileobj)
                    self.failed.append("closed")
                    continue
                if page[1] and b"event: state" in data:
                    page[1] = False
                    self.opened += 1
                target = self.target
                if target is not None and self.got[page[0]] is None and target in page[2] + data:
                    self.got[page[0]] = now
                page[2] = data[-64:]

    def arm(self, target: bytes) -> None:
        self.got = [None] * len(self.paths)
        self.target = target

    def close(self) -> None:
        self.stopped = True
        self.thread.join(10)
        for sock in self.sockets:
            sock.close()
        self.selector.close()


# ---------------------------------------------------------------------------------------- a phase


@dataclass
class Phase:
    pages: int
    call_to_page: list[float] = field(default_factory=list)
    event_to_page: list[float] = field(default_factory=list)
    event_to_first: list[float] = field(default_factory=list)     # the first page of each call: the fixed part
    call_to_all: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    missed: int = 0
    calls: int = 0
    asks_per_call: float = 0.0
    rss_open: float = 0.0
    rss_end: float = 0.0
    cpu_cores: float = 0.0
    daemon_cores: float = 0.0
    failed: list[str] = field(default_factory=list)


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as resp:
        return json.loads(resp.read())


def run_phase(hall: Hall, pages_n: int, tokens: list[str], waiting: list[str], window: HallClient,
              watcher: Watcher, calls: int, interval: float, first_call: bool) -> tuple[Phase, bool]:
    web = psutil.Process(hall.procs["hall-web"].pid)
    daemon = psutil.Process(hall.procs["daemon"].pid)
    phase = Phase(pages_n)
    pages = Pages(hall.web_url, tokens, pages_n)
    try:
        deadline = time.monotonic() + 120
        while pages.opened + len(pages.failed) < pages_n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {pages.opened} of {pages_n} pages opened")
            time.sleep(0.1)
        time.sleep(2)
        phase.rss_open = web.memory_info().rss / 2**20
        asked = stats(hall.web_url)["refreshes"]
        cpu0, dcpu0, wall0 = sum(web.cpu_times()[:2]), sum(daemon.cpu_times()[:2]), time.perf_counter()
        for _ in range(calls):
            phase.bare += watcher.bare_hops(PROBES_PER_CALL)
            number = waiting.pop(0)
            pages.arm(f"{number} → 1号窗口".encode())
            start = time.perf_counter()
            reply = window.request("call_next", finish_current=not first_call)
            first_call = False
            if (reply.get("ticket") or {}).get("number") != number:
                raise RuntimeError(f"called {reply.get('ticket')}, expected {number}")
            until = time.monotonic() + 5
            while None in pages.got and time.monotonic() < until:
                time.sleep(0.005)
            got = [t for t in pages.got if t is not None]
            phase.missed += pages_n - len(got)
            phase.call_to_page += [t - start for t in got]
            event_at = watcher.called.get(number)
            if event_at is not None and got:
                phase.event_to_page += [t - event_at for t in got]
                phase.event_to_first.append(min(got) - event_at)
            if got:
                phase.call_to_all.append(max(got) - start)
            phase.calls += 1
            time.sleep(max(0.0, interval * random.uniform(0.7, 1.3) - (time.perf_counter() - start)))
        wall = time.perf_counter() - wall0
        phase.cpu_cores = (sum(web.cpu_times()[:2]) - cpu0) / wall
        phase.daemon_cores = (sum(daemon.cpu_times()[:2]) - dcpu0) / wall
        phase.asks_per_call = (stats(hall.web_url)["refreshes"] - asked) / max(1, phase.calls)
        phase.rss_end = web.memory_info().rss / 2**20
        phase.failed = list(pages.failed)
    finally:
        pages.close()
    return phase, first_call


def report(phase: Phase, tickets: int) -> list[str]:
    bare50 = pct(phase.bare, 50)
    hop50 = bare50 + pct(phase.event_to_page, 50)
    lines = [
        f"{phase.pages} pages on {tickets} tickets, {phase.calls} calls"
        + (f", {phase.missed} page-pushes missed" if phase.missed else "")
        + (f", {len(phase.failed)} pages failed ({', '.join(sorted(set(phase.failed)))})" if phase.failed else ""),
        f"  call -> page        p50 {ms(pct(phase.call_to_page, 50))}  p99 {ms(pct(phase.call_to_page, 99))}  "
        f"(every page: p50 {ms(pct(phase.call_to_all, 50))}, p99 {ms(pct(phase.call_to_all, 99))})",
        f"  event -> page       p50 {ms(pct(phase.event_to_page, 50))}  p99 {ms(pct(phase.event_to_page, 99))}  "
        f"(first page p50 {ms(pct(phase.event_to_first, 50))})",
        f"  bare MQTT hop       p50 {ms(bare50)}  p99 {ms(pct(phase.bare, 99))}  ({len(phase.bare)} probes)",
        f"  page hop / bare hop at p50: {hop50 / bare50:.1f}x  ((bare + event->page) / bare)",
        f"  hall-web: RSS {phase.rss_open:.1f} MiB with the pages open, {phase.rss_end:.1f} MiB at the end; "
        f"CPU {phase.cpu_cores:.2f} cores; {phase.asks_per_call:.0f} ticket_status per call "
        f"(daemon CPU {phase.daemon_cores:.2f} cores)",
    ]
    return lines


def verdicts(phases: list[Phase]) -> list[str]:
    out = []
    for phase in phases:
        p99 = pct(phase.call_to_page, 99)
        if phase.pages <= 500:
            ratio = (pct(phase.bare, 50) + pct(phase.event_to_page, 50)) / pct(phase.bare, 50)
            out.append(f"{phase.pages} pages: p99 {ms(p99)} <= 100 ms: {'PASS' if p99 <= 0.1 else 'FAIL'}; "
                       f"page hop {ratio:.1f}x bare <= 5x: {'PASS' if ratio <= 5 else 'FAIL'}; "
                       f"RSS {max(phase.rss_open, phase.rss_end):.0f} MiB <= 120: "
                       f"{'PASS' if max(phase.rss_open, phase.rss_end) <= 120 else 'FAIL'}")
        else:
            out.append(f"{phase.pages} pages: p99 {ms(p99)} <= 500 ms: {'PASS' if p99 <= 0.5 else 'FAIL'}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, nargs="+", default=[500, 2000], help="open pages per phase")
    p.add_argument("--calls", type=int, default=40, help="calls per phase (default %(default)s)")
    p.add_argument("--tickets", type=int, default=200, help="tickets the pages follow (default %(default)s)")
    p.add_argument("--interval", type=float, default=1.5, help="seconds between calls (default %(default)s)")
    p.add_argument("--mosquitto", action="store_true", help="a private Mosquitto instead of the embedded broker")
    p.add_argument("--dir", help="keep the hall folder here (default: a temporary one, removed)")
    args = p.parse_args(argv)
    if args.tickets < args.calls * len(args.pages) + 1:
        p.error("--tickets must exceed the calls of all phases")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-phone-"))
    directory.mkdir(parents=True, exist_ok=True)
    hall = start_hall(directory, args.mosquitto)
    clients: list[HallClient] = []
    watcher: Watcher | None = None
    try:
        kiosk, window = client(hall, "kiosk-1", "kiosk"), client(hall, "window-1", "window", 1)
        clients += [kiosk, window]
        window.request("login", staff_id="S001", pin="1234")
        tokens, numbers = [], []
        for _ in range(args.tickets):
            issued = kiosk.request("issue_ticket", service="consult", timeout=10)
            tokens.append(issued["visit_token"])
            numbers.append(issued["ticket"]["number"])
        watcher = Watcher(hall)
        print(f"bench/phone.py: {'Mosquitto' if args.mosquitto else 'embedded broker (amqtt)'}, {args.tickets} "
              f"tickets, {args.calls} calls per phase every ~{args.interval} s, {os.cpu_count()} CPUs", flush=True)
        phases, first = [], True
        for count in args.pages:
            phase, first = run_phase(hall, count, tokens, numbers, window, watcher, args.calls, args.interval, first)
            phases.append(phase)
            print("\n".join(report(phase, args.tickets)), flush=True)
        print("\n".join(verdicts(phases)))
    finally:
        if watcher is not None:
            watcher.close()
        for c in clients:
            c.close()
        hall.stop()
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
