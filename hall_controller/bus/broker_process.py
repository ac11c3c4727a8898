"""The embedded broker in a child process of the daemon (DESIGN §3: "in-process or as a child").

amqtt is pure Python: in the daemon's process it competes with the hall service for one GIL, and
every command, reply, event and state copy it routes delays the next command. As a child it runs on
the other core. The child reads the same credential store file (it reloads on change, so the
daemon's fresh account is seen), prints `ready PORT` once listening, and stops when its stdin
closes, which also happens when the daemon dies, even by kill -9; it ignores SIGINT and SIGTERM,
which reach it with the daemon's (a process group's) and would otherwise look like a crash. A child that dies is started
again on the same port (RESTART_BACKOFF); the bridge and the clients reconnect on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..backoff import Backoff
from ..logsetup import setup_logging
from .broker import EmbeddedBroker
from .credentials import CredentialStore

log = logging.getLogger(__name__)


# If the child dies (killed, crashed), it is started again on the same port; the daemon's bridge and
# every client reconnect by themselves. A child that keeps dying is retried less and less often.
RESTART_BACKOFF = Backoff(base=0.2, cap=10.0)
_STABLE_SECONDS = 60.0  # a child that lived this long resets the backoff


class BrokerProcess:
    """EmbeddedBroker's interface (`start`, `stop`, `port`), run in a supervised child process."""

    def __init__(self, host: str, port: int, credentials_path: str | Path, *, hall_id: str,
                 start_timeout: float = 15.0, max_packet: int | None = None) -> None:
        self.host = host
        self.port = port
        self.credentials_path = str(credentials_path)
        self.hall_id = hall_id
        self.max_packet = max_packet   # EmbeddedBroker's packet size limit (None: none)
        self.start_timeout = start_timeout
        self.restarts = 0
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._rng = random.Random()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def start(self) -> None:
        """Start the child and wait until it listens; raises OSError (e.g. port in use) or TimeoutError.
        From then on the child is watched and restarted if it dies."""
        with self._lock:
            if self._proc is not None:
                raise RuntimeError("broker already started")
            self._stopping.clear()
            self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="mqtt-broker-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        attempt = 0
        started = time.monotonic()
        while not self._stopping.is_set():
            proc = self._proc
            if proc is not None:
                code = proc.wait()
                if self._stopping.is_set():
                    return
                attempt = 1 if time.monotonic() - started > _STABLE_SECONDS else attempt + 1
                log.error("embedded broker (pid %d) exited with code %s; restarting it on port %d",
                          proc.pid, code, self.port)
            else:
                attempt += 1
            if self._stopping.wait(RESTART_BACKOFF.delay(attempt, self._rng)):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                if proc is not None and proc.stdout is not None:
                    proc.stdout.close()
                try:
                    self._spawn()
                except (OSError, TimeoutError) as exc:
                    log.error("embedded broker could not be restarted: %s", exc)
                    self._proc = None
                    continue
            self.restarts += 1
            started = time.monotonic()

    def _spawn(self) -> None:
        """Start one child (lock held) and wait for its `ready` line."""
        timeout = self.start_timeout
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        cmd = [sys.executable, "-m", __name__, self.host, str(self.port), self.credentials_path,
               "--hall", self.hall_id, "--log-level", str(level)]
        if self.max_packet:
            cmd += ["--max-packet", str(self.max_packet)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        line = first_line[0].strip() if first_line else ""
        kind, _, value = line.partition(" ")
        if kind == "ready":
            self._proc = proc
            self.port = int(value)
            log.info("embedded MQTT broker (child process %d) listening on %s:%d", proc.pid, self.host, self.port)
            return
        _end(proc, 5.0)
        if kind == "error":
            raise OSError(value)
        raise TimeoutError(f"embedded broker did not start within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Close the child's stdin (it stops its broker and exits); kill it if it does not. Idempotent."""
        self._stopping.set()
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc, timeout)
            log.info("embedded MQTT broker on port %d stopped", self.port)
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout)


def _end(proc: subprocess.Popen[str], timeout: float) -> None:
    """Close the child's stdin, wait for it, kill it if it will not go."""
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.error("embedded broker (pid %d) did not stop within %.0f s, killing it", proc.pid, timeout)
        proc.kill()
        proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The hall's embedded MQTT broker as the daemon's child.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("credentials")
    parser.add_argument("--hall", required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--max-packet", type=int, default=None, help="largest MQTT packet a client may send (bytes)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    # The daemon owns our life through stdin. A SIGINT or SIGTERM sent to its whole process group
    # (Ctrl-C, systemd, `timeout`) reaches us too: were we to exit at once, the daemon would take it
    # for a crash and restart us during its own clean stop. It closes our stdin when it is done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:  # libuv's loop: amqtt's socket writes and task switches cost a good part less
        import uvloop
    except ImportError:
        log.info("uvloop not installed: the broker runs on asyncio's own loop")
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    broker = EmbeddedBroker(args.host, args.port, CredentialStore(args.credentials), hall_id=args.hall,
                            max_packet=args.max_packet)
    try:
        broker.start()
    except (OSError, TimeoutError) as exc:
        print(f"error {exc}", flush=True)
        return 1
    print(f"ready {broker.port}", flush=True)
    try:
        while sys.stdin.read(4096):   # until the daemon closes our stdin, or dies
            pass
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
