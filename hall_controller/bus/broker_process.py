"""The embedded broker in a child process of the daemon (DESIGN §3: "in-process or as a child").

amqtt is pure Python: in the daemon's process it competes with the hall service for one GIL, and
every command, reply, event and state copy it routes delays the next command. As a child it runs on
the other core. The child reads the same credential store file (it reloads on change, so the
daemon's fresh account is seen), prints `ready PORT` once listening, and stops when its stdin
closes, which also happens when the daemon dies, even by kill -9.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .broker import EmbeddedBroker
from .credentials import CredentialStore

log = logging.getLogger(__name__)


class BrokerProcess:
    """EmbeddedBroker's interface (`start`, `stop`, `port`), run in a child process."""

    def __init__(self, host: str, port: int, credentials_path: str | Path, *, hall_id: str) -> None:
        self.host = host
        self.port = port
        self.credentials_path = str(credentials_path)
        self.hall_id = hall_id
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 15.0) -> None:
        """Start the child and wait until it listens; raises OSError (e.g. port in use) or TimeoutError."""
        if self._proc is not None:
            raise RuntimeError("broker already started")
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        cmd = [sys.executable, "-m", __name__, self.host, str(self.port), self.credentials_path,
               "--hall", self.hall_id, "--log-level", str(level)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(self._proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        line = first_line[0].strip() if first_line else ""
        kind, _, value = line.partition(" ")
        if kind == "ready":
            self.port = int(value)
            log.info("embedded MQTT broker (child process %d) listening on %s:%d", self._proc.pid, self.host,
                     self.port)
            return
        self.stop()
        if kind == "error":
            raise OSError(value)
        raise TimeoutError(f"embedded broker did not start within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Close the child's stdin (it stops its broker and exits); kill it if it does not. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
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
        log.info("embedded MQTT broker on port %d stopped", self.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The hall's embedded MQTT broker as the daemon's child.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("credentials")
    parser.add_argument("--hall", required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C on the daemon's terminal: the daemon stops us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:  # libuv's loop: amqtt's socket writes and task switches cost a good part less
        import uvloop
    except ImportError:
        log.info("uvloop not installed: the broker runs on asyncio's own loop")
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    broker = EmbeddedBroker(args.host, args.port, CredentialStore(args.credentials), hall_id=args.hall)
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
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
