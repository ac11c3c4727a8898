"""Run `hallctl run` as a real subprocess on an ephemeral port, for crash and end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from hall_controller.bus.client import HallClient
from hall_controller.bus.topics import ALL_EVENTS
from hall_controller.cli import main as hallctl


def wait_until(predicate, timeout: float = 5.0, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_hall(directory: Path, mutate=None) -> Path:
    """A fresh hall folder (sample config, secret, credentials, schema); returns the config path."""
    from hall_controller.config import sample_config_text

    config = directory / "hall.yaml"
    data = yaml.safe_load(sample_config_text())
    if mutate:
        mutate(data)
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert hallctl(["--log-level", "WARNING", "init", "--config", str(config)]) == 0
    return config


def passwords(config: Path) -> dict[str, str]:
    return yaml.safe_load((config.parent / "client-passwords.yaml").read_text(encoding="utf-8"))


class DaemonProcess:
    """`hallctl run` in a child process; `start()` returns once it logged `ready`."""

    def __init__(self, config: Path, port: int, *extra: str):
        self.config, self.port, self.extra = config, port, extra
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "hall_controller.cli", "run", "--config", str(self.config),
               "--mqtt-listen", f"127.0.0.1:{self.port}", *self.extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ready = threading.Event()

        def pump(stream):
            for line in stream:
                self.log.append(line.rstrip())
                if line.rstrip().endswith(": ready"):
                    ready.set()

        threading.Thread(target=pump, args=(self.proc.stderr,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.is_set():
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited:\n" + "\n".join(self.log[-30:]))
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("daemon not ready:\n" + "\n".join(self.log[-30:]))
            ready.wait(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def client(self, client_id: str, role: str | None = None, window: int | None = None) -> HallClient:
        c = HallClient(client_id, passwords(self.config)[client_id], "127.0.0.1", self.port, "demo",
                       role=role, window=window, events=ALL_EVENTS if role == "display" else None)
        c.connect(timeout=10)
        return c
