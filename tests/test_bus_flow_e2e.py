"""A whole visit over MQTT (DESIGN §5): kiosk, window terminals, rating tablets and the hall display
against the real daemon, on the embedded broker and on a real Mosquitto with the generated ACL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hall_controller.bus.client import HallClient

from .harness import BROKERS, EventLog, Hall, StateLog, error_code, no_devices, wait_until


@pytest.fixture(params=BROKERS)
def hall(request: pytest.FixtureRequest, tmp_path: Path):
    h = Hall(tmp_path, mutate=no_devices, broker=request.param)
    yield h
    h.close()


def _event(display: HallClient, event_type: str, ticket_id: str, **fields: Any) -> dict[str, Any]:
    """The display's event of this type for this ticket (replies and events race: wait for it)."""
    event = display.wait_for_event(
        lambda e: e["type"] == event_type and e["ticket"]["id"] == ticket_id
        and all(e.get(k) == v for k, v in fields.items()), timeout=5)
    assert isinstance(event["event_id"], str) and isinstance(event["seq"], int) and event["ts"]
    return event


def _window_state(display: HallClient, number: int, status: str, ticket: str | None = None) -> dict[str, Any]:
    """Wait until the retained `state/window/{number}` shows `status` (and that ticket number)."""
    def matches() -> dict[str, Any] | None:
        win = display.state.windows.get(number)
        if win and win["status"] == status and (win["ticket"] or {}).get("number") == ticket:
            return win
        return None
    return wait_until(matches, what=f"window {number} {status} {ticket}")


def _waiting(display: HallClient, **counts: int) -> None:
    wait_until(lambda: display.state.queues and all(display.state.queues[s]["waiting"] == n
                                                    for s, n in counts.items()),
               what=f"queues {counts}")


def _last_call(display: HallClient, number: str, window: int) -> None:
    wait_until(lambda: display.state.calls and display.state.calls[0]["number"] == number
               and display.state.calls[0]["window"] == window, what=f"{number} at window {window} in state/calls")


