"""The `web` role (hall-web, issue 19) holds least privilege, on the daemon's embedded broker and on a
real Mosquitto configured from the generated ACL (both derive from bus.topics.access_rules).

web-1 reads the hall's status, retained state and events and its own replies, runs the four token
ops, and nothing else: no other client's replies (a kiosk's carries the visit token), commands (a
window's login carries the PIN), devices, card reads or client statuses; its commands to another
client's cmd topic, forged events, state, replies and daemon status never arrive; every other op is
refused `forbidden` by the daemon."""

from __future__ import annotations

import json

import pytest

from hall_controller.bus.topics import HallTopics, access_rules

from .harness import PIN, Hall, RawClient, error_code, have_mosquitto, no_devices, wait_until

BROKERS = ["embedded", pytest.param("mosquitto", marks=[
    pytest.mark.mosquitto, pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")])]
ROOT = "hall/demo"
ALLOWED = {f"{ROOT}/status", f"{ROOT}/state/queues", f"{ROOT}/state/calls", f"{ROOT}/state/window/+",
           f"{ROOT}/event/#", f"{ROOT}/reply/web-1"}
FORBIDDEN = [f"{ROOT}/reply/kiosk-1", f"{ROOT}/reply/+", f"{ROOT}/cmd/+", f"{ROOT}/cmd/window-3",
             f"{ROOT}/device/#", f"{ROOT}/kiosk/+/card", f"{ROOT}/client/+/status", f"{ROOT}/#"]


@pytest.fixture(params=BROKERS)
def hall(tmp_path, request):
    h = Hall(tmp_path, mutate=no_devices, broker=request.param)
    yield h
    h.close()


def raw(hall: Hall, user: str) -> RawClient:
    client = RawClient(hall.port, user, hall.passwords[user])
    assert client.connect(), client.connack
    return client


def allowed(topic: str) -> bool:
    rules = access_rules(HallTopics("demo"), "web-1", "web")
    return rules.may_read(topic)


def test_the_access_rules_of_web(hall):
    rules = access_rules(HallTopics("demo"), "web-1", "web")
    assert set(rules.read) == ALLOWED
    assert rules.write == (f"{ROOT}/cmd/web-1", f"{ROOT}/client/web-1/status")
    for topic in FORBIDDEN:
        assert not rules.may_read(topic), topic


def test_web_reads_what_the_pages_need_and_nothing_else(hall):
    spy = raw(hall, "web-1")
    reasons = spy.subscribe(*sorted(ALLOWED), *FORBIDDEN)
    if hall.broker == "embedded":            # the embedded broker refuses the filters at SUBACK
        assert [r.is_failure for r in reasons] == [False] * len(ALLOWED) + [True] * len(FORBIDDEN)
    kiosk = hall.client("kiosk-1")
    clerk = hall.client("window-3")
    hall.login(clerk, "S003")                            # the PIN travels on cmd/window-3
    issued = kiosk.request("issue_ticket", service="consult")   # the token travels on reply/kiosk-1
    clerk.request("call_next")
    spy.publish(f"{ROOT}/cmd/web-1", json.dumps({"id": "s1", "op": "hall_page"}))
    wait_until(lambda: spy.received(f"{ROOT}/reply/web-1") and spy.received(f"{ROOT}/event/ticket_called")
               and spy.received(f"{ROOT}/state/window/3"), what="the web client's own reply and the call")
    topics = {t for t, _, _ in spy.messages}
    assert {f"{ROOT}/status", f"{ROOT}/state/queues", f"{ROOT}/state/calls", f"{ROOT}/event/ticket_issued",
            f"{ROOT}/event/ticket_called", f"{ROOT}/reply/web-1"} <= topics
    assert all(allowed(t) for t in topics), sorted(t for t in topics if not allowed(t))
    everything = b"".join(p for _, p, _ in spy.messages)
    assert issued["visit_token"].encode() not in everything and PIN.encode() + b'"' not in everything
    [reply] = spy.json_on(f"{ROOT}/reply/web-1")
    assert reply["ok"] and reply["result"]["services"][0]["waiting"] == 0


def test_web_cannot_write_where_others_read(hall):
    spy = raw(hall, "web-1")
    observer = raw(hall, "admin")                        # reads status, state, events, client statuses
    observer.subscribe(f"{ROOT}/status", f"{ROOT}/state/#", f"{ROOT}/event/#", f"{ROOT}/client/+/status")
    kiosk = raw(hall, "kiosk-1")
    kiosk.subscribe(f"{ROOT}/reply/kiosk-1")
    wait_until(lambda: observer.received(f"{ROOT}/status"), what="the retained status")
    before = len(observer.messages)
    forged = b'{"forged": true}'
    spy.publish(f"{ROOT}/cmd/kiosk-1", json.dumps({"id": "spoof", "op": "issue_ticket", "service": "consult"}))
    spy.publish(f"{ROOT}/reply/kiosk-1", b'{"id":"k1","ok":true,"result":{"forged":true}}')
    spy.publish(f"{ROOT}/event/ticket_called", forged)
    spy.publish(f"{ROOT}/state/queues", forged, retain=True)
    spy.publish(f"{ROOT}/status", forged, retain=True)
    spy.publish(f"{ROOT}/client/web-1/status", b'{"state": "sentinel"}')     # its own: allowed, after the rest
    wait_until(lambda: observer.received(f"{ROOT}/client/web-1/status"), what="the sentinel")
    assert forged not in b"".join(p for _, p, _ in observer.messages[before:])
    # the kiosk's own command after the spoofed one: same client, same order at the daemon
    kiosk.publish(f"{ROOT}/cmd/kiosk-1", json.dumps({"id": "k1", "op": "issue_ticket", "service": "consult"}))
    wait_until(lambda: kiosk.received(f"{ROOT}/reply/kiosk-1"), what="the kiosk's reply")
    [reply] = kiosk.json_on(f"{ROOT}/reply/kiosk-1")
    assert reply["ok"] and reply["result"]["ticket"]["number"] == "A001"     # the spoofed one never ran
    assert not any(e.get("forged") for e in hall.events)
    assert [e["ticket"]["number"] for e in hall.of_type("ticket_issued")] == ["A001"]


def test_web_runs_the_four_token_ops_and_nothing_else(hall):
    kiosk, web = hall.client("kiosk-1"), hall.client("web-1")
    issued = kiosk.request("issue_ticket", service="consult")
    token, ticket_id = issued["visit_token"], issued["ticket"]["id"]
    assert web.request("ticket_status", token=token)["ticket"]["status"] == "waiting"
    assert web.request("hall_page")["hall"]["name"] == hall.config.name
    assert error_code(lambda: web.request("rate_by_token", token=token, score=5)) == "conflict"
    assert error_code(lambda: web.request("ticket_status", token="A" * 22)) == "not_found"
    others = [("issue_ticket", {"service": "consult"}), ("reprint", {"ticket": ticket_id}),
              ("print_notice", {"service": "consult"}), ("service_guide", {}), ("login", {"staff_id": "S001", "pin": PIN}),
              ("call_next", {}), ("call_number", {"number": "A001", "window": 3}), ("finish", {"window": 3}),
              ("skip", {"window": 3}), ("rate", {"ticket": ticket_id, "score": 5, "window": 3}),
              ("status", {}), ("day_summary", {}), ("reset_day", {}), ("reload_config", {}),
              ("add_appointment", {"code": "X1", "service": "consult", "start_at": "2026-12-08T10:00:00+08:00"}),
              ("resolve_bad_rating", {"ticket": ticket_id, "note": "x"}), ("drop_card", {}), ("card_touch", {}),
              ("attach_scan", {"ticket": ticket_id, "image": "AAAA", "window": 3})]
    for op, args in others:
        assert error_code(lambda op=op, args=args: web.request(op, **args)) == "forbidden", op
    assert web.request("leave", token=token)["ticket"]["status"] == "left"
    assert [e["type"] for e in hall.events if e["type"].startswith("ticket_")] == ["ticket_issued", "ticket_left"]
