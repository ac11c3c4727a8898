"""Estimated waiting time (预计等待): the forecast follows the calling rules, on a manual clock."""

from __future__ import annotations

import math
import random
import re

import pytest

from hall_controller.clock import ManualClock
from hall_controller.domain import QueueEngine
from hall_controller.domain.estimate import REFRESH, SAMPLES, SHOW_SHARE, History, shown_range
from hall_controller.service import Actor, HallService
from hall_controller.store import Store

from .harness import EngineHall, card

VISIT_MINUTES = 10


@pytest.fixture
def hall(sample_config, clock):
    return EngineHall(sample_config, clock)


def serve(hall: EngineHall, clock: ManualClock, window: int, service: str, visits: int = 3) -> None:
    """Some visits of `service` at `window`, each VISIT_MINUTES from call to finish: the history."""
    for _ in range(visits):
        hall.issue(service)
        hall.engine.call_next(window)
        clock.advance(minutes=VISIT_MINUTES)
        hall.engine.finish(window)


def issued(hall: EngineHall, service: str, **kwargs) -> dict:
    """A ticket issued a little after the previous one: a normal ticket shares its service's forecast
    for REFRESH, so each gets its own here."""
    hall.clock.advance(seconds=REFRESH.total_seconds() + 1)
    return hall.engine.issue_ticket(service, **kwargs).result


def minutes(*values: float) -> list[float]:
    return [60 * v for v in values]


def test_shown_range_is_on_a_5_minute_grid_where_the_replays_are_and_narrow_under_30_minutes():
    assert shown_range(minutes(*[1] * 19, 7)).to_dict() == {"low_min": 0, "high_min": 5, "text": "约5分钟内"}
    assert shown_range(minutes(2, 3, 4, 6, 7, 8, 9)).to_dict() == {"low_min": 0, "high_min": 10, "text": "约10分钟内"}
    # Skewed replays: the range goes where most of them are, not around their mean.
    skewed = minutes(*[12] * 6, 14, 16, 17, 19, 24, 40)
    assert shown_range(skewed) == shown_range(minutes(*[12] * 6, 14, 16, 17, 19, 24, 41))
    assert (shown_range(skewed).low_min, shown_range(skewed).high_min) == (10, 20)
    rng = random.Random(7)
    for _ in range(500):
        centre = rng.uniform(0, 120)
        waits = [max(0.0, rng.gauss(centre, centre / 10)) for _ in range(SAMPLES)]
        r = shown_range(minutes(*waits))
        assert r is not None and r.low_min % 5 == 0 and r.high_min % 5 == 0
        assert sum(r.low_min <= w <= r.high_min for w in waits) >= SHOW_SHARE * SAMPLES
        if r.low_min + r.high_min < 60:             # centred under 30 minutes: at most 10 wide
            assert r.high_min - r.low_min <= 10


def test_shown_range_is_hidden_when_the_replays_scatter_wider_than_a_range():
    assert shown_range(minutes(5, 9, 13, 17, 21, 25, 29, 33)) is None
    assert shown_range(minutes(*[12] * 7, math.inf, math.inf, math.inf)) is not None
    assert shown_range([math.inf] * SAMPLES) is None
    assert shown_range([]) is None


def test_a_visit_that_has_run_long_is_expected_to_go_on():
    history = History()
    for seconds in (300, 480, 600, 720, 900, 1200):
        history.add("consult", seconds)
    mean = history.mean("consult")
    assert mean is not None
    rng = random.Random(1)
    fresh = [history.draw("consult", rng) for _ in range(2000)]
    left_late = [history.draw("consult", rng, elapsed=2 * mean) for _ in range(2000)]
    assert 0.8 * mean < sum(fresh) / len(fresh) < 1.2 * mean
    assert min(left_late) >= 0
    # Past twice the mean, the plain mean says nothing is left; the lognormal's tail says about 0.4 mean.
    assert 0.3 * mean < sum(left_late) / len(left_late) < 0.6 * mean
    assert history.draw("mediation", rng) is None       # no visits of it yet


