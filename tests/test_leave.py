"""我不排了 (issue 19): a visitor leaves the line from the phone page with the ticket's token.

On the real service with a manual clock: only a waiting ticket leaves, the answer repeats for a
repeat, a called ticket is refused; the ticket gets its own status `left`, which the hall day, the
upstream record (outcome `left`) and the monthly report count apart from 过号 (no_show).
"""

from __future__ import annotations

import pytest

from hall_controller.domain.visit import LEAVE_REFUSED_TEXT
from hall_controller.upstream.reports import DEFINITIONS, METRICS
from hall_controller.upstream.service import build_month_report

from .harness import ADMIN, KIOSK, PIN, WEB, refused, service_hall, window


@pytest.fixture
def hall(tmp_path):
    h = service_hall(tmp_path)
    h.run(window(3), "login", staff_id="S003", pin=PIN)
    yield h
    h.close()


def issue(hall, service="consult"):
    return hall.run(KIOSK, "issue_ticket", service=service)


def test_a_waiting_ticket_leaves_the_line_once(hall):
    first, mine, last = issue(hall), issue(hall), issue(hall)
    token = mine["visit_token"]
    assert hall.run(WEB, "ticket_status", token=last["visit_token"])["ticket"]["ahead"] == 2
    seq = hall.service.snapshot()["seq"]
    left = hall.run(WEB, "leave", token=token)
    assert left["ticket"]["status"] == "left" and left["ticket"]["number"] == mine["ticket"]["number"]
    [event] = hall.of_type("ticket_left")
    assert event["ticket"]["id"] == mine["ticket"]["id"] and event["window"] is None and event["seq"] == seq + 1
    assert hall.of_type("visit_closed")[-1]["ticket"]["status"] == "left"
    assert hall.run(WEB, "ticket_status", token=last["visit_token"])["ticket"]["ahead"] == 1
    assert hall.service.snapshot()["queues"]["consult"]["waiting"] == 2
    # a repeat (the phone's retry, a double tap) gets the same answer and changes nothing
    assert hall.run(WEB, "leave", token=token) == left
    assert len(hall.of_type("ticket_left")) == 1 and hall.service.snapshot()["seq"] == seq + 2
    assert hall.run(WEB, "ticket_status", token=token)["ticket"]["status"] == "left"
    # the windows never call it
    called = [hall.run(window(3), "call_next", finish_current=True)["ticket"] for _ in range(3)]
    assert [t and t["number"] for t in called] == [first["ticket"]["number"], last["ticket"]["number"], None]


def test_a_called_or_served_ticket_cannot_leave(hall):
    ticket = issue(hall)
    token = ticket["visit_token"]
    hall.run(window(3), "call_next")
    for step in ("call", "start", "finish"):
        if step != "call":
            hall.run(window(3), step)
        err = refused(hall, WEB, "leave", token=token)
        assert (err.code, err.message) == ("conflict", LEAVE_REFUSED_TEXT), step
    assert not hall.of_type("ticket_left")
    skipped = issue(hall)
    hall.run(window(3), "call_next", finish_current=True)
    hall.run(window(3), "skip")                                     # 过号: the clerk's, not the visitor's
    assert refused(hall, WEB, "leave", token=skipped["visit_token"]).code == "conflict"


def test_left_is_counted_apart_from_no_show_in_the_day_the_record_and_the_month(hall):
    served, skipped, gone = issue(hall), issue(hall), issue(hall)
    hall.run(WEB, "leave", token=gone["visit_token"])
    hall.run(window(3), "call_next")
    hall.run(window(3), "start")
    hall.clock.advance(minutes=5)
    hall.run(window(3), "call_next", finish_current=True)
    hall.run(window(3), "skip")
    hall.clock.advance(minutes=31)
    hall.service.tick()                                             # the no-show's reinstate time is over
    counts = hall.run(ADMIN, "day_summary")["counts"]
    assert (counts["issued"], counts["finished"], counts["no_show"], counts["left"]) == (3, 1, 1, 1)

    record = hall.record(gone["ticket"]["id"])
    assert record["outcome"] == "left" and record["called_at"] is None and record["handling_seconds"] is None
    assert record["rating_status"] is None
    assert hall.record(skipped["ticket"]["id"])["outcome"] == "no_show"
    assert hall.record(served["ticket"]["id"]) is not None

    report = build_month_report(hall.store.engine, hall.config, "2026-11", now=hall.clock.now())
    totals = report["totals"]
    assert (totals["issued"], totals["served"], totals["no_show"], totals["left"]) == (3, 1, 1, 1)
    consult = next(s for s in report["by_service"] if s["service"] == "consult")
    assert (consult["no_show"], consult["left"]) == (1, 1)
    assert ("left", "主动离队数", "int") in METRICS
    assert any("主动离队数" in line and "过号未到" in line for line in DEFINITIONS)   # the printed 口径


def test_a_left_ticket_survives_a_restart_as_left(hall):
    ticket = issue(hall)
    hall.run(WEB, "leave", token=ticket["visit_token"])
    hall.restart()
    assert hall.run(WEB, "ticket_status", token=ticket["visit_token"])["ticket"]["status"] == "left"
    assert hall.run(WEB, "leave", token=ticket["visit_token"])["ticket"]["status"] == "left"
    assert hall.run(ADMIN, "day_summary")["counts"]["left"] == 1
