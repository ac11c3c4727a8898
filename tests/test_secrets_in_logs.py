"""No secret in any log, reply, event or stored reply (issue 16, item 4).

The secrets of a hall: clerks' PINs, every MQTT client's password and the daemon's own, the upstream
token, the hall secret (the key of the ID-number hashes) and, as personal data, a visitor's clear ID
number. A whole visit runs with every component at DEBUG (card at the kiosk, clerk login with a PIN,
ticket printed, call, start, finish, rating on the tablet, the record delivered upstream with the
token) and every log line, every MQTT payload and every row of the database is scanned for each
secret in every form it could take (plain, hex, the UCS-2 hex of a card reader's frame). The
in-process capture has no redaction filter: the call sites themselves must be clean. A secret logged
on purpose is found (the scanner works), and programs started as users start them mask what a
careless call site would write (`hall_controller.redact` through `logsetup.setup_logging`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from hall_controller.bus.client import HallClient
from hall_controller.clock import ManualClock
from hall_controller.config import hash_pin, load_config
from hall_controller.logsetup import LOG_FORMAT
from hall_controller.redact import RedactingFilter, redact_args, redact_text, redact_url, register_secret
from hw_emulators.hall import EmulatedHall
from hw_emulators.mgmt import MgmtEmulator
from kiosk_ui.kiosk import KioskModel, KioskWindow
from kiosk_ui.qtbus import QtHallBus
from kiosk_ui.tablet import TabletView
from window_terminal.app import WINDOW_EVENTS
from window_terminal.terminal import WindowTerminal

from .harness import ELDER, DaemonProcess, Hall, free_port, init_hall, passwords, wait_until

PIN = "Pq7-53918"           # S001's PIN in this hall: a digit-only PIN would also match timestamps and ports
NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")   # a Monday morning
TIMEOUT = 15_000
UPSTREAM_TOKEN = "upstream-token-" + os.urandom(8).hex()   # the management system's bearer token


# ----------------------------------------------------------------------------------------- the scanner


def secret_forms(secrets: dict[str, str | bytes]) -> list[tuple[str, str]]:
    """(label, text) for every form a secret could take in a log: as given; bytes as hex (both cases)
    and as Python escapes; the ID number and name as a card reader's UCS-2 frame in hex."""
    forms = []
    for label, value in secrets.items():
        if isinstance(value, bytes):
            forms += [(label, value.hex()), (f"{label} (HEX)", value.hex().upper()),
                      (f"{label} (repr)", repr(value)[2:-1])]
            continue
        forms.append((label, value))
        if label.startswith("card"):
            ucs2 = value.encode("utf-16-le")
            forms += [(f"{label} (UCS-2 hex)", ucs2.hex(" ").upper()), (f"{label} (ucs-2 hex)", ucs2.hex())]
    return forms


def find_secrets(texts: Iterable[tuple[str, str]], secrets: dict[str, str | bytes]) -> list[str]:
    """Every secret found: "label in where: …excerpt…"."""
    forms = secret_forms(secrets)
    found = []
    for where, text in texts:
        for label, form in forms:
            at = text.find(form)
            if at >= 0:
                found.append(f"{label} in {where}: …{text[max(0, at - 80):at + len(form) + 40]}…")
    return found


