"""The hall bus through a broker outage (Mosquitto restarted, the embedded broker's process killed),
and a command delivered twice (DESIGN §5).

Mosquitto is stopped and restarted on its own port while the daemon and the clients keep running:
requests fail fast while it is down, the daemon republishes its retained status and state when it
is back (Mosquitto runs without persistence here, so nothing retained survives the restart), and the
clients resubscribe and pick the queue up where it was.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from hall_controller.bus.client import BusUnavailable
from hall_controller.service import Actor

from .harness import BROKERS, EventLog, Hall, RawClient, have_mosquitto, no_devices, wait_until

FAIL_FAST_S = 1.0


@pytest.fixture
def hall(request: pytest.FixtureRequest, tmp_path: Path):
    h = Hall(tmp_path, mutate=no_devices, broker=request.param)
    yield h
    h.close()


@pytest.mark.mosquitto
@pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")
@pytest.mark.parametrize("hall", ["mosquitto"], indirect=True)
def test_daemon_and_clients_ride_out_a_mosquitto_restart(hall: Hall) -> None:
    assert hall.mosquitto is not None
    display = hall.client("display-1")
    events = EventLog(display)
    kiosk, w3 = hall.client("kiosk-1"), hall.client("window-3")
    hall.login(w3, "S003")
    a001 = kiosk.request("issue_ticket", service="consult")["ticket"]
    a002 = kiosk.request("issue_ticket", service="consult")["ticket"]
    assert (a001["number"], a002["number"]) == ("A001", "A002")
    assert w3.request("call_next")["ticket"]["id"] == a001["id"]
    wait_until(lambda: (display.state.windows.get(3) or {}).get("status") == "calling", what="window 3 calling")
    seq_before = display.wait_for_event(lambda e: e["type"] == "ticket_called")["seq"]

    # -- the broker goes away ---------------------------------------------------------------------
    hall.mosquitto.stop()
    started = time.monotonic()
    with pytest.raises(BusUnavailable):          # at once, even before the client noticed the drop
        kiosk.request("issue_ticket", service="consult", timeout=10)
    assert time.monotonic() - started < FAIL_FAST_S
    wait_until(lambda: not kiosk.connected and not w3.connected and not display.connected,
               what="the clients to notice the outage")
    assert hall.daemon.bridge is not None
    wait_until(lambda: not hall.daemon.bridge.connected, what="the daemon to notice the outage")
    for client, op, args in [(kiosk, "issue_ticket", {"service": "consult"}), (w3, "start", {})]:
        started = time.monotonic()
        with pytest.raises(BusUnavailable):
            client.request(op, timeout=10, **args)
        assert time.monotonic() - started < FAIL_FAST_S, op

    # The daemon goes on serving its other inputs: the window's hardware keypad starts the visit.
    keypad = Actor("keypad-3", "device", 3)
    assert hall.service.execute(keypad, "start", {})["ticket"]["status"] == "serving"

    # -- the broker comes back on the same port, with no retained messages ------------------------
    hall.mosquitto.start(hall.port)
    wait_until(lambda: hall.daemon.bridge.connected, timeout=15, what="the daemon to reconnect")
    wait_until(lambda: kiosk.connected and w3.connected and display.connected, timeout=10,
               what="the clients to reconnect")

    # A client that was not there before gets everything from what the daemon republished.
    admin = hall.client("admin")
    status = wait_until(lambda: admin.state.hall, what="the republished daemon status")
    assert status["state"] == "online"
    wait_until(lambda: (admin.state.windows.get(3) or {}).get("status") == "serving",
               what="the republished window 3")
    assert admin.state.windows[3]["ticket"]["number"] == "A001"
    assert admin.state.windows[3]["staff"]["id"] == "S003"
    wait_until(lambda: admin.state.queues and admin.state.queues["consult"]["waiting"] == 1,
               what="the republished queues")
    assert [c["number"] for c in admin.state.calls] == ["A001"]
    # The display resubscribed and caught up with the change it missed during the outage.
    wait_until(lambda: (display.state.windows.get(3) or {}).get("status") == "serving",
               what="the display to resync window 3")
    assert display.state.hall is not None and display.state.hall["state"] == "online"

    # -- and the flow goes on: numbering continues, calls reach the display ------------------------
    a003 = kiosk.request("issue_ticket", service="consult")["ticket"]
    assert a003["number"] == "A003"
    called = w3.request("call_next", finish_current=True)["ticket"]
    assert called["id"] == a002["id"]
    ev = display.wait_for_event(lambda e: e["type"] == "ticket_called" and e["ticket"]["id"] == a002["id"])
    assert ev["seq"] > seq_before and ev["window"] == 3
    wait_until(lambda: display.state.calls and display.state.calls[0]["number"] == "A002",
               what="A002 in state/calls")
    wait_until(lambda: display.state.queues["consult"]["waiting"] == 1, what="A003 waiting")
    seqs = [e["seq"] for e in events.events]
    assert seqs == sorted(set(seqs)), "events out of order or duplicated"


@pytest.mark.parametrize("hall", ["embedded"], indirect=True)
def test_a_killed_embedded_broker_comes_back_and_the_flow_goes_on(hall: Hall) -> None:
    """The embedded broker is the daemon's child process: killed, it is started again on the same
    port; the daemon republishes its state and the clients reconnect and resync."""
    broker = hall.daemon.broker
    assert broker is not None and broker.pid is not None
    display, kiosk, w3 = hall.client("display-1"), hall.client("kiosk-1"), hall.client("window-3")
    hall.login(w3, "S003")
    a001 = kiosk.request("issue_ticket", service="consult")["ticket"]
    first = broker.pid
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not kiosk.connected, what="the kiosk to notice")
    with pytest.raises(BusUnavailable):
        kiosk.request("issue_ticket", service="consult")
    wait_until(lambda: broker.pid not in (None, first), timeout=10, what="a new broker process")
    assert hall.daemon.bridge is not None
    wait_until(lambda: hall.daemon.bridge.connected and kiosk.connected and w3.connected and display.connected,
               timeout=15, what="everyone to reconnect")
    wait_until(lambda: display.state.hall and display.state.hall["state"] == "online"
               and display.state.queues and display.state.queues["consult"]["waiting"] == 1,
               what="the republished state")
    assert w3.request("call_next")["ticket"]["id"] == a001["id"]
    display.wait_for_event(lambda e: e["type"] == "ticket_called" and e["ticket"]["id"] == a001["id"])
    assert kiosk.request("issue_ticket", service="consult")["ticket"]["number"] == "A002"


@pytest.mark.parametrize("hall", BROKERS, indirect=True)
def test_a_redelivered_command_is_answered_twice_and_executed_once(hall: Hall) -> None:
    display = hall.client("display-1")
    events = EventLog(display)
    raw = RawClient(hall.port, "kiosk-1", hall.passwords["kiosk-1"])
    assert raw.connect()
    try:
        raw.subscribe(f"hall/{hall.config.hall_id}/reply/kiosk-1")
        cmd = f"hall/{hall.config.hall_id}/cmd/kiosk-1"
        payload = json.dumps({"id": "kiosk-1-0001", "op": "issue_ticket", "service": "consult"})
        raw.publish(cmd, payload)
        raw.publish(cmd, payload)       # e.g. a kiosk that resends after losing its connection
        replies = wait_until(lambda: (r := raw.json_on(f"hall/{hall.config.hall_id}/reply/kiosk-1"))
                             and len(r) >= 2 and r, what="two replies")
    finally:
        raw.close()
    assert [r["id"] for r in replies] == ["kiosk-1-0001", "kiosk-1-0001"]
    assert all(r["ok"] for r in replies)
    first, second = (r["result"]["ticket"] for r in replies)
    assert first == second and first["number"] == "A001"

    # The next ticket proves the counter moved once; once its event is in, a duplicate would be too.
    a002 = hall.client("kiosk-2").request("issue_ticket", service="consult")["ticket"]
    assert a002["number"] == "A002"
    display.wait_for_event(lambda e: e["type"] == "ticket_issued" and e["ticket"]["id"] == a002["id"])
    assert len(events.of("ticket_issued", first["id"])) == 1
    wait_until(lambda: display.state.queues and display.state.queues["consult"]["waiting"] == 2,
               what="two tickets waiting")
    assert hall.service.snapshot()["queues"]["consult"]["waiting"] == 2
