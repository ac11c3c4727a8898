"""The embedded broker as the daemon's child process: serves, refuses a taken port, dies with the daemon."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hall_controller.bus.broker_process import BrokerProcess

from .harness import HALL, PASSWORDS, RawClient, free_port, init_hall, make_store, no_devices, wait_until


def _gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_child_serves_with_the_hall_acl_and_stops_when_asked(tmp_path):
    make_store(tmp_path / "credentials.yaml")
    broker = BrokerProcess("127.0.0.1", 0, tmp_path / "credentials.yaml", hall_id=HALL)
    broker.start()
    pid = broker.pid
    try:
        assert pid is not None and pid != os.getpid() and broker.port > 0
        window = RawClient(broker.port, "window-3", PASSWORDS["window-3"])
        assert window.connect()
        refused = RawClient(broker.port, "window-3", "wrong", client_id="window-3")
        assert not refused.connect()
        # the ACL of the hall: a window may not read another client's replies
        assert window.subscribe(f"hall/{HALL}/reply/kiosk-1")[0].is_failure
        window.close()
        refused.close()
    finally:
        broker.stop()
    wait_until(lambda: _gone(pid), 5, "the broker process to exit")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", broker.port), timeout=0.5):
        pass


def test_a_taken_port_is_reported_as_oserror(tmp_path):
    make_store(tmp_path / "credentials.yaml")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = BrokerProcess("127.0.0.1", taken.getsockname()[1], tmp_path / "credentials.yaml", hall_id=HALL)
        with pytest.raises(OSError, match="in use"):
            broker.start()
    assert broker.pid is None


def test_the_child_exits_when_the_daemon_is_killed(tmp_path):
    make_store(tmp_path / "credentials.yaml")
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from hall_controller.bus.broker_process import BrokerProcess
        broker = BrokerProcess("127.0.0.1", 0, {str(tmp_path / "credentials.yaml")!r}, hall_id={HALL!r})
        broker.start()
        print(broker.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        wait_until(lambda: _gone(child), 10, "the orphaned broker to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        if child is not None and not _gone(child):  # the test failed: do not leave it behind
            os.kill(child, signal.SIGKILL)


def test_a_killed_child_is_restarted_on_the_same_port(tmp_path):
    make_store(tmp_path / "credentials.yaml")
    broker = BrokerProcess("127.0.0.1", 0, tmp_path / "credentials.yaml", hall_id=HALL)
    broker.start()
    try:
        first, port = broker.pid, broker.port
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: broker.pid not in (None, first) and broker.restarts == 1, 10, "a new broker process")
        assert broker.port == port
        window = RawClient(port, "window-3", PASSWORDS["window-3"])
        assert window.connect()
        window.close()
        second = broker.pid
    finally:
        broker.stop()
    assert second is not None
    wait_until(lambda: _gone(second), 5, "the restarted broker to stop with the daemon")
    assert _gone(first)


def test_sigterm_to_the_daemons_process_group_stops_without_restarting_the_broker(tmp_path):
    """systemd (and `timeout`, a terminal's job control) signal the whole process group: the broker
    child gets the SIGTERM too. The daemon stops it in order; the log shows no restart."""
    port = free_port()

    def here_without_devices(data):
        data["mqtt"]["listen"] = f"127.0.0.1:{port}"
        no_devices(data)
    config = init_hall(tmp_path, here_without_devices)
    proc = subprocess.Popen([sys.executable, "-m", "hall_controller.cli", "run", "--config", str(config)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip())
            if line.rstrip().endswith(": ready"):
                break
        assert log and log[-1].endswith(": ready"), log
        broker = int(next(line for line in log if "embedded MQTT broker (child process" in line)
                     .split("child process ")[1].split(")")[0])
        os.killpg(proc.pid, signal.SIGTERM)
        log += [line.rstrip() for line in proc.stderr]
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    wait_until(lambda: _gone(broker), 5, "the broker child to exit")
    assert not [line for line in log if "restarting" in line or "exited with code" in line], log
    assert any(f"embedded MQTT broker on port {port} stopped" in line for line in log), log
    assert log[-1].endswith(": stopped"), log
