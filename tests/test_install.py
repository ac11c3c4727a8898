"""`hallctl install` / `uninstall` (issue 18 items 1-2): the hall PC's and the app PCs' files, installed
into a temporary root.

What the tests show: the tree with its modes (and owners, where this machine has the users); a config
that loads; every unit clean under `systemd-analyze verify`; a second install changing nothing; the
uninstall leaving the data; each app kind with its password only in a root-only file; the session
script starting an app again after it exits; DeviceAllow naming exactly the configured serial ports;
and the installed hall serving, on its embedded broker and on a real Mosquitto with the installed
files (TLS to the app PCs, the daemon's password handed over as systemd would).
"""

from __future__ import annotations

import dataclasses
import grp
import io
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hall_controller.bus.client import HallClient
from hall_controller.bus.credentials import CredentialStore
from hall_controller.config import load_config, sample_config_text
from hall_controller.operate.install import DAEMON_URL, device_access
from hall_controller.operate.paths import HallPaths
from tests.harness import MOSQUITTO, DaemonProcess, Mosquitto, free_port, hallctl, have_mosquitto, wait_until

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
PASSWORD = "app-pw-1234567890"
ROLES = ("kiosk", "display", "tablet", "window")


# ------------------------------------------------------------------------------------------- helpers
def install(root: Path, *args: str, capsys: Any = None) -> str:
    """`hallctl install --root ROOT ARGS`; its output (asserts it succeeded)."""
    code = hallctl(["--log-level", "WARNING", "install", "--root", str(root), *args])
    out = capsys.readouterr().out if capsys is not None else ""
    assert code == 0, out
    return out


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under root: (bytes or link target, mode, uid, gid)."""
    result = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content: Any = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        result[str(path.relative_to(root))] = (content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def owner_ok(path: Path, user: str, group: str) -> bool:
    """The owner is as asked, when this machine has the user and group and we are root; else True."""
    try:
        uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        return True
    if os.geteuid() != 0:
        return True
    st = path.lstat()
    return (st.st_uid, st.st_gid) == (uid, gid)


def verify_units(*units: Path) -> None:
    """`systemd-analyze verify` prints nothing for each unit (it also checks that ExecStart exists)."""
    if SYSTEMD_ANALYZE is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    for unit in units:
        result = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", unit.name], cwd=unit.parent,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
            f"{unit.name}:\n{result.stdout}{result.stderr}"


def serial_config(tmp_path: Path) -> Path:
    """The sample hall with real hardware: the window bus and the card readers on serial ports, a USB
    printer, the PC's sound card."""
    data = yaml.safe_load(sample_config_text())
    urls = {"bus-1": "/dev/ttyS0", "card-reader-1": "/dev/serial/by-id/usb-Dory_DL6009-if00-port0",
            "card-reader-2": "/dev/ttyUSB1", "printer-1": "usb://0483:5743", "speaker-1": "audio://default"}
    for device in data["devices"]:
        if device["id"] in urls:
            device["url"] = urls[device["id"]]
    path = tmp_path / "real-hall.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture()
def hall_root(tmp_path: Path, capsys: Any) -> tuple[Path, str]:
    """The sample hall installed under tmp_path/root; (root, the install's output)."""
    root = tmp_path / "root"
    return root, install(root, "--staff-lan", "192.168.10.0/24", "--visitor-lan", "192.168.20.0/24",
                         "--host", "hall-pc", "--host", "192.168.10.2", capsys=capsys)


def run_here(root: Path) -> Path:
    """The installed config with its paths under `root` and the metrics on a free loopback port: the
    installed hall as this test can run it."""
    paths = HallPaths(root)
    text = paths.config.read_text(encoding="utf-8")
    text = text.replace("/etc/hall/", f"{paths.etc}/").replace("/var/lib/hall/", f"{paths.state}/")
    text = text.replace("0.0.0.0:9108", f"127.0.0.1:{free_port()}")
    paths.config.write_text(text, encoding="utf-8")
    return paths.config


