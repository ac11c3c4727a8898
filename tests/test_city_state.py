"""hall-city's reducer (hall_city/state.py) on the bytes the halls publish (issue 20's contract): summaries,
online and last will, alerts deduped by id, 差评 clocks amber then red until resolved, malformed messages
(logged, ignored, the hall marked 数据异常), a hall clock off the city clock, halls sorted attention-first."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hall_city.state import CityState, Malformed, check_summary

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)          # 10:00 in Shanghai
D = "310101"


def summary(hall: str = "h1", *, at: datetime | str = NOW, waiting: int = 3, oldest: float | None = 120.0,
            **extra: Any) -> dict[str, Any]:
    data = {"schema": 1, "hall": {"id": hall, "name": f"{hall}中心", "district": D, "code": "X"},
            "at": at if isinstance(at, str) else at.isoformat(), "seq": 7, "open": True, "windows": {"staffed": 3, "total": 5},
            "services": [{"code": "A", "name": "法律咨询", "prefix": "A", "waiting": waiting, "oldest_wait_s": oldest},
                         {"code": "B", "name": "公证", "prefix": "B", "waiting": 0, "oldest_wait_s": None}],
            "wait_today": {"median_s": 300.0, "p90_s": 900.0},
            "counts": {"issued": 50, "served": 40, "left": 2, "no_show": 1},
            "ratings": {"count": 20, "good": 19, "bad": 1, "bad_open": 0},
            "devices_offline": [], "outbox": {"pending": 0, "dead": 0}}
    data.update(extra)
    return data


def raw(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def bad_rating(alert_id: str = "a-1", hall: str = "h1", raised: datetime = NOW, fix_hours: float = 72) -> bytes:
    return raw({"id": alert_id, "type": "bad_rating", "at": raised.isoformat(), "hall": {"id": hall, "district": D},
                "ticket": {"number": "B017", "service": "法律援助", "window": 3}, "score": 1, "level": "很不满意",
                "raised_at": raised.isoformat(), "contact_by": (raised + timedelta(hours=1)).isoformat(),
                "fix_by": (raised + timedelta(hours=fix_hours)).isoformat()})


def resolved(alert_id: str, ref: str, kind: str, when: datetime = NOW) -> bytes:
    return raw({"id": alert_id, "type": "bad_rating_resolved", "at": when.isoformat(), "hall": {"id": "h1", "district": D},
                "ref": ref, "ticket": {"number": "B017"}, "note_kind": kind, "resolved_at": when.isoformat()})


def topic(hall: str, kind: str) -> str:
    return f"city/{D}/{hall}/{kind}"


def test_a_summary_is_the_halls_latest_state_and_counts_into_the_city_totals():
    city = CityState()
    assert city.apply(topic("h1", "summary"), raw(summary("h1")), NOW, retained=True) == f"{D}/h1"
    assert city.apply(topic("h2", "summary"), raw(summary("h2", waiting=5)), NOW) == f"{D}/h2"
    city.apply(topic("h1", "online"), b'{"online": true, "at": "2026-11-23T02:00:00+00:00", "version": "1"}', NOW)
    totals = city.totals(NOW)
    assert (totals["halls"], totals["online"], totals["waiting"], totals["issued"], totals["served"]) == (2, 1, 8, 100, 80)
    assert totals["median_s"] == 300.0 and totals["oldest_s"] == 120.0 and totals["bad"] == 2
    tile = city.tile(city.halls[f"{D}/h1"], NOW)
    assert (tile["name"], tile["waiting"], tile["windows"], tile["level"], tile["reasons"]) == ("h1中心", 3, "3/5", "ok", [])


@pytest.mark.parametrize("payload, why", [
    (b"{", "not JSON"),
    (b"[]", "not an object"),
    (raw(summary(schema=2)), "another schema"),
    (raw(summary("other")), "another hall's id"),
    (raw({**summary(), "hall": {"id": "h1", "district": "999999"}}), "another district"),
    (raw(summary(at="yesterday")), "a time that is not ISO"),
    (raw(summary(at="2026-11-23T02:00:00")), "a time without offset"),
    (raw(summary(open="yes")), "open not boolean"),
    (raw(summary(counts={"issued": -1, "served": 0, "left": 0, "no_show": 0})), "a negative count"),
    (raw(summary(counts={"issued": "5", "served": 0, "left": 0, "no_show": 0})), "a count as text"),
    (raw({k: v for k, v in summary().items() if k != "ratings"}), "no ratings"),
    (raw(summary(services=[{"name": "x", "waiting": 1}])), "a service without code"),
    (raw(summary(services="A")), "services not a list"),
    (raw(summary(devices_offline=None)), "devices_offline missing"),
])
def test_a_malformed_summary_is_logged_ignored_and_marks_the_hall(payload, why, caplog):
    city = CityState()
    city.apply(topic("h1", "summary"), raw(summary(waiting=4)), NOW)
    with caplog.at_level(logging.WARNING, logger="hall_city.state"):
        assert city.apply(topic("h1", "summary"), payload, NOW) == f"{D}/h1", why
    hall = city.halls[f"{D}/h1"]
    assert hall.bad_data and city.malformed == 1, why
    assert hall.summary is not None and hall.summary["services"][0]["waiting"] == 4, "the last good state is kept"
    assert "数据异常" in city.tile(hall, NOW)["reasons"]
    assert "malformed" in caplog.text and payload.decode(errors="replace")[:30] not in caplog.text.split("(")[0]
    city.apply(topic("h1", "summary"), raw(summary(waiting=6)), NOW)
    assert not hall.bad_data and hall.summary["services"][0]["waiting"] == 6, "a good summary clears the mark"


def test_check_summary_accepts_the_contract_shape_and_returns_the_halls_time():
    assert check_summary(summary(), D, "h1") == NOW
    with pytest.raises(Malformed):
        check_summary(summary(), D, "h2")


def test_a_redelivered_alert_is_applied_exactly_once():
    city = CityState()
    alert = bad_rating("a-1")
    assert city.apply(topic("h1", "alert/bad_rating"), alert, NOW) == f"{D}/h1"
    assert city.apply(topic("h1", "alert/bad_rating"), alert, NOW + timedelta(seconds=5)) is None   # QoS 1 again
    assert list(city.ratings) == ["a-1"] and city.duplicates == 1
    assert len(city.rating_rows(NOW)) == 1 and len(city.halls[f"{D}/h1"].recent) == 1
    # a resolution delivered twice closes it once, and a replay of the raise does not reopen it
    city.apply(topic("h1", "alert/bad_rating_resolved"), resolved("r-1", "a-1", "fix"), NOW)
    assert city.apply(topic("h1", "alert/bad_rating_resolved"), resolved("r-1", "a-1", "fix"), NOW) is None
    assert city.apply(topic("h1", "alert/bad_rating"), alert, NOW) is None
    assert city.ratings == {}


def test_the_contact_clock_turns_amber_then_red_and_stops_at_contact_then_the_fix_clock_runs():
    city = CityState()
    city.apply(topic("h1", "summary"), raw(summary()), NOW)
    city.apply(topic("h1", "alert/bad_rating"), bad_rating("a-1", fix_hours=72), NOW)
    rows = lambda t: city.rating_rows(t)[0]                                          # noqa: E731
    assert rows(NOW)["contact"] == {"state": "ok", "text": "剩 60 分钟"} and rows(NOW)["status"] == "ok"
    assert rows(NOW + timedelta(minutes=44))["contact"]["state"] == "ok"
    assert rows(NOW + timedelta(minutes=45))["contact"] == {"state": "amber", "text": "剩 15 分钟"}
    late = rows(NOW + timedelta(minutes=61))
    assert late["contact"] == {"state": "red", "text": "超时 1 分钟"} and late["status"] == "red"
    assert "差评超时 1" in city.tile(city.halls[f"{D}/h1"], NOW + timedelta(minutes=61))["reasons"]
    city.apply(topic("h1", "alert/bad_rating_resolved"), resolved("r-1", "a-1", "contact", NOW + timedelta(minutes=70)), NOW)
    after = rows(NOW + timedelta(minutes=71))
    assert after["contact"]["state"] == "done" and after["contact"]["text"] == "已联系 11:10" and after["status"] == "ok"
    assert rows(NOW + timedelta(hours=54))["fix"]["state"] == "amber"                # the last quarter of 72 h
    assert rows(NOW + timedelta(hours=73))["fix"] == {"state": "red", "text": "超时 60 分钟"}
    city.apply(topic("h1", "alert/bad_rating_resolved"), resolved("r-2", "a-1", "fix"), NOW)
    assert city.rating_rows(NOW) == [] and city.totals(NOW)["bad_open"] == 0


def test_a_resolution_that_comes_before_its_bad_rating_is_kept_for_it():
    city = CityState()
    city.apply(topic("h1", "alert/bad_rating_resolved"), resolved("r-1", "a-1", "fix"), NOW)
    city.apply(topic("h1", "alert/bad_rating"), bad_rating("a-1"), NOW)
    assert city.ratings == {}


@pytest.mark.parametrize("kind, payload", [
    ("alert/bad_rating", b'{"type": "bad_rating"}'),                             # no id
    ("alert/bad_rating", raw({"id": "x", "ticket": "B1", "raised_at": NOW.isoformat()})),
    ("alert/bad_rating", raw({"id": "x", "ticket": {"number": "B1"}, "raised_at": "soon"})),
    ("alert/bad_rating_resolved", raw({"id": "y", "ref": "x", "note_kind": "phoned"})),
    ("alert/dead_letter", b"\xff\xfe"),
    ("online", b'{"online": "yes"}'),
])
def test_a_malformed_alert_or_online_marks_the_hall_and_changes_nothing_else(kind, payload):
    city = CityState()
    city.apply(topic("h1", kind), payload, NOW)
    assert city.halls[f"{D}/h1"].bad_data and city.ratings == {} and city.malformed == 1


@pytest.mark.parametrize("name", ["city/310101/h1", "other/310101/h1/summary", "city/31 01/h1/summary",
                                  "city/310101/" + "h" * 33 + "/summary", "city/310101/h1/alert/unknown",
                                  "city/310101/h1/summary/extra"])
def test_topics_outside_the_contract_are_ignored(name):
    city = CityState()
    assert city.apply(name, raw(summary()), NOW) is None
    assert all(h.summary is None for h in city.halls.values())


def test_a_hall_clock_more_than_5_minutes_off_is_flagged_on_live_summaries_only():
    city = CityState()
    city.apply(topic("h1", "summary"), raw(summary(at=NOW + timedelta(minutes=4))), NOW)
    assert city.halls[f"{D}/h1"].skew_s is None
    city.apply(topic("h1", "summary"), raw(summary(at=NOW - timedelta(hours=3))), NOW)
    assert city.halls[f"{D}/h1"].skew_s == -3 * 3600
    assert "时钟偏差 3 小时 0 分" in city.tile(city.halls[f"{D}/h1"], NOW)["reasons"]
    city.apply(topic("h1", "summary"), raw(summary(at=NOW)), NOW)
    assert city.halls[f"{D}/h1"].skew_s is None
    # a retained summary may be hours old by design (a closed hall publishes only on change)
    city.apply(topic("h2", "summary"), raw(summary("h2", at=NOW - timedelta(hours=10))), NOW, retained=True)
    assert city.halls[f"{D}/h2"].skew_s is None


def test_halls_are_sorted_attention_first():
    city = CityState()
    city.apply(topic("ok", "summary"), raw(summary("ok")), NOW)
    city.apply(topic("wait", "summary"), raw(summary("wait", oldest=40 * 60.0)), NOW)
    city.apply(topic("late", "summary"), raw(summary("late")), NOW)
    city.apply(topic("late", "alert/bad_rating"), bad_rating("z", "late", raised=NOW - timedelta(minutes=90)), NOW)
    city.apply(topic("open", "summary"), raw(summary("open")), NOW)
    city.apply(topic("open", "alert/bad_rating"), bad_rating("y", "open"), NOW)
    city.apply(topic("clock", "summary"), raw(summary("clock", at=NOW + timedelta(hours=2))), NOW)
    city.apply(topic("junk", "summary"), raw(summary("junk")), NOW)
    city.apply(topic("junk", "summary"), b"{", NOW)
    city.apply(topic("gone", "summary"), raw(summary("gone")), NOW)
    city.apply(topic("gone", "online"), b'{"online": false, "at": null, "will": true}', NOW)
    city.apply(topic("dev", "summary"), raw(summary("dev", devices_offline=[{"id": "p", "kind": "printer", "since": "x"}])), NOW)
    view = city.city_view(NOW)
    assert [t["hall"] for t in view["tiles"]] == ["gone", "junk", "clock", "late", "wait", "open", "dev", "ok"]
    assert [t["level"] for t in view["tiles"]] == ["red"] * 5 + ["amber"] * 2 + ["ok"]
    assert view["tiles"][0]["reasons"] == ["离线"]
    assert view["totals"]["attention"] == 5 and view["totals"]["bad_overdue"] == 1
    assert [r["key"] for r in view["ratings"]] == [f"{D}/late", f"{D}/open"]      # red first


def test_the_hall_view_has_services_devices_and_recent_alerts_without_personal_data():
    city = CityState()
    city.apply(topic("h1", "summary"), raw(summary()), NOW)
    city.apply(topic("h1", "alert/bad_rating"), bad_rating("a-1"), NOW)
    city.apply(topic("h1", "alert/device_offline"), raw({"id": "d-1", "type": "device_offline", "at": NOW.isoformat(),
                                                          "device": {"id": "printer-1", "kind": "printer"}}), NOW)
    view = city.hall_view(f"{D}/h1", NOW)
    assert view is not None and [s["code"] for s in view["services"]] == ["A", "B"]
    assert [a["type"] for a in view["recent"]] == ["device_offline", "bad_rating"] and view["recent"][0]["at"] == "10:00:00"
    assert view["ratings"][0]["number"] == "B017" and view["at"] == "10:00:00"
    assert view["ratings"][0]["service"] == "法律援助"             # a name stays a name
    city.apply(topic("h1", "alert/bad_rating"), raw({**json.loads(bad_rating("a-3")), "ticket": {
        "number": "A002", "service": "A", "window": 1}}), NOW)
    assert {r["number"]: r["service"] for r in city.rating_rows(NOW)}["A002"] == "法律咨询"   # a code gets its name
    assert city.hall_view("310101/none", NOW) is None
    before = copy.deepcopy(city.city_view(NOW))
    assert city.apply(topic("h1", "alert/bad_rating"), bad_rating("a-3"), NOW) is None and city.city_view(NOW) == before


def test_open_bad_ratings_known_only_by_the_summary_count_still_show():
    """A 差评 raised before hall-city's session existed never comes as an alert; the summary counts it."""
    city = CityState()
    city.apply(topic("h1", "summary"), raw(summary(ratings={"count": 9, "good": 7, "bad": 2, "bad_open": 2})), NOW)
    tile = city.tile(city.halls[f"{D}/h1"], NOW)
    assert tile["bad_open"] == 2 and tile["reasons"] == ["待处理差评 2"] and tile["level"] == "amber"
    city.apply(topic("h1", "alert/bad_rating"), bad_rating("a-1"), NOW)
    assert city.tile(city.halls[f"{D}/h1"], NOW)["bad_open"] == 2 and city.totals(NOW)["bad_open"] == 2
