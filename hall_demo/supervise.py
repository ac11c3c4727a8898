"""Keep child processes up: the demo's Qt apps and device emulator, restarted when they exit.

`RestartPolicy` is the rule (pure, on an injected clock): an exited child comes back after `delay`
seconds, at most `max_restarts` times in any `period`; past that it stays down and the operator is
told so. `Supervisor` is the process glue: it starts `ChildSpec`s, notices exits, says what it does
(in Chinese: the person at the console runs the hall) and restarts by the policy.

Children run in their own process group, so a Ctrl-C at the console reaches only the supervising
process, which then stops them in order (the apps before the broker they publish their offline
status to); a child that exits by itself is never confused with one being stopped. On Linux each
child also gets SIGTERM when the thread that started it dies, so a supervisor killed with -9 leaves
no orphans.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from hall_controller.clock import Clock, SystemClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What to do about a child that exited: `message` is said at the console either way."""

    restart: bool
    delay: float
    message: str


class RestartPolicy:
    """Restart after `delay` s, at most `max_restarts` times per `period` s for each child (0: never)."""

    def __init__(self, clock: Clock, *, delay: float = 3.0, max_restarts: int = 5, period: float = 60.0) -> None:
        self.clock = clock
        self.delay = delay
        self.max_restarts = max_restarts
        self.period = period
        self._restarts: dict[str, list[datetime]] = {}
        self.given_up: set[str] = set()

    def _period_text(self) -> str:
        return "一分钟" if self.period == 60 else f"{self.period:g} 秒"

    def exited(self, name: str, code: int | None) -> Decision:
        """Record that `name` exited with `code` (negative: killed by that signal) and decide."""
        now = self.clock.now()
        window = timedelta(seconds=self.period)
        recent = [t for t in self._restarts.get(name, []) if now - t < window]
        gone = f"{name} 已退出（代码 {code}）"
        if self.max_restarts <= 0:
            self.given_up.add(name)
            return Decision(False, 0.0, f"{gone}，不自动重启")
        if len(recent) >= self.max_restarts:
            self.given_up.add(name)
            self._restarts[name] = recent
            return Decision(False, 0.0, f"{gone}，{self._period_text()}内已重启 {len(recent)} 次，不再自动重启")
        self._restarts[name] = [*recent, now]
        return Decision(True, self.delay, f"{gone}，{self.delay:g} 秒后重启")

    def restarts(self, name: str) -> int:
        """Restarts of `name` within the current period."""
        now = self.clock.now()
        return sum(1 for t in self._restarts.get(name, []) if now - t < timedelta(seconds=self.period))


@dataclass
class ChildSpec:
    """One supervised program. `command()` is called at every start (a restart may need other
    arguments than the first start, e.g. the ports the first one got)."""

    name: str
    command: Callable[[], Sequence[str]]
    log_path: Path | None = None          # stdout and stderr appended here; None: inherit ours
    env: Mapping[str, str] | None = None  # extra environment variables


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    due: datetime | None = None           # restart scheduled for then
    starts: int = 0
    exits: list[int] = field(default_factory=list)


def _death_signal() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the child when its parent thread dies (or None)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


