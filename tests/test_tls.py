"""The hall network over TLS (issue 18 item 9): a hall CA and the broker's certificate from `hallctl tls init`,
Mosquitto's TLS listener from `hallctl mqtt-config --tls-dir`, a real Mosquitto, the daemon (`hallctl run
--mqtt-url mqtts://…` with the config's `mqtt.ca`) and the apps over `mqtts://`; a client without the hall
CA, or reaching a broker whose certificate names another host, is refused, and an app says so in Chinese.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from hall_controller.bus.client import HallClient, TlsFailed
from hall_controller.bus.credentials import DAEMON_CLIENT_ID, CredentialStore
from hall_controller.bus.tls import RENEW_BEFORE, ensure_hall_ca, read_cert, signed_by, tls_files
from hall_controller.bus.url import MqttUrlError, parse_mqtt_url, password_from_files
from hall_controller.clock import ManualClock
from hall_controller.config import load_config
from hall_controller.faults import TLS_REFUSED_TEXT
from hall_controller.logsetup import install_redaction

from .harness import (
    MONDAY,
    PIN,
    DaemonProcess,
    Mosquitto,
    RawClient,
    free_port,
    hallctl,
    have_mosquitto,
    init_hall,
    no_devices,
    passwords,
    wait_until,
)

needs_mosquitto = pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")


def write_secret(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@dataclass
class TlsHall:
    config: Path
    tls: Path                 # ca.crt, ca.key, server.crt, server.key
    tls_port: int
    plain_port: int
    mosquitto: Mosquitto
    daemon: DaemonProcess
    daemon_password: str

    @property
    def ca(self) -> str:
        return str(self.tls / "ca.crt")

    def client(self, client_id: str, role: str, window: int | None = None, *, ca: str | None = "hall",
               host: str = "localhost", port: int | None = None, **kwargs) -> HallClient:
        """A HallClient over mqtts:// (not connected); `ca="hall"` is the hall CA, None the system's CAs."""
        return HallClient(client_id, passwords(self.config)[client_id], host, port or self.tls_port, "demo",
                          role=role, window=window, tls=True, ca=self.ca if ca == "hall" else ca, **kwargs)


def tls_listener(tmp: Path, config: Path, tls_dir: Path, name: str) -> tuple[Mosquitto, int, int]:
    """`hallctl mqtt-config --tls-dir` into tmp/name and a Mosquitto on it: (broker, TLS port, plain port)."""
    tls_port, plain_port = free_port(), free_port()
    assert hallctl(["--log-level", "WARNING", "mqtt-config", "--config", str(config), str(tmp / name),
                    "--tls-dir", str(tls_dir), "--tls-port", str(tls_port),
                    "--plain-listen", f"127.0.0.1:{plain_port}"]) == 0
    conf = (tmp / name / "hall.conf").read_text()
    (tmp / f"{name}-run").mkdir()
    broker = Mosquitto(tmp / f"{name}-run", conf)
    broker.start(tls_port, plain_port)
    return broker, tls_port, plain_port


@pytest.fixture
def tls_hall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tls_port_hint = free_port()

    def over_tls(data: dict) -> None:
        no_devices(data)
        # as on a hall PC: the daemon's broker by name, the CA relative to the config's folder
        data["mqtt"] = {"url": f"mqtts://{DAEMON_CLIENT_ID}@localhost:{tls_port_hint}", "ca": "tls/ca.crt"}

    config = init_hall(tmp_path, over_tls)
    tls = tmp_path / "tls"
    assert hallctl(["--log-level", "WARNING", "tls", "init", "--config", str(config), "--dir", str(tls),
                    "--host", "localhost", "--ip", "127.0.0.1"]) == 0
    # The daemon's account, its password handed over as systemd would (LoadCredential=mqtt-password).
    daemon_password = CredentialStore(load_config(config).credentials_path).add_or_reset(DAEMON_CLIENT_ID, "daemon")
    credentials = tmp_path / "daemon-credentials"
    write_secret(credentials / "mqtt-password", daemon_password)
    broker, tls_port, plain_port = tls_listener(tmp_path, config, tls, "mosquitto")
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["mqtt"]["url"] = f"mqtts://{DAEMON_CLIENT_ID}@localhost:{tls_port}"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    daemon = DaemonProcess(config, tls_port, "--mqtt-url", f"mqtts://{DAEMON_CLIENT_ID}@localhost:{tls_port}")
    try:
        daemon.start()
        monkeypatch.delenv("CREDENTIALS_DIRECTORY")
        yield TlsHall(config, tls, tls_port, plain_port, broker, daemon, daemon_password)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()
        broker.stop()


