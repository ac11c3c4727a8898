"""Generated Mosquitto password file and ACL, enforced by a real Mosquitto 2.0 on its own port."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hall_controller.bus.client import HallClient
from hall_controller.bus.mosquitto import write_mosquitto_config
from hall_controller.bus.topics import ALL_EVENTS

from .harness import HALL, PASSWORDS, Mosquitto, RawClient, free_port, have_mosquitto, make_store, wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")]


@pytest.fixture
def broker(tmp_path: Path):
    store = make_store(tmp_path / "credentials.yaml")
    port = free_port()
    files = write_mosquitto_config(tmp_path / "mqtt", HALL, store, port=port, bind_address="127.0.0.1")
    proc = Mosquitto(tmp_path, files.conf_file.read_text())
    proc.start(port)
    clients: list[RawClient] = []

    def connect(user: str, password: str | None = None, **kw) -> RawClient:
        client = RawClient(port, user, PASSWORDS[user] if password is None else password, **kw)
        clients.append(client)
        assert client.connect(), f"{user} refused: {client.connack}"
        return client

    yield proc, port, connect
    for c in clients:
        c.close()
    proc.stop()


def test_files_are_private_and_the_password_file_is_the_store_verbatim(tmp_path):
    store = make_store(tmp_path / "credentials.yaml")
    files = write_mosquitto_config(tmp_path / "out", HALL, store, port=18883)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = files.password_file.read_text().splitlines()
    assert lines == [f"{c.client_id}:{c.password_hash}" for c in store.clients()]
    conf = files.conf_file.read_text()
    assert "listener 18883\n" in conf and "allow_anonymous false" in conf
    assert f"password_file {files.password_file}" in conf and f"acl_file {files.acl_file}" in conf
    acl = files.acl_file.read_text()
    assert "user tablet-3\ntopic read hall/demo/reply/tablet-3\n" in acl
    assert "topic read hall/demo/state/window/3\n" in acl
    assert "user hall-daemon\ntopic readwrite hall/demo/#\n" in acl


def test_our_hashes_log_in_and_wrong_or_missing_passwords_are_refused(broker):
    proc, port, connect = broker
    connect("window-3")
    for user, password in [("window-3", "wrong"), ("ghost", "x"), ("window-3", "")]:
        client = RawClient(port, user, password)
        assert not client.connect(), user
        assert client.connack.value == 135  # MQTT 3.1.1 CONNACK 5: not authorised
        client.close()


def test_allowed_publish_is_delivered_and_denied_publish_is_not(broker):
    _, _, connect = broker
    daemon = connect("hall-daemon")
    daemon.subscribe("hall/demo/cmd/+", "hall/demo/status")
    window = connect("window-3")
    window.publish("hall/demo/cmd/window-3", b'{"id":"1","op":"call_next"}')
    window.publish("hall/demo/cmd/window-4", b'{"id":"2","op":"call_next"}')  # spoofing another window
    window.publish("hall/demo/status", b'{"state":"offline"}', retain=True)   # spoofing the daemon
    window.publish("hall/demo/cmd/window-3", b'{"id":"3","op":"sentinel"}')
    wait_until(lambda: len(daemon.received()) >= 2, what="commands at the daemon")
    assert daemon.received() == [b'{"id":"1","op":"call_next"}', b'{"id":"3","op":"sentinel"}']


def test_denied_reads_are_not_delivered(broker):
    _, _, connect = broker
    tablet = connect("tablet-3")
    tablet.subscribe("hall/demo/state/window/3", "hall/demo/state/#", "hall/demo/reply/+", "hall/demo/#")
    kiosk = connect("kiosk-1")
    kiosk.subscribe("hall/demo/kiosk/+/card", "hall/demo/reply/window-3", "hall/demo/status")
    daemon = connect("hall-daemon")
    daemon.publish("hall/demo/state/window/4", b'{"status":"idle"}', retain=True)
    daemon.publish("hall/demo/state/queues", b'{"consult":1}', retain=True)
    daemon.publish("hall/demo/reply/window-3", b'{"id":"x","ok":true}')
    daemon.publish("hall/demo/kiosk/kiosk-2/card", b'{"name_masked":"\\u5f20*"}')
    daemon.publish("hall/demo/kiosk/kiosk-1/card", b'{"name_masked":"\\u674e*"}')
    daemon.publish("hall/demo/state/window/3", b'{"status":"calling"}', retain=True)
    wait_until(lambda: kiosk.received() and tablet.received(), what="the allowed messages")
    daemon.publish("hall/demo/status", b'{"state":"online"}', retain=True)  # everyone may read it: a sentinel
    wait_until(lambda: kiosk.received("hall/demo/status") and tablet.received("hall/demo/status"), what="status")
    assert {t for t, _, _ in tablet.messages} == {"hall/demo/state/window/3", "hall/demo/status"}
    assert {t for t, _, _ in kiosk.messages} == {"hall/demo/kiosk/kiosk-1/card", "hall/demo/status"}


def test_client_id_is_forced_to_the_username_so_sessions_cannot_be_taken_over(broker):
    _, port, connect = broker
    window = connect("window-3")
    window.subscribe("hall/demo/reply/window-3")
    connect("kiosk-1", client_id="window-3")  # would kick window-3 off if ids were free
    daemon = connect("hall-daemon")
    daemon.publish("hall/demo/reply/window-3", b"still here")
    wait_until(lambda: window.received(), what="the reply")
    assert window.mqtt.is_connected()


def test_hall_client_reconnects_and_resubscribes_after_mosquitto_restarts(broker):
    proc, port, connect = broker
    client = HallClient("display-1", PASSWORDS["display-1"], "127.0.0.1", port, HALL, role="display",
                        events=ALL_EVENTS, reconnect_min_delay=0.05, reconnect_max_delay=0.2)
    client.connect(timeout=5)
    try:
        daemon = connect("hall-daemon")
        daemon.publish("hall/demo/state/calls", b'[{"number":"A001","window":3}]', retain=True)
        wait_until(lambda: client.state.calls == [{"number": "A001", "window": 3}], what="retained calls")
        daemon.close()
        proc.stop()
        wait_until(lambda: not client.connected, what="the client to notice")
        proc.start(port)
        wait_until(lambda: client.connected, timeout=10, what="the reconnect")
        daemon = connect("hall-daemon")
        daemon.publish("hall/demo/event/ticket_called", json.dumps({"event_id": "e1", "type": "ticket_called"}))
        assert client.wait_for_event(lambda e: e["event_id"] == "e1", timeout=5)["type"] == "ticket_called"
        daemon.subscribe("hall/demo/client/+/status")
        wait_until(lambda: b'{"state": "online"}' in daemon.received("hall/demo/client/display-1/status"))
    finally:
        client.close()
