"""Embedded amqtt broker: authentication against the store, the topic ACL, and the CONNECT gate."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from hall_controller.bus.broker import EmbeddedBroker

from .harness import HALL, PASSWORDS, RawClient, make_store, wait_until


@pytest.fixture
def broker(tmp_path: Path):
    store = make_store(tmp_path / "credentials.yaml")
    b = EmbeddedBroker("127.0.0.1", 0, store, hall_id=HALL)
    b.start()
    clients: list[RawClient] = []

    def connect(user: str, *, will: tuple[str, str] | None = None) -> RawClient:
        client = RawClient(b.port, user, PASSWORDS[user])
        clients.append(client)
        assert client.connect(will=will), f"{user} refused: {client.connack}"
        return client

    yield b, connect
    for c in clients:
        c.close()
    b.stop()


def _refused(port: int, user: str, password: str, **kw) -> int:
    client = RawClient(port, user, password, **kw)
    try:
        assert not client.connect(), f"{user} was accepted"
        return client.connack.value
    finally:
        client.close()


def test_port_zero_gives_a_real_port_and_good_passwords_work(broker):
    b, connect = broker
    assert b.port > 0
    client = connect("window-3")
    assert client.subscribe("hall/demo/reply/window-3")[0].value == 1


def test_bad_passwords_unknown_users_and_foreign_client_ids_are_refused(broker):
    b, _ = broker
    assert _refused(b.port, "window-3", "wrong") == 135          # not authorised
    assert _refused(b.port, "ghost", "x") == 135
    assert _refused(b.port, "window-3", "") == 135
    assert _refused(b.port, "kiosk-1", PASSWORDS["kiosk-1"], client_id="window-3") == 133  # id rejected


def test_a_wrong_password_with_a_live_clients_id_does_not_disturb_it(broker):
    """amqtt 0.12.1 alone would drop window-3's session here and leave it connected but deaf."""
    b, connect = broker
    window = connect("window-3")
    window.subscribe("hall/demo/reply/window-3")
    assert _refused(b.port, "window-3", "attacker-guess") == 135
    daemon = connect("hall-daemon")
    daemon.publish("hall/demo/reply/window-3", b"after the attack")
    wait_until(lambda: window.received() == [b"after the attack"], what="delivery to window-3")


def test_a_reconnect_with_the_same_id_replaces_the_old_connection(broker):
    _, connect = broker
    daemon = connect("hall-daemon")
    daemon.subscribe("hall/demo/client/window-3/status")
    old = connect("window-3", will=("hall/demo/client/window-3/status", '{"state":"offline"}'))
    old.mqtt.loop_stop()  # the old connection goes silent but stays open, like a half-open TCP link
    new = connect("window-3")
    new.publish("hall/demo/client/window-3/status", b'{"state":"online"}', retain=True)
    new.subscribe("hall/demo/reply/window-3")
    old_socket = old.mqtt.socket()
    old_socket.settimeout(5)
    while old_socket.recv(4096):  # the broker closed it
        pass
    daemon.publish("hall/demo/reply/window-3", b"to the new one")
    wait_until(lambda: new.received("hall/demo/reply/window-3") == [b"to the new one"])
    # The old connection's last will came before the new `online`, so online is what stays retained.
    assert daemon.received() == [b'{"state":"offline"}', b'{"state":"online"}']


def test_topic_acl_is_enforced(broker):
    _, connect = broker
    daemon = connect("hall-daemon")
    daemon.subscribe("hall/demo/cmd/+")
    daemon.publish("hall/demo/state/window/4", b'{"status":"idle"}', retain=True)
    tablet = connect("tablet-3")
    codes = [r.value for r in tablet.subscribe("hall/demo/state/window/3", "hall/demo/state/window/+",
                                               "hall/demo/#", "hall/demo/reply/window-3", "hall/demo/event/+")]
    assert codes == [1, 128, 128, 128, 1]
    tablet.publish("hall/demo/cmd/window-3", b"spoofed")
    tablet.publish("hall/demo/event/ticket_called", b"fake event")
    tablet.publish("hall/demo/cmd/tablet-3", b"mine")
    wait_until(lambda: daemon.received(), what="the allowed command")
    time.sleep(0.1)
    assert daemon.received() == [b"mine"]
    assert tablet.received() == []  # the retained window 4 state never reached it


def test_delivery_qos_is_the_lower_of_publish_and_subscription(broker):
    """A QoS 1 subscriber gets the daemon's QoS 0 events at QoS 0: no PUBACK for it to send, which
    with Nagle on would hold its next command for the broker's delayed TCP acknowledgement."""
    _, connect = broker
    daemon = connect("hall-daemon")
    daemon.subscribe("hall/demo/cmd/+")
    display = connect("display-1")
    display.subscribe("hall/demo/event/+")                       # at QoS 1
    daemon.publish("hall/demo/event/ticket_called", b"q0", qos=0)
    daemon.publish("hall/demo/event/ticket_called", b"q1", qos=1)
    wait_until(lambda: len(display.received()) == 2, what="both events")
    assert list(zip(display.received(), display.qos, strict=True)) == [(b"q0", 0), (b"q1", 1)]
    window = connect("window-3")
    window.publish("hall/demo/cmd/window-3", b"c0", qos=0)      # from a client too
    window.publish("hall/demo/cmd/window-3", b"c1", qos=1)
    wait_until(lambda: len(daemon.received()) == 2, what="both commands")
    assert list(zip(daemon.received(), daemon.qos, strict=True)) == [(b"c0", 0), (b"c1", 1)]


