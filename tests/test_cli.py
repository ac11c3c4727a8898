"""hallctl as an operator uses it."""

from __future__ import annotations

import json

import pytest
import yaml

from hall_controller.cli import main as hallctl
from hall_controller.config import parse_config, sample_config_text

from .harness import DaemonProcess, free_port, init_hall, wait_until


def test_sample_config_prints_a_valid_hall(capsys):
    assert hallctl(["sample-config"]) == 0
    out = capsys.readouterr().out
    cfg = parse_config(yaml.safe_load(out), "stdout")
    assert cfg.hall_id == "demo" and "示范区公共法律服务中心" in out


def test_init_creates_secret_credentials_and_schema(tmp_path, capsys):
    config = tmp_path / "hall.yaml"
    assert hallctl(["init", "--config", str(config)]) == 0
    assert (tmp_path / "hall.secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "client-passwords.yaml").stat().st_mode & 0o777 == 0o600
    creds = yaml.safe_load((tmp_path / "credentials.yaml").read_text())
    assert "kiosk-1" in str(creds) and "window-8" in str(creds)
    assert (tmp_path / "hall.db").exists()
    assert hallctl(["init", "--config", str(config)]) == 0         # idempotent


def test_bad_config_exits_2_with_the_field(tmp_path, capsys):
    config = tmp_path / "hall.yaml"
    hallctl(["sample-config"])
    text = capsys.readouterr().out.replace("prefix: B", "prefix: A")
    config.write_text(text, encoding="utf-8")
    assert hallctl(["status", "--config", str(config)]) == 2
    assert "services[1] (legal_aid).prefix: duplicate prefix 'A'" in capsys.readouterr().err


def test_run_status_reset_day_and_clean_stop(tmp_path, capsys):
    port = free_port()

    def listen_here(data):
        data["mqtt"]["listen"] = f"127.0.0.1:{port}"
    config = init_hall(tmp_path, listen_here)
    daemon = DaemonProcess(config, port)
    daemon.start()
    try:
        kiosk = daemon.client("kiosk-1", role="kiosk")
        assert kiosk.request("issue_ticket", service="legal_aid")["ticket"]["number"] == "B001"
        kiosk.close()
        capsys.readouterr()
        assert hallctl(["status", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "法律援助(B) 1人" in out and "3号窗口  未登录" in out
        assert hallctl(["reset-day", "--config", str(config)]) == 0
        assert "号码从001开始" in capsys.readouterr().out
        kiosk = daemon.client("kiosk-1", role="kiosk")
        assert kiosk.request("issue_ticket", service="legal_aid")["ticket"]["number"] == "B001"
        kiosk.close()
    finally:
        code = daemon.terminate()
    assert code == 0
    assert any(line.endswith(": stopped") for line in daemon.log)


def test_status_without_a_daemon_reads_the_database(tmp_path, capsys):
    port = free_port()          # nothing listens there

    def listen_here(data):
        data["mqtt"]["listen"] = f"127.0.0.1:{port}"
    config = init_hall(tmp_path, listen_here)
    capsys.readouterr()
    assert hallctl(["status", "--config", str(config), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"无法连接 127.0.0.1:{port} 的 MQTT 服务（连接被拒绝），改为直接读取数据库" in captured.err
    assert '"windows"' in captured.out and json.loads(captured.out)["reached"]["via"] == "database"


@pytest.mark.slow
def test_run_emulator_option_points_the_daemon_at_the_emulator_control_api(tmp_path):
    """The config names one control port, `hall-emu run --control` listens on another: --emulator
    connects the daemon's emulated devices there; without it the log says what is wrong."""
    from hall_controller.config import load_config
    from hw_emulators.hall import EmulatedHall

    port, wrong = free_port(), free_port()

    def prepare(data):
        data["mqtt"]["listen"] = f"127.0.0.1:{port}"
        data["emulator"]["control"] = f"127.0.0.1:{wrong}"     # nothing listens there
        data["devices"] = [d for d in data["devices"] if d["id"] in ("bus-1", "led-3", "keypad-3")]
        for window in data["windows"]:
            window["devices"] = [d for d in window["devices"] if d in ("led-3", "keypad-3")]
    config = init_hall(tmp_path, prepare)
    emulated = EmulatedHall(load_config(config).devices, link="tcp")
    emulated.start()
    try:
        host, control = emulated.serve_control("127.0.0.1", 0)
        daemon = DaemonProcess(config, port)
        daemon.start()
        try:
            assert any(f"emulator control API at 127.0.0.1:{wrong} not reachable" in line and "--emulator" in line
                       for line in daemon.log), daemon.log
        finally:
            assert daemon.terminate() == 0

        daemon = DaemonProcess(config, port, "--emulator", f"{host}:{control}")
        daemon.start()
        try:
            assert any(f"served by the emulator at {host}:{control}" in line for line in daemon.log), daemon.log
            admin = daemon.client("admin", role="admin")
            try:
                wait_until(lambda: admin.request("status")["devices"].get("bus-1", {}).get("online"),
                           timeout=15, what="bus-1 online through the emulator named by --emulator")
            finally:
                admin.close()
        finally:
            assert daemon.terminate() == 0
    finally:
        emulated.stop()


def test_run_emulator_option_must_be_host_port(tmp_path, capsys):
    config = init_hall(tmp_path)
    assert hallctl(["run", "--config", str(config), "--emulator", "8790"]) == 2
    assert "--emulator must be HOST:PORT" in capsys.readouterr().err


@pytest.mark.slow
def test_every_command_that_opens_the_database_takes_db(tmp_path, capsys):
    """--db as for `run`: the config's database (hall.db) is never touched, the other one is used."""
    port = free_port()          # nothing listens there: the admin ops take their offline path
    data = yaml.safe_load(sample_config_text())
    data["mqtt"]["listen"] = f"127.0.0.1:{port}"
    config = tmp_path / "hall.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    other = tmp_path / "elsewhere" / "other.db"
    db = ["--config", str(config), "--db", f"sqlite:///{other}"]

    assert hallctl(["init", *db]) == 0
    assert f"database ready: sqlite:///{other}" in capsys.readouterr().out
    assert hallctl(["db", "upgrade", *db]) == 0
    assert hallctl(["appointment", "add", *db, "--code", "P1", "--service", "notary",
                    "--start", "2099-01-05T10:00", "--name", "李四"]) == 0
    assert hallctl(["appointment", "list", *db, "--from", "2099-01-05"]) == 0
    assert "P1  2099-01-05 10:00:00  公证服务" in capsys.readouterr().out
    assert hallctl(["reset-day", *db]) == 0
    assert hallctl(["status", *db, "--json"]) == 0
    capsys.readouterr()
    assert hallctl(["status", *db]) == 0
    assert "排队：" in capsys.readouterr().out
    assert hallctl(["outbox", *db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == 0
    assert hallctl(["report", "month", "2099-01", *db, "--out", str(tmp_path / "reports")]) == 0
    assert [p.name for p in (tmp_path / "reports").glob("*.json")] == ["report-310101-demo-2099-01.json"]
    assert other.exists() and not (tmp_path / "hall.db").exists()


def test_hash_pin_reads_the_pin_from_stdin_never_from_argv(monkeypatch, capsys):
    """A PIN on the command line is visible to every user in `ps`: hash-pin takes none."""
    import io
    import sys

    from hall_controller.config import verify_pin

    monkeypatch.setattr(sys, "stdin", io.StringIO("2468\n"))
    assert hallctl(["hash-pin", "--pin-stdin"]) == 0
    assert verify_pin("2468", capsys.readouterr().out.strip())
    with pytest.raises(SystemExit):
        hallctl(["hash-pin", "2468"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("12\n"))
    assert hallctl(["hash-pin", "--pin-stdin"]) == 2        # too short: refused, nothing printed on stdout
    assert capsys.readouterr().out == ""
