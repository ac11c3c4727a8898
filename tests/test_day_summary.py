"""The hall day as the clerk's terminal and the supervisor read it, on real parts with a manual clock:
the daemon's `day_summary` / `status.today` (counts and each window's finished visits, exact at a `seq`,
rebuilt from the event log after a restart), the terminal's and the supervisor's reducers fed by the
engine's own events (未评价 once `rules.rating_minutes` ran out, the rating prompt), the kiosk's
`staffed` count, and staff named 王芳（1001） in the monthly report and `hallctl ratings`."""

from __future__ import annotations

import json
from datetime import timedelta

import openpyxl
import pytest

from hall_controller.cli import main as hallctl
from hall_controller.upstream.reports import write_html, write_xlsx
from hall_controller.upstream.service import build_month_report
from kiosk_ui import kiosk_state as ks
from window_terminal import state as ws

from .harness import ADMIN, KIOSK, SUPERVISOR, Hall, refused, service_hall, tablet, window


@pytest.fixture
def hall(tmp_path):
    """A hall folder with a HallService on a manual clock."""
    h = service_hall(tmp_path)
    yield h
    h.close()


def day(hall: Hall, actor=None, **args) -> dict:
    return hall.run(actor or window(3), "day_summary", **args)


def busy_morning(hall: Hall) -> dict[str, dict]:
    """At window 3: A001 rated 5, A002 rated 1 (差评), A003 never rated, A004 skipped; one ticket
    transferred from 3 to 6 and finished there; one mediation ticket still waiting."""
    visits = {}
    visits["A001"] = hall.serve(3)
    hall.run(tablet(3), "rate", ticket=visits["A001"]["id"], score=5)
    visits["A002"] = hall.serve(3)
    hall.run(tablet(3), "rate", ticket=visits["A002"]["id"], score=1)
    visits["A003"] = hall.serve(3)
    hall.clock.advance(minutes=hall.config.rules.rating_minutes)      # its rating time runs out
    hall.service.tick()
    hall.run(KIOSK, "issue_ticket", service="consult")
    hall.run(window(3), "call_next")
    hall.run(window(3), "skip")
    hall.run(window(6), "login", staff_id="S006", pin="1234")
    moved = hall.run(KIOSK, "issue_ticket", service="consult")["ticket"]
    hall.run(window(3), "call_next")
    hall.run(window(3), "start")
    hall.run(window(3), "transfer", window=6)
    assert hall.run(window(6), "call_next")["ticket"]["id"] == moved["id"]
    visits["at6"] = hall.run(window(6), "finish")["ticket"]
    hall.run(KIOSK, "issue_ticket", service="mediation")               # waiting
    return visits


def test_the_day_summary_counts_the_whole_day_and_survives_a_restart(hall):
    visits = busy_morning(hall)
    summary = day(hall)
    assert summary["counts"] == {"issued": 6, "called": 6, "finished": 4, "no_show": 1, "left": 0, "transferred": 1,
                                 "rated": 2, "bad": 1, "not_rated": 1}
    assert summary["day"] == "2026-11-23" and summary["window"] == 3 and summary["finished"] == 3
    assert summary["finished_by_window"] == {"3": 3, "6": 1}
    assert summary["seq"] == hall.service.snapshot()["seq"] and summary["rating_minutes"] == 3
    served = {e["number"]: e for e in summary["served"]}
    assert [e["number"] for e in summary["served"]] == ["A003", "A002", "A001"]       # newest first
    assert (served["A001"]["score"], served["A002"]["score"], served["A003"]["score"]) == (5, 1, None)
    assert all(e["closed"] for e in summary["served"])             # rated, or closed unrated (未评价)
    a3 = visits["A003"]
    assert served["A003"]["finished_at"] == a3["finished_at"]
    assert served["A003"]["rating_until"] == (ws._ts(a3["finished_at"]) + timedelta(minutes=3)).isoformat(
        timespec="milliseconds")
    assert day(hall, window(6))["served"][0]["id"] == visits["at6"]["id"]
    # the status snapshot carries the same counts for the supervisor
    assert hall.run(SUPERVISOR, "status")["today"]["counts"] == summary["counts"]

    hall.restart()                                  # rebuilt from the event log: the same day, to the field
    assert day(hall) == summary
    hall.clock.advance(hours=1)
    hall.run(ADMIN, "reset_day")                   # a manual reset starts the hall day again
    after = day(hall)
    assert after["served"] == [] and set(after["counts"].values()) == {0} and after["finished"] == 0
    hall.restart()
    assert day(hall)["served"] == [] and day(hall)["counts"]["issued"] == 0
    hall.serve(3)
    hall.clock.set(hall.clock.now() + timedelta(days=1))      # the next business day rolls it over
    hall.service.tick()
    assert day(hall)["day"] == "2026-11-24" and day(hall)["counts"]["finished"] == 0


