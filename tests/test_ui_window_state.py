"""The window terminal's and the supervisor's reducers on a manual clock, and the daemon side they need:
the time limit in the window state and reception (综合接待岗) issuing tickets by position."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hall_controller.domain import DomainError
from hall_controller.service import Actor, HallService
from hall_controller.store import Store
from window_terminal import state as ws

KIOSK = Actor("kiosk-1", "kiosk")
W1 = Actor("window-1", "window", 1)     # S001 王芳 综合接待岗 logs in here
W3 = Actor("window-3", "window", 3)
W8 = Actor("window-8", "window", 8)


@pytest.fixture
def svc(sample_config, clock, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'hall.db'}")
    yield HallService(sample_config, store, clock, secret=b"k")
    store.close()


def window_view(svc: HallService, n: int) -> dict:
    return svc.snapshot()["windows"][str(n)]


# ------------------------------------------------------------------ countdown on a test clock

def test_countdown_turns_amber_at_the_warning_ratio_then_red_when_overdue(svc, clock):
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})            # 30 min limit, warn at 80 %
    svc.execute(W3, "login", {"staff_id": "S003", "pin": "1234"})
    clock.advance(minutes=4, seconds=30)                                 # waited 4 minutes
    svc.execute(W3, "call_next", {})
    queues = svc.snapshot()["queues"]
    assert ws.visit_view(window_view(svc, 3), queues, clock.now()).countdown is None   # called, not serving
    clock.advance(minutes=2)
    svc.execute(W3, "start", {})
    view = window_view(svc, 3)
    assert view["time_limit"]["minutes"] == 30

    seen = []
    for minutes, level in ((0, ws.NORMAL), (23, ws.NORMAL), (24, ws.AMBER), (29, ws.AMBER), (30, ws.RED)):
        visit = ws.visit_view(view, queues, clock.now() + timedelta(minutes=minutes))
        assert visit.countdown.level == level, minutes
        seen.append(visit.countdown.text)
    assert seen[0] == "剩余 30:00" and seen[3] == "剩余 01:00" and seen[4] == "已超时 00:00"
    visit = ws.visit_view(view, queues, clock.now() + timedelta(minutes=32, seconds=5))
    assert visit.countdown.text == "已超时 02:05" and visit.countdown.remaining_seconds == -125
    assert visit.waited_minutes == 4 and visit.service_name == "法律咨询" and visit.number == "A001"
    assert visit.first_officer == "S003"


def test_the_countdown_restarts_after_a_transfer(svc, clock):
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})
    svc.execute(W3, "login", {"staff_id": "S003", "pin": "1234"})
    svc.execute(W8, "login", {"staff_id": "S008", "pin": "1234"})
    svc.execute(W3, "call_next", {})
    svc.execute(W3, "start", {})
    clock.advance(minutes=25)
    svc.execute(W3, "transfer", {"service": "general"})
    svc.execute(W8, "call_next", {})
    svc.execute(W8, "start", {})
    visit = ws.visit_view(window_view(svc, 8), svc.snapshot()["queues"], clock.now())
    assert visit.countdown.level == ws.NORMAL and visit.countdown.limit_minutes == 20
    assert visit.transfers == 1 and visit.first_officer == "S003"


def test_countdown_ignores_a_malformed_time_limit(clock):
    assert ws.countdown({"minutes": "x", "since": clock.now().isoformat()}, clock.now()) is None
    assert ws.countdown({"minutes": 10, "since": "yesterday"}, clock.now()) is None
    assert ws.countdown(None, clock.now()) is None


# ------------------------------------------------------------------ terminal reducer

def _ticket(tid: str, number: str, **extra) -> dict:
    return {"id": tid, "number": number, "service": "consult", "status": "finished",
            "finished_at": "2026-11-23T09:10:00.000+08:00", **extra}


def test_served_list_gets_ratings_and_resets_with_the_day(clock):
    s = ws.TerminalState(window=3)
    s = ws.apply_reply(s, "finish", {"ticket": _ticket("t1", "A001")})
    s = ws.apply_event(s, {"type": "service_finished", "window": 3, "ticket": _ticket("t2", "A002")}, clock.now())
    s = ws.apply_event(s, {"type": "service_finished", "window": 4, "ticket": _ticket("t9", "A009")}, clock.now())
    assert [e.number for e in s.served] == ["A002", "A001"]
    assert s.served[1].rating_text == "待评价"
    s = ws.apply_event(s, {"type": "rating_received", "window": 3,
                           "ticket": _ticket("t1", "A001", rating={"score": 1})}, clock.now())
    # the finish event arriving after the rating keeps the rating
    s = ws.apply_event(s, {"type": "service_finished", "window": 3, "ticket": _ticket("t1", "A001")}, clock.now())
    assert {e.number: e.rating_text for e in s.served} == {"A001": "非常不满意", "A002": "待评价"}
    s = ws.apply_event(s, {"type": "day_reset", "day": "2026-11-24"}, clock.now())
    assert s.served == () and s.day == "2026-11-24"


def test_window_state_of_another_window_and_garbage_are_ignored():
    s = ws.TerminalState(window=3)
    s = ws.apply_window(s, {"number": 3, "status": "idle", "staff": {"id": "S003", "position": "法律咨询岗"},
                            "services": ["consult", "general"]})
    assert s.logged_in and not s.is_reception
    assert ws.apply_window(s, {"number": 4, "status": "closed"}) is s
    assert ws.apply_window(s, "junk") is s  # type: ignore[arg-type]
    s = ws.apply_queues(s, {"consult": {"name": "法律咨询", "waiting": 4, "estimate": {"low_min": 10, "high_min": 15}},
                            "general": {"name": "综合服务", "waiting": 0}, "notary": {"name": "公证", "waiting": 9}})
    assert s.window_queues() == [("consult", "法律咨询", 4, "约10–15分钟"), ("general", "综合服务", 0, "—（数据不足）")]
    assert ws.apply_queues(s, None).queues == {}


def test_transfers_to_this_window_and_time_limits_raise_alerts(clock):
    s = ws.TerminalState(window=8, zone="Asia/Shanghai")
    now = clock.now()       # UTC: the stamp is in the hall's zone
    t = _ticket("t1", "A001", status="waiting")
    s = ws.apply_event(s, {"type": "ticket_transferred", "window": 3, "ticket": t,
                           "transfer": {"from_window": 3, "to_window": 8, "reason": "transfer"}}, now)
    s = ws.apply_event(s, {"type": "ticket_transferred", "window": 3, "ticket": t,
                           "transfer": {"from_window": 3, "to_window": 5}}, now)
    s = ws.apply_event(s, {"type": "time_limit_exceeded", "window": 8, "ticket": t, "limit_minutes": 20}, now)
    assert s.alerts == ("09:00 A001号已超过办理时限（时限20分钟）", "09:00 A001号由3号窗口转入本窗口")


# ------------------------------------------------------------------ supervisor reducer

def test_supervisor_tracks_overdue_bad_ratings_dead_letters_devices_and_counts(clock):
    s = ws.SupervisorState()
    now = clock.now()
    serving = {"number": 3, "status": "serving", "staff": {"name": "张伟", "job_number": "1003"},
               "ticket": {"id": "t1", "number": "A001", "service": "consult", "status": "serving",
                          "issued_at": now.isoformat(), "called_at": now.isoformat()},
               "time_limit": {"minutes": 30, "warn_ratio": 0.8, "since": now.isoformat()}}
    s = ws.sup_apply_state(s, "window", 3, serving)
    s = ws.sup_apply_state(s, "window", 5, {"number": 5, "status": "paused", "paused_reason": "会议"})
    s = ws.sup_apply_state(s, "device", "led-3", {"online": False, "error": "timeout"})
    s = ws.sup_apply_state(s, "device", "led-4", {"online": True})
    assert [d for d, _ in s.devices_offline] == ["led-3"]
    rows = ws.window_rows(s, now + timedelta(minutes=25))
    assert rows[0]["level"] == ws.AMBER and rows[0]["ticket"] == "A001" and rows[0]["staff"] == "张伟（1003）"
    assert rows[1]["status"] == "暂停服务" and rows[1]["reason"] == "会议"

    s = ws.sup_apply_event(s, {"type": "time_limit_exceeded", "window": 3, "ticket": serving["ticket"]}, now)
    assert ws.window_rows(s, now)[0]["level"] == ws.RED          # flagged by the daemon, whatever the clock
    s = ws.sup_apply_event(s, {"type": "service_finished", "window": 3, "ticket": serving["ticket"]}, now)
    assert s.overdue == {} and s.counts.finished == 1

    bad = {"type": "bad_rating", "window": 3, "ts": now.isoformat(), "supervisor": True,
           "ticket": {"id": "t1", "number": "A001", "staff_id": "S003", "rating": {"score": 1, "dimensions": {}}}}
    s = ws.sup_apply_event(s, bad, now)
    assert s.bad_ratings["t1"].score == 1 and s.counts.bad == 1
    s = ws.sup_apply_event(s, {"type": "upstream_dead_letter", "detail": {"record": "r1"}}, now)
    assert s.dead_letters[0]["detail"] == {"record": "r1"}
    assert ws.sup_resolved(s, "t1").bad_ratings == {}
    s = ws.sup_apply_event(s, {"type": "bad_rating_resolved", "ticket": {"id": "t1"}}, now)
    assert s.bad_ratings == {}
    s = ws.sup_apply_snapshot(s, {"counters": {"A": 7, "B": 2}, "bad_ratings": [
        {"ticket": {"id": "t7", "number": "B003", "window": 5, "staff_id": "S005"}, "score": 2,
         "rated_at": "2026-11-23T08:10:00.000+08:00", "dimensions": {}}, {"junk": 1}]})
    assert s.counts.issued == 9
    assert list(s.bad_ratings) == ["t7"] and s.bad_ratings["t7"].number == "B003" and s.bad_ratings["t7"].score == 2


# ------------------------------------------------------------------ reception at the daemon

def test_reception_issues_a_green_channel_ticket_that_is_called_first(svc):
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})
    svc.execute(W1, "login", {"staff_id": "S001", "pin": "1234"})          # 综合接待岗 at window 1
    green = svc.execute(W1, "issue_ticket", {"service": "consult", "priority": "green",
                                             "green_reason": "农民工欠薪"})["ticket"]
    assert green["priority"] == "green" and green["green_reason"] == "农民工欠薪" and green["kiosk"] == "window-1"
    svc.execute(W3, "login", {"staff_id": "S003", "pin": "1234"})
    assert svc.execute(W3, "call_next", {})["ticket"]["id"] == green["id"]


def test_reception_is_authorised_by_position_not_window(svc):
    svc.execute(W3, "login", {"staff_id": "S003", "pin": "1234"})          # 法律咨询岗
    with pytest.raises(DomainError) as err:
        svc.execute(W3, "issue_ticket", {"service": "consult"})
    assert err.value.code == "forbidden" and "综合接待岗" in err.value.message
    with pytest.raises(DomainError) as err:
        svc.execute(W8, "issue_ticket", {"service": "consult"})            # nobody logged in at 8
    assert err.value.code == "not_logged_in"
    svc.execute(W3, "logout", {})
    svc.execute(W3, "login", {"staff_id": "S008", "pin": "1234"})          # reception clerk at window 3
    walk_in = svc.execute(W3, "issue_ticket", {"service": "mediation"})["ticket"]
    assert walk_in["priority"] == "normal" and walk_in["number"] == "C001"


def test_reception_elderly_and_bad_arguments(svc):
    svc.execute(W1, "login", {"staff_id": "S001", "pin": "1234"})
    will = svc.execute(W1, "issue_ticket", {"service": "consult", "priority": "green",
                                            "green_reason": "80周岁以上老人免费遗嘱"})["ticket"]
    assert will["priority"] == "green"
    elderly = svc.execute(W1, "issue_ticket", {"service": "legal_aid", "priority": "elderly"})["ticket"]
    assert elderly["priority"] == "elderly"
    for args, code in (({"service": "consult", "priority": "green"}, "bad_request"),          # no reason
                       ({"service": "consult", "priority": "vip"}, "bad_request"),
                       ({"service": "notary", "priority": "green", "green_reason": "x"}, "conflict"),
                       ({"service": "nope"}, "not_found")):
        with pytest.raises(DomainError) as err:
            svc.execute(W1, "issue_ticket", args)
        assert err.value.code == code, args
    with pytest.raises(DomainError) as err:          # a kiosk cannot claim elderly priority without a card
        svc.execute(KIOSK, "issue_ticket", {"service": "consult", "priority": "elderly"})
    assert err.value.code == "forbidden"


def test_reception_checks_in_a_phone_appointment(svc, clock):
    admin = Actor("admin", "admin")
    svc.execute(admin, "add_appointment", {"code": "P0001", "service": "legal_aid", "source": "phone",
                                           "start_at": (clock.now() + timedelta(minutes=10)).isoformat()})
    svc.execute(W1, "login", {"staff_id": "S001", "pin": "1234"})
    ticket = svc.execute(W1, "issue_ticket", {"service": "legal_aid", "appointment_code": "P0001"})["ticket"]
    assert ticket["priority"] == "appointment" and ticket["appointment_id"]
