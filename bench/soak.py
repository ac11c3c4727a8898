"""Soak: the four Qt apps under Xvfb next to a working hall, for minutes or hours (hall-web too).

The hall is `hallctl demo`'s (`DemoHall`: the daemon with its embedded broker, SQLite, the device
emulator child, the management-system emulator) with the four apps as real processes — hall-kiosk,
hall-display (its notice scrolling all along), hall-window (window 1) and hall-tablet (window 1) —
on one Xvfb screen, tiled 2×2. Nothing restarts them here: an app that dies stays dead and is
reported. A driver works the hall at about one call every 2 s or faster: tickets issued at kiosk-2
(each service kept at a few waiting), window 1 worked from its hardware keypad (call, recall, start,
the next call finishes the visit), windows 2 and 4 from window clients (call, recall, start,
finish), every finished visit rated 2 s after the tablet was asked (window 1's tablet app shows the
rating screen meanwhile), and an elderly card put on kiosk-1's reader and taken off every 45 s.

hall-web (the visitors' phone pages, which the demo starts) is watched like an app, with 10 hall pages
open on it by SSE all along. Every 5 s each app's RSS is sampled. At the end the apps are stopped as `hallctl demo` stops them
(SIGTERM), and each is reported: alive (never exited before the stop), errors logged (ERROR,
CRITICAL, Traceback, "Fatal Python error" lines in its log), its exit code at the stop (a binding that
leaked references to None aborts there if it did not abort before), RSS at start, end and peak.

Run:  .venv/bin/python bench/soak.py --minutes 30 [--dir DIR] [--screenshot shot.png] [--offscreen]
Exit status 0 when every app stayed up, logged no error and stopped cleanly.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import os
import queue
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hall_controller.bus.client import BusError, CommandError, HallClient  # noqa: E402
from hall_controller.clock import SystemClock  # noqa: E402
from hall_controller.logsetup import LOG_FORMAT  # noqa: E402
from hall_demo.apps import APP_NAMES  # noqa: E402
from hall_demo.hall import WEB, DemoHall, prepare_demo_dir  # noqa: E402
from hall_demo.supervise import RestartPolicy  # noqa: E402

log = logging.getLogger("soak")

SCREEN = (3840, 2160)
TILES = {"hall-kiosk": (0, 0), "hall-display": (1920, 0), "hall-window": (0, 1080), "hall-tablet": (1920, 1080)}
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)|Fatal Python error")
FATAL_LINE = re.compile(r"Fatal Python error|Traceback \(most recent call last\)")
SAMPLE_SECONDS = 5.0
CARD = {"name": "李秀英", "sex": "女", "birth": "19480315", "id_number": "310101194803150022",
        "valid_from": "20100101", "valid_to": "长期"}
RATER = "soak-rater-1"        # a second tablet client of window 1 (the tablet app is tablet-1)
# window -> (staff job number, service it takes tickets of, how it is worked)
WINDOWS = {1: ("1001", "consult", "keypad"), 2: ("1002", "consult", "client"), 4: ("1004", "legal_aid", "client")}


# -- Xvfb ------------------------------------------------------------------------------------------

class Xvfb:
    """An Xvfb server on a free display number (it picks one itself: -displayfd)."""

    def __init__(self, size: tuple[int, int] = SCREEN) -> None:
        read, write = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{size[0]}x{size[1]}x24",
                                      "-nolisten", "tcp"], pass_fds=(write,), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            self.proc.kill()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def tile_windows(display: str, places: dict[int, tuple[int, int]]) -> int:
    """Move each app's top-level window (found by _NET_WM_PID) to its place; there is no window manager
    under Xvfb, so Qt's windows all open at 0,0. Returns how many were moved."""
    path = ctypes.util.find_library("X11")
    if not path:
        return 0
    x = ctypes.CDLL(path)
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x.XDefaultRootWindow.restype = ctypes.c_ulong
    x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x.XInternAtom.restype = ctypes.c_ulong
    x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                             ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
                             ctypes.POINTER(ctypes.c_uint)]
    x.XGetWindowProperty.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_long, ctypes.c_long,
                                     ctypes.c_int, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                                     ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_ulong),
                                     ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_void_p)]
    x.XMoveWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int]
    x.XFree.argtypes = [ctypes.c_void_p]
    x.XFlush.argtypes = [ctypes.c_void_p]
    x.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x.XOpenDisplay(display.encode())
    if not dpy:
        return 0
    moved = 0
    try:
        pid_atom = x.XInternAtom(dpy, b"_NET_WM_PID", 0)
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        if not x.XQueryTree(dpy, x.XDefaultRootWindow(dpy), ctypes.byref(root), ctypes.byref(parent),
                            ctypes.byref(children), ctypes.byref(count)):
            return 0
        for i in range(count.value):
            window = children[i]
            kind, fmt, items, after = ctypes.c_ulong(), ctypes.c_int(), ctypes.c_ulong(), ctypes.c_ulong()
            data = ctypes.c_void_p()
            if x.XGetWindowProperty(dpy, window, pid_atom, 0, 1, 0, 6, ctypes.byref(kind), ctypes.byref(fmt),
                                    ctypes.byref(items), ctypes.byref(after), ctypes.byref(data)) != 0:
                continue
            if data.value and items.value == 1:
                pid = ctypes.cast(data, ctypes.POINTER(ctypes.c_ulong))[0]
                if pid in places:
                    x.XMoveWindow(dpy, window, *places[pid])
                    moved += 1
            if data.value:
                x.XFree(data)
        if children:
            x.XFree(children)
        x.XFlush(dpy)
    finally:
        x.XCloseDisplay(dpy)
    return moved


