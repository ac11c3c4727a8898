"""The rating loop (DESIGN §4, national 好差评 levels) on real parts: HallService on an SQLite file with a
manual clock, the service records in the outbox, hallctl ratings, and the daemon over MQTT for a tablet
that was offline when the visit ended."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from hall_controller.cli import main as hallctl
from hall_controller.upstream.service import build_month_report

from .harness import (
    ADMIN,
    KIOSK,
    DaemonProcess,
    free_port,
    init_hall,
    refused,
    service_hall,
    tablet,
    wait_until,
    window,
)


@pytest.fixture
def hall(tmp_path):
    h = service_hall(tmp_path)
    yield h
    h.close()


def test_finish_requests_a_rating_and_the_rating_goes_into_the_service_record(hall):
    ticket = hall.serve(3)
    [request] = hall.of_type("rating_requested")
    assert (request["ticket"]["id"], request["window"], request["rating_minutes"]) == (ticket["id"], 3, 3)
    assert request["rating_until"] == (hall.clock.now() + timedelta(minutes=3)).isoformat(timespec="milliseconds")
    pending = hall.service.snapshot()["windows"]["3"]["rating_pending"]
    assert pending["ticket"]["id"] == ticket["id"] and pending["rating_until"] == request["rating_until"]
    assert hall.record(ticket["id"]) is None                  # the visit stays open for its rating

    hall.clock.advance(seconds=30)
    result = hall.run(tablet(3), "rate", ticket=ticket["id"], score=4,
                      dimensions={"服务态度": 5, "业务技能": 4, "服务质量": 4, "廉洁从政": 5})
    assert result["ticket"]["rating"]["level"] == "满意"
    record = hall.record(ticket["id"])
    assert record["rating_status"] == "rated"
    assert record["rating"]["score"] == 4 and record["rating"]["dimensions"]["廉洁从政"] == 5
    assert hall.service.snapshot()["windows"]["3"]["rating_pending"] is None
    assert not hall.of_type("bad_rating")


def test_a_visit_is_rated_once(hall):
    ticket = hall.serve(3)
    hall.run(tablet(3), "rate", ticket=ticket["id"], score=5)
    again = refused(hall, tablet(3), "rate", ticket=ticket["id"], score=1)
    assert again.code == "not_found" and "已评价" in again.message
    # Rated while still being served (the clerk's 请评价 key): the second tap is a conflict.
    hall.run(KIOSK, "issue_ticket", service="consult")
    second = hall.run(window(3), "call_next")["ticket"]
    hall.run(window(3), "start")
    hall.run(window(3), "request_rating")
    hall.run(tablet(3), "rate", ticket=second["id"], score=5)
    assert refused(hall, tablet(3), "rate", ticket=second["id"], score=5).code == "conflict"
    hall.run(window(3), "finish")                              # already rated: closed at once
    assert hall.record(second["id"])["rating"]["score"] == 5
    assert len(hall.of_type("rating_received")) == 2


def test_a_tablet_rates_only_its_own_windows_visits(hall):
    ticket = hall.serve(3)
    assert refused(hall, tablet(4), "rate", ticket=ticket["id"], score=5).code == "forbidden"
    assert refused(hall, tablet(4), "rate", ticket=ticket["id"], score=5, window=3).code == "forbidden"
    assert refused(hall, window(3), "rate", ticket=ticket["id"], score=5).code == "forbidden"   # not the clerk
    hall.run(tablet(3), "rate", ticket=ticket["id"], score=5)   # nothing was lost by the refusals


def test_no_rating_within_the_rating_time_records_not_rated(hall):
    ticket = hall.serve(3)
    hall.clock.advance(minutes=3)
    late = refused(hall, tablet(3), "rate", ticket=ticket["id"], score=5)
    assert late.code == "conflict" and "评价时间已过" in late.message
    hall.service.tick()
    record = hall.record(ticket["id"])
    assert (record["rating"], record["rating_status"], record["outcome"]) == (None, "not_rated", "completed")
    assert hall.service.snapshot()["windows"]["3"]["rating_pending"] is None
    assert refused(hall, tablet(3), "rate", ticket=ticket["id"], score=5).code == "not_found"


BAD_RATINGS = [
    {"score": 0}, {"score": 6}, {"score": "5"}, {"score": 4.5}, {"score": True}, {},
    {"score": 5, "dimensions": {"服务态度": 0}},
    {"score": 5, "dimensions": {"服务态度": 6}},
    {"score": 5, "dimensions": {"服务速度": 5}},
    {"score": 5, "dimensions": {"业务技能": "5"}},
    {"score": 5, "dimensions": [5, 5, 5, 5]},
]


def test_out_of_range_scores_and_dimensions_are_bad_requests(hall):
    ticket = hall.serve(3)
    for args in BAD_RATINGS:
        err = refused(hall, tablet(3), "rate", ticket=ticket["id"], **args)
        assert err.code == "bad_request" and "1到5" in err.message, args
    assert not hall.of_type("rating_received")
    assert hall.run(tablet(3), "rate", ticket=ticket["id"], score=3)["ticket"]["rating"]["level"] == "基本满意"


def test_bad_rating_stays_open_until_followed_up_and_is_counted_in_the_report(hall, capsys):
    good = hall.serve(3)
    hall.run(tablet(3), "rate", ticket=good["id"], score=5)
    bad = hall.serve(3)
    hall.run(tablet(3), "rate", ticket=bad["id"], score=1, dimensions={"服务态度": 1})
    [alert] = hall.of_type("bad_rating")
    assert (alert["supervisor"], alert["score"], alert["level"], alert["window"]) == (True, 1, "非常不满意", 3)
    assert alert["ticket"]["id"] == bad["id"]
    assert hall.record(bad["id"])["rating"]["score"] == 1        # the visit itself is closed and forwarded

    # Open across a restart (rebuilt from the event log), listed by hallctl ratings --open.
    hall.restart()
    assert list(hall.service.engine.state.bad_ratings) == [bad["id"]]
    assert hallctl(["ratings", "--open", "--config", str(hall.config_path)]) == 0
    out = capsys.readouterr().out
    assert "待回访 open: 1" in out and bad["number"] in out and "1分 非常不满意" in out

    assert refused(hall, window(3), "resolve_bad_rating", ticket=bad["id"], note="x").code == "forbidden"
    assert refused(hall, ADMIN, "resolve_bad_rating", ticket=bad["id"], note="  ").code == "bad_request"
    assert refused(hall, ADMIN, "resolve_bad_rating", ticket=good["id"], note="回访").code == "not_found"
    hall.clock.advance(hours=2)
    result = hall.run(ADMIN, "resolve_bad_rating", ticket=bad["number"], note="已电话回访，窗口整改服务用语")
    assert result["bad_rating"]["follow_up"]["by"] == "admin"
    [resolved] = hall.of_type("bad_rating_resolved")
    assert resolved["supervisor"] is True and resolved["ticket"]["id"] == bad["id"]
    assert refused(hall, ADMIN, "resolve_bad_rating", ticket=bad["id"], note="again").code == "not_found"

    assert hallctl(["ratings", "--open", "--config", str(hall.config_path)]) == 0
    assert "差评 / bad ratings: 0" in capsys.readouterr().out
    assert hallctl(["ratings", "--json", "--config", str(hall.config_path)]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["follow_up"]["note"] == "已电话回访，窗口整改服务用语" and listed["ticket"]["number"] == bad["number"]

    open_bad = hall.serve(3)                                     # a second 差评, not followed up yet
    hall.run(tablet(3), "rate", ticket=open_bad["id"], score=2)
    totals = build_month_report(hall.store.engine, hall.config, "2026-11", now=hall.clock.now())["totals"]
    assert (totals["rated"], totals["score_1"], totals["score_2"], totals["score_5"]) == (3, 1, 1, 1)
    assert (totals["bad"], totals["bad_followed_up"], totals["bad_open"]) == (2, 1, 1)
    assert totals["satisfaction_rate"] == round(1 / 3, 4)


def test_hallctl_ratings_resolve_without_a_daemon(hall, capsys):
    bad = hall.serve(3)
    hall.run(tablet(3), "rate", ticket=bad["id"], score=2)
    hall.store.close()
    assert hallctl(["ratings", "--resolve", bad["id"], "--config", str(hall.config_path)]) == 2
    assert hallctl(["ratings", "--resolve", bad["id"], "--note", "现场回访，已整改",
                    "--config", str(hall.config_path)], clock=hall.clock) == 0
    assert "已记录" in capsys.readouterr().out
    assert hallctl(["ratings", "--open", "--config", str(hall.config_path)]) == 0
    assert "差评 / bad ratings: 0" in capsys.readouterr().out
    hall.restart()
    assert hall.service.engine.state.bad_ratings == {}


def test_a_tablet_offline_when_the_visit_ends_gets_the_rating_when_it_comes_back(tmp_path):
    config = init_hall(tmp_path)
    daemon = DaemonProcess(config, free_port())
    daemon.start()
    clients = []
    try:
        win = daemon.client("window-3", "window", 3)
        kiosk = daemon.client("kiosk-1", "kiosk")
        clients += [win, kiosk]
        win.request("login", staff_id="S003", pin="1234")
        ticket = kiosk.request("issue_ticket", service="consult")["ticket"]
        win.request("call_next")
        win.request("finish")
        # The tablet connects only now: the retained window state still asks for the rating.
        tab = daemon.client("tablet-3", "tablet", 3)
        clients.append(tab)
        pending = wait_until(lambda: (tab.state.windows.get(3) or {}).get("rating_pending"),
                             what="the retained rating request")
        assert pending["ticket"]["id"] == ticket["id"] and pending["rating_until"]
        rated = tab.request("rate", ticket=pending["ticket"]["id"], score=5)
        assert rated["ticket"]["rating"]["score"] == 5
        wait_until(lambda: (tab.state.windows.get(3) or {"rating_pending": 1})["rating_pending"] is None,
                   what="the rating request withdrawn")
    finally:
        for c in clients:
            c.close()
        daemon.terminate()
