"""MqttBridge against a fake service: validation of every command, replies, events and state."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hall_controller.bus.bridge import BadRequest, MqttBridge, parse_command
from hall_controller.bus.broker import EmbeddedBroker
from hall_controller.bus.client import AuthenticationFailed

from .harness import HALL, PASSWORDS, FakeService, RawClient, make_store, wait_until

REPLIES = "hall/demo/reply/+"


@pytest.fixture
def setup(tmp_path: Path):
    """A broker *without* topic ACL, so that junk on any topic reaches the bridge."""
    store = make_store(tmp_path / "credentials.yaml")
    broker = EmbeddedBroker("127.0.0.1", 0, store)
    broker.start()
    service = FakeService()
    bridge = MqttBridge(service, HALL, "127.0.0.1", broker.port, "hall-daemon", PASSWORDS["hall-daemon"], store,
                        version="1.2.3", max_payload=8192)
    assert bridge.start(timeout=5)
    client = RawClient(broker.port, "window-3", PASSWORDS["window-3"])
    assert client.connect()
    client.subscribe(REPLIES, "hall/demo/event/+", "hall/demo/state/#", "hall/demo/device/+",
                     "hall/demo/kiosk/+/card", "hall/demo/status")
    yield service, bridge, client, broker
    client.close()
    bridge.stop()
    broker.stop()


def _roundtrip(client: RawClient, sentinel_id: str) -> list[dict]:
    """Send a valid command after the junk; commands run in order, so once its reply is in, every
    reply the junk could cause is in too."""
    client.publish("hall/demo/cmd/window-3", json.dumps({"id": sentinel_id, "op": "echo"}))
    wait_until(lambda: any(r.get("id") == sentinel_id for r in client.json_on("hall/demo/reply/window-3")),
               what=f"the reply to {sentinel_id}")
    return [json.loads(p) for t, p, _ in client.messages if t.startswith("hall/demo/reply/")]


MALFORMED = [
    # (name, topic suffix, payload, expected reply: (id, code) or None when dropped)
    ("empty payload", "window-3", b"", (None, "bad_request")),
    ("not JSON", "window-3", b"call next please", (None, "bad_request")),
    ("array payload", "window-3", b'["call_next"]', (None, "bad_request")),
    ("string payload", "window-3", b'"call_next"', (None, "bad_request")),
    ("null payload", "window-3", b"null", (None, "bad_request")),
    ("missing id", "window-3", b'{"op":"echo"}', (None, "bad_request")),
    ("id not a string", "window-3", b'{"id":5,"op":"echo"}', (None, "bad_request")),
    ("empty id", "window-3", b'{"id":"","op":"echo"}', (None, "bad_request")),
    ("huge id", "window-3", json.dumps({"id": "x" * 65, "op": "echo"}).encode(), (None, "bad_request")),
    ("id with control characters", "window-3", b'{"id":"a\\nb","op":"echo"}', (None, "bad_request")),
    ("missing op", "window-3", b'{"id":"m1"}', ("m1", "bad_request")),
    ("op wrong type", "window-3", b'{"id":"m2","op":["echo"]}', ("m2", "bad_request")),
    ("unicode junk op", "window-3", '{"id":"m3","op":"叫号✓\u202e"}'.encode(), ("m3", "bad_request")),
    ("unknown op (the service refuses)", "window-3", b'{"id":"m4","op":"fly_away"}', ("m4", "bad_request")),
    ("wrong argument type (the service refuses)", "window-3", b'{"id":"m5","op":"issue_ticket","service":42}',
     ("m5", "bad_request")),
    ("invalid UTF-8", "window-3", b'{"id":"m6","op":"echo","x":"\xff\xfe"}', (None, "bad_request")),
    ("lone surrogate", "window-3", b'{"id":"m7","op":"echo","x":"\\ud800"}', ("m7", "bad_request")),
    ("NUL in a string", "window-3", b'{"id":"m8","op":"echo","x":"a\\u0000b"}', ("m8", "bad_request")),
    ("nested junk", "window-3", ('{"id":"m9","op":"echo","x":' + "[" * 40 + "]" * 40 + "}").encode(),
     ("m9", "bad_request")),
    ("nesting deeper than the JSON parser", "window-3", b"[" * 4000, (None, "bad_request")),
    ("NaN", "window-3", b'{"id":"m10","op":"echo","x":NaN}', (None, "bad_request")),
    ("duplicate keys", "window-3", b'{"id":"m11","op":"echo","id":"m12"}', (None, "bad_request")),
    ("giant integer", "window-3", b'{"id":"m13","op":"echo","x":' + b"9" * 5000 + b"}", (None, "bad_request")),
    ("oversized", "window-3", json.dumps({"id": "m14", "op": "echo", "x": "y" * 9000}).encode(),
     ("m14", "bad_request")),      # the id leads: the sender is told rather than left to time out
    ("service crashes", "window-3", b'{"id":"m15","op":"boom"}', ("m15", "internal")),
    ("result not serialisable", "window-3", b'{"id":"m16","op":"unserialisable"}', ("m16", "internal")),
    ("unknown client id in topic", "ghost-9", b'{"id":"d1","op":"echo"}', None),
    ("the daemon's own id in topic", "hall-daemon", b'{"id":"d2","op":"echo"}', None),
    ("id that is not a topic level", "bad id!", b'{"id":"d3","op":"echo"}', None),
]


@pytest.mark.parametrize("name, suffix, payload, expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_answered_or_dropped_and_the_bridge_keeps_serving(setup, caplog, name, suffix, payload,
                                                                            expected):
    service, bridge, client, _ = setup
    caplog.set_level(logging.INFO)
    client.publish(f"hall/demo/cmd/{suffix}", payload)
    replies = _roundtrip(client, "sentinel")
    junk_replies = [r for r in replies if r.get("id") != "sentinel"]
    if expected is None:
        assert junk_replies == []
        assert any("dropped command" in r.getMessage() for r in caplog.records)
    else:
        command_id, code = expected
        assert len(junk_replies) == 1, junk_replies
        reply = junk_replies[0]
        assert (reply["id"], reply["ok"], reply["error"]["code"]) == (command_id, False, code)
        assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    assert replies[-1] == {"id": "sentinel", "ok": True,
                           "result": {"args": {}, "client": "window-3", "role": "window", "window": 3}}
    assert bridge.connected


def test_all_the_junk_in_a_row_then_real_work(setup):
    service, bridge, client, _ = setup
    for _, suffix, payload, _ in MALFORMED:
        client.publish(f"hall/demo/cmd/{suffix}", payload)
    replies = _roundtrip(client, "after-junk")
    assert len(replies) == sum(1 for m in MALFORMED if m[3] is not None) + 1
    client.publish("hall/demo/cmd/window-3", b'{"id":"real","op":"call_next"}')
    wait_until(lambda: {"id": "real", "ok": True, "result": {"ticket": {"number": "A001"}}}
               in client.json_on("hall/demo/reply/window-3"))


def test_commands_run_in_order_and_redeliveries_are_answered_alike(setup):
    service, _, client, _ = setup
    for n in range(20):
        client.publish("hall/demo/cmd/window-3", json.dumps({"id": f"c{n}", "op": "echo", "n": n}))
    client.publish("hall/demo/cmd/window-3", json.dumps({"id": "c5", "op": "echo", "n": 5}))  # QoS 1 redelivery
    wait_until(lambda: len(client.received("hall/demo/reply/window-3")) == 21)
    replies = client.json_on("hall/demo/reply/window-3")
    assert [r["id"] for r in replies] == [f"c{n}" for n in range(20)] + ["c5"]
    assert replies[5] == replies[20]
    assert [(args["n"], cid) for _, _, args, cid, _ in service.executed] == [(n, f"c{n}") for n in range(20)] + [
        (5, "c5")]
    # One client's commands run in order: on one worker, or on paho's network thread when nothing
    # else is in flight.
    threads = {thread for *_, thread in service.executed}
    workers = {t for t in threads if t.startswith("mqtt-bridge-worker-")}
    assert len(workers) <= 1 and threads - workers <= {"paho-mqtt-client-hall-daemon"}


def test_commands_that_arrive_together_go_to_the_workers(setup):
    """Only a command with nothing behind it runs on paho's thread; a burst is handed to the workers,
    so paho reads on and the commands of several clients can share a commit."""
    service, _, client, _ = setup
    service.release.clear()
    client.publish("hall/demo/cmd/window-3", json.dumps({"id": "s1", "op": "slow"}))
    wait_until(lambda: service.executed, what="the slow command at the service")
    for n in range(6):  # queue up on the connection while the slow one holds the network thread
        client.publish(f"hall/demo/cmd/window-{3 + n % 2}", json.dumps({"id": f"b{n}", "op": "echo"}), qos=0)
    time.sleep(0.1)
    service.release.set()
    wait_until(lambda: len(service.executed) == 7, what="the burst")
    burst_threads = [thread for *_, thread in service.executed[1:]]
    assert service.executed[0][4] == "paho-mqtt-client-hall-daemon"
    assert sum(t.startswith("mqtt-bridge-worker-") for t in burst_threads) >= 5, burst_threads


def test_events_state_cards_and_status(setup):
    service, _, client, _ = setup
    wait_until(lambda: client.received("hall/demo/device/printer-1") and client.received("hall/demo/status"),
               what="initial state")
    status = client.json_on("hall/demo/status")[-1]
    # started_at comes from the service's injected clock, not the wall clock.
    assert status == {"state": "online", "version": "1.2.3", "started_at": "2026-11-23T01:00:00+00:00"}
    assert client.json_on("hall/demo/device/printer-1")[-1] == {"online": True, "profile": "dory", "error": None}
    assert client.json_on("hall/demo/state/window/4")[-1] == {"status": "closed", "ticket": None}
    _roundtrip(client, "settled")  # nothing retained is still on its way
    before = len(client.messages)
    client.publish("hall/demo/cmd/window-3", b'{"id":"k1","op":"call_next"}')
    wait_until(lambda: len(client.received("hall/demo/reply/window-3")) == 2)
    new = [(t, json.loads(p), retain) for t, p, retain in client.messages[before:]]
    # The event, then only the state topics that changed, then the reply.
    assert [t for t, _, _ in new] == ["hall/demo/event/ticket_called", "hall/demo/state/calls",
                                      "hall/demo/state/window/3", "hall/demo/reply/window-3"]
    event = new[0][1]
    assert (event["type"], event["window"], event["event_id"]) == ("ticket_called", 3, "ev-1")
    service.card("kiosk-1", {"name_masked": "张*", "age": 81})
    wait_until(lambda: client.json_on("hall/demo/kiosk/kiosk-1/card") == [{"name_masked": "张*", "age": 81}])


def test_removed_windows_and_devices_are_cleared_and_bad_events_dropped(setup, caplog):
    service, _, client, _ = setup
    wait_until(lambda: client.received("hall/demo/device/printer-1"))
    with service.lock:
        del service.windows["4"]
        service.devices.clear()
    service.emit("config_reloaded")
    wait_until(lambda: client.received("hall/demo/device/printer-1")[-1:] == [b""], what="the device cleared")
    assert client.received("hall/demo/state/window/4")[-1] == b""
    for callback in service.subscribers:
        callback({"type": "bad type/with slash"})
        callback({"type": "ticket_issued", "ticket": object()})
    assert bridge_is_alive(client)
    assert any("event without a valid type" in r.getMessage() for r in caplog.records)


def bridge_is_alive(client: RawClient) -> bool:
    _roundtrip(client, "alive")
    return True


def test_client_status_is_tracked(setup):
    _, bridge, client, broker = setup
    client.publish("hall/demo/client/window-3/status", b'{"state":"online"}', retain=True)
    wait_until(lambda: bridge.client_states() == {"window-3": "online"})
    client.publish("hall/demo/client/window-3/status", b"junk")
    client.publish("hall/demo/client/window-3/status", b'{"state":"offline"}', retain=True)
    wait_until(lambda: bridge.client_states() == {"window-3": "offline"})


def test_offline_status_on_stop_and_last_will_when_the_daemon_vanishes(tmp_path):
    store = make_store(tmp_path / "credentials.yaml")
    with EmbeddedBroker("127.0.0.1", 0, store) as broker:
        watcher = RawClient(broker.port, "admin", PASSWORDS["admin"])
        assert watcher.connect()
        watcher.subscribe("hall/demo/status")
        for stop_cleanly in (True, False):
            bridge = MqttBridge(FakeService(), HALL, "127.0.0.1", broker.port, "hall-daemon",
                                PASSWORDS["hall-daemon"], store, version="v")
            assert bridge.start(timeout=5)
            status = {"version": "v", "started_at": bridge._status["started_at"]}
            online, offline = [{"state": "online", **status}], [{"state": "offline", **status}]
            wait_until(lambda want=online: watcher.json_on("hall/demo/status")[-1:] == want)
            if stop_cleanly:
                bridge.stop()
            else:
                bridge._mqtt.socket().close()  # killed: the broker sends the last will
            wait_until(lambda want=offline: watcher.json_on("hall/demo/status")[-1:] == want)
            if not stop_cleanly:
                bridge.stop()
        watcher.close()


def test_start_fails_on_a_refused_account_and_reports_an_unreachable_broker(tmp_path):
    store = make_store(tmp_path / "credentials.yaml")
    with EmbeddedBroker("127.0.0.1", 0, store) as broker:
        bridge = MqttBridge(FakeService(), HALL, "127.0.0.1", broker.port, "hall-daemon", "wrong", store, version="v")
        with pytest.raises(AuthenticationFailed):
            bridge.start(timeout=5)
        port = broker.port
    bridge = MqttBridge(FakeService(), HALL, "127.0.0.1", port, "hall-daemon", PASSWORDS["hall-daemon"], store,
                        version="v", reconnect_min_delay=0.05, reconnect_max_delay=0.1)
    assert bridge.start(timeout=0.2) is False  # nobody listens: keeps trying in the background
    with EmbeddedBroker("127.0.0.1", port, store):
        wait_until(lambda: bridge.connected, what="the late connection")
        bridge.stop()


@pytest.mark.parametrize("payload, limit, message", [
    (b"", 10, "empty payload"),
    (b"x" * 11, 10, "payload larger than 10 bytes"),
    (b'{"id":"a","op":"Call"}', 100, "op must be an operation name"),
])
def test_parse_command_messages(payload, limit, message):
    with pytest.raises(BadRequest) as err:
        parse_command(payload, limit)
    assert message in err.value.message


def test_parse_command_splits_id_op_and_args():
    assert parse_command('{"id":"u1","op":"transfer","window":4,"note":"转"}'.encode(), 1000) == (
        "u1", "transfer", {"window": 4, "note": "转"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
       | st.dictionaries(st.sampled_from(["id", "op", "x"]), json_values).map(lambda v: json.dumps(v).encode()))
def test_parse_command_never_fails_other_than_bad_request(payload):
    try:
        command_id, op, args = parse_command(payload, 256)
    except BadRequest as exc:
        assert exc.message
    else:
        assert isinstance(command_id, str) and isinstance(op, str) and isinstance(args, dict)
        json.dumps(args, ensure_ascii=False).encode("utf-8")  # whatever passes can be echoed back
