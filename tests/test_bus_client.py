"""HallClient against the embedded broker and the bridge over a fake service."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hall_controller.bus.bridge import MqttBridge
from hall_controller.bus.broker import EmbeddedBroker
from hall_controller.bus.client import (
    AuthenticationFailed,
    BusUnavailable,
    CommandError,
    DirectWriteClient,
    HallClient,
    RequestTimeout,
)
from hall_controller.bus.topics import ALL_EVENTS

from .harness import HALL, PASSWORDS, ROLES, FakeService, RawClient, free_port, make_store, wait_until

FAST = {"reconnect_min_delay": 0.05, "reconnect_max_delay": 0.2}


class Hall:
    def __init__(self, tmp_path: Path) -> None:
        self.store = make_store(tmp_path / "credentials.yaml")
        self.broker = EmbeddedBroker("127.0.0.1", 0, self.store, hall_id=HALL)
        self.broker.start()
        self.service = FakeService()
        self.bridge = MqttBridge(self.service, HALL, "127.0.0.1", self.broker.port, "hall-daemon",
                                 PASSWORDS["hall-daemon"], self.store, version="test", **FAST)
        assert self.bridge.start(timeout=5)
        self.clients: list[HallClient | RawClient] = []

    def client(self, client_id: str, *, connect: bool = True) -> HallClient:
        role, window = ROLES[client_id]
        client = HallClient(client_id, PASSWORDS[client_id], "127.0.0.1", self.broker.port, HALL,
                            role=role, window=window, events=ALL_EVENTS if role == "display" else None, **FAST)
        self.clients.append(client)
        if connect:
            client.connect(timeout=5)
        return client

    def raw(self, user: str) -> RawClient:
        client = RawClient(self.broker.port, user, PASSWORDS[user])
        self.clients.append(client)
        assert client.connect()
        return client

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.bridge.stop()
        self.broker.stop()


@pytest.fixture
def hall(tmp_path: Path):
    h = Hall(tmp_path)
    yield h
    h.close()


def test_request_returns_the_result_and_the_actor_comes_from_the_credential_store(hall):
    window = hall.client("window-3")
    assert window.request("echo", note="你好") == {"args": {"note": "你好"}, "client": "window-3", "role": "window",
                                                   "window": 3}
    (actor, op, args, command_id, thread), = hall.service.executed
    assert (op, args) == ("echo", {"note": "你好"}) and len(command_id) == 36
    assert thread == "paho-mqtt-client-hall-daemon"  # alone in flight: run without waking a worker


def test_errors_from_the_service_raise_command_error(hall):
    kiosk = hall.client("kiosk-1")
    with pytest.raises(CommandError) as err:
        kiosk.request("call_next")
    assert (err.value.code, err.value.message) == ("forbidden", "kiosk may not call")
    with pytest.raises(CommandError) as err:
        kiosk.request("boom")
    assert err.value.code == "internal"


def test_request_times_out_when_no_reply_comes(hall):
    hall.service.release.clear()
    window = hall.client("window-3")
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        window.request("slow", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0
    hall.service.release.set()
    assert window.request("echo") == {"args": {}, "client": "window-3", "role": "window", "window": 3}


def test_requests_fail_fast_while_the_broker_is_down(tmp_path):
    store = make_store(tmp_path / "credentials.yaml")
    client = HallClient("window-3", PASSWORDS["window-3"], "127.0.0.1", free_port(), HALL, role="window", window=3)
    try:
        started = time.monotonic()
        with pytest.raises(BusUnavailable):
            client.request("echo")
        with pytest.raises(BusUnavailable):
            client.connect(timeout=0.2)
        with pytest.raises(BusUnavailable):
            client.request("echo")
        assert time.monotonic() - started < 1.0
    finally:
        client.close()
    assert store.get("window-3") is not None


def test_close_ends_a_connect_that_is_still_waiting():
    client = HallClient("window-3", "pw", "127.0.0.1", free_port(), HALL, role="window", window=3, **FAST)
    outcome: list[BaseException] = []
    waiter = threading.Thread(target=lambda: outcome.append(pytest.raises(BusUnavailable, client.connect, 30).value))
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    client.close()
    waiter.join(5)
    assert "closed" in str(outcome[0]) and time.monotonic() - started < 2


def test_a_pending_request_fails_at_once_when_the_connection_drops(hall):
    hall.service.release.clear()
    window = hall.client("window-3")
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            window.request("slow", timeout=10)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    wait_until(lambda: hall.service.executed, what="the command at the service")
    started = time.monotonic()
    hall.broker.stop()
    thread.join(5)
    hall.service.release.set()
    assert isinstance(outcome[0], BusUnavailable) and time.monotonic() - started < 2


def test_wrong_password_raises_authentication_failed(hall):
    client = HallClient("window-3", "nope", "127.0.0.1", hall.broker.port, HALL, role="window", window=3)
    try:
        with pytest.raises(AuthenticationFailed):
            client.connect(timeout=5)
        with pytest.raises(AuthenticationFailed):
            client.connect(timeout=5)
    finally:
        client.close()


def test_events_reach_subscribers_once_even_when_duplicated(hall):
    display = hall.client("display-1")
    seen: list[dict] = []
    called: list[dict] = []
    display.subscribe_events(seen.append)
    unsubscribe = display.subscribe_events(called.append, types={"ticket_called"})
    for event_id, event_type in [("e1", "ticket_issued"), ("e1", "ticket_issued"), ("e2", "ticket_called"),
                                 ("e1", "ticket_issued"), ("e2", "ticket_called")]:
        hall.service.emit(event_type, event_id)  # e.g. redelivered after a daemon reconnect
    hall.service.emit("window_paused", "e3")
    display.wait_for_event(lambda e: e["event_id"] == "e3")
    assert [e["event_id"] for e in seen] == ["e1", "e2", "e3"]
    assert [e["event_id"] for e in called] == ["e2"]
    unsubscribe()
    hall.service.emit("ticket_called", "e4")
    display.wait_for_event(lambda e: e["event_id"] == "e4")
    assert [e["event_id"] for e in called] == ["e2"]


def test_malformed_messages_from_the_broker_are_dropped(hall):
    display = hall.client("display-1")
    hall.bridge.stop()  # from here on a raw client speaks for the daemon
    daemon = hall.raw("hall-daemon")
    for topic, payload in [("hall/demo/event/x", b"not json"), ("hall/demo/event/x", b"[1, 2]"),
                           ("hall/demo/reply/display-1", b'{"no":"id"}'), ("hall/demo/state/queues", b"\xff"),
                           ("hall/demo/reply/display-1", b'{"id":"unknown","ok":true}')]:
        daemon.publish(topic, payload)
    daemon.publish("hall/demo/event/x", json.dumps({"event_id": "ok", "type": "x"}))
    assert display.wait_for_event(lambda e: True)["event_id"] == "ok"
    assert display.connected


def test_duplicate_memory_is_bounded(hall):
    display = HallClient("display-1", PASSWORDS["display-1"], "127.0.0.1", hall.broker.port, HALL,
                         role="display", event_memory=3, events=ALL_EVENTS)
    hall.clients.append(display)
    display.connect(timeout=5)
    seen: list[str] = []
    display.subscribe_events(lambda e: seen.append(e["event_id"]))
    for event_id in ["a", "b", "c", "d", "a", "d"]:  # "a" was forgotten after "d", "d" was not
        hall.service.emit("x", event_id)
    wait_until(lambda: len(seen) >= 5)
    time.sleep(0.05)
    assert seen == ["a", "b", "c", "d", "a"]


def test_commands_events_and_state_end_to_end(hall):
    window = hall.client("window-3")
    display = hall.client("display-1", connect=False)
    changes: list[tuple] = []
    display.add_state_listener(lambda section, key, value: changes.append((section, key, value)))
    display.connect(timeout=5)
    wait_until(lambda: len(changes) == 5, what="the retained state")  # hall, queues, calls, windows 3 and 4
    assert display.state.windows == {3: {"status": "idle", "ticket": None}, 4: {"status": "closed", "ticket": None}}
    assert display.state.hall["state"] == "online" and display.state.hall["version"] == "test"
    assert display.state.devices == {}  # the display may not read device topics
    wait_until(lambda: window.state.devices == {"printer-1": {"online": True, "profile": "dory", "error": None}})
    assert window.request("call_next") == {"ticket": {"number": "A001"}}
    event = display.wait_for_event(lambda e: e["type"] == "ticket_called" and e["window"] == 3)
    assert event["ticket"] == {"number": "A001"}
    wait_until(lambda: len(changes) == 7, what="the state changes")
    # Only what changed was republished: not the queues, not window 4.
    assert sorted(changes[5:], key=str) == [("calls", None, [{"number": "A001", "window": 3}]),
                                            ("window", 3, {"status": "calling", "ticket": "A001"})]
    assert display.state.calls == [{"number": "A001", "window": 3}]


def test_tablet_sees_only_its_window_and_kiosk_gets_its_cards(hall):
    tablet = hall.client("tablet-3")
    kiosk = hall.client("kiosk-1")
    cards: list[dict] = []
    kiosk.subscribe_cards(cards.append)
    wait_until(lambda: 3 in tablet.state.windows, what="tablet state")
    hall.service.card("kiosk-1", {"name_masked": "张*", "age": 81})
    hall.service.card("kiosk-2", {"name_masked": "李*", "age": 30})
    wait_until(lambda: cards, what="the card")
    assert cards == [{"name_masked": "张*", "age": 81}]
    assert set(tablet.state.windows) == {3} and tablet.state.queues is None and tablet.state.devices == {}


def test_wait_for_event_sees_recent_events_and_times_out(hall):
    kiosk = hall.client("kiosk-1")
    display = hall.client("display-1")
    ticket = kiosk.request("issue_ticket", service="consult")["ticket"]
    time.sleep(0.1)  # the event is already in; waiting afterwards must still find it
    event = display.wait_for_event(lambda e: e["ticket"]["id"] == ticket["id"])
    assert event["type"] == "ticket_issued"
    with pytest.raises(RequestTimeout):
        display.wait_for_event(lambda e: e["no such key"], timeout=0.1)


def test_request_from_a_callback_is_refused_instead_of_deadlocking(hall):
    display = hall.client("display-1")
    errors: list[BaseException] = []

    def on_event(event: dict) -> None:
        try:
            display.request("echo")
        except RuntimeError as exc:
            errors.append(exc)

    display.subscribe_events(on_event)
    hall.service.emit("window_paused", window=3)
    wait_until(lambda: errors, what="the refusal")


def test_client_status_online_retained_and_offline_on_close(hall):
    watcher = hall.raw("admin")
    watcher.subscribe("hall/demo/client/+/status")
    kiosk = hall.client("kiosk-1")
    wait_until(lambda: watcher.json_on("hall/demo/client/kiosk-1/status") == [{"state": "online"}])
    wait_until(lambda: hall.bridge.client_states().get("kiosk-1") == "online")
    kiosk.close()
    kiosk.close()
    wait_until(lambda: watcher.json_on("hall/demo/client/kiosk-1/status")[-1] == {"state": "offline"})
    wait_until(lambda: hall.bridge.client_states().get("kiosk-1") == "offline")
    with pytest.raises(BusUnavailable):
        kiosk.request("echo")


def test_last_will_marks_a_vanished_client_offline(hall):
    watcher = hall.raw("admin")
    watcher.subscribe("hall/demo/client/+/status")
    window = hall.client("window-3")
    wait_until(lambda: watcher.json_on("hall/demo/client/window-3/status") == [{"state": "online"}])
    window._mqtt.socket().close()  # the network goes away without a DISCONNECT
    wait_until(lambda: {"state": "offline"} in watcher.json_on("hall/demo/client/window-3/status"))


def test_client_and_bridge_reconnect_after_the_embedded_broker_restarts(hall):
    window = hall.client("window-3")
    display = hall.client("display-1")
    wait_until(lambda: 3 in display.state.windows)
    port = hall.broker.port
    hall.broker.stop()
    wait_until(lambda: not window.connected and not hall.bridge.connected, what="everyone to notice")
    with pytest.raises(BusUnavailable):
        window.request("echo")
    hall.broker = EmbeddedBroker("127.0.0.1", port, hall.store, hall_id=HALL)
    hall.broker.start()
    wait_until(lambda: window.connected and display.connected and hall.bridge.connected, timeout=10,
               what="the reconnect")
    assert window.request("call_next") == {"ticket": {"number": "A001"}}
    wait_until(lambda: display.state.calls == [{"number": "A001", "window": 3}], what="state after restart")
    # The restarted broker lost all retained messages: the bridge published them again.
    fresh = hall.client("admin")
    wait_until(lambda: fresh.state.windows.get(4) == {"status": "closed", "ticket": None}, what="republished state")
    assert fresh.state.hall["state"] == "online"


def test_each_role_listens_only_to_what_its_app_needs(hall):
    """Busy events (ticket_issued, service_started) reach no window, tablet or display by default: each
    copy costs the broker and the client; a client may ask for every event its ACL allows."""
    window = hall.client("window-3")
    tablet = hall.client("tablet-3")
    display = HallClient("display-1", PASSWORDS["display-1"], "127.0.0.1", hall.broker.port, HALL, role="display")
    observer = HallClient("admin", PASSWORDS["admin"], "127.0.0.1", hall.broker.port, HALL, role="admin")
    seen: dict[str, list[str]] = {"window": [], "tablet": [], "display": [], "admin": []}
    for client in (display, observer):
        hall.clients.append(client)
        client.connect(timeout=5)
    for name, client in (("window", window), ("tablet", tablet), ("display", display), ("admin", observer)):
        client.subscribe_events(lambda e, name=name: seen[name].append(e["type"]))
    sent = ["ticket_issued", "service_started", "ticket_called", "ticket_transferred", "rating_requested",
            "time_limit_warning", "ticket_recalled", "rating_received"]
    for event_type in sent:
        hall.service.emit(event_type)
    wait_until(lambda: seen["admin"] == sent, what="every event at the admin")
    wait_until(lambda: seen["window"] == ["ticket_transferred", "time_limit_warning", "rating_received"],
               what="the window's events")
    wait_until(lambda: seen["tablet"] == ["rating_requested", "rating_received"], what="the tablet's events")
    wait_until(lambda: seen["display"] == ["ticket_called", "ticket_recalled"], what="the display's events")
    # a window terminal keeps its own window's state, not its neighbours'
    wait_until(lambda: window.state.windows == {3: {"status": "idle", "ticket": None}}, what="window 3 state")
    time.sleep(0.1)
    assert set(window.state.windows) == {3} and set(display.state.windows) == {3, 4}
    assert seen["window"] == ["ticket_transferred", "time_limit_warning", "rating_received"]
    assert seen["display"] == ["ticket_called", "ticket_recalled"]


def test_asking_for_events_beyond_the_acl_is_refused_by_the_broker(hall):
    """A kiosk is a public machine: no events, whatever it asks for. The display (allowed) gets the
    same event first, so the kiosk's silence is the broker's refusal, not an event that never went out."""
    kiosk = HallClient("kiosk-1", PASSWORDS["kiosk-1"], "127.0.0.1", hall.broker.port, HALL, role="kiosk",
                       events=ALL_EVENTS)
    hall.clients.append(kiosk)
    kiosk.connect(timeout=5)
    display = hall.client("display-1")
    seen: list[str] = []
    shown: list[str] = []
    kiosk.subscribe_events(lambda e: seen.append(e["type"]))
    display.subscribe_events(lambda e: shown.append(e["type"]))
    hall.service.emit("ticket_called")
    wait_until(lambda: shown == ["ticket_called"], what="the event at the display (the positive control)")
    time.sleep(0.2)          # the broker delivers to both subscribers at once: the kiosk's copy would be here
    assert seen == []
    # the broker itself says no to the kiosk's event subscription (SUBACK 0x80), the display's is granted
    kiosk.close()            # the raw clients log in under the same client ids
    display.close()
    assert [r.value for r in hall.raw("kiosk-1").subscribe(f"hall/{HALL}/event/ticket_called")] == [128]
    assert [r.value for r in hall.raw("display-1").subscribe(f"hall/{HALL}/event/ticket_called")] == [1]


def test_waiting_counts_are_throttled_under_a_rush_and_the_last_one_always_arrives(hall):
    kiosk = hall.raw("kiosk-1")
    kiosk.subscribe(f"hall/{HALL}/state/queues")
    wait_until(lambda: kiosk.received(f"hall/{HALL}/state/queues"), what="the retained counts")
    started = time.monotonic()
    for n in range(1, 201):      # 200 changes as fast as the bridge takes them
        with hall.service.lock:
            hall.service.queues = {"consult": n}
        hall.service.emit("ticket_issued")
    elapsed = time.monotonic() - started
    wait_until(lambda: json.loads(kiosk.received(f"hall/{HALL}/state/queues")[-1]) == {"consult": 200},
               what="the final count")
    time.sleep(0.3)
    sent = kiosk.received(f"hall/{HALL}/state/queues")
    assert json.loads(sent[-1]) == {"consult": 200}
    # at most one per interval (100 ms), plus the first and the trailing one
    assert len(sent) - 1 <= elapsed / 0.1 + 3, (len(sent), elapsed)
    assert len(sent) - 1 < 200


def test_direct_write_client_sends_from_the_publishing_thread_and_paho_finishes_big_packets(tmp_path):
    """DirectWriteClient: a publish is on the wire when publish() returns, written by the caller (not
    paho's network thread); a packet larger than the socket buffer is finished by paho's loop."""
    store = make_store(tmp_path / "credentials.yaml")
    broker = EmbeddedBroker("127.0.0.1", 0, store)  # no hall ACL: any account may use test/ topics
    broker.start()
    reader = RawClient(broker.port, "display-1", PASSWORDS["display-1"])
    pub = DirectWriteClient(mqtt.CallbackAPIVersion.VERSION2, client_id="window-4", protocol=mqtt.MQTTv311)
    pub.username_pw_set("window-4", PASSWORDS["window-4"])
    senders: list[str] = []
    send = pub._sock_send  # noqa: SLF001 - the one place paho writes to the socket

    def recording_send(data: bytes) -> int:
        senders.append(threading.current_thread().name)
        return send(data)

    pub._sock_send = recording_send  # type: ignore[method-assign]  # noqa: SLF001
    # a small send buffer: the big packet cannot go out in one go from the publishing thread
    pub.on_socket_open = lambda client, userdata, sock: sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        assert reader.connect()
        reader.subscribe("test/#")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        wait_until(pub.is_connected, what="the publisher to connect")
        senders.clear()
        assert pub.publish("test/small", b"x" * 100, qos=0).rc == mqtt.MQTT_ERR_SUCCESS
        assert not pub.want_write() and senders == [threading.current_thread().name]
        big = bytes(range(256)) * (1024 * 1024 // 256)   # 1 MiB
        assert pub.publish("test/big", big, qos=0).rc == mqtt.MQTT_ERR_SUCCESS
        wait_until(lambda: reader.received("test/big"), 20, "the big packet")
        assert reader.received("test/big")[0] == big and reader.received("test/small") == [b"x" * 100]
        assert any(name.startswith("paho-mqtt-client-") for name in senders), senders  # paho wrote the rest
    finally:
        pub.disconnect()
        pub.loop_stop()
        reader.close()
        broker.stop()