# ------------------------------------------------------------------------------------------- hall PC
def test_hall_pc_tree_modes_and_config(hall_root: tuple[Path, str]) -> None:
    root, out = hall_root
    paths = HallPaths(root)
    expected = {   # path: (user, group, mode)
        paths.etc: ("root", "hall", 0o750),
        paths.config: ("root", "hall", 0o640),
        paths.secret: ("root", "hall", 0o640),
        paths.credentials: ("root", "hall", 0o640),
        paths.client_passwords: ("root", "root", 0o600),
        paths.daemon_password: ("root", "root", 0o600),
        paths.web_password: ("root", "root", 0o600),
        paths.tls / "ca.key": ("root", "root", 0o600),
        paths.tls / "ca.crt": ("root", "root", 0o644),
        paths.state: ("hall", "hall", 0o750),
        paths.runtime: ("hall", "hall", 0o750),
        paths.backups: ("hall", "hall", 0o750),
        paths.database: ("hall", "hall", 0o640),
        paths.mosquitto_files: ("root", "mosquitto", 0o750),
        paths.mosquitto_files / "passwd": ("root", "mosquitto", 0o640),
        paths.mosquitto_files / "acl": ("root", "mosquitto", 0o640),
        paths.mosquitto_files / "server.key": ("root", "mosquitto", 0o640),
        paths.mosquitto_conf: ("root", "root", 0o644),
        paths.nftables: ("root", "root", 0o644),
        **{paths.units / name: ("root", "root", 0o644)
           for name in ("hall-daemon.service", "hall-web.service", "hall-backup.service", "hall-backup.timer")},
    }
    for path, (user, group, want) in expected.items():
        assert path.exists(), path
        assert mode(path) == want, f"{path}: {mode(path):o}, want {want:o}"
        assert owner_ok(path, user, group), path
        assert f"{user}:{group} {want:04o}" in out, path   # what the live install sets, said
    assert os.readlink(paths.runtime_link) == "../../var/lib/hall/run"
    assert paths.runtime_link.resolve() == paths.runtime.resolve()

    config = load_config(paths.config)
    assert config.database == "sqlite:////var/lib/hall/hall.db"
    assert config.credentials_path == "/etc/hall/credentials.yaml" and config.secret_path == "/etc/hall/hall.secret"
    assert config.mqtt_url == DAEMON_URL and config.mqtt_listen is None
    assert config.metrics_listen == "0.0.0.0:9108"
    # the daemon's password: one line, the same as in client-passwords; its hash for Mosquitto
    passwords = yaml.safe_load(paths.client_passwords.read_text(encoding="utf-8"))
    assert paths.daemon_password.read_text() == passwords["hall-daemon"] + "\n"
    assert CredentialStore(paths.credentials).verify("hall-daemon", passwords["hall-daemon"])
    assert set(passwords) >= {c.id for c in config.clients}
    broker = paths.mosquitto_conf.read_text()
    assert "listener 1883 127.0.0.1" in broker and "listener 8883" in broker
    assert f"keyfile {paths.mosquitto_files}/server.key" in broker
    assert not (paths.mosquitto_files / "hall.conf").exists()       # the one Mosquitto reads is in conf.d
    assert "192.168.10.0/24" in paths.nftables.read_text()
    unit = (paths.units / "hall-daemon.service").read_text()
    assert f"ExecStart={Path(sys.executable).parent}/hallctl run --config /etc/hall/hall.yaml" in unit
    assert "LoadCredential=mqtt-password:/etc/hall/daemon-password" in unit
    assert "DevicePolicy=closed" in unit and "DeviceAllow" not in unit     # every sample device is emulated
    for line in ("Type=notify", "WatchdogSec=30", "Restart=always", "User=hall", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/hall", "PrivateTmp=yes", "NoNewPrivileges=yes", "SupplementaryGroups=dialout lp"):
        assert f"\n{line}\n" in unit, line
    # the phone page: on the LAN, its QR codes naming the first --host; its password handed over by systemd
    assert config.web_listen == "0.0.0.0:8080" and config.web_public_url == "http://hall-pc:8080"
    assert paths.web_password.read_text() == passwords["web-1"] + "\n"
    web = (paths.units / "hall-web.service").read_text()
    assert (f"ExecStart={Path(sys.executable).parent}/hall-web --config /etc/hall/hall.yaml --client web-1 "
            "--password-file %d/mqtt-password\n") in web
    for line in ("LoadCredential=mqtt-password:/etc/hall/web-password", "DynamicUser=yes", "SupplementaryGroups=hall",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=always"):
        assert f"\n{line}\n" in web, line
    backup = (paths.units / "hall-backup.service").read_text()
    assert "hallctl backup --config /etc/hall/hall.yaml --dir /var/lib/hall/backups --keep 14\n" in backup
    assert "OnCalendar=*-*-* 02:30\nPersistent=true\n" in (paths.units / "hall-backup.timer").read_text()
    for secret in passwords.values():
        assert secret not in out
    assert "useradd" in out and "skipped" in out


def test_units_pass_systemd_analyze_verify(tmp_path: Path, capsys: Any) -> None:
    """Every unit either install writes, the hall PC's with real devices (DeviceAllow lines) and an app
    PC's (its ExecStart, /usr/bin/xinit, must exist)."""
    hall = tmp_path / "hall"
    install(hall, "--config", str(serial_config(tmp_path)), capsys=capsys)
    units = sorted((hall / "etc/systemd/system").iterdir())
    assert [u.name for u in units] == ["hall-backup.service", "hall-backup.timer", "hall-daemon.service",
                                      "hall-web.service"]
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    app = tmp_path / "app"
    install(app, "--app", "kiosk", "--client", "kiosk-1", "--server", "hall-pc", "--hall", "demo",
            "--ca", str(hall / "etc/hall/tls/ca.crt"), "--password-file", str(tmp_path / "pw"), capsys=capsys)
    verify_units(*units, app / "etc/systemd/system/hall-app.service")


def test_device_allow_is_exactly_the_configured_ports(tmp_path: Path, capsys: Any) -> None:
    root = tmp_path / "root"
    install(root, "--config", str(serial_config(tmp_path)), capsys=capsys)
    unit = (root / "etc/systemd/system/hall-daemon.service").read_text()
    allowed = sorted(line for line in unit.splitlines() if line.startswith("DeviceAllow="))
    assert allowed == sorted(["DeviceAllow=/dev/ttyS0 rw", "DeviceAllow=/dev/serial/by-id/usb-Dory_DL6009-if00-port0 rw",
                              "DeviceAllow=/dev/ttyUSB1 rw", "DeviceAllow=char-usb_device rw",
                              "DeviceAllow=char-alsa rw"])
    assert "SupplementaryGroups=dialout lp audio" in unit
    # serial devices only: exactly their paths, no USB or sound device class
    config = load_config(root / "etc/hall/hall.yaml")
    serial_only = tuple(d for d in config.devices if not d.url.startswith(("usb:", "audio:")))
    allow, groups = device_access(dataclasses.replace(config, devices=serial_only))
    assert sorted(allow) == sorted(["DeviceAllow=/dev/ttyS0 rw", "DeviceAllow=/dev/ttyUSB1 rw",
                                    "DeviceAllow=/dev/serial/by-id/usb-Dory_DL6009-if00-port0 rw"])
    assert groups == ["dialout", "lp"]


def test_second_install_changes_nothing(hall_root: tuple[Path, str], capsys: Any) -> None:
    root, _ = hall_root
    before = tree(root)
    out = install(root, capsys=capsys)      # no options: the LANs and names are the saved ones
    assert tree(root) == before
    changing = [line for line in out.splitlines()
                if line.split(" ")[0] in ("写入", "创建", "设置", "删除", "链接", "密码", "配置")]
    assert changing == []
    assert "daemon-reload" not in out and "restart" not in out


def test_installing_a_changed_config_applies_it(hall_root: tuple[Path, str], tmp_path: Path, capsys: Any) -> None:
    """A new client gets a password and a Mosquitto entry; the old config is kept as hall.yaml.bak."""
    root, _ = hall_root
    paths = HallPaths(root)
    data = yaml.safe_load(paths.config.read_text(encoding="utf-8"))
    data["clients"].append({"id": "kiosk-9", "role": "kiosk"})
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    out = install(root, "--config", str(changed), capsys=capsys)
    assert "kiosk-9" in yaml.safe_load(paths.client_passwords.read_text(encoding="utf-8"))
    assert "user kiosk-9" in (paths.mosquitto_files / "acl").read_text()
    assert (paths.etc / "hall.yaml.bak").exists()
    assert "systemctl daemon-reload" not in out            # the units did not change ...
    assert "systemctl restart mosquitto.service" in out    # ... but the broker's files and the config did
    assert "systemctl try-restart hall-daemon.service" in out


def test_dry_run_writes_nothing(tmp_path: Path, capsys: Any) -> None:
    root = tmp_path / "root"
    root.mkdir()
    out = install(root, "--dry-run", "--staff-lan", "10.1.0.0/16", capsys=capsys)
    assert list(root.iterdir()) == []
    assert "hall-daemon.service" in out and "would" in out


def test_bad_input_writes_nothing(tmp_path: Path, capsys: Any) -> None:
    root = tmp_path / "root"
    bad = tmp_path / "bad.yaml"
    bad.write_text("hall: {id: Bad Id}\n", encoding="utf-8")
    assert hallctl(["install", "--root", str(root), "--config", str(bad)]) == 2
    assert hallctl(["install", "--root", str(root), "--staff-lan", "10.1.0.0/33"]) == 1
    assert hallctl(["install", "--root", str(root), "--client", "kiosk-1"]) == 2     # app options without --app
    assert not root.exists()
    err = capsys.readouterr().err
    assert "hall.id" in err and "10.1.0.0/33" in err and "--app" in err


def test_uninstall_removes_services_and_keeps_data(hall_root: tuple[Path, str], capsys: Any) -> None:
    root, _ = hall_root
    paths = HallPaths(root)
    kept = {p: p.read_bytes() for p in (paths.config, paths.secret, paths.client_passwords, paths.database)}
    assert hallctl(["--log-level", "WARNING", "uninstall", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert not any(paths.units.iterdir())
    assert not paths.mosquitto_conf.exists() and not paths.mosquitto_files.exists() and not paths.nftables.exists()
    assert {p: p.read_bytes() for p in kept} == kept
    assert "systemctl disable --now hall-daemon.service hall-web.service hall-backup.service hall-backup.timer" in out
    assert str(paths.etc) in out and str(paths.state) in out


# ------------------------------------------------------------------------------------------- app PCs
@pytest.fixture()
def hall_ca(tmp_path: Path) -> Path:
    from hall_controller.bus.tls import ensure_hall_ca

    return ensure_hall_ca(tmp_path / "hall-tls", "示范区公共法律服务中心", ["hall-pc"], ["192.168.10.2"]).ca_cert


@pytest.mark.parametrize("role", ROLES)
def test_app_pc(role: str, tmp_path: Path, hall_ca: Path, capsys: Any) -> None:
    root = tmp_path / "root"
    paths = HallPaths(root)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    client = f"{role}-3"
    out = install(root, "--app", role, "--client", client, "--server", "hall-pc", "--hall", "demo",
                  "--ca", str(hall_ca), "--password-file", str(tmp_path / "pw"), capsys=capsys)
    assert paths.app_password.read_text() == PASSWORD + "\n"
    assert mode(paths.app_password) == (0o640 if role == "window" else 0o600)
    assert owner_ok(paths.app_password, "root", "hallclerk" if role == "window" else "root")
    assert paths.app_ca.read_bytes() == hall_ca.read_bytes() and mode(paths.app_ca) == 0o644
    assert yaml.safe_load(paths.app_config.read_text()) == {
        "role": role, "client": client, "server": "hall-pc", "port": 8883, "hall": "demo", "ca": "/etc/hall/tls/ca.crt"}
    program = f"{Path(sys.executable).parent}/hall-{role}"
    url = f"--mqtt-url mqtts://{client}@hall-pc:8883 --hall demo --ca /etc/hall/tls/ca.crt"
    if role == "window":
        entry = paths.autostart.read_text()
        assert f"Exec={program} {url} --password-file /etc/hall/app-password\n" in entry
        assert not (paths.units / "hall-app.service").exists() and not paths.session_script.exists()
        assert "gpasswd -a" in out and "groupadd --system hallclerk" in out
        command = entry
    else:
        unit_path = paths.units / "hall-app.service"
        unit = unit_path.read_text()
        assert (f"ExecStart=/usr/bin/xinit /usr/local/lib/hall/hall-session {program} {url} -- :0 vt7 -keeptty "
                "-nolisten tcp -s 0 -dpms -nocursor\n") in unit
        assert "LoadCredential=mqtt-password:/etc/hall/app-password" in unit and "User=hallapp" in unit
        assert mode(paths.session_script) == 0o755
        snippet = paths.xorg_snippet.read_text()
        assert 'Option "DontVTSwitch" "true"' in snippet and 'Option "DontZap" "true"' in snippet
        assert not paths.autostart.exists()
        assert "apt-get install -y -q --no-install-recommends xserver-xorg-core" in out
        assert "systemctl set-default multi-user.target" in out
        verify_units(unit_path)
        command = unit
    assert PASSWORD not in command and PASSWORD not in out


def test_app_password_from_stdin_then_kept(tmp_path: Path, hall_ca: Path, monkeypatch: Any, capsys: Any) -> None:
    """Piped on stdin the first time; a second install with nothing on stdin keeps it and changes
    nothing; the kind of PC can change (kiosk to window) and takes its files with it."""
    root = tmp_path / "root"
    paths = HallPaths(root)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    install(root, "--app", "kiosk", "--client", "kiosk-1", "--server", "10.0.0.2", "--hall", "demo",
            "--ca", str(hall_ca), capsys=capsys)
    assert paths.app_password.read_text() == PASSWORD + "\n"
    before = tree(root)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    install(root, "--app", "kiosk", capsys=capsys)      # the rest from app.yaml, the password kept
    assert tree(root) == before
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    install(root, "--app", "window", "--client", "window-1", capsys=capsys)
    assert mode(paths.app_password) == 0o640 and paths.app_password.read_text() == PASSWORD + "\n"
    assert paths.autostart.exists()
    assert not (paths.units / "hall-app.service").exists() and not paths.session_script.exists()
    assert not paths.xorg_snippet.exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    empty = tmp_path / "empty"
    assert hallctl(["install", "--root", str(empty), "--app", "display", "--client", "display-1", "--server",
                    "hall-pc", "--hall", "demo", "--ca", str(hall_ca)]) == 1      # no password anywhere
    assert not (empty / "etc/hall/app-password").exists()


def test_session_script_restarts_the_app(tmp_path: Path) -> None:
    """hall-session with a stub app that exits at once and a fake xset: blanking and DPMS are switched
    off, the app is started again and again with its arguments, and SIGTERM ends the session."""
    from hall_controller.operate.installer import template

    session = tmp_path / "hall-session"
    session.write_text(template("hall-session"))
    session.chmod(0o755)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    xset_log, starts = tmp_path / "xset.log", tmp_path / "starts"
    (fake_bin / "xset").write_text(f'#!/bin/sh\necho "$*" >> {xset_log}\n')
    app = tmp_path / "app"
    app.write_text(f'#!/bin/sh\necho "$*" >> {starts}\nexit 3\n')
    for script in (fake_bin / "xset", app):
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "HALL_SESSION_PAUSE": "0.05"}
    proc = subprocess.Popen([str(session), str(app), "--hall", "demo"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: starts.exists() and len(starts.read_text().splitlines()) >= 3, 10, "three app starts")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    assert code == 0
    assert set(starts.read_text().splitlines()) == {"--hall demo"}
    assert xset_log.read_text().splitlines() == ["s off", "s noblank", "-dpms"]
    assert "exited (status 3)" in (proc.stderr.read() if proc.stderr else "")


# ------------------------------------------------------------------------------------------- it runs
def test_installed_hall_reaches_ready(hall_root: tuple[Path, str]) -> None:
    root, _ = hall_root
    config = run_here(root)
    daemon = DaemonProcess(config, free_port())
    daemon.start()
    try:
        client = daemon.client("kiosk-1", role="kiosk")
        try:
            assert client.request("issue_ticket", service="consult")["ticket"]["number"] == "A001"
        finally:
            client.close()
    finally:
        assert daemon.terminate() == 0


@pytest.mark.mosquitto
@pytest.mark.skipif(not have_mosquitto(), reason=f"no {MOSQUITTO}")
def test_installed_hall_on_mosquitto_over_tls(hall_root: tuple[Path, str], tmp_path: Path, monkeypatch: Any) -> None:
    """The production path: Mosquitto with the installed listener snippet, password file, ACL and
    certificate (ports moved to free ones); the daemon on the plain loopback listener with its password
    handed over as systemd's LoadCredential does; an app PC's client over TLS with the hall CA."""
    root, _ = hall_root
    paths = HallPaths(root)
    plain, tls = free_port(), free_port()
    conf = paths.mosquitto_conf.read_text().replace("listener 1883 ", f"listener {plain} ")
    conf = conf.replace("listener 8883", f"listener {tls}")
    broker = Mosquitto(tmp_path, conf)
    broker.start(plain)
    credentials = tmp_path / "credentials"     # what systemd makes of LoadCredential=mqtt-password:…
    credentials.mkdir()
    shutil.copy(paths.daemon_password, credentials / "mqtt-password")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    # the config's mqtt.url (no password in it) with the test's port
    daemon = DaemonProcess(run_here(root), plain, "--mqtt-url", DAEMON_URL.replace(":1883", f":{plain}"))
    try:
        daemon.start()
        passwords = yaml.safe_load(paths.client_passwords.read_text(encoding="utf-8"))
        client = HallClient("kiosk-1", passwords["kiosk-1"], "localhost", tls, "demo", role="kiosk", tls=True,
                            ca=str(paths.tls / "ca.crt"))
        client.connect(timeout=10)
        try:
            assert client.request("issue_ticket", service="consult")["ticket"]["number"] == "A001"
        finally:
            client.close()
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        broker.stop()


def test_live_install_runs_the_system_steps_in_order(tmp_path: Path, monkeypatch: Any) -> None:
    """What a live install (root /, uid 0, systemd) runs, with recording stand-ins for useradd, apt-get,
    dpkg-query and systemctl on PATH: packages, the user, daemon-reload, the broker's restart, enable;
    the include lines added to mosquitto.conf and nftables.conf; a second run only re-enables."""
    from hall_controller.operate.install import HallOptions, install_hall
    from hall_controller.operate.installer import Installer

    fake_bin, calls = tmp_path / "bin", tmp_path / "calls"
    fake_bin.mkdir()
    for name in ("useradd", "usermod", "apt-get", "dpkg-query", "systemctl"):
        (fake_bin / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        (fake_bin / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    root = tmp_path / "root"
    (root / "etc/mosquitto").mkdir(parents=True)
    (root / "etc/mosquitto/mosquitto.conf").write_text("pid_file /run/mosquitto/mosquitto.pid\n")
    (root / "etc/nftables.conf").write_text("#!/usr/sbin/nft -f\nflush ruleset\n")
    lines: list[str] = []
    options = HallOptions(staff_lan=["192.168.10.0/24"])
    try:
        pwd.getpwnam("hall")
        user: list[str] = []      # this machine has a hall user already
    except KeyError:
        user = ["useradd --system --user-group --home-dir /var/lib/hall --no-create-home --shell /usr/sbin/nologin "
                "--groups dialout,lp hall"]

    def ran() -> list[str]:
        return [c for c in calls.read_text().splitlines() if not c.startswith(("dpkg-query", "usermod"))]

    assert install_hall(Installer(root, live=True, out=lines.append), options) == 0
    assert ran() == [
        "apt-get install -y -q --no-install-recommends mosquitto nftables", *user,
        "systemctl daemon-reload",
        "systemctl restart mosquitto.service",
        "systemctl try-restart hall-daemon.service",
        "systemctl enable --now mosquitto.service hall-daemon.service hall-web.service hall-backup.timer",
        "systemctl enable nftables.service",
        "systemctl restart nftables.service"]
    assert (root / "etc/mosquitto/mosquitto.conf").read_text().endswith("\ninclude_dir /etc/mosquitto/conf.d\n")
    assert (root / "etc/nftables.conf").read_text().endswith('\ninclude "/etc/nftables.d/*.nft"\n')
    calls.unlink()
    assert install_hall(Installer(root, live=True, out=lines.append), options) == 0
    assert ran() == ["apt-get install -y -q --no-install-recommends mosquitto nftables",   # dpkg-query says none
                     *user,                                                           # nor is there a hall user
                     "systemctl enable --now mosquitto.service hall-daemon.service hall-web.service hall-backup.timer",
                     "systemctl enable nftables.service"]