def test_no_data_hides_the_estimate_but_counts_the_people_ahead(hall):
    hall.login(3, "S003")
    first, second = issued(hall, "consult"), issued(hall, "consult")
    assert (first["ahead"], first["estimate"]) == (0, None)
    assert (second["ahead"], second["estimate"]) == (1, None)
    assert hall.engine.queues_view()["consult"]["estimate"] is None
    assert hall.engine.queues_view()["consult"]["waiting"] == 2


def test_no_open_window_hides_the_estimate(hall, clock):
    hall.login(3, "S003")
    serve(hall, clock, 3, "consult")
    hall.engine.logout(3)
    assert issued(hall, "consult")["estimate"] is None


def test_estimate_follows_the_queue_position(hall, clock):
    hall.login(3, "S003")
    serve(hall, clock, 3, "consult")
    results = [issued(hall, "consult") for _ in range(4)]
    assert [r["ahead"] for r in results] == [0, 1, 2, 3]
    # One window, ten minutes a visit (plus the clerk's turnaround): 0, ~10, ~21, ~31 minutes.
    assert [(r["estimate"]["low_min"], r["estimate"]["high_min"]) for r in results] == [
        (0, 5), (5, 15), (15, 25), (20, 40)]
    assert results[2]["estimate"]["text"] == "约15–25分钟"
    lows = [r["estimate"]["low_min"] for r in results]
    assert lows == sorted(lows)


def test_more_open_windows_give_a_shorter_wait(hall, clock):
    hall.login(3, "S003")
    serve(hall, clock, 3, "consult")
    for _ in range(5):
        issued(hall, "consult")
    alone = issued(hall, "consult")["estimate"]
    hall.login(1, "S001")
    hall.login(2, "S002")
    shared = issued(hall, "consult")["estimate"]
    assert shared["high_min"] < alone["high_min"] and shared["low_min"] <= alone["low_min"]
    assert hall.engine.queues_view()["consult"]["estimate"]["high_min"] <= shared["high_min"] + 5


def test_priority_ticket_is_ahead_of_normal_ones(hall, clock):
    hall.login(3, "S003")
    serve(hall, clock, 3, "consult")
    normals = [issued(hall, "consult") for _ in range(3)]
    elderly = issued(hall, "consult", card=card("老人", birth="19400101", serial="301"))
    assert elderly["ticket"]["priority"] == "elderly"
    assert elderly["ahead"] == 0
    assert elderly["estimate"]["high_min"] <= normals[1]["estimate"]["high_min"]
    after = issued(hall, "consult")
    assert after["ahead"] == 4                 # three normals and the elderly visitor
    # The last normal ticket now waits behind the elderly one too.
    last = hall.engine.reprint(normals[-1]["ticket"]["number"]).result
    assert last["ahead"] == 3
    assert last["estimate"]["low_min"] >= normals[-1]["estimate"]["low_min"]


def test_paused_window_is_not_counted(hall, clock):
    for window, staff in ((1, "S001"), (3, "S003")):
        hall.login(window, staff)
    serve(hall, clock, 3, "consult")
    for _ in range(4):
        issued(hall, "consult")
    both = issued(hall, "consult")["estimate"]
    hall.engine.pause(1, "休息")
    one = issued(hall, "consult")["estimate"]
    assert one["low_min"] > both["low_min"]
    hall.engine.pause(3, "休息")
    assert issued(hall, "consult")["estimate"] is None


def test_shared_window_prefers_its_own_service(hall, clock):
    # Window 8 serves general first (weight 10) and consult only when no general ticket waits.
    hall.login(8, "S008")
    serve(hall, clock, 8, "consult")
    serve(hall, clock, 8, "general")
    consult = issued(hall, "consult")
    general = [issued(hall, "general") for _ in range(2)]
    assert consult["ahead"] == 0 and general[1]["ahead"] == 1
    later = hall.engine.reprint(consult["ticket"]["number"]).result
    assert later["ahead"] == 0                  # nobody of its own service is ahead ...
    # ... but both general visitors go first at window 8 (and more are expected: it may be hidden).
    assert later["estimate"] is None or later["estimate"]["low_min"] > consult["estimate"]["low_min"]
    assert later["estimate"] is None or later["estimate"]["low_min"] >= general[1]["estimate"]["low_min"]


