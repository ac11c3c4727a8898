"""The systemd notify protocol: `hallctl run` under a `Type=notify` unit with `WatchdogSec=`.

A unix datagram socket stands in for systemd's: the daemon, run as a child with $NOTIFY_SOCKET and
$WATCHDOG_USEC, must say READY=1 once it serves, feed WATCHDOG=1 while it is healthy and only then,
and say STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hall_controller import sdnotify
from hall_controller.sdnotify import WatchdogFeeder

from .harness import DaemonProcess, free_port, init_hall, no_devices, on_database, wait_until


class NotifySocket:
    """What systemd's notify socket would receive, in order (one datagram per entry)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.received: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def count(self, line: str) -> int:
        return sum(line in m.split("\n") for m in list(self.received))

    def index(self, line: str) -> int:
        return next(i for i, m in enumerate(list(self.received)) if line in m.split("\n"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # A path socket as systemd uses; in a short folder of its own (sun_path holds 107 bytes).
    with tempfile.TemporaryDirectory(prefix="sdn-") as folder:
        listener = NotifySocket(str(Path(folder) / "notify"))
        yield listener
        listener.close()


# ------------------------------------------------------------------------------------ the protocol

def test_nothing_is_sent_outside_systemd(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False and sdnotify.watchdog() is False and sdnotify.stopping() is False


def test_an_abstract_socket_receives_one_datagram_per_message(monkeypatch) -> None:
    address = f"@hall-test-{uuid.uuid4().hex}"
    listener = NotifySocket(address)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert sdnotify.ready("服务中\nserving") is True
        assert sdnotify.status("繁忙") and sdnotify.watchdog() and sdnotify.stopping()
        wait_until(lambda: len(listener.received) == 4, 2, "four datagrams")
        assert listener.received == ["READY=1\nSTATUS=服务中 serving", "STATUS=繁忙", "WATCHDOG=1", "STOPPING=1"]
    finally:
        listener.close()


def test_a_socket_that_is_gone_does_not_raise(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent"))
    assert sdnotify.watchdog() is False


def test_watchdog_interval_is_half_the_period_for_this_process_only(monkeypatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))    # set for another process
    assert sdnotify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "soon", ""):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert sdnotify.watchdog_interval() is None


# ------------------------------------------------------------------------------------ the feeder

def test_the_feeder_starves_the_watchdog_while_the_health_check_fails() -> None:
    problem: list[str | None] = [None]
    sent: list[str] = []
    said: list[str] = []
    feeder = WatchdogFeeder(1.0, lambda: problem[0], send=lambda: sent.append("WATCHDOG=1"), say=said.append)
    assert feeder.beat() and feeder.beat() and len(sent) == 2 and said == []
    problem[0] = "database"
    assert not feeder.beat() and not feeder.beat()
    assert len(sent) == 2                                  # starved: systemd restarts the daemon
    assert said == ["不健康 unhealthy: database"]          # said once, for systemctl status
    problem[0] = None
    assert feeder.beat() and len(sent) == 3 and said[-1] == "服务中 serving"


def test_a_health_check_that_raises_or_hangs_feeds_nothing() -> None:
    sent: list[int] = []

    def broken() -> str | None:
        raise RuntimeError("bug")

    assert WatchdogFeeder(1.0, broken, send=lambda: sent.append(1), say=lambda _t: None).beat() is False

    release = threading.Event()
    rounds: list[int] = []

    def check() -> str | None:
        rounds.append(1)
        if len(rounds) > 2:
            release.wait(10)     # the health check hangs (a stuck database call)
        return None

    feeder = WatchdogFeeder(0.02, check, send=lambda: sent.append(1), say=lambda _t: None)
    feeder.start()
    try:
        wait_until(lambda: len(rounds) == 3, 5, "the third health check")
        fed = len(sent)
        assert fed == 2
        time.sleep(0.3)                        # 15 intervals pass while the check hangs …
        assert len(sent) == fed                # … and nothing is sent meanwhile
    finally:
        release.set()
        feeder.stop()


# ------------------------------------------------------------------------------------ hallctl run

def _watched_daemon(tmp_path: Path, notify: NotifySocket, monkeypatch, usec: int = 400_000,
                    mutate=no_devices) -> DaemonProcess:
    monkeypatch.setenv("NOTIFY_SOCKET", notify.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(usec))   # fed every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = DaemonProcess(init_hall(tmp_path, mutate), free_port())
    daemon.start()
    return daemon


def test_hallctl_run_says_ready_feeds_the_watchdog_and_says_stopping(tmp_path: Path, notify_socket, monkeypatch):
    assert notify_socket.received == []
    daemon = _watched_daemon(tmp_path, notify_socket, monkeypatch)
    try:
        ready = wait_until(lambda: notify_socket.count("READY=1"), 5, "READY=1")
        assert ready == 1
        first = notify_socket.received[0].split("\n")
        assert first[0] == "READY=1" and first[1].startswith("STATUS=服务中")   # nothing before it
        assert any(line.endswith(": ready") for line in daemon.log)              # logged before READY=1
        wait_until(lambda: notify_socket.count("WATCHDOG=1") >= 5, 10, "five WATCHDOG=1")
        assert notify_socket.index("WATCHDOG=1") > notify_socket.index("READY=1")
        assert notify_socket.count("STOPPING=1") == 0
    finally:
        code = daemon.terminate()
    assert code == 0
    wait_until(lambda: notify_socket.count("STOPPING=1") == 1, 5, "STOPPING=1")
    assert notify_socket.count("READY=1") == 1


def test_without_a_watchdog_period_ready_only(tmp_path: Path, notify_socket, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    daemon = DaemonProcess(init_hall(tmp_path, no_devices), free_port())
    daemon.start()
    try:
        wait_until(lambda: notify_socket.count("READY=1"), 5, "READY=1")
    finally:
        assert daemon.terminate() == 0
    wait_until(lambda: notify_socket.count("STOPPING=1"), 5, "STOPPING=1")
    assert notify_socket.count("WATCHDOG=1") == 0


@pytest.mark.postgres
def test_the_watchdog_starves_while_the_database_refuses_and_resumes_after(tmp_path: Path, notify_socket,
                                                                           monkeypatch, pg_url, pg_allow):
    """A real outage: PostgreSQL refuses the hall database's connections (its own are cut). The
    daemon stops feeding the watchdog and says why; once the database is back it feeds again."""
    daemon = _watched_daemon(tmp_path, notify_socket, monkeypatch, mutate=on_database(pg_url))
    try:
        wait_until(lambda: notify_socket.count("WATCHDOG=1") >= 3, 10, "the watchdog fed")
        pg_allow(False)
        wait_until(lambda: notify_socket.count("STATUS=不健康 unhealthy: database"), 10, "the unhealthy status")
        starved = notify_socket.count("WATCHDOG=1")
        time.sleep(1.5)                               # about 7 feeding intervals: none is fed
        assert notify_socket.count("WATCHDOG=1") == starved
        pg_allow(True)
        wait_until(lambda: notify_socket.count("WATCHDOG=1") >= starved + 3, 15, "the watchdog fed again")
        assert notify_socket.count("STATUS=服务中 serving") == 1
    finally:
        pg_allow(True)
        assert daemon.terminate() == 0
    assert any("daemon unhealthy (database)" in line for line in daemon.log)
