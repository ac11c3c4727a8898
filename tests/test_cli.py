"""hallctl as an operator uses it."""

from __future__ import annotations

import yaml

from hall_controller.cli import main as hallctl
from hall_controller.config import parse_config

from .daemonkit import DaemonProcess, free_port, init_hall


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
    assert "daemon not reachable" in captured.err
    assert '"windows"' in captured.out