def admin_status(capsys: pytest.CaptureFixture, config: Path, *extra: str) -> tuple[dict, str]:
    capsys.readouterr()
    assert hallctl(["--log-level", "WARNING", "status", "--config", str(config), "--json", *extra]) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def local_address() -> str | None:
    """This PC's address on its LAN (no packet is sent), or None when it has none but the loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


# ------------------------------------------------------------------------------ the hall over mqtts://


@pytest.mark.slow
@pytest.mark.mosquitto
@needs_mosquitto
def test_the_daemon_and_every_role_work_over_mqtts(tls_hall: TlsHall, capsys) -> None:
    hall = tls_hall
    clients = {cid: hall.client(cid, role, window) for cid, role, window in
               [("kiosk-1", "kiosk", None), ("window-1", "window", None), ("tablet-1", "tablet", 1),
                ("display-1", "display", None)]}
    try:
        for client in clients.values():
            client.connect(timeout=10)
            sock = client._mqtt.socket()
            assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        kiosk, window, tablet, display = clients.values()
        ticket = kiosk.request("issue_ticket", service="consult")["ticket"]
        assert ticket["number"] == "A001"
        assert window.request("login", staff_id="S001", pin=PIN)["window"]["status"] == "idle"
        assert window.request("call_next")["ticket"]["id"] == ticket["id"]
        called = display.wait_for_event(lambda e: e["type"] == "ticket_called" and e["ticket"]["id"] == ticket["id"])
        assert called["window"] == 1
        window.request("start")
        window.request("finish", outcome="completed")
        tablet.wait_for_event(lambda e: e["type"] == "rating_requested" and e["ticket"]["id"] == ticket["id"])
        assert tablet.request("rate", ticket=ticket["id"], score=5)["ticket"]["rating"]["score"] == 5
        assert display.state.hall["state"] == "online"
    finally:
        for client in clients.values():
            client.close()

    # hallctl reaches the daemon over TLS: through its runtime file (the config's CA), and with --ca
    snap, err = admin_status(capsys, hall.config)
    assert snap["reached"] == {"via": "daemon", "mqtt": f"localhost:{hall.tls_port}", "address_from": "runtime_file"}
    assert err.strip() == "" and snap["queues"]["consult"]["waiting"] == 0
    snap, _ = admin_status(capsys, hall.config, "--mqtt-url", f"mqtts://127.0.0.1:{hall.tls_port}", "--ca", hall.ca)
    assert snap["reached"]["via"] == "daemon" and snap["reached"]["address_from"] == "--mqtt-url"

    # The plain listener is the hall PC's own: on the loopback only, the LAN gets TLS.
    conf = (hall.config.parent / "mosquitto" / "hall.conf").read_text()
    assert f"listener {hall.plain_port} 127.0.0.1\n" in conf and f"listener {hall.tls_port}\n" in conf
    lan = local_address()
    if lan is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((lan, hall.plain_port), timeout=2).close()
        socket.create_connection((lan, hall.tls_port), timeout=2).close()

    daemon_log = "\n".join(hall.daemon.log)
    assert f"broker mqtts://{DAEMON_CLIENT_ID}@localhost:{hall.tls_port}" in daemon_log
    assert hall.daemon_password not in daemon_log


@pytest.mark.slow
@pytest.mark.mosquitto
@needs_mosquitto
def test_a_qt_app_over_mqtts_with_its_password_from_systemd(tls_hall: TlsHall, tmp_path: Path) -> None:
    """hall-display as an app PC starts it: mqtts:// with --ca, no password on the command line (systemd's
    credential); it shows online in its retained client status, and offline when it stops."""
    hall = tls_hall
    password = passwords(hall.config)["display-1"]
    credentials = write_secret(tmp_path / "display-credentials" / "mqtt-password", password).parent
    watcher = RawClient(hall.plain_port, "admin", passwords(hall.config)["admin"])   # on the hall PC itself
    log_path = tmp_path / "hall-display.log"
    argv = [sys.executable, "-c", "from kiosk_ui.app import main_display; raise SystemExit(main_display())",
            "--mqtt-url", f"mqtts://display-1@localhost:{hall.tls_port}", "--ca", hall.ca, "--hall", "demo",
            "--windowed", "--log-level", "DEBUG"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CREDENTIALS_DIRECTORY": str(credentials)}
    with log_path.open("w") as log_file:
        app = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        assert password not in " ".join(argv)
        assert watcher.connect()
        watcher.subscribe("hall/demo/client/display-1/status")

        def status() -> str | None:
            assert app.poll() is None, log_path.read_text()
            states = watcher.json_on("hall/demo/client/display-1/status")
            return states[-1]["state"] if states else None

        wait_until(lambda: status() == "online", 30, "hall-display online over mqtts", interval=0.1)
        app.terminate()
        assert app.wait(15) == 0, log_path.read_text()
        wait_until(lambda: watcher.json_on("hall/demo/client/display-1/status")[-1]["state"] == "offline", 5,
                   "hall-display offline")
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        watcher.close()
    log = log_path.read_text()
    assert "display-1: connected to localhost" in log and password not in log


# ------------------------------------------------------------------------------ refused


def failures(caplog: pytest.LogCaptureFixture, client_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hall_controller.bus.client" and "TLS handshake" in r.getMessage()
            and r.getMessage().startswith(client_id)]


@pytest.mark.slow
@pytest.mark.mosquitto
@needs_mosquitto
def test_a_client_without_the_hall_ca_is_refused(tls_hall: TlsHall, caplog, capsys, tmp_path) -> None:
    caplog.set_level(logging.DEBUG, logger="hall_controller.bus.client")
    stranger = tls_hall.client("kiosk-1", "kiosk", ca=None, reconnect_min_delay=0.5, reconnect_max_delay=10)
    try:
        start = time.monotonic()
        with pytest.raises(TlsFailed):
            stranger.connect(timeout=10)
        assert time.monotonic() - start < 5          # said at once, not after the connect timeout
        assert "certificate verify failed" in (stranger.tls_failure or "")
        assert not stranger.connected
        time.sleep(3)        # the client keeps trying, on its backoff (0.5, 1, 2 s …), not in a storm
        tried = failures(caplog, "kiosk-1")
        assert 2 <= len(tried) <= 5, [r.getMessage() for r in tried]
        assert [r.levelno for r in tried] == [logging.ERROR] + [logging.DEBUG] * (len(tried) - 1)
        assert "certificate verify failed" in tried[0].getMessage()
    finally:
        stranger.close()
    # the same account with the hall CA: in (the refusal was the certificate, not the password)
    friend = tls_hall.client("kiosk-1", "kiosk")
    friend.connect(timeout=10)
    friend.close()

    # hallctl with another hall's CA: one line that says so, the database read instead
    other = tmp_path / "other-hall"
    assert hallctl(["--log-level", "WARNING", "tls", "init", "--config", str(tls_hall.config), "--dir", str(other),
                    "--host", "localhost"]) == 0
    snap, err = admin_status(capsys, tls_hall.config, "--mqtt-url", f"mqtts://localhost:{tls_hall.tls_port}",
                             "--ca", str(other / "ca.crt"))
    assert snap["reached"]["via"] == "database"
    assert "无法验证 localhost:" in err and "服务器证书" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.mosquitto
@needs_mosquitto
def test_a_certificate_for_another_name_is_refused_and_the_app_says_so(tls_hall: TlsHall, qtbot, qapp,
                                                                       tmp_path) -> None:
    """A broker whose certificate (from the right CA) names another host: refused, and the kiosk covers
    itself with TLS_REFUSED_TEXT; once the certificate is put right (`hallctl tls renew`, Mosquitto
    reloads it on SIGHUP) the app connects by itself and the text goes away."""
    from kiosk_ui.appkit import RefusedOverlay, show_refused
    from kiosk_ui.kiosk import KioskModel, KioskWindow
    from kiosk_ui.qtbus import QtHallBus

    moved = tmp_path / "moved-tls"
    moved.mkdir()
    for name in ("ca.crt", "ca.key"):
        shutil.copy2(tls_hall.tls / name, moved / name)
    assert hallctl(["--log-level", "WARNING", "tls", "renew", "--dir", str(moved), "--host", "elsewhere.example",
                    "--ip", "192.0.2.7"]) == 0
    assert signed_by(moved / "server.crt", tls_hall.tls / "ca.crt")
    broker, tls_port, _plain = tls_listener(tmp_path, tls_hall.config, moved, "moved")
    try:
        client = tls_hall.client("kiosk-1", "kiosk", host="127.0.0.1", port=tls_port,
                                 reconnect_min_delay=0.1, reconnect_max_delay=0.5)
        bus = QtHallBus(client, poll_ms=50)
        kiosk = KioskWindow(KioskModel(bus), "示范区公共法律服务中心")
        qtbot.addWidget(kiosk)
        kiosk.show()
        show_refused(kiosk, bus)
        bus.start(timeout=0.5)

        def overlay() -> RefusedOverlay | None:
            found = kiosk.findChild(RefusedOverlay)
            return found if found is not None and found.isVisible() else None

        try:
            qtbot.waitUntil(lambda: overlay() is not None, timeout=15_000)
            assert overlay().text.text() == TLS_REFUSED_TEXT == "无法验证服务器证书，请检查 CA 文件"
            assert "mismatch" in (client.tls_failure or "") and not bus.online
            # put right: the broker's certificate for the address the app uses
            assert hallctl(["--log-level", "WARNING", "tls", "renew", "--dir", str(moved), "--host", "localhost",
                            "--ip", "127.0.0.1"]) == 0
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGHUP)
            qtbot.waitUntil(lambda: bus.broker_online and overlay() is None, timeout=15_000)
            assert bus.refused is None and client.tls_failure is None
        finally:
            bus.close()
    finally:
        broker.stop()


# ------------------------------------------------------------------------------ the files


def fingerprints(directory: Path) -> tuple[str, str]:
    return read_cert(directory / "ca.crt").fingerprint, read_cert(directory / "server.crt").fingerprint


def test_tls_init_makes_private_keys_and_will_not_replace_the_ca(tmp_path: Path, capsys) -> None:
    config = init_hall(tmp_path)
    tls = tmp_path / "tls"
    args = ["--log-level", "WARNING", "tls", "init", "--config", str(config), "--dir", str(tls)]
    assert hallctl([*args, "--host", "hall-pc", "--host", "hall-pc.local", "--ip", "192.168.10.2"]) == 0
    out = capsys.readouterr().out
    files = tls_files(tls)
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.ca_cert.stat().st_mode) == 0o644
    ca, server = read_cert(files.ca_cert), read_cert(files.server_cert)
    assert ca.subject == "CN=示范区公共法律服务中心 Hall CA,O=示范区公共法律服务中心" and ca.is_ca
    assert server.names == ("DNS:hall-pc", "DNS:hall-pc.local", "IP:192.168.10.2") and not server.is_ca
    assert server.issuer == ca.subject and signed_by(files.server_cert, files.ca_cert)
    assert ca.fingerprint in out and "DNS:hall-pc, DNS:hall-pc.local, IP:192.168.10.2" in out

    before = fingerprints(tls)
    assert hallctl([*args, "--host", "other"]) == 1
    err = capsys.readouterr().err
    assert "每台应用 PC 都信任" in err and "--force" in err and "hallctl tls renew" in err
    assert fingerprints(tls) == before                       # nothing replaced
    assert hallctl([*args, "--force"]) == 0
    after = fingerprints(tls)
    assert after[0] != before[0] and after[1] != before[1]
    assert read_cert(files.server_cert).names[-1] == "IP:127.0.0.1"    # default: hostname, localhost, 127.0.0.1
    assert "DNS:localhost" in read_cert(files.server_cert).names

    capsys.readouterr()
    assert hallctl(["tls", "show", "--dir", str(tls)]) == 0
    shown = capsys.readouterr().out
    for line in ("大厅 CA / hall CA:", "服务器证书 / broker certificate:", "SHA-256 指纹 / fingerprint: " + after[0],
                 "由本大厅 CA 签发 / signed by this hall CA: 是 / yes", "(0600)", "days left"):
        assert line in shown, shown
    print(shown)


def test_ensure_hall_ca_keeps_the_ca_and_reissues_the_broker_certificate_only_when_needed(tmp_path: Path) -> None:
    clock = ManualClock(MONDAY)
    files = ensure_hall_ca(tmp_path, "示范中心", ["hall-pc"], ["10.0.0.2"], clock=clock)
    first = fingerprints(tmp_path)
    assert ensure_hall_ca(tmp_path, "示范中心", ["hall-pc"], ["10.0.0.2"], clock=clock) == files
    assert fingerprints(tmp_path) == first                                   # run again: nothing changes
    ensure_hall_ca(tmp_path, "示范中心", ["hall-pc"], ["10.0.0.3"], clock=clock)      # the hall PC moved
    moved = fingerprints(tmp_path)
    assert moved[0] == first[0] and moved[1] != first[1]
    assert read_cert(files.server_cert).names == ("DNS:hall-pc", "IP:10.0.0.3")
    clock.set(read_cert(files.server_cert).not_after - RENEW_BEFORE + timedelta(days=1))
    ensure_hall_ca(tmp_path, "示范中心", ["hall-pc"], ["10.0.0.3"], clock=clock)      # nearing its end
    renewed = fingerprints(tmp_path)
    assert renewed[0] == first[0] and renewed[1] != moved[1]
    assert read_cert(files.server_cert).not_after > clock.now() + timedelta(days=800)
    with pytest.raises(ValueError, match="主机名无效"):
        ensure_hall_ca(tmp_path, "示范中心", ["hall pc"], [], clock=clock)
    assert fingerprints(tmp_path) == renewed                                  # a bad name writes nothing


def test_mqtt_config_keeps_the_plain_listener_on_the_loopback(tmp_path: Path, capsys) -> None:
    config = init_hall(tmp_path)
    tls = tmp_path / "tls"
    out = tmp_path / "mq"
    assert hallctl(["--log-level", "WARNING", "mqtt-config", "--config", str(config), str(out), "--tls-dir",
                    str(tls)]) == 2
    assert "hallctl tls init" in capsys.readouterr().err                      # no certificate yet
    ensure_hall_ca(tls, "示范中心", ["localhost"], ["127.0.0.1"])
    assert hallctl(["--log-level", "WARNING", "mqtt-config", "--config", str(config), str(out), "--tls-dir",
                    str(tls), "--plain-listen", "0.0.0.0:1883"]) == 2
    assert "127.0.0.1" in capsys.readouterr().err
    assert hallctl(["--log-level", "WARNING", "mqtt-config", "--config", str(config), str(out), "--tls-dir",
                    str(tls)]) == 0
    conf = (out / "hall.conf").read_text()
    plain, _, tls_part = conf.partition("listener 8883\n")
    assert "listener 1883 127.0.0.1\n" in plain and "allow_anonymous false" in plain
    for line in (f"cafile {tls / 'ca.crt'}", f"certfile {tls / 'server.crt'}", f"keyfile {tls / 'server.key'}",
                 "tls_version tlsv1.2", "require_certificate false", "use_username_as_clientid true"):
        assert line + "\n" in tls_part, conf
    # without --tls-dir: as before, one plain listener for the LAN
    assert hallctl(["--log-level", "WARNING", "mqtt-config", "--config", str(config), str(tmp_path / "plain")]) == 0
    plain_conf = (tmp_path / "plain" / "hall.conf").read_text()
    assert "listener 1883\n" in plain_conf and "cafile" not in plain_conf


# ------------------------------------------------------------------------------ URLs and passwords


def test_one_parser_for_mqtt_and_mqtts_urls() -> None:
    plain = parse_mqtt_url("mqtt://kiosk-1:p%40ss@10.0.0.5")
    assert (plain.host, plain.port, plain.username, plain.password, plain.tls, plain.ca) == (
        "10.0.0.5", 1883, "kiosk-1", "p@ss", False, None)
    secure = parse_mqtt_url("mqtts://hall-daemon@hall-pc", ca="/etc/hall/tls/ca.crt")
    assert (secure.host, secure.port, secure.username, secure.password, secure.tls, secure.ca) == (
        "hall-pc", 8883, "hall-daemon", None, True, "/etc/hall/tls/ca.crt")
    assert parse_mqtt_url("127.0.0.1:2883").port == 2883 and parse_mqtt_url("tcp://h:1").tls is False
    assert parse_mqtt_url("mqtt://h", ca="x.crt").ca is None       # nothing to check on a plain connection
    assert parse_mqtt_url("mqtts://[::1]:9883").address == "[::1]:9883"
    for bad, fragment in [("http://a:b@h:1", "mqtts://"), ("mqtts://:8883", "mqtt://"), ("mqtt://h:99999", "端口")]:
        with pytest.raises(MqttUrlError, match=fragment):
            parse_mqtt_url(bad)


def test_the_password_is_never_shown(tmp_path: Path) -> None:
    secret = "Zx9-secret-Pw-31"
    endpoint = parse_mqtt_url(f"mqtts://window-3:{secret}@hall-pc:8883", ca="/etc/hall/tls/ca.crt")
    assert endpoint.password == secret
    for text in (repr(endpoint), str(endpoint), endpoint.url(), f"{endpoint!r} {endpoint}"):
        assert secret not in text and "***" in text, text
    assert str(endpoint) == "mqtts://window-3:***@hall-pc:8883"
    with pytest.raises(MqttUrlError) as bad:
        parse_mqtt_url(f"mqtts://window-3:{secret}@hall-pc:notaport")
    assert secret not in str(bad.value) and "mqtts://window-3:***@hall-pc:notaport" in str(bad.value)
    # a log handler as every program of the hall installs it (logsetup: redaction on the handler)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_redaction(handler)
    log = logging.getLogger("hall_controller.test_tls")
    log.addHandler(handler)
    try:
        log.warning("broker %s (%r)", endpoint, endpoint)
        log.warning("raw URL mqtts://window-3:%s@hall-pc:8883 and the password alone: %s", secret, secret)
    finally:
        log.removeHandler(handler)
    written = stream.getvalue()
    assert "broker mqtts://window-3:***@hall-pc:8883" in written and secret not in written
    # a password file: its first line, registered as a secret too
    path = write_secret(tmp_path / "pw", "An0ther-file-Secret")
    assert password_from_files(path) == "An0ther-file-Secret"
    with pytest.raises(ValueError, match="无法读取密码文件"):
        password_from_files(tmp_path / "missing")
