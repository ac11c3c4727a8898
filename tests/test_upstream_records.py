"""build_service_record: the DESIGN §7 record from a ticket dict, with hand-computed durations."""

from __future__ import annotations

import pytest

from hall_controller.store.records import build_service_record


def ticket(**overrides):
    base = {
        "id": "7f7c3c1e-0001",
        "number": "A001",
        "service": "consult",
        "status": "finished",
        "priority": "elderly",
        "window": 2,
        "target_window": None,
        "staff_id": "S002",
        "first_officer": "S001",
        "issued_at": "2024-05-06T09:00:00+08:00",
        "arrival_at": "2024-05-06T09:00:00+08:00",
        "called_at": "2024-05-06T09:12:30+08:00",
        "started_at": "2024-05-06T09:13:00+08:00",
        "finished_at": "2024-05-06T09:31:20+08:00",
        "recall_count": 0,
        "transfers": [{"from_service": "general", "to_service": "consult", "at": "2024-05-06T09:05:00+08:00"}],
        "outcome": "answered",
        "rating": {"score": 5, "dimensions": {"服务态度": 5}},
        "holder": {"id_hash": "ab12", "id_masked": "310101********1234", "name_masked": "张*",
                   "birth_date": "1944-05-07", "sex": "女"},
        "scans": [{"sha256": "a" * 64, "size": 1234, "type": "image/jpeg", "extra": "dropped"}],
    }
    return {**base, **overrides}


def test_finished_ticket():
    record = build_service_record(ticket(), "demo", time_limit_seconds=900)
    assert record == {
        "record_id": "7f7c3c1e-0001",
        "hall": "demo",
        "ticket_number": "A001",
        "service": "consult",
        "priority": "elderly",
        "window": 2,
        "staff_id": "S002",
        "first_officer": "S001",
        "issued_at": "2024-05-06T09:00:00+08:00",
        "arrival_at": "2024-05-06T09:00:00+08:00",
        "called_at": "2024-05-06T09:12:30+08:00",
        "started_at": "2024-05-06T09:13:00+08:00",
        "finished_at": "2024-05-06T09:31:20+08:00",
        "wait_seconds": 750,  # 09:00:00 -> 09:12:30
        "handling_seconds": 1100,  # 09:13:00 -> 09:31:20
        "outcome": "answered",
        "over_limit": True,  # 1100 s > 900 s
        "transfers": [{"from_service": "general", "to_service": "consult", "at": "2024-05-06T09:05:00+08:00"}],
        "rating": {"score": 5, "dimensions": {"服务态度": 5}},
        "rating_status": "rated",
        "holder": {"id_hash": "ab12", "name_masked": "张*", "age_band": "70-79"},  # 79 until 7 May
        "scans": [{"sha256": "a" * 64, "size": 1234, "type": "image/jpeg"}],
    }


def test_holder_age_band_turns_on_the_birthday_and_nothing_else_leaves():
    record = build_service_record(ticket(issued_at="2024-05-07T08:00:00+08:00",
                                         called_at="2024-05-07T08:01:00+08:00"), "demo")
    assert record["holder"] == {"id_hash": "ab12", "name_masked": "张*", "age_band": "80+"}
    assert "1944" not in str(record) and "310101" not in str(record)


def test_no_show_has_no_handling_time():
    record = build_service_record(
        ticket(status="no_show", started_at=None, finished_at=None, outcome=None, rating=None, holder=None,
               transfers=[], scans=[]), "demo", time_limit_seconds=60)
    assert record["outcome"] == "no_show"
    assert record["wait_seconds"] == 750
    assert record["handling_seconds"] is None
    assert record["over_limit"] is False
    assert (record["rating"], record["holder"], record["transfers"], record["scans"]) == (None, None, [], [])
    assert record["rating_status"] is None                         # not served: nothing to rate


def test_defaults_and_offsets():
    record = build_service_record(
        ticket(outcome=None, issued_at="2024-05-06T01:00:00Z", called_at="2024-05-06T09:00:05+08:00"), "demo")
    assert record["outcome"] == "completed"
    assert record["wait_seconds"] == 5  # different offsets, same instant + 5 s
    assert record["over_limit"] is False  # no limit given


@pytest.mark.parametrize("status", ["waiting", "called", "serving"])
def test_open_tickets_are_not_recorded(status):
    with pytest.raises(ValueError):
        build_service_record(ticket(status=status), "demo")


@pytest.mark.parametrize("outcome, expected", [("cancelled", "cancelled"), ("no_show", "no_show")])
def test_cancelled_at_day_end_is_recorded_with_its_outcome(outcome, expected):
    record = build_service_record(ticket(status="cancelled", outcome=outcome), "demo")
    assert record["outcome"] == expected and record["handling_seconds"] is None