class Supervisor:
    """Starts children, notices when one exits, says so through `say` and restarts it per `policy`."""

    def __init__(self, policy: RestartPolicy, *, say: Callable[[str], None] | None = None,
                 clock: Clock | None = None, poll: float = 0.25) -> None:
        self.policy = policy
        self.clock = clock or policy.clock or SystemClock()
        self.say = say or (lambda text: print(text, flush=True))
        self.poll = poll
        self._children: dict[str, _Child] = {}
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._preexec = _death_signal()

    # -- starting ---------------------------------------------------------------------------------
    def start(self, spec: ChildSpec) -> subprocess.Popen[bytes]:
        """Start `spec` now and supervise it (OSError when it cannot be started at all)."""
        with self._lock:
            child = self._children.setdefault(spec.name, _Child(spec))
            child.spec = spec
            return self._spawn(child)

    def _spawn(self, child: _Child) -> subprocess.Popen[bytes]:
        spec = child.spec
        if child.log_file is not None:
            child.log_file.close()
            child.log_file = None
        out: IO[bytes] | None = None
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = child.log_file = spec.log_path.open("ab")
            out.write(f"--- {spec.name}: start {child.starts + 1} ---\n".encode())
            out.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(spec.env or {})}
        child.proc = subprocess.Popen(list(spec.command()), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                      env=env, process_group=0, preexec_fn=self._preexec)
        child.starts += 1
        child.due = None
        log.info("started %s (pid %d)", spec.name, child.proc.pid)
        return child.proc

    def watch(self) -> None:
        """Start noticing exits (a thread; idempotent)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
                self._thread.start()

    # -- watching ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._closing.wait(self.poll):
            try:
                self.check()
            except Exception:       # never let one bad start stop the watching of the others
                log.exception("supervisor check failed")

    def check(self) -> None:
        """One round: notice exits, start what is due. (The watch thread calls it; tests may too.)"""
        with self._lock:
            for child in self._children.values():
                if self._closing.is_set():
                    return
                self._check(child)

    def _check(self, child: _Child) -> None:
        name = child.spec.name
        if child.proc is not None:
            code = child.proc.poll()
            if code is None:
                return
            child.proc = None
            child.exits.append(code)
            decision = self.policy.exited(name, code)
            message = decision.message
            if not decision.restart and child.spec.log_path is not None:
                message += f"；请查看日志 {child.spec.log_path}"
            log.warning("%s", message)
            self.say(message)
            if decision.restart:
                child.due = self.clock.now() + timedelta(seconds=decision.delay)
            return
        if child.due is not None and self.clock.now() >= child.due:
            try:
                proc = self._spawn(child)
            except OSError as exc:
                log.error("%s: cannot start: %s", name, exc)
                child.due = None
                decision = self.policy.exited(name, None)
                self.say(f"{name} 无法启动；" + decision.message)
                if decision.restart:
                    child.due = self.clock.now() + timedelta(seconds=decision.delay)
                return
            self.say(f"{name} 已重启（进程 {proc.pid}）")

    # -- queries ----------------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        with self._lock:
            child = self._children.get(name)
            return child.proc.pid if child is not None and child.proc is not None else None

    def running(self, name: str) -> bool:
        with self._lock:
            child = self._children.get(name)
            return child is not None and child.proc is not None and child.proc.poll() is None

    def exits(self, name: str) -> list[int]:
        """Exit codes seen for `name`, oldest first (not counting stops asked for)."""
        with self._lock:
            child = self._children.get(name)
            return list(child.exits) if child is not None else []

    def starts(self, name: str) -> int:
        with self._lock:
            child = self._children.get(name)
            return child.starts if child is not None else 0

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._children)

    # -- stopping ---------------------------------------------------------------------------------
    def stop(self, names: Iterable[str] | None = None, timeout: float = 5.0) -> dict[str, int | None]:
        """Stop these children (all when None) without restarting them: SIGTERM, then SIGKILL after
        `timeout`; returns their exit codes (None: it was not running). The watch thread ends once every
        child is stopped."""
        with self._lock:
            chosen = [self._children[n] for n in (self.names if names is None else names) if n in self._children]
            for child in chosen:
                del self._children[child.spec.name]
            if not self._children:
                self._closing.set()
        procs = [c.proc for c in chosen if c.proc is not None and c.proc.poll() is None]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for child in chosen:
            if child.log_file is not None:
                child.log_file.close()
        thread = self._thread
        if self._closing.is_set() and thread is not None and thread is not threading.current_thread():
            thread.join(5)
        return {c.spec.name: c.proc.returncode if c.proc is not None else None for c in chosen}
