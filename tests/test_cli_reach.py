"""Operator commands reach the hall they name (issue 16, item 7).

`hallctl demo`/`run` record the MQTT address they got in `<state folder>/run/hall-<id>.json`;
`hallctl status` & co. use `--mqtt-url`, else that file, else the config. A broker that refuses,
rejects the admin's password, never answers or has no daemon of this hall gives one line (Chinese
and English) and the database fallback, quickly and without a traceback. Each command runs as a real
`python -m hall_controller.cli` process, so stderr is exactly what an operator sees.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hall_controller.bus.mosquitto import write_mosquitto_config
from hall_controller.cli import main as run_hallctl
from hall_controller.config import load_config
from hall_controller.daemon import runtime_path

from .harness import DaemonProcess, Mosquitto, free_port, have_mosquitto, init_hall, make_store, passwords


def hallctl(*args: str, timeout: float = 60) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of one `hallctl` process."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hall_controller.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return done.returncode, done.stdout, done.stderr, time.monotonic() - start


def seconds_in_process(*args: str) -> float:
    """How long one `hallctl` command takes, without the interpreter's start-up (a busy machine
    can take seconds to start Python; the broker handling is what is timed)."""
    start = time.monotonic()
    assert run_hallctl(list(args)) in (0, 1)
    return time.monotonic() - start


def hall_at(tmp_path: Path, port: int) -> Path:
    """An initialised hall whose config says its broker is at 127.0.0.1:`port`."""
    def listen_here(data):
        data["mqtt"]["listen"] = f"127.0.0.1:{port}"
    return init_hall(tmp_path, listen_here)


def one_line(stderr: str) -> str:
    """The operator sees exactly one line, and never a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


class SilentListener:
    """Accepts TCP connections and never says a word: a hung broker (or another program on the port)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


# ---------------------------------------------------------------------- a broker that is not the hall's

def test_refused_port_says_so_in_one_line_and_reads_the_database(tmp_path):
    port = free_port()      # nothing listens there
    config = hall_at(tmp_path, port)
    code, out, err, _ = hallctl("status", "--config", str(config), "--json")
    line = one_line(err)
    assert code == 0
    assert line.startswith(f"无法连接 127.0.0.1:{port} 的 MQTT 服务（连接被拒绝），改为直接读取数据库")
    assert f"broker unreachable at 127.0.0.1:{port} (connection refused), reading the database" in line
    snap = json.loads(out)
    assert snap["reached"] == {"via": "database", "mqtt": f"127.0.0.1:{port}", "address_from": "config"}
    assert "windows" in snap
    seconds = seconds_in_process("status", "--config", str(config))
    assert seconds < 2, f"{seconds:.1f} s for a refused port"

    code, out, err, _ = hallctl("reset-day", "--config", str(config))
    assert code == 0 and "号码从001开始" in out
    assert "连接被拒绝），改为直接修改数据库" in one_line(err)


@pytest.mark.mosquitto
@pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")
def test_broker_that_refuses_the_admin_password_answers_at_once(tmp_path):
    """A real Mosquitto with a password file that does not hold the hall's admin password."""
    port = free_port()
    config = hall_at(tmp_path, port)
    files = write_mosquitto_config(tmp_path / "mqtt", "demo", make_store(tmp_path / "other-credentials.yaml"),
                                   port=port, bind_address="127.0.0.1")
    assert passwords(config)["admin"] != "admin-pw"       # the other store's admin password
    broker = Mosquitto(tmp_path, files.conf_file.read_text())
    broker.start(port)
    try:
        code, out, err, _ = hallctl("status", "--config", str(config))
        line = one_line(err)
        assert code == 0 and "排队：" in out and "来源：数据库" in out
        assert line.startswith(f"127.0.0.1:{port} 的 MQTT 服务拒绝了 admin 的用户名或密码，改为直接读取数据库")
        assert "(not authorised), reading the database" in line
        # Refused once, not retried: Mosquitto saw a single attempt by `admin`.
        time.sleep(0.2)
        assert broker.log.read_text().count("not authorised") == 1, broker.log.read_text()[-2000:]
        seconds = seconds_in_process("status", "--config", str(config))
        assert seconds < 2, f"{seconds:.1f} s for a refused password"
        # Positive control: the same broker with the right password lets the admin in (and finds no daemon).
        code, _, err, _ = hallctl("status", "--config", str(config), "--mqtt-url",
                                  f"mqtt://admin:admin-pw@127.0.0.1:{port}")
        assert code == 0 and "没有大厅 demo 的守护进程" in one_line(err)
        assert "admin-pw" not in err
    finally:
        broker.stop()