def database_texts(path: Path) -> list[tuple[str, str]]:
    """Every row of every table, as text."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):     # noqa: S608 - names from sqlite_master
                out.append((f"db {table}", " | ".join(
                    v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row)))
    return out


class Capture(logging.Handler):
    """Every record of every logger, formatted as the programs write them (traceback included), with
    no redaction filter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture():
    root = logging.getLogger()
    handler, level = Capture(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# ---------------------------------------------------------------------------------------- the visit


def visit_hall(data: dict[str, Any]) -> None:
    """kiosk-1's card reader and printer, S001 with its own PIN, the upstream token in the config."""
    data["devices"] = [d for d in data["devices"] if d["id"] in ("card-reader-1", "printer-1")]
    for window in data["windows"]:
        window["devices"] = []
    staff = next(s for s in data["staff"] if s["id"] == "S001")
    staff["pin_hash"] = hash_pin(PIN)
    data["upstream"]["token"] = UPSTREAM_TOKEN


def control_api(host: str, port: int, path: str, body: dict[str, Any] | None = None) -> None:
    request = urllib.request.Request(f"http://{host}:{port}{path}", data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def tee_bus(client: HallClient, seen: list[tuple[str, str]]) -> QtHallBus:
    """A started QtHallBus whose client records every message it receives (replies, events, state, cards)."""
    original = client._mqtt.on_message

    def on_message(mqtt_client, userdata, message):
        seen.append((f"mqtt {message.topic} (to {client.client_id})", bytes(message.payload).decode("utf-8", "replace")))
        original(mqtt_client, userdata, message)

    client._mqtt.on_message = on_message
    bus = QtHallBus(client, poll_ms=50)
    bus.start()
    return bus


def test_a_whole_visit_at_debug_leaves_no_secret_anywhere(qtbot, tmp_path, capture, capfd):
    token = UPSTREAM_TOKEN
    clock = ManualClock(NOW)
    mgmt = MgmtEmulator(token=token).start()
    buses: list[QtHallBus] = []
    seen: list[tuple[str, str]] = []        # every MQTT payload the daemon sent or an app received
    hall: Hall | None = None
    try:
        hall = Hall(tmp_path, mutate=visit_hall, clock=clock, devices="tcp", device_urls=False, control=True,
                    upstream_url=mgmt.url)
        config, daemon, db = hall.config, hall.daemon, tmp_path / "hall.db"
        assert config.upstream_token == token and config.database == f"sqlite:///{db}"
        assert daemon is not None and daemon.bridge is not None and daemon.service is not None
        publish = daemon.bridge._publish

        def recording_publish(topic: str, payload: bytes, *, retain: bool) -> None:
            seen.append((f"mqtt {topic} (published)", bytes(payload).decode("utf-8", "replace")))
            publish(topic, payload, retain=retain)

        daemon.bridge._publish = recording_publish
        hall.wait_online(15, ("card-reader-1", "printer-1"))
        pw = hall.passwords

        def bus(client_id: str, role: str, window: int | None = None, events: Any = None) -> QtHallBus:
            client = HallClient(client_id, pw[client_id], hall.host, hall.port, config.hall_id, role=role,
                                window=window, events=events, reconnect_min_delay=0.1, reconnect_max_delay=0.5)
            made = tee_bus(client, seen)
            buses.append(made)
            qtbot.waitUntil(lambda: made.online, timeout=TIMEOUT)
            return made

        kiosk = KioskWindow(KioskModel(bus("kiosk-1", "kiosk"), config, clock), config.name)
        terminal = WindowTerminal(bus("window-1", "window", events=WINDOW_EVENTS), 1, clock=clock)
        tablet = TabletView(bus("tablet-1", "tablet", window=1), 1)
        for widget in (kiosk, terminal, tablet):
            qtbot.addWidget(widget)
            widget.show()

        # the clerk logs in with the PIN, typed into the terminal's login form
        qtbot.keyClicks(terminal.job_edit, "1001")
        qtbot.keyClicks(terminal.pin_edit, PIN)
        qtbot.keyClick(terminal.pin_edit, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: terminal.state.logged_in, timeout=TIMEOUT)

        # a visitor puts the ID card on kiosk-1's reader and takes a number with it; the printer prints it
        assert hall.post("/card-reader/card-reader-1/insert", ELDER)[0] == 200
        qtbot.waitUntil(lambda: kiosk.model.state.card is not None, timeout=TIMEOUT)
        qtbot.waitUntil(lambda: "consult" in kiosk._buttons and kiosk._buttons["consult"].isEnabled(),
                        timeout=TIMEOUT)
        kiosk._buttons["consult"].click()
        qtbot.waitUntil(lambda: kiosk.model.state.result is not None, timeout=TIMEOUT)
        result = kiosk.model.state.result
        assert result.printed is True and result.priority_label == "老年人优先"
        assert hall.post("/card-reader/card-reader-1/remove")[0] == 200

        # called, served, finished at window 1; rated on its tablet
        for op in ("call_next", "start"):
            qtbot.waitUntil(lambda op=op: terminal.buttons[op].isEnabled(), timeout=TIMEOUT)
            terminal.buttons[op].click()
        qtbot.waitUntil(lambda: (terminal.state.ticket or {}).get("status") == "serving", timeout=TIMEOUT)
        qtbot.waitUntil(lambda: terminal.buttons["finish"].isEnabled(), timeout=TIMEOUT)
        terminal.buttons["finish"].click()
        terminal.forms["finish"].confirm.click()
        qtbot.waitUntil(lambda: tablet.state.screen == "rating", timeout=TIMEOUT)
        tablet.choose_score(4)
        tablet.submit(with_dimensions=False)
        qtbot.waitUntil(lambda: tablet.state.screen == "thanks", timeout=TIMEOUT)

        # the service record reaches the management system with the bearer token
        wait_until(lambda: mgmt.received_records(), 20, "the service record upstream")
        records = mgmt.received_records()
        assert records[0]["body"]["ticket_number"] == result.number
        secrets = {
            "PIN": PIN,
            "upstream token": token,
            "daemon MQTT password": daemon.bridge._mqtt._password.decode(),
            "hall secret": bytes.fromhex(Path(config.secret_path).read_text().strip()),
            "card ID number": ELDER["id_number"],
            "card name": ELDER["name"],
            **{f"MQTT password of {client}": password for client, password in pw.items()},
        }
    finally:
        for made in buses:
            made.close()
        if hall is not None:
            hall.close()
        mgmt.stop()

    # a secret logged on purpose is found: the scanner sees what the capture holds
    control = logging.getLogger("tests.positive_control")
    control.debug("deliberately logged: pin=%s frame=%s", PIN, ELDER["id_number"].encode("utf-16-le").hex(" ").upper())
    out, err = capfd.readouterr()           # the broker child's log (it writes to the inherited stderr)
    texts = ([("log", line) for line in capture.lines] + [("child stderr", err), ("stdout", out)] + seen
             + database_texts(db) + [("upstream", json.dumps(r, ensure_ascii=False)) for r in records])
    found = find_secrets(texts, secrets)
    planted = [f for f in found if "tests.positive_control" in f]
    assert {f.split(" in ")[0] for f in planted} == {"PIN", "card ID number (UCS-2 hex)"}, found
    # the logs were captured at DEBUG from every part: the daemon, its bus, the devices' traffic, the apps
    joined = "\n".join(capture.lines)
    for part in ("DEBUG drivers.transport", "hall_controller.bus.bridge", "hall_controller.bus.client",
                 "window 1: login", "DEBUG hall_controller.upstream.client", "hw_emulators.mgmt"):
        assert part in joined, part
    assert [f for f in found if f not in planted] == []


# ------------------------------------------------------------------------ the daemon as a user starts it


def test_hallctl_run_at_debug_logs_no_pin_and_no_password(tmp_path, monkeypatch):
    """`hallctl run` at DEBUG next to an emulated card reader: a login (right and wrong PIN), a malformed
    login and a card read leave no PIN, password, hall secret or ID number in its log (its own call sites
    and, under them, the redaction filter its log setup installs)."""
    def hall(data: dict[str, Any]) -> None:
        visit_hall(data)
        data["devices"] = [d for d in data["devices"] if d["id"] == "card-reader-1"]

    config = init_hall(tmp_path, hall)
    monkeypatch.setenv("HALL_LOG_LEVEL", "DEBUG")
    with EmulatedHall(load_config(config).devices, link="tcp") as emu:
        host, port = emu.serve_control()
        daemon = DaemonProcess(config, free_port(), "--emulator", f"{host}:{port}")
        daemon.start()
        try:
            window = daemon.client("window-1", role="window", window=1)
            try:
                assert window.request("login", staff_id="S001", pin=PIN)["window"]["staff"]["id"] == "S001"
                window.request("logout")
                with pytest.raises(Exception, match="工号或密码错误"):
                    window.request("login", staff_id="S001", pin=PIN + "x")
                # a payload the bridge cannot parse is logged with its beginning: the PIN in it is masked
                bad = '{"id": "x1", "op": "login", "staff_id": "S001", "pin": "' + PIN + '", "bad": }'
                window._mqtt.publish(window._cmd_topic, bad, qos=0)
                wait_until(lambda: any("bad request from window-1" in line for line in daemon.log), 5,
                           "the bad request")
            finally:
                window.close()
            wait_until(lambda: any(" RX " in line for line in daemon.log), 10, "the card reader's traffic at DEBUG")
            control_api(host, port, "/card-reader/card-reader-1/insert", ELDER)
            wait_until(lambda: any("card-reader-1: card at kiosk-1: usable" in line for line in daemon.log), 10,
                       "the card read")
        finally:
            assert daemon.terminate() == 0
    log = "\n".join(daemon.log)
    assert " DEBUG drivers.transport" in log and "bad request from window-1" in log
    secrets = {"PIN": PIN, **{f"MQTT password of {c}": p for c, p in passwords(config).items()},
               "upstream token": load_config(config).upstream_token,
               "hall secret": bytes.fromhex((config.parent / "hall.secret").read_text().strip()),
               "card ID number": ELDER["id_number"], "card name": ELDER["name"]}
    assert find_secrets([("hallctl run", log)], secrets) == []
    assert find_secrets([("positive control", f"x {PIN} y")], secrets) == ["PIN in positive control: …x Pq7-53918 y…"]


# ------------------------------------------------------------------------------- the redaction layer


@pytest.mark.parametrize(("text", "secret"), [
    ("window 1: login {'staff_id': 'S001', 'pin': 'Pq7-53918'}", "Pq7-53918"),
    ('{"id": "1", "op": "login", "pin": "Pq7-53918"}', "Pq7-53918"),
    (r'b\'{"op":"login","pin":"Pq7-53918"}\'', "Pq7-53918"),
    (r'{"payload": "{\"pin\": \"Pq7-53918\"}"}', "Pq7-53918"),
    ("started with --mqtt-url mqtt://kiosk-1:s3cr3t-Pw@10.0.0.5:1883 --hall demo", "s3cr3t-Pw"),
    ("postgresql+psycopg://hall:db-Pass-42@db/hall", "db-Pass-42"),
    ("headers {'Authorization': 'Bearer tok-ABCDEF123456', 'Accept': 'application/json'}", "tok-ABCDEF123456"),
    ("GET /t/abc?token=visit-7f3a9c2e11&x=1", "visit-7f3a9c2e11"),
    ("ticket_status {'visit_token': 'vt-0123456789abcdef'}", "vt-0123456789abcdef"),
    ("upstream_token=u-123456789 hall_secret: 0f0e0d0c0b0a", "u-123456789"),
    ("card {'name': '李秀英', 'id_number': '310101194803150022'}", "310101194803150022"),
    ("ConnectPayload(client_id=kiosk-1, will_topic=None, username=kiosk-1, password=Zx9-kiosk-pw)", "Zx9-kiosk-pw"),
])
def test_the_filter_masks_secrets_in_every_shape(text, secret):
    assert secret in text                                      # the scanner would find it before
    assert secret not in redact_text(text) and "***" in redact_text(text)


def test_amqtt_connect_packet_repr_is_masked():
    """amqtt's packet logger (off in our broker; its loggers stay at WARNING) prints CONNECT with the password."""
    from amqtt.mqtt.connect import ConnectPacket, ConnectPayload, ConnectVariableHeader

    packet = ConnectPacket(variable_header=ConnectVariableHeader(),
                           payload=ConnectPayload("kiosk-1", None, None, "kiosk-1", "Zx9-kiosk-pw"))
    assert "Zx9-kiosk-pw" in repr(packet)
    assert "Zx9-kiosk-pw" not in redact_text(f"kiosk-1 <-in-- {packet!r}")


def test_text_that_holds_no_secret_is_left_alone():
    for text in ("请核对配置 upstream.token", "no upstream token configured (upstream.token)", "token_missing=True",
                 "socket://127.0.0.1:38989 TX 1B 40", "请A001号到3号窗口办理", "pin_required=False",
                 "工号或密码错误", "mqtt broker at 127.0.0.1:1883", "http://127.0.0.1:8080/api/v1/service-records"):
        assert redact_text(text) == text


def test_registered_values_and_args():
    register_secret("a-registered-secret-42")
    register_secret(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    assert redact_text("it said a-registered-secret-42!") == "it said ***!"
    assert redact_text("key 0102030405060708") == "key ***"
    assert redact_args({"staff_id": "S001", "pin": "1234", "nested": [{"visit_token": "x"}], "note": "ok"}) == {
        "staff_id": "S001", "pin": "***", "nested": [{"visit_token": "***"}], "note": "ok"}
    assert redact_url("mqtt://kiosk-1:pw@host:1883") == "mqtt://kiosk-1:***@host:1883"
    assert redact_url("mqtt://host:1883") == "mqtt://host:1883"


def test_filter_rewrites_messages_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("tests.redact.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("login %s", {"staff_id": "S001", "pin": PIN})
        try:
            raise ValueError("cannot reach mqtt://kiosk-1:s3cr3t-Pw@h:1883")
        except ValueError:
            log.exception("connect failed")
    finally:
        log.removeHandler(handler)
    written = stream.getvalue()
    assert PIN not in written and "s3cr3t-Pw" not in written
    assert "'pin': '***'" in written and "Traceback" in written and "mqtt://kiosk-1:***@h:1883" in written


def test_a_program_masks_what_a_careless_call_site_writes(tmp_path):
    """A program that sets up logging as the hall's programs do: a secret logged at DEBUG, a secret in an
    uncaught exception (main thread and another thread) — none reaches its stderr."""
    script = textwrap.dedent(f"""
        import logging, threading
        from hall_controller.logsetup import setup_logging
        setup_logging("DEBUG")
        log = logging.getLogger("careless")
        log.debug("login args %s", {{"staff_id": "S001", "pin": "{PIN}"}})
        log.info("connecting to %s", "mqtt://kiosk-1:s3cr3t-Pw@127.0.0.1:1883")
        def worker():
            raise RuntimeError("token={PIN}-in-a-thread")
        t = threading.Thread(target=worker, name="worker"); t.start(); t.join()
        raise RuntimeError("Authorization: Bearer tok-ABCDEF123456")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1
    err = proc.stderr
    assert "login args" in err and "uncaught exception in thread worker" in err and "Traceback" in err
    for secret in (PIN, "s3cr3t-Pw", "tok-ABCDEF123456"):
        assert secret not in err, err
    # the positive control: the same lines without the programs' log setup do show the secrets
    plain = subprocess.run([sys.executable, "-c", script.replace('setup_logging("DEBUG")',
                                                                  'logging.basicConfig(level=logging.DEBUG)')],
                           capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert PIN in plain.stderr and "s3cr3t-Pw" in plain.stderr and "tok-ABCDEF123456" in plain.stderr


def test_window_terminal_logs_op_names_and_no_pin():
    from window_terminal.terminal import loggable_args

    assert loggable_args({"staff_id": "S001", "pin": PIN}) == {"staff_id": "S001"}
    assert loggable_args({"ticket": "t1", "image": "AAAA"}) == {"ticket": "t1"}