def test_estimates_survive_a_restart_from_the_visits_awaiting_rating(hall, sample_config, clock):
    hall.login(3, "S003")
    serve(hall, clock, 3, "consult")          # finished, not rated yet: still in the state
    before = issued(hall, "consult")["estimate"]
    rebuilt = QueueEngine(sample_config, clock, hall.engine.state, secret=b"test-secret")
    after = rebuilt.issue_ticket("consult").result["estimate"]
    assert before is not None and after is not None
    assert after["low_min"] >= before["low_min"]


def test_issue_reply_and_queue_state_through_the_service(sample_config, clock, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'hall.db'}")
    service = HallService(sample_config, store, clock, secret=b"test")
    window, kiosk = Actor("window-3", "window", 3), Actor("kiosk-1", "kiosk")
    service.execute(window, "login", {"staff_id": "S003", "pin": "1234"})
    for _ in range(3):
        service.execute(kiosk, "issue_ticket", {"service": "consult"})
        service.execute(window, "call_next", {})
        clock.advance(minutes=8)
        service.execute(window, "finish", {})
    service.execute(kiosk, "issue_ticket", {"service": "consult"})
    reply = service.execute(kiosk, "issue_ticket", {"service": "consult"})
    assert reply["ahead"] == 1
    assert re.fullmatch(r"约(\d+–)?\d+分钟内?", reply["estimate"]["text"])
    clock.advance(seconds=10)
    queues = service.snapshot()["queues"]
    assert queues["consult"]["waiting"] == 2
    assert queues["consult"]["estimate"]["high_min"] >= reply["estimate"]["high_min"]
    assert queues["mediation"] == {"name": "人民调解", "prefix": "C", "waiting": 0, "estimate": None, "staffed": 0}
    assert queues["consult"]["staffed"] == 1                # window 3 serves it, its clerk is logged in
    store.close()


def test_normal_tickets_in_a_burst_share_their_service_forecast(hall, clock):
    hall.login(3, "S003")
    serve(hall, clock, 3, "consult")
    issued(hall, "consult")
    first = hall.engine.issue_ticket("consult").result
    second = hall.engine.issue_ticket("consult").result     # same instant: the same forecast, one more ahead
    assert (first["ahead"], second["ahead"]) == (1, 2)
    assert first["estimate"] == second["estimate"] == {"low_min": 5, "high_min": 15, "text": "约5–15分钟"}
    assert hall.engine.queues_view()["consult"]["estimate"] == first["estimate"]
    clock.advance(seconds=REFRESH.total_seconds())
    assert hall.engine.reprint(second["ticket"]["number"]).result["estimate"]["low_min"] == 15


def test_the_same_state_gives_the_same_estimate(hall, clock):
    hall.login(3, "S003")
    for minutes_ in (8, 10, 12):                 # visits of differing lengths: the replays scatter
        hall.issue("consult")
        hall.engine.call_next(3)
        clock.advance(minutes=minutes_)
        hall.engine.finish(3)
    hall.issue("consult")
    hall.engine.call_next(3)
    waiting = [issued(hall, "consult") for _ in range(2)]
    elderly = issued(hall, "consult", card=card("老人", birth="19400101", serial="301"))
    again = hall.engine.reprint(elderly["ticket"]["number"]).result
    assert elderly["estimate"] is not None and elderly["estimate"] == again["estimate"]
    first = hall.engine.reprint(waiting[0]["ticket"]["number"]).result
    assert first["estimate"] == hall.engine.reprint(waiting[0]["ticket"]["number"]).result["estimate"]