def test_who_may_read_the_day(hall):
    hall.serve(3)
    assert len(day(hall, SUPERVISOR, window=3)["served"]) == 1
    assert "served" not in day(hall, SUPERVISOR)                   # counts only
    assert len(day(hall, ADMIN, window=3)["served"]) == 1
    assert refused(hall, window(3), "day_summary", window=4).code == "forbidden"
    assert refused(hall, SUPERVISOR, "day_summary", window=99).code == "not_found"
    assert refused(hall, KIOSK, "day_summary").code == "forbidden"
    assert refused(hall, tablet(3), "day_summary").code == "forbidden"
    before = hall.service.snapshot()["seq"]
    day(hall)
    assert hall.service.snapshot()["seq"] == before                # read-only: nothing logged


# ------------------------------------------------------------------ the terminal's reducer on the engine's events

def test_the_terminal_started_mid_day_lists_the_day_and_keeps_it_current(hall):
    busy_morning(hall)
    at3 = [e for e in hall.events if e.get("window") == 3]
    summary = day(hall)
    # an event that arrived before the summary is kept and applied again over it; one in it is skipped
    late = hall.serve(3)
    newer = [e for e in hall.events if e["seq"] > summary["seq"] and e.get("window") == 3]
    s = ws.TerminalState(window=3)
    for event in newer:
        s = ws.apply_event(s, event, hall.clock.now())
    s = ws.apply_summary(s, summary)
    assert [e.number for e in s.served] == [late["number"], "A003", "A002", "A001"] and s.finished_total == 4
    for event in at3 + newer:                                         # redelivered: nothing counted twice
        s = ws.apply_event(s, event, hall.clock.now())
    assert s.finished_total == 4 and len(s.served) == 4
    assert ws.apply_summary(s, {**summary, "seq": summary["seq"] - 1}) is s       # an older summary: ignored
    assert ws.apply_summary(s, {**day(hall), "window": 4}) is s
    # the same as a summary taken now
    fresh = ws.apply_summary(ws.TerminalState(window=3), day(hall))
    assert fresh.served == s.served and fresh.finished_total == s.finished_total


def test_not_rated_once_the_rating_time_ran_out_and_the_prompt_clears(hall):
    s = ws.apply_summary(ws.TerminalState(window=3), day(hall))
    seen = len(hall.events)

    def feed(state):
        nonlocal seen
        for event in hall.events[seen:]:
            state = ws.apply_event(state, event, hall.clock.now())
        seen = len(hall.events)
        return state

    rated = hall.serve(3)
    s = ws.apply_reply(feed(s), "finish", {"ticket": rated})
    now = hall.clock.now()
    assert s.served[0].rating_text_at(now) == "待评价" and ws.awaiting_rating(s, now)
    hall.clock.advance(minutes=1)
    hall.run(tablet(3), "rate", ticket=rated["id"], score=4)
    s = feed(s)
    assert s.served[0].rating_text_at(hall.clock.now()) == "满意" and not ws.awaiting_rating(s, hall.clock.now())

    unrated = hall.serve(3)
    s = ws.apply_reply(feed(s), "finish", {"ticket": unrated})
    until = ws._ts(unrated["finished_at"]) + timedelta(minutes=hall.config.rules.rating_minutes)
    assert s.served[0].rating_until is not None and ws._ts(s.served[0].rating_until) == until
    assert ws.awaiting_rating(s, until - timedelta(seconds=1))
    assert s.served[0].rating_text_at(until - timedelta(seconds=1)) == "待评价"
    # by the terminal's clock at the end of the rating time, before the daemon's tick closes the visit
    assert s.served[0].rating_text_at(until) == "未评价" and not ws.awaiting_rating(s, until)
    assert s.served[0].rating_text == "待评价"          # the daemon has not closed it yet
    hall.clock.set(until)
    hall.service.tick()                                  # the daemon closes it: visit_closed, unrated
    s = feed(s)
    assert s.served[0].closed and s.served[0].rating_text == "未评价"
    assert ws.apply_summary(ws.TerminalState(window=3), day(hall)).served[0].rating_text == "未评价"


# ------------------------------------------------------------------ the supervisor's reducer