def test_a_last_will_on_a_foreign_topic_is_refused(broker):
    b, _ = broker
    client = RawClient(b.port, "kiosk-1", PASSWORDS["kiosk-1"])
    assert not client.connect(will=("hall/demo/status", '{"state":"offline"}'))
    client.close()


@pytest.mark.parametrize("junk", [
    b"", b"\x00" * 10, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x10\xff\xff\xff\xff",
    b"\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c\x00\x00",  # MQTT 5
    b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00",  # reserved flag set
    b"\x10\x10\x00\x04MQTT\x04\xc2\x00\x3c\x00\x02\xff\xfe\x00\x00",  # client id is not UTF-8
])
def test_garbage_connections_are_closed_and_the_broker_keeps_serving(broker, junk):
    b, connect = broker
    with socket.create_connection(("127.0.0.1", b.port), timeout=2) as sock:
        sock.sendall(junk)
        sock.shutdown(socket.SHUT_WR)
        reply = sock.recv(16)
    assert reply in (b"", b"\x20\x02\x00\x01")  # closed, or CONNACK "unacceptable protocol version"
    connect("window-3")


def test_stop_closes_connections_and_the_port_can_be_reused(tmp_path):
    store = make_store(tmp_path / "credentials.yaml")
    b = EmbeddedBroker("127.0.0.1", 0, store)
    b.start()
    client = RawClient(b.port, "window-3", PASSWORDS["window-3"])
    assert client.connect()
    b.stop()
    b.stop()  # idempotent
    wait_until(lambda: not client.mqtt.is_connected(), what="the client to be disconnected")
    client.close()
    again = EmbeddedBroker("127.0.0.1", b.port, store)
    again.start()
    again.stop()


def test_start_reports_a_port_in_use(tmp_path):
    store = make_store(tmp_path / "credentials.yaml")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError):
            EmbeddedBroker("127.0.0.1", s.getsockname()[1], store).start()


def test_a_new_client_gets_no_retained_messages_it_did_not_subscribe_to(broker):
    """amqtt 0.12.1 alone sends every retained message matching *anyone's* subscription on CONNECT."""
    _, connect = broker
    daemon = connect("hall-daemon")
    daemon.publish("hall/demo/state/window/4", b'{"status":"idle"}', retain=True)
    display = connect("display-1")
    display.subscribe("hall/demo/state/#")
    wait_until(lambda: display.received(), what="the display's own retained state")
    tablet = connect("tablet-3")
    tablet.subscribe("hall/demo/status")
    daemon.publish("hall/demo/status", b"sentinel")
    wait_until(lambda: tablet.received(), what="the sentinel")
    assert tablet.received() == [b"sentinel"]


def test_concurrent_subscribes_while_messages_flow_lose_nothing(broker, tmp_path, caplog):
    """amqtt 0.12.1 iterates its subscription table across awaits; a concurrent subscribe used to
    raise 'dictionary changed size during iteration' and drop deliveries or whole connections."""
    b, connect = broker
    daemon = connect("hall-daemon")
    ids = [f"window-{n}" for n in range(10, 30)]
    for n, client_id in enumerate(ids, start=10):
        b.credentials.add_or_reset(client_id, "window", n, "pw")
    stop = threading.Event()

    def publish_events() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            daemon.mqtt.publish("hall/demo/event/tick", str(n), qos=0)
            time.sleep(0.002)

    pump = threading.Thread(target=publish_events)
    pump.start()
    clients = [RawClient(b.port, client_id, "pw") for client_id in ids]
    try:
        starters = [threading.Thread(target=lambda c=c: (c.connect(), c.subscribe(
            "hall/demo/event/+", f"hall/demo/reply/{c.mqtt._client_id.decode()}", "hall/demo/state/#")))
            for c in clients]
        for t in starters:
            t.start()
        for t in starters:
            t.join(10)
        stop.set()
        pump.join()
        for c in clients:
            daemon.publish(f"hall/demo/reply/{c.mqtt._client_id.decode()}", b"hello")
        for c in clients:
            wait_until(lambda c=c: b"hello" in c.received(), what="every reply")
    finally:
        stop.set()
        pump.join()
        for c in clients:
            c.close()
    assert not [r for r in caplog.records if "changed size during iteration" in r.getMessage()
                or (r.exc_info and "changed size" in str(r.exc_info[1]))]
