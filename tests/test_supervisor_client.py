"""A window client bound to no window is the supervisor's terminal (值班长): the sample hall's `supervisor`
client reads the whole hall (`status`, every window's state and event) and records the follow-up of a
差评, and is refused every op that needs a window. HallService on a real SQLite file and manual clock; the
credentials and topic rules the brokers enforce."""

from __future__ import annotations

import pytest

from hall_controller.bus.credentials import CredentialStore
from hall_controller.bus.topics import ALL_EVENTS, HallTopics, access_rules, subscriptions
from hall_controller.service import KIOSK_OPS, SUPERVISOR_OPS, TABLET_OPS, WINDOW_OPS

from .harness import KIOSK, SUPERVISOR, refused, service_hall, tablet, window


@pytest.fixture
def hall(tmp_path):
    h = service_hall(tmp_path)
    yield h
    h.close()


def test_the_sample_hall_has_a_supervisor_window_client_with_credentials(hall):
    [client] = [c for c in hall.config.clients if c.id == "supervisor"]
    assert (client.role, client.window) == ("window", None)
    cred = CredentialStore(hall.config.credentials_path).get("supervisor")
    assert cred is not None and (cred.role, cred.window) == ("window", None)


def test_supervisor_reads_status_and_follows_up_a_bad_rating(hall):
    snapshot = hall.run(SUPERVISOR, "status")
    assert set(snapshot["windows"]) == {str(n) for n in range(1, 9)}
    bad = hall.serve(3)
    hall.run(tablet(3), "rate", ticket=bad["id"], score=1)
    assert refused(hall, SUPERVISOR, "resolve_bad_rating", ticket=bad["id"], note=" ").code == "bad_request"
    result = hall.run(SUPERVISOR, "resolve_bad_rating", ticket=bad["number"], note="已电话回访并致歉")
    assert result["bad_rating"]["follow_up"]["by"] == "supervisor"
    [resolved] = hall.of_type("bad_rating_resolved")
    assert resolved["ticket"]["id"] == bad["id"]
    assert refused(hall, SUPERVISOR, "resolve_bad_rating", ticket=bad["id"], note="again").code == "not_found"
    # a window client bound to a window still may not
    assert refused(hall, window(3), "status").code == "forbidden"


def test_supervisor_is_refused_every_op_that_needs_a_window(hall):
    hall.run(window(3), "login", staff_id="S003", pin="1234")
    hall.run(KIOSK, "issue_ticket", service="consult")
    args = {"staff_id": "S001", "pin": "1234", "service": "consult", "number": "A001", "window": 3,
            "outcome": "accepted", "score": 5}
    before = hall.service.snapshot()
    ops = sorted((WINDOW_OPS | KIOSK_OPS | TABLET_OPS | {"reset_day", "reload_config", "add_appointment"})
                 - SUPERVISOR_OPS)                            # it reads the hall day (day_summary) like a window
    for op in ops:
        error = refused(hall, SUPERVISOR, op, **args)
        assert error.code == "forbidden" and "未绑定窗口" in error.message, op
    assert hall.service.snapshot() == before                       # nothing changed
    assert {"call_next", "login", "issue_ticket", "print_notice", "attach_scan", "rate"} <= set(ops)


def test_supervisor_topics_cover_every_window_within_its_acl():
    topics = HallTopics("demo")
    rules = access_rules(topics, "supervisor", "window", None)
    wanted = subscriptions(topics, "supervisor", "window", None, ALL_EVENTS)
    assert "hall/demo/state/window/+" in wanted and "hall/demo/event/#" in wanted
    assert all(rules.may_read(f) for f in wanted)
    assert rules.write == ("hall/demo/cmd/supervisor", "hall/demo/client/supervisor/status")
