"""Rating on the phone (issue 19): the tablet's rules (five national levels, four dimensions, the
rating time after the finish), one rating per visit from whichever of tablet and phone comes first,
the other told, an identical phone rating repeated answered as the first. Real service, manual clock;
the tablet's screen logic (kiosk_ui.tablet_state) fed the event the daemon published."""

from __future__ import annotations

import pytest

from kiosk_ui import tablet_state as ts

from .harness import KIOSK, PIN, WEB, refused, service_hall, tablet, window

DIMS = {"服务态度": 5, "业务技能": 4, "服务质量": 5, "廉洁从政": 5}


@pytest.fixture
def hall(tmp_path):
    h = service_hall(tmp_path)
    h.run(window(3), "login", staff_id="S003", pin=PIN)
    yield h
    h.close()


def visit(hall, *, finish: bool = True) -> dict:
    """A ticket served at window 3 (finished unless told); its issue reply, with the visit token."""
    issued = hall.run(KIOSK, "issue_ticket", service="consult")
    assert hall.run(window(3), "call_next")["ticket"]["id"] == issued["ticket"]["id"]
    hall.run(window(3), "start")
    hall.clock.advance(minutes=4)
    if finish:
        hall.run(window(3), "finish")
    return issued


def rate(hall, token, score=5, dimensions=None):
    args = {"token": token, "score": score}
    if dimensions is not None:
        args["dimensions"] = dimensions
    return hall.run(WEB, "rate_by_token", **args)


def test_the_phone_rates_first_and_the_tablet_is_told(hall):
    issued = visit(hall)
    token, ticket_id = issued["visit_token"], issued["ticket"]["id"]
    [request] = hall.of_type("rating_requested")
    screen = ts.on_event(ts.TabletState(window=3), request, now=0.0)
    assert screen.screen == ts.RATING                          # the tablet asks for the rating …
    hall.clock.advance(seconds=40)
    page = rate(hall, token, 4, DIMS)["ticket"]
    assert page["rating"] == {"allowed": False, "done": True, "by": "phone", "score": 4, "until": None}
    [event] = hall.of_type("rating_received")
    assert event["by"] == "phone" and event["window"] == 3 and event["ticket"]["rating"]["by"] == "phone"
    screen = ts.on_event(screen, event, now=41.0)               # … and leaves it when the phone rated
    assert screen.screen == ts.THANKS and screen.note == ts.RATED_ON_PHONE
    assert hall.service.snapshot()["windows"]["3"]["rating_pending"] is None
    late = refused(hall, tablet(3), "rate", ticket=ticket_id, score=1)
    assert late.code == "not_found" and "已评价" in late.message
    record = hall.record(ticket_id)                             # the upstream record has the phone's rating
    assert record["rating_status"] == "rated"
    assert record["rating"]["score"] == 4 and record["rating"]["by"] == "phone" and record["rating"]["dimensions"] == DIMS


def test_the_tablet_rates_first_and_the_phone_is_told(hall):
    issued = visit(hall)
    hall.run(tablet(3), "rate", ticket=issued["ticket"]["id"], score=5)
    assert hall.of_type("rating_received")[0]["by"] == "tablet"
    page = hall.run(WEB, "ticket_status", token=issued["visit_token"])["ticket"]
    assert page["rating"] == {"allowed": False, "done": True, "by": "tablet", "score": 5, "until": None}
    err = refused(hall, WEB, "rate_by_token", token=issued["visit_token"], score=5)
    assert err.code == "conflict" and "已评价" in err.message
    assert hall.record(issued["ticket"]["id"])["rating"]["by"] == "tablet"


def test_a_repeated_phone_rating_is_answered_as_the_first(hall):
    issued = visit(hall)
    token = issued["visit_token"]
    first = rate(hall, token, 5, DIMS)
    assert rate(hall, token, 5, DIMS) == first                 # the phone retried: same answer
    assert len(hall.of_type("rating_received")) == 1
    for score, dims in ((4, DIMS), (5, None), (5, {**DIMS, "服务态度": 4})):
        err = refused(hall, WEB, "rate_by_token", token=token, score=score, **({"dimensions": dims} if dims else {}))
        assert err.code == "conflict" and "已评价" in err.message
    assert hall.record(issued["ticket"]["id"])["rating"]["score"] == 5


def test_the_tablets_rules_apply_on_the_phone(hall):
    waiting = hall.run(KIOSK, "issue_ticket", service="consult")
    err = refused(hall, WEB, "rate_by_token", token=waiting["visit_token"], score=5)
    assert err.code == "conflict" and "尚未办理" in err.message
    assert hall.run(WEB, "ticket_status", token=waiting["visit_token"])["ticket"]["rating"]["allowed"] is False
    hall.run(window(3), "call_next")                            # the waiting one, now served
    hall.run(window(3), "start")
    hall.clock.advance(minutes=4)
    hall.run(window(3), "finish")
    token = waiting["visit_token"]
    for score in (0, 6, "5", True, None, 4.5):
        assert refused(hall, WEB, "rate_by_token", token=token, score=score).code == "bad_request"
    for dims in ({"态度": 5}, {"服务态度": 6}, {"服务态度": True}, ["服务态度"]):
        assert refused(hall, WEB, "rate_by_token", token=token, score=5, dimensions=dims).code == "bad_request"
    hall.clock.advance(minutes=3)                               # rules.rating_minutes after the finish
    err = refused(hall, WEB, "rate_by_token", token=token, score=5)
    assert err.code == "conflict" and "评价时间已过" in err.message
    hall.service.tick()                                         # closed 未评价: still the same answer
    assert refused(hall, WEB, "rate_by_token", token=token, score=5).code == "conflict"
    assert hall.record(waiting["ticket"]["id"])["rating_status"] == "not_rated"
    assert not hall.of_type("rating_received")


def test_a_phone_rating_while_served_closes_the_visit_at_its_finish(hall):
    issued = visit(hall, finish=False)
    page = hall.run(WEB, "ticket_status", token=issued["visit_token"])["ticket"]
    assert page["status"] == "serving" and page["rating"]["allowed"] is True
    rate(hall, issued["visit_token"], 5)
    err = refused(hall, tablet(3), "rate", ticket=issued["ticket"]["id"], score=5)
    assert err.code == "conflict" and "手机" in err.message     # the tablet's refusal says where
    state, _ = ts.submit(ts.TabletState(window=3, screen=ts.DIMENSIONS, request={"id": "x"}, score=5), 0.0)
    told = ts.on_rate_reply(state, 1.0, ok=False, code=err.code, message=err.message)
    assert told.screen == ts.THANKS and told.note == ts.RATED_ON_PHONE
    hall.run(window(3), "finish")
    assert hall.record(issued["ticket"]["id"])["rating"]["by"] == "phone"


def test_a_bad_phone_rating_raises_the_supervisors_alert(hall):
    issued = visit(hall)
    rate(hall, issued["visit_token"], 1)
    [bad] = hall.of_type("bad_rating")
    assert bad["supervisor"] is True and bad["score"] == 1 and bad["ticket"]["id"] == issued["ticket"]["id"]
    assert any(b["ticket"]["id"] == issued["ticket"]["id"] for b in hall.service.snapshot()["bad_ratings"])