@pytest.mark.mosquitto
@pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")
def test_foreign_broker_without_the_hall_daemon(tmp_path):
    """The issue's machine: a Mosquitto that lets anyone in holds the configured port. Today the
    request waited 5 s for a reply nobody sends and ended in a traceback."""
    port = free_port()
    config = hall_at(tmp_path, port)
    broker = Mosquitto(tmp_path, f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker.start(port)
    try:
        code, out, err, _ = hallctl("status", "--config", str(config), "--json")
        line = one_line(err)
        assert code == 0 and json.loads(out)["reached"]["via"] == "database"
        assert line.startswith(f"127.0.0.1:{port} 的 MQTT 服务上没有大厅 demo 的守护进程，改为直接读取数据库")
        assert "--mqtt-url" in line and "no hall daemon of demo on the broker" in line
        seconds = seconds_in_process("status", "--config", str(config))
        assert seconds < 4, f"{seconds:.1f} s (the request timeout is 5 s)"
    finally:
        broker.stop()


def test_broker_that_never_answers_times_out_in_one_line(tmp_path):
    silent = SilentListener()
    try:
        config = hall_at(tmp_path, silent.port)
        code, out, err, _ = hallctl("status", "--config", str(config), "--json")
        line = one_line(err)
        assert code == 0 and json.loads(out)["reached"]["via"] == "database"
        assert line.startswith(f"无法连接 127.0.0.1:{silent.port} 的 MQTT 服务（3 秒内无应答），改为直接读取数据库")
        assert "did not answer within 3 s, reading the database" in line
        seconds = seconds_in_process("status", "--config", str(config))
        assert seconds < 8, f"{seconds:.1f} s (3 s connect timeout)"
    finally:
        silent.close()


def test_stale_runtime_file_is_ignored(tmp_path):
    port, recorded = free_port(), free_port()      # nothing listens on either
    config = hall_at(tmp_path, port)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = runtime_path(load_config(config))
    path.parent.mkdir(parents=True, exist_ok=True)
    for record in ({"pid": dead.pid},                                   # process gone
                   {"pid": os.getpid(), "process_start": "1"}):         # pid reused by another process
        path.write_text(json.dumps({"hall_id": "demo", "host": "127.0.0.1", "port": recorded,
                                    "started_at": "2026-11-23T09:00:00+08:00", **record}))
        code, out, err, _ = hallctl("status", "--config", str(config), "--json")
        assert code == 0 and json.loads(out)["reached"]["address_from"] == "config"
        assert f"127.0.0.1:{port} " in one_line(err)
    # Positive control: the same file naming a live process is used.
    path.write_text(json.dumps({"hall_id": "demo", "host": "127.0.0.1", "port": recorded, "pid": os.getpid(),
                                "started_at": "2026-11-23T09:00:00+08:00"}))
    code, out, err, _ = hallctl("status", "--config", str(config), "--json")
    assert json.loads(out)["reached"] == {"via": "database", "mqtt": f"127.0.0.1:{recorded}",
                                          "address_from": "runtime_file"}


def test_malformed_mqtt_url_is_a_usage_error_without_the_password(tmp_path):
    config = hall_at(tmp_path, free_port())
    code, _, err, _ = hallctl("status", "--config", str(config), "--mqtt-url", "mqtt://admin:s3cret@127.0.0.1:99999")
    assert code == 2 and "--mqtt-url" in err and "s3cret" not in err and "Traceback" not in err


# ---------------------------------------------------------------------- the scenario

@pytest.mark.slow
def test_status_reaches_the_daemon_the_runtime_file_names(tmp_path):
    """The config says one port, held by another program; the daemon (like the demo) got another.
    `hallctl status --config` finds the daemon through its runtime file; a change that cannot reach
    the live daemon is refused rather than written behind its back; a clean stop removes the file."""
    holder = SilentListener()      # what holds the configured port (Mosquitto on 1883 in the issue)
    try:
        config = hall_at(tmp_path, holder.port)
        port = free_port()
        daemon = DaemonProcess(config, port)       # `hallctl run --mqtt-listen` on another port, as the demo does
        daemon.start()
        path = runtime_path(load_config(config))
        try:
            record = json.loads(path.read_text())
            assert (record["host"], record["port"], record["pid"]) == ("127.0.0.1", port, daemon.proc.pid)
            assert record["started_at"] and record["broker"] == "embedded"
            assert path == tmp_path / "run" / "hall-demo.json"
            text = path.read_text()
            assert not any(pw in text for pw in passwords(config).values())

            kiosk = daemon.client("kiosk-1", role="kiosk")
            kiosk.request("issue_ticket", service="legal_aid")
            kiosk.close()
            code, out, err, _ = hallctl("status", "--config", str(config), "--json")
            assert code == 0 and "Traceback" not in err and err.strip() == "", err
            snap = json.loads(out)
            assert snap["reached"] == {"via": "daemon", "mqtt": f"127.0.0.1:{port}", "address_from": "runtime_file"}
            assert snap["queues"]["legal_aid"]["waiting"] == 1
            code, out, err, _ = hallctl("status", "--config", str(config))
            assert f"来源：守护进程 127.0.0.1:{port}（地址取自运行时文件）" in out and "法律援助(B) 1人" in out

            # --mqtt-url wins over the file.
            code, out, _, _ = hallctl("status", "--config", str(config), "--json", "--mqtt-url", f"127.0.0.1:{port}")
            assert json.loads(out)["reached"]["address_from"] == "--mqtt-url"
            # A change aimed at a wrong address while the daemon lives: refused, database untouched.
            code, out, err, _ = hallctl("reset-day", "--config", str(config), "--mqtt-url", f"127.0.0.1:{free_port()}")
            line = one_line(err)
            assert code == 1 and "未修改数据库" in line and f"pid {daemon.proc.pid}" in line and not out
            code, out, err, _ = hallctl("appointment", "add", "--config", str(config), "--code", "P1",
                                        "--service", "notary", "--start", "2099-01-05T10:00",
                                        "--mqtt-url", f"127.0.0.1:{free_port()}")
            assert code == 1 and "未修改数据库" in one_line(err)
            # Through the file, the change reaches the daemon.
            code, out, err, _ = hallctl("reset-day", "--config", str(config))
            assert code == 0 and "号码从001开始" in out and err.strip() == "", err
            code, out, _, _ = hallctl("status", "--config", str(config), "--json")
            assert json.loads(out)["queues"]["legal_aid"]["waiting"] == 0

            # Positive control: without the file the command asks the configured port and falls back.
            hidden = path.with_name("hidden.json")
            path.rename(hidden)
            code, out, err, _ = hallctl("status", "--config", str(config), "--json")
            assert json.loads(out)["reached"]["via"] == "database"
            assert "无应答" in one_line(err)
            hidden.rename(path)
        finally:
            assert daemon.terminate() == 0
        assert not path.exists(), "a clean stop removes the runtime file"
    finally:
        holder.close()