def test_the_supervisor_opened_late_counts_the_whole_day(hall):
    busy_morning(hall)
    snapshot = hall.run(SUPERVISOR, "status")
    late = hall.serve(3)                               # arrives before the snapshot's reply
    newer = [e for e in hall.events if e["seq"] > snapshot["seq"]]
    s = ws.SupervisorState(counts_since=hall.clock.now())
    for event in newer:
        s = ws.sup_apply_event(s, event, hall.clock.now())
    assert s.counts.finished == 1 and not s.whole_day and "自" in ws.counts_text(s)
    s = ws.sup_apply_snapshot(s, snapshot)
    daemon = hall.run(SUPERVISOR, "status")["today"]["counts"]
    assert s.counts == ws.Counts(**daemon) and s.counts.finished == 5 and s.counts.issued == 7
    for event in hall.events:                         # everything again: already counted
        s = ws.sup_apply_event(s, event, hall.clock.now())
    assert s.counts == ws.Counts(**daemon)
    hall.run(tablet(3), "rate", ticket=late["id"], score=2)
    for event in hall.events[-3:]:
        s = ws.sup_apply_event(s, event, hall.clock.now())
    assert s.counts == ws.Counts(**hall.run(SUPERVISOR, "status")["today"]["counts"])
    assert s.counts.bad == 2 and s.counts.rated == 3
    text = ws.counts_text(s)
    assert text.startswith("今日（11月23日）取号 7　叫号 7　办结 5　过号 1　评价 3　未评价 1") and "自" not in text
    seen = len(hall.events)
    hall.run(ADMIN, "reset_day")                 # closes the open visits (one unrated), then starts again
    for event in hall.events[seen:]:
        s = ws.sup_apply_event(s, event, hall.clock.now())
    assert s.counts == ws.Counts() == ws.Counts(**hall.run(SUPERVISOR, "status")["today"]["counts"])


def test_a_dead_letter_reads_report_failed_needs_handling():
    assert ws.DEAD_LETTER_TITLE == "上报失败（需处理）"
    text = ws.dead_letter_text({"detail": {"kind": "service_record", "record_key": "t1"}})
    assert text == "服务记录被管理系统拒收，请联系管理员核查后重新发送（hallctl outbox --retry t1）"


# ------------------------------------------------------------------ the kiosk: services no staffed window serves

def test_queues_say_how_many_staffed_windows_serve_each_service(hall):
    def staffed():
        return {c: q["staffed"] for c, q in hall.service.snapshot()["queues"].items()}

    assert set(staffed().values()) == {0}
    hall.run(window(3), "login", staff_id="S003", pin="1234")         # window 3: consult, general
    hall.run(window(6), "login", staff_id="S006", pin="1234")
    hall.run(window(6), "pause", reason="会议")                       # paused: still staffed
    counts = staffed()
    assert counts["consult"] >= 1 and counts["mediation"] >= 1 and counts["notary"] == 0
    services = {s.code: s for s in ks.with_queues(ks.KioskState(), hall.service.snapshot()["queues"]).services}
    assert services["notary"].unstaffed and not services["consult"].unstaffed
    hall.run(window(6), "resume")
    hall.run(window(6), "logout")
    assert staffed()["mediation"] == counts["mediation"] - 1
    # an older daemon's queues without the count: nothing is claimed
    assert not ks.with_queues(ks.KioskState(), {"consult": {"name": "法律咨询", "waiting": 0}}).services[0].unstaffed


# ------------------------------------------------------------------ staff as people name them

def test_the_monthly_report_and_hallctl_ratings_name_staff_with_their_job_number(hall, tmp_path, capsys):
    bad = hall.serve(3)                                  # S003 is 张伟, job number 1003
    hall.run(tablet(3), "rate", ticket=bad["id"], score=1)
    hall.serve(1)                                        # S001 王芳（1001）
    report = build_month_report(hall.store.engine, hall.config, "2026-11", now=hall.clock.now())
    assert {r["staff_id"]: r["staff"] for r in report["by_staff"]} == {"S001": "王芳（1001）", "S003": "张伟（1003）"}
    write_html(report, tmp_path / "m.html")
    write_xlsx(report, tmp_path / "m.xlsx")
    html = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert "王芳（1001）" in html and "张伟（1003）" in html and ">S001<" not in html and ">S003<" not in html
    sheet = openpyxl.load_workbook(tmp_path / "m.xlsx")["按人员"]
    assert [sheet.cell(row=r, column=1).value for r in (4, 5)] == ["王芳（1001）", "张伟（1003）"]

    assert hallctl(["ratings", "--config", str(hall.config_path)]) == 0
    out = capsys.readouterr().out
    assert "3号窗口  张伟（1003）" in out and "S003" not in out
    assert hallctl(["ratings", "--json", "--config", str(hall.config_path)]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["staff"] == "张伟（1003）" and listed["ticket"]["staff_id"] == "S003"