# -- the hall at work ------------------------------------------------------------------------------

def _http(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@dataclass
class Counts:
    issued: int = 0
    calls: int = 0
    recalls: int = 0
    finished: int = 0
    rating_requests: int = 0
    ratings: int = 0
    cards: int = 0
    driver_errors: int = 0


class Driver:
    """Works the hall from a thread: one step every `step` s (a ticket when a queue runs short, and one
    action of one window in turn); ratings 2 s after they are asked; a card every 45 s."""

    def __init__(self, demo: DemoHall, passwords: dict[str, str], step: float = 0.45) -> None:
        assert demo.daemon is not None and demo.daemon.mqtt_address is not None and demo.control is not None
        self.demo = demo
        self.step = step
        self.counts = Counts()
        self.control = f"http://{demo.control[0]}:{demo.control[1]}"
        host, port = demo.daemon.mqtt_address
        hall_id = demo.config.hall_id if demo.config else "demo"

        def client(cid: str, role: str, window: int | None = None) -> HallClient:
            c = HallClient(cid, passwords[cid], host, port, hall_id, role=role, window=window)
            c.connect(timeout=15)
            return c

        self.kiosk = client("kiosk-2", "kiosk")
        self.windows = {n: client(f"window-{n}", "window", n) for n, (_, _, how) in WINDOWS.items() if how == "client"}
        self.raters = {1: client(RATER, "tablet", 1),
                       **{n: client(f"tablet-{n}", "tablet", n) for n in self.windows}}
        self.asked: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        demo.daemon.service.subscribe(self._on_event)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-driver", daemon=True)
        self._phase = {n: 0 for n in WINDOWS}
        self._rng = random.Random(16)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        c = self.counts
        if kind == "ticket_issued":
            c.issued += 1
        elif kind == "ticket_called":
            c.calls += 1
        elif kind == "ticket_recalled":
            c.recalls += 1
        elif kind == "service_finished":
            c.finished += 1
        elif kind == "rating_requested":
            c.rating_requests += 1
            self.asked.put((time.monotonic() + 2.0, event))
        elif kind == "rating_received":
            c.ratings += 1

    def start(self) -> None:
        for n, (job, _, how) in WINDOWS.items():
            if how == "keypad":
                self._press(n, "function", job)
            else:
                self.windows[n].request("login", staff_id=job, pin="1234")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        for c in [self.kiosk, *self.windows.values(), *self.raters.values()]:
            c.close()

    def _press(self, window: int, key: str, digits: str | None = None) -> None:
        _http(f"{self.control}/keypad/{window}/press", {"key": key, **({"digits": digits} if digits else {})})

    def _run(self) -> None:
        order = list(WINDOWS)
        turn = 0
        next_card = time.monotonic() + 10
        while not self._stop.wait(self.step):
            try:
                self._top_up()
                self._act(order[turn % len(order)])
                turn += 1
                self._rate_due()
                if time.monotonic() >= next_card:
                    next_card = time.monotonic() + 45
                    self._card()
            except (BusError, OSError, TimeoutError) as exc:
                self.counts.driver_errors += 1
                log.info("driver: %s", exc)

    def _top_up(self) -> None:
        queues = self.kiosk.state.queues or {}
        for service in {s for _, s, _ in WINDOWS.values()}:
            if (queues.get(service) or {}).get("waiting", 0) < 6:
                self.kiosk.request("issue_ticket", service=service)

    def _act(self, window: int) -> None:
        phase = self._phase[window]
        how = WINDOWS[window][2]
        if how == "keypad":     # next (finishes the visit under way, calls the next), recall, start
            self._press(window, ("next", "recall", "start")[phase % 3])
            self._phase[window] = phase + 1
            return
        client = self.windows[window]
        step = ("call_next", "recall", "start", "finish")[phase % 4]
        try:
            reply = client.request(step)
        except CommandError as exc:     # e.g. nothing to start after an empty call: begin again
            log.info("window %d %s: %s", window, step, exc)
            self._phase[window] = 0
            return
        self._phase[window] = 0 if step == "call_next" and not reply.get("ticket") else phase + 1

    def _rate_due(self) -> None:
        while True:
            try:
                due, event = self.asked.queue[0]
            except IndexError:
                return
            if time.monotonic() < due:
                return
            self.asked.get_nowait()
            window = event.get("window")
            rater = self.raters.get(window)
            if rater is not None:
                rater.request("rate", ticket=event["ticket"]["id"], score=self._rng.choice((4, 5, 5)))

    def _card(self) -> None:
        readers = [d["id"] for d in _http(f"{self.control}/devices")
                   if d["kind"] == "card_reader" and d.get("kiosk") == "kiosk-1"]
        if readers:
            _http(f"{self.control}/card-reader/{readers[0]}/insert", CARD)
            self.counts.cards += 1
            threading.Timer(4.0, lambda: _http(f"{self.control}/card-reader/{readers[0]}/remove", {})).start()


# -- the soak --------------------------------------------------------------------------------------

@dataclass
class AppReport:
    name: str
    pid: int | None
    alive: bool = True
    exits: list[int] = field(default_factory=list)
    exit_at_stop: int | None = None
    errors: int = 0
    fatal: int = 0
    error_lines: list[str] = field(default_factory=list)
    rss_start: float | None = None      # MiB
    rss_end: float | None = None
    rss_peak: float | None = None
    samples: int = 0

    @property
    def ok(self) -> bool:
        return self.alive and self.errors == 0 and self.exit_at_stop == 0


@dataclass
class SoakResult:
    minutes: float
    seconds: float
    display: str
    pyside: str
    counts: Counts
    apps: dict[str, AppReport]
    said: list[str]
    daemon_errors: int
    screenshot: str | None

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.apps.values()) and len(self.apps) == len(APP_NAMES) + 1   # + hall-web

    def table(self) -> str:
        c = self.counts
        per_call = self.seconds / c.calls if c.calls else float("inf")
        lines = [f"soak: {self.seconds / 60:.1f} min, apps on {self.display}, PySide6 {self.pyside}",
                 f"hall: {c.issued} tickets, {c.calls} calls (one per {per_call:.2f} s), {c.recalls} recalls, "
                 f"{c.finished} visits finished, {c.rating_requests} rating requests, {c.ratings} ratings, "
                 f"{c.cards} cards; driver errors {c.driver_errors}; daemon errors logged {self.daemon_errors}",
                 f"{'app':14}{'alive':7}{'errors':8}{'fatal':7}{'exit@stop':11}RSS MiB start → end (peak)"]
        for a in self.apps.values():
            rss = (f"{a.rss_start:.1f} → {a.rss_end:.1f} ({a.rss_peak:.1f})" if a.rss_start is not None
                   and a.rss_end is not None and a.rss_peak is not None else "-")
            lines.append(f"{a.name:14}{'yes' if a.alive else 'NO':7}{a.errors:<8}{a.fatal:<7}"
                         f"{str(a.exit_at_stop):11}{rss}")
            lines += [f"    {line}" for line in a.error_lines[:5]]
        lines += [f"said: {line}" for line in self.said]
        if self.screenshot:
            lines.append(f"screenshot: {self.screenshot}")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def _rss_mib(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:       # gone, or no psutil: /proc
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
    return None


def _scan(path: Path) -> tuple[int, int, list[str]]:
    if not path.exists():
        return 0, 0, []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [line for line in lines if ERROR_LINE.search(line)]
    return len(errors), sum(1 for line in errors if FATAL_LINE.search(line)), errors


def _daemon_log(logs: Path) -> logging.Handler:
    """The daemon (in this process) logs to logs/daemon.log, scanned for errors at the end."""
    handler = logging.FileHandler(logs / "daemon.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    for noisy in ("amqtt", "transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def _screen(offscreen: bool) -> tuple[Xvfb | None, dict[str, str], str]:
    """Xvfb when installed (and not refused), else Qt's offscreen platform: (server, app env, name)."""
    if offscreen or not shutil.which("Xvfb"):
        return None, {"QT_QPA_PLATFORM": "offscreen"}, "offscreen"
    xvfb = Xvfb()
    return xvfb, {"DISPLAY": xvfb.display, "QT_QPA_PLATFORM": "xcb"}, f"Xvfb {xvfb.display}"


def _prepare(hall_dir: Path) -> dict[str, str]:
    """The demo hall folder plus the rater's account; returns the client passwords."""
    import yaml

    from hall_controller.bus.credentials import CredentialStore
    from hall_controller.config import load_config
    from hall_controller.setup_hall import save_password

    config_path = prepare_demo_dir(hall_dir)
    config = load_config(config_path)
    save_password(config, RATER, CredentialStore(config.credentials_path).add_or_reset(RATER, "tablet", 1))
    return yaml.safe_load((hall_dir / "client-passwords.yaml").read_text(encoding="utf-8"))


def _sample(apps: dict[str, AppReport], demo: DemoHall, elapsed: float, say: Any) -> None:
    for a in apps.values():
        if a.alive and not demo.supervisor.running(a.name):
            a.alive = False
            say(f"{a.name} died at {elapsed / 60:.1f} min")
        rss = _rss_mib(a.pid) if a.alive and a.pid else None
        if rss is None:
            continue
        if a.rss_start is None and elapsed >= 10:       # once the apps are warm
            a.rss_start = rss
        a.rss_end = rss
        a.rss_peak = max(a.rss_peak or 0.0, rss)
        a.samples += 1


def _phone_pages(demo: DemoHall, count: int) -> None:
    """`count` phones on the hall page (`/events`, SSE), read by daemon threads until the process ends."""
    assert demo.web_address is not None
    url = f"http://{demo.web_address[0]}:{demo.web_address[1]}/events"

    def page() -> None:
        for _ in range(100):                # hall-web may still be starting, or restarting
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    for _line in resp:
                        pass
            except OSError:
                time.sleep(1)

    for _ in range(count):
        threading.Thread(target=page, daemon=True).start()


def _progress(elapsed: float, counts: Counts, apps: dict[str, AppReport]) -> str:
    dead = [a.name for a in apps.values() if not a.alive]
    return (f"{elapsed / 60:.0f} min: {counts.calls} calls, {counts.ratings} ratings; RSS MiB "
            + ", ".join(f"{a.name} {a.rss_end or 0:.0f}" for a in apps.values() if a.alive)
            + (f"; dead: {', '.join(dead)}" if dead else ""))


def _screenshot(xvfb: Xvfb, path: Path) -> str | None:
    subprocess.run(["import", "-display", xvfb.display, "-window", "root", str(path)], check=False, timeout=60)
    return str(path) if path.exists() else None


def run_soak(minutes: float, directory: Path, *, offscreen: bool = False, screenshot: Path | None = None,
             step: float = 0.45, progress: Any = None) -> SoakResult:
    """The soak; `progress(text)` gets a line per minute."""
    import PySide6

    say = progress or (lambda text: None)
    logs = directory / "hall" / "logs"         # DemoHall's: one log per app and the emulator's
    logs.mkdir(parents=True, exist_ok=True)
    handler = _daemon_log(logs)
    passwords = _prepare(directory / "hall")
    xvfb, env, display = _screen(offscreen)
    said: list[str] = []
    demo = DemoHall(directory / "hall", ui=True, policy=RestartPolicy(SystemClock(), max_restarts=0),
                    say=said.append, app_env=env, ports={"mqtt": 0, "emulator": 0, "mgmt": 0})
    apps: dict[str, AppReport] = {}
    driver: Driver | None = None
    shot: str | None = None
    started = time.monotonic()
    try:
        demo.start()
        assert demo.apps == list(APP_NAMES), f"apps not started: {demo.apps}"
        apps = {name: AppReport(name, demo.supervisor.pid(name)) for name in [*demo.apps, WEB]}
        _phone_pages(demo, 10)
        driver = Driver(demo, passwords, step=step)
        driver.start()
        started = time.monotonic()
        end, shot_at, next_minute = started + minutes * 60, started + min(minutes * 30, 600), started + 60
        while (now := time.monotonic()) < end:
            if xvfb is not None and now - started < 120:       # windows map at their own pace
                tile_windows(xvfb.display, {a.pid: TILES[a.name] for a in apps.values() if a.pid and a.name in TILES})
            _sample(apps, demo, now - started, say)
            if screenshot is not None and xvfb is not None and shot is None and now >= shot_at:
                shot = _screenshot(xvfb, screenshot)
            if now >= next_minute:
                next_minute += 60
                say(_progress(now - started, driver.counts, apps))
            time.sleep(min(SAMPLE_SECONDS, max(0.0, end - time.monotonic())))
    finally:
        seconds = time.monotonic() - started
        exits = {name: demo.supervisor.exits(name) for name in apps}
        if driver is not None:
            driver.stop()
        codes = demo.stop()
        if xvfb is not None:
            xvfb.stop()
        logging.getLogger().removeHandler(handler)
        handler.close()
    for a in apps.values():
        a.exits = exits[a.name]
        a.alive = a.alive and not a.exits
        a.exit_at_stop = codes.get(a.name) if a.alive else (a.exits[-1] if a.exits else None)
        a.errors, a.fatal, a.error_lines = _scan(logs / f"{a.name}.log")
    daemon_errors = _scan(logs / "daemon.log")[0]
    return SoakResult(minutes, seconds, display, PySide6.__version__, driver.counts if driver else Counts(), apps,
                      said, daemon_errors, shot)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--dir", type=Path, default=None, help="working folder (default: a temp folder, kept)")
    parser.add_argument("--screenshot", type=Path, default=None, help="PNG of the screen half-way (Xvfb only)")
    parser.add_argument("--offscreen", action="store_true", help="no Xvfb: Qt's offscreen platform")
    parser.add_argument("--step", type=float, default=0.45, help="seconds between driver steps (default 0.45)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="hall-soak-"))
    screenshot = args.screenshot or directory / "soak.png"
    result = run_soak(args.minutes, directory, offscreen=args.offscreen, screenshot=screenshot, step=args.step,
                      progress=lambda text: print(text, flush=True))
    print(result.table())
    print(f"logs: {directory / 'hall' / 'logs'}")
    if args.json:
        data = asdict(result.counts)
        args.json.write_text(json.dumps({"seconds": result.seconds, "counts": data, "pyside": result.pyside,
                                         "apps": {n: asdict(a) for n, a in result.apps.items()}, "ok": result.ok},
                                        ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