def test_full_visit_flow_over_mqtt(hall: Hall) -> None:
    display = hall.client("display-1", connect=False)
    events = EventLog(display)          # listen before connecting: the retained state arrives at once
    states = StateLog(display)
    display.connect(timeout=10)
    kiosk = hall.client("kiosk-1")
    w3, w5, w6 = hall.client("window-3"), hall.client("window-5"), hall.client("window-6")
    tablet3, tablet4 = hall.client("tablet-3"), hall.client("tablet-4")

    # The daemon's retained status and the initial state, as a client that just connected sees them.
    status = wait_until(lambda: display.state.hall, what="the retained daemon status")
    assert status["state"] == "online" and status["version"] and status["started_at"]
    _window_state(display, 3, "closed")
    _waiting(display, consult=0, legal_aid=0, mediation=0)
    assert display.state.calls == []

    # -- issue at the kiosk ---------------------------------------------------------------------
    a001 = kiosk.request("issue_ticket", service="consult")["ticket"]
    assert {k: a001[k] for k in ("number", "service", "status", "priority", "window")} == {
        "number": "A001", "service": "consult", "status": "waiting", "priority": "normal", "window": None}
    assert a001["id"] and a001["issued_at"] and a001["arrival_at"] == a001["issued_at"]
    assert _event(display, "ticket_issued", a001["id"])["ticket"]["number"] == "A001"
    _waiting(display, consult=1)

    # -- authorisation: role and window come from the credential store, not from the payload ----
    assert error_code(lambda: kiosk.request("call_next")) == "forbidden"
    assert error_code(lambda: tablet3.request("call_next")) == "forbidden"
    assert error_code(lambda: display.request("issue_ticket", service="consult")) == "forbidden"
    assert error_code(lambda: w3.request("call_next")) == "not_logged_in"

    # -- login, call, recall, start, finish -----------------------------------------------------
    login = hall.login(w3, "S003")
    assert login["window"]["status"] == "idle" and login["window"]["staff"]["id"] == "S003"
    _window_state(display, 3, "idle")
    assert error_code(lambda: w3.request("call_next", window=4)) == "forbidden"   # acting for window 4

    called = w3.request("call_next")["ticket"]
    assert (called["id"], called["status"], called["window"], called["first_officer"]) == (
        a001["id"], "called", 3, "S003")
    ev = _event(display, "ticket_called", a001["id"], window=3)
    assert ev["ticket"]["number"] == "A001" and "A001" in ev["announcement"]
    _window_state(display, 3, "calling", "A001")
    _last_call(display, "A001", 3)
    _waiting(display, consult=0)

    recalled = w3.request("recall")["ticket"]
    assert recalled["recall_count"] == 1
    assert _event(display, "ticket_recalled", a001["id"], window=3)["ticket"]["recall_count"] == 1

    assert w3.request("start")["ticket"]["status"] == "serving"
    _event(display, "service_started", a001["id"], window=3)
    _window_state(display, 3, "serving", "A001")

    finished = w3.request("finish", outcome="completed", note="已解答")["ticket"]
    assert finished["status"] == "finished" and finished["outcome"] == "completed"
    _event(display, "service_finished", a001["id"], window=3)
    _event(display, "rating_requested", a001["id"], window=3)
    _window_state(display, 3, "idle")

    # -- rating: only the tablet of the window that served the visitor ---------------------------
    assert error_code(lambda: tablet4.request("rate", ticket=a001["id"], score=1)) == "forbidden"
    rated = tablet3.request("rate", ticket=a001["id"], score=5, dimensions={"服务态度": 5})["ticket"]
    assert rated["rating"]["score"] == 5
    assert _event(display, "rating_received", a001["id"], window=3)["ticket"]["rating"]["score"] == 5
    assert tablet3.wait_for_event(lambda e: e["type"] == "rating_received")["ticket"]["id"] == a001["id"]

    # -- transfer to a service, to a window, and back to the first officer ------------------------
    hall.login(w5, "S005")
    hall.login(w6, "S006")
    a002 = kiosk.request("issue_ticket", service="consult")["ticket"]
    assert a002["number"] == "A002"
    assert w3.request("call_next")["ticket"]["id"] == a002["id"]
    _window_state(display, 3, "calling", "A002")

    moved = w3.request("transfer", service="legal_aid", note="需申请法律援助")["ticket"]
    assert (moved["status"], moved["service"], moved["number"]) == ("waiting", "legal_aid", "A002")
    assert moved["arrival_at"] == a002["arrival_at"] and moved["first_officer"] == "S003"
    ev = _event(display, "ticket_transferred", a002["id"])
    assert ev["transfer"]["from_window"] == 3 and ev["transfer"]["to_service"] == "legal_aid"
    _window_state(display, 3, "idle")
    _waiting(display, consult=0, legal_aid=1)

    at5 = w5.request("call_next")["ticket"]
    assert (at5["id"], at5["number"], at5["window"], at5["staff_id"]) == (a002["id"], "A002", 5, "S005")
    assert at5["first_officer"] == "S003" and at5["arrival_at"] == a002["arrival_at"]
    _event(display, "ticket_called", a002["id"], window=5)
    _last_call(display, "A002", 5)

    to6 = w5.request("transfer", window=6)["ticket"]
    assert to6["target_window"] == 6 and to6["status"] == "waiting"
    at6 = w6.request("call_next")["ticket"]
    assert (at6["id"], at6["window"], at6["first_officer"], at6["arrival_at"]) == (
        a002["id"], 6, "S003", a002["arrival_at"])
    _event(display, "ticket_called", a002["id"], window=6)

    back = w6.request("return_to_first", note="请首问责任人答复")["ticket"]
    assert back["target_window"] == 3 and back["first_officer"] == "S003"
    ev = _event(display, "ticket_transferred", a002["id"], window=6)
    assert ev["transfer"]["reason"] == "return_to_first" and ev["transfer"]["to_window"] == 3
    again = w3.request("call_next")["ticket"]
    assert again["id"] == a002["id"] and again["arrival_at"] == a002["arrival_at"]
    assert [t.get("to_service") or t.get("to_window") for t in again["transfers"]] == ["legal_aid", 6, 3]
    w3.request("finish")

    # -- skip, reinstate, call by number --------------------------------------------------------
    a003 = kiosk.request("issue_ticket", service="consult")["ticket"]
    assert a003["number"] == "A003"
    assert w3.request("call_next")["ticket"]["id"] == a003["id"]
    assert w3.request("skip")["ticket"]["status"] == "no_show"
    _event(display, "ticket_skipped", a003["id"], window=3)
    _window_state(display, 3, "idle")
    assert w3.request("call_next") == {"ticket": None}      # nothing waiting: the no-show is not called
    reinstated = w3.request("reinstate", number="A003")["ticket"]
    assert reinstated["status"] == "waiting" and reinstated["arrival_at"] == a003["arrival_at"]
    _event(display, "ticket_reinstated", a003["id"])
    _waiting(display, consult=1)
    by_number = w3.request("call_number", number="A003")["ticket"]
    assert by_number["id"] == a003["id"] and by_number["status"] == "called"
    _event(display, "ticket_called", a003["id"], window=3)
    _window_state(display, 3, "calling", "A003")
    w3.request("finish")
    _window_state(display, 3, "idle")

    # -- pause and resume -----------------------------------------------------------------------
    assert w3.request("pause", reason="午休")["window"]["status"] == "paused"
    display.wait_for_event(lambda e: e["type"] == "window_paused" and e["window"] == 3)
    paused = _window_state(display, 3, "paused")
    assert paused["paused_reason"] == "午休"
    assert error_code(lambda: w3.request("call_next")) == "conflict"
    assert w3.request("resume")["window"]["status"] == "idle"
    display.wait_for_event(lambda e: e["type"] == "window_resumed" and e["window"] == 3)
    _window_state(display, 3, "idle")

    # -- what the display saw -------------------------------------------------------------------
    seen = events.events
    ids = [e["event_id"] for e in seen]
    seqs = [e["seq"] for e in seen]
    assert len(set(ids)) == len(ids), "an event was delivered twice"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"events out of order or missing: {seqs}"
    assert seqs[-1] == hall.service.snapshot()["seq"]
    a001_types = [e["type"] for e in seen if (e.get("ticket") or {}).get("id") == a001["id"]]
    assert a001_types == ["ticket_issued", "ticket_called", "ticket_recalled", "service_started",
                          "service_finished", "rating_requested", "rating_received", "visit_closed"]
    assert states.window_statuses(3) == [
        "closed", "idle",
        "calling", "serving", "idle",             # A001: call, start, finish
        "calling", "idle",                        # A002: call, transfer to legal aid
        "calling", "idle",                        # A002 back from window 6, finished
        "calling", "idle",                        # A003: call, skip
        "calling", "idle",                        # A003 called by number, finished
        "paused", "idle",
    ]
    calls = display.state.calls
    assert [(c["number"], c["window"]) for c in calls] == [   # newest first; a recall is a call too
        ("A003", 3), ("A003", 3), ("A002", 3), ("A002", 6), ("A002", 5), ("A002", 3), ("A001", 3), ("A001", 3)]

    # The tablet of window 3 sees its own window's state only.
    assert set(tablet3.state.windows) == {3} and tablet3.state.queues is None

    # A stopping daemon says so on its retained status (the embedded broker stops with it).
    if hall.broker == "mosquitto":
        hall.stop_daemon()
        wait_until(lambda: (display.state.hall or {}).get("state") == "offline", what="status offline")
