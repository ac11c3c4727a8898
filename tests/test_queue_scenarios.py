"""Named scenarios that pin the calling order and the queue rules (docs/QUEUE_RULES.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from hall_controller.domain import DomainError

from .conftest import TZ
from .harness import EngineHall, card, id_number


@pytest.fixture
def hall(sample_config, clock):
    h = EngineHall(sample_config, clock)
    return h


def elderly(n: int):
    return card(name=f"老人{n}", birth="19400101", serial=f"{n:03d}")


def test_priority_before_normal_with_anti_starvation_ratio(hall, clock):
    # ratio 3: after three priority calls in a row, a waiting normal ticket goes next.
    normals = [hall.issue("consult") for _ in range(2)]          # A001 A002
    clock.advance(minutes=1)
    olds = [hall.issue("consult", card=elderly(i)) for i in range(4)]   # A003..A006 elderly
    hall.login(3, "S003")
    assert hall.drain(3) == [olds[0], olds[1], olds[2], normals[0], olds[3], normals[1]]


def test_priority_classes_rank_appointment_green_elderly_normal(hall, clock):
    hall.engine.add_appointment(code="Y1", service="consult", start_at=clock.now(), source="online")
    n = hall.issue("consult")
    e = hall.issue("consult", card=elderly(1))
    g = hall.issue("consult", green=True, green_reason="农民工讨薪")
    a = hall.issue("consult", appointment_code="Y1")
    hall.login(3, "S003")
    assert hall.drain(3) == [a, g, e, n]


def test_green_channel_refused_where_the_service_has_none(hall):
    with pytest.raises(DomainError) as err:
        hall.issue("notary", green=True)
    assert err.value.code == "conflict" and "绿色通道" in err.value.message


def test_elderly_threshold_comes_from_the_birth_date(hall, sample_config, clock):
    # 60th birthday tomorrow -> still normal today; 60th birthday today -> elderly.
    today = clock.now().astimezone(TZ).date()
    almost = card("甲", birth=f"{today.year - 60}{today.month:02d}{today.day + 1:02d}", serial="201")
    exactly = card("乙", birth=f"{today.year - 60}{today.month:02d}{today.day:02d}", serial="202")
    hall.issue("consult", card=almost)
    hall.issue("consult", card=exactly)
    prio = {t.number: t.priority for t in hall.engine.state.tickets.values()}
    assert prio == {"A001": "normal", "A002": "elderly"}


def test_weights_order_several_services_at_one_window(hall, clock):
    # window 7: notary weight 10, appraisal weight 5; window 2: consult 10, legal_aid 2.
    e1 = hall.issue("appraisal")
    clock.advance(minutes=1)
    d1 = hall.issue("notary")
    clock.advance(minutes=1)
    e2 = hall.issue("appraisal")
    d2 = hall.issue("notary")
    hall.login(7, "S007")
    assert hall.drain(7) == [d1, d2, e1, e2]
    b1 = hall.issue("legal_aid")
    a1 = hall.issue("consult")
    hall.login(2, "S002")
    assert hall.drain(2) == [a1, b1]


def test_priority_beats_weight_and_weight_beats_arrival(hall, clock):
    old_appraisal = hall.issue("appraisal", card=elderly(7))
    notary = hall.issue("notary")
    late_notary = hall.issue("notary")
    hall.login(7, "S007")
    assert hall.drain(7) == [old_appraisal, notary, late_notary]


def test_window_only_calls_its_own_services(hall):
    hall.issue("mediation")
    hall.login(3, "S003")                 # window 3 serves consult only
    assert hall.next(3) is None


def test_transferred_ticket_keeps_its_place_and_first_officer(hall, clock):
    a1 = hall.issue("consult")                 # 09:00
    clock.advance(minutes=5)
    b1 = hall.issue("legal_aid")               # 09:05
    clock.advance(minutes=5)
    b2 = hall.issue("legal_aid")               # 09:10
    hall.login(3, "S003")
    assert hall.next(3) == a1
    hall.engine.start(3)
    clock.advance(minutes=10)
    hall.engine.transfer(3, service="legal_aid", note="需申请法律援助")
    t = hall.ticket(a1)
    assert t.status == "waiting" and t.arrival_at == datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
    assert t.first_officer == "S003" and t.transfers[0]["from_window"] == 3
    hall.login(5, "S005")
    assert hall.next(5) == a1                  # arrived 09:00, before B001/B002
    assert hall.ticket(a1).first_officer == "S003" and hall.ticket(a1).staff_id == "S005"
    assert hall.drain(5)[:2] == [b1, b2]


def test_transfer_to_a_window_and_return_to_first_officer(hall):
    a1 = hall.issue("consult")
    hall.issue("consult")
    hall.login(3, "S003")
    hall.login(1, "S001")
    hall.login(6, "S006")
    assert hall.next(3) == a1
    hall.engine.transfer(3, to_window=6)
    assert hall.next(1) == "A002"              # window 1 does not see the ticket sent to window 6
    assert hall.next(6) == a1
    hall.engine.return_to_first(6, note="回首问")
    assert hall.ticket(a1).target_window == 3
    assert hall.next(1) is None                # still reserved for window 3
    assert hall.next(3) == a1
    reasons = [tr["reason"] for tr in hall.ticket(a1).transfers]
    assert reasons == ["transfer", "return_to_first"]


def test_appointment_early_window_due_time_and_late_arrival(hall, clock):
    slot = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
    for code in ("E1", "E2", "L1"):
        hall.engine.add_appointment(code=code, service="consult", start_at=slot, source="online")
    clock.set(datetime(2026, 11, 23, 9, 20, tzinfo=TZ))          # 40 min early: refused
    with pytest.raises(DomainError) as err:
        hall.issue("consult", appointment_code="E1")
    assert err.value.code == "conflict" and "09:30" in err.value.message
    clock.set(datetime(2026, 11, 23, 9, 35, tzinfo=TZ))
    n1 = hall.issue("consult")
    appt = hall.issue("consult", appointment_code="E1")            # early check-in accepted
    assert hall.ticket(appt).priority == "appointment"
    hall.login(3, "S003")
    assert hall.next(3) == n1            # before 10:00 the appointment waits like a normal ticket
    n2 = hall.issue("consult")
    clock.set(datetime(2026, 11, 23, 10, 0, tzinfo=TZ))
    assert hall.next(3) == appt          # due: jumps ahead of n2
    assert hall.next(3) == n2
    clock.set(datetime(2026, 11, 23, 10, 16, tzinfo=TZ))         # 16 min late: loses priority
    n3 = hall.issue("consult")
    late = hall.issue("consult", appointment_code="L1")
    assert hall.ticket(late).priority == "normal"
    assert hall.drain(3) == [n3, late]
    with pytest.raises(DomainError, match="已签到"):
        hall.issue("consult", appointment_code="E1")


def test_a_due_appointment_goes_first_whatever_the_check_in_order(hall, clock):
    hall.engine.add_appointment(code="LATE", service="consult", start_at=datetime(2026, 11, 23, 10, 30, tzinfo=TZ),
                                source="online")
    hall.engine.add_appointment(code="SOON", service="consult", start_at=datetime(2026, 11, 23, 10, 0, tzinfo=TZ),
                                source="online")
    clock.set(datetime(2026, 11, 23, 10, 0, tzinfo=TZ))
    later_slot = hall.issue("consult", appointment_code="LATE")     # checked in first, slot not due yet
    clock.set(datetime(2026, 11, 23, 10, 1, tzinfo=TZ))
    normal = hall.issue("consult")
    due = hall.issue("consult", appointment_code="SOON")            # checked in last, slot due
    hall.login(3, "S003")
    assert hall.next(3) == due
    assert hall.next(3) == later_slot      # not due: waits like a normal ticket, by its check-in time
    assert hall.next(3) == normal


def test_no_show_can_be_reinstated_within_the_period_only(hall, clock):
    a1, a2, a3 = (hall.issue("consult") for _ in range(3))
    hall.login(3, "S003")
    assert hall.next(3) == a1
    hall.engine.skip(3)
    assert hall.ticket(a1).status == "no_show"
    assert hall.next(3) == a2
    clock.advance(minutes=10)
    hall.engine.reinstate(3, a1)
    assert hall.next(3) == a1                     # original arrival: ahead of A003
    hall.engine.skip(3)
    clock.advance(minutes=31)
    with pytest.raises(DomainError, match="超过30分钟"):
        hall.engine.reinstate(3, a1)
    closed = {t.number: t for t in hall.engine.tick().closed}
    assert closed[a1].outcome == "no_show" and closed[a1].status == "no_show"
    assert closed[a2].status == "finished"          # unrated for 3 minutes: visit closed too
    assert hall.next(3) == a3


def test_one_active_ticket_per_person_and_service(hall):
    first = hall.engine.issue_ticket("consult", card=card("李四", serial="555")).result
    again = hall.engine.issue_ticket("consult", card=card("李四", serial="555")).result
    assert again["reprinted"] is True and again["ticket"]["number"] == first["ticket"]["number"]
    other = hall.engine.issue_ticket("mediation", card=card("李四", serial="555")).result
    assert other["ticket"]["number"] == "C001"
    number = id_number(serial="555")
    assert first["ticket"]["holder"] == {"name_masked": "李*", "id_masked": number[:6] + "*" * 8 + number[-4:]}
    hall.login(3, "S003")
    hall.next(3)
    hall.engine.finish(3)
    fresh = hall.engine.issue_ticket("consult", card=card("李四", serial="555")).result
    assert fresh["reprinted"] is False and fresh["ticket"]["number"] == "A002"


def test_invalid_id_number_is_a_bad_request(hall):
    bad = replace(card(), id_number="310101198001011230")
    with pytest.raises(DomainError) as err:
        hall.issue("consult", card=bad)
    assert err.value.code == "bad_request" and "校验位" in err.value.message


def test_numbers_per_prefix_and_daily_reset(hall, clock):
    assert [hall.issue("consult"), hall.issue("consult"), hall.issue("legal_aid")] == ["A001", "A002", "B001"]
    hall.issue("consult")
    clock.set(datetime(2026, 11, 24, 0, 0, 1, tzinfo=TZ))
    assert hall.issue("consult") == "A001"
    reset = [e for e in hall.engine.state.tickets.values() if e.day == "2026-11-23"]
    assert reset == []                                  # yesterday's waiting tickets were cancelled
    hall.engine.reset_day()                             # manual reset: new round, same day
    assert hall.issue("consult") == "A001"
    assert hall.engine.state.epoch == 1


def test_recall_limit_and_pause(hall, sample_config):
    hall.issue("consult")
    hall.login(3, "S003")
    hall.next(3)
    for _ in range(sample_config.rules.max_recalls):
        hall.engine.recall(3)
    with pytest.raises(DomainError, match="重呼"):
        hall.engine.recall(3)
    with pytest.raises(DomainError, match="当前号"):
        hall.engine.pause(3)
    hall.engine.finish(3)
    hall.engine.pause(3, "午休")
    assert hall.engine.window_status(3) == "paused"
    hall.issue("consult")
    with pytest.raises(DomainError, match="暂停"):
        hall.next(3)
    hall.engine.resume(3)
    assert hall.next(3) == "A002"


def test_time_limit_warning_then_overdue(hall, clock):
    hall.issue("consult")          # consult: 30 minutes, warn at 80 %
    hall.login(3, "S003")
    hall.next(3)
    hall.engine.start(3)
    clock.advance(minutes=23)
    assert [e["type"] for e in hall.engine.tick().events] == []
    clock.advance(minutes=1)
    assert [e["type"] for e in hall.engine.tick().events] == ["time_limit_warning"]
    clock.advance(minutes=6)
    events = hall.engine.tick().events
    assert [e["type"] for e in events] == ["time_limit_exceeded"]
    assert events[0]["window"] == 3 and events[0]["supervisor"] is True
    assert hall.engine.tick().events == []               # raised once


def test_login_rules(hall):
    with pytest.raises(DomainError) as err:
        hall.engine.login(3, "S003", "0000")
    assert err.value.code == "forbidden"
    with pytest.raises(DomainError) as err:
        hall.engine.call_next(3)
    assert err.value.code == "not_logged_in"
    hall.login(3, "S003")
    with pytest.raises(DomainError, match="已在3号窗口登录"):
        hall.engine.login(4, "S003", "1234")
    hall.engine.login(4, "1004", None, pin_required=False)      # keypad login by job number
    assert hall.engine.window_view(4)["staff"]["id"] == "S004"


def test_rating_closes_the_visit(hall, clock):
    a1 = hall.issue("consult")
    hall.login(3, "S003")
    hall.next(3)
    hall.engine.finish(3)
    with pytest.raises(DomainError) as err:
        hall.engine.rate(4, a1, 5)
    assert err.value.code == "forbidden"
    out = hall.engine.rate(3, a1, 5, {"服务态度": 5, "业务技能": 4})
    assert [t.number for t in out.closed] == [a1] and out.closed[0].rating["score"] == 5
    unrated = hall.issue("consult")
    hall.next(3)
    hall.engine.finish(3)
    clock.advance(minutes=3)
    assert [t.number for t in hall.engine.tick().closed] == [unrated]


def test_closed_outside_opening_hours(sample_config, clock):
    hours = dict(sample_config.opening_hours)
    hours["mon"] = ((datetime(2026, 1, 1, 10).time(), datetime(2026, 1, 1, 12).time()),)
    hall = EngineHall(replace(sample_config, opening_hours=hours), clock)      # Monday 09:00
    with pytest.raises(DomainError) as err:
        hall.issue("consult")
    assert err.value.code == "closed"
    clock.advance(hours=1, minutes=30)
    assert hall.issue("consult") == "A001"


def test_day_reset_time_is_configurable(sample_config, clock):
    rules = replace(sample_config.rules, day_reset=datetime(2026, 1, 1, 3, 0).time())
    hall = EngineHall(replace(sample_config, rules=rules), clock)
    clock.set(datetime(2026, 11, 23, 23, 0, tzinfo=TZ))
    assert hall.issue("consult") == "A001"
    clock.set(datetime(2026, 11, 24, 2, 0, tzinfo=TZ))      # before 03:00: same business day
    assert hall.issue("consult") == "A002"
    clock.set(datetime(2026, 11, 24, 3, 0, tzinfo=TZ))
    assert hall.issue("consult") == "A001"
