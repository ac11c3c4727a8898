"""Qt-free parts of the apps (state reducers, styling rules, command line) and the shared Qt bus layer."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hall_controller.bus.url import parse_mqtt_url
from kiosk_ui import display_state as ds
from kiosk_ui import kiosk_state as ks
from kiosk_ui.common_state import clock_text, estimate_text, services_from_queues
from kiosk_ui.qtbus import RequestFailure, UsageError, add_common_arguments, options_from_args
from kiosk_ui.style import LARGE, MIN_CONTRAST, MIN_TEXT, MIN_TEXT_LARGE, NORMAL, TEXT_PAIRS, contrast_ratio

from .harness import init_hall, passwords

NOW = datetime(2026, 11, 23, 9, 30, 5, tzinfo=ZoneInfo("Asia/Shanghai"))
QUEUES = {"consult": {"name": "法律咨询", "prefix": "A", "waiting": 3,
                      "estimate": {"low_min": 10, "high_min": 15, "text": "约10–15分钟"}},
          "legal_aid": {"name": "法律援助", "prefix": "B", "waiting": 0}}


# ------------------------------------------------------------------------------------------- common


def test_estimates_render_when_present_and_are_left_out_when_absent() -> None:
    assert estimate_text({"low_min": 10, "high_min": 15, "text": "约10–15分钟"}) == "约10–15分钟"
    assert estimate_text({"low_min": 10, "high_min": 15}) == "约10–15分钟"
    assert estimate_text({"low_min": 0, "high_min": 10}) == "约10分钟内"
    assert estimate_text("约5–10分钟") == "约5–10分钟"
    for absent in (None, {}, {"low_min": 5}, "", {"high_min": True}, 12):
        assert estimate_text(absent) is None
    services = services_from_queues(QUEUES)
    assert [(s.code, s.waiting, s.estimate) for s in services] == [("consult", 3, "约10–15分钟"),
                                                                    ("legal_aid", 0, None)]


def test_bad_queue_payloads_are_skipped_not_fatal() -> None:
    assert services_from_queues(None) == [] and services_from_queues(["x"]) == []
    odd = services_from_queues({"a": "x", "b": {"waiting": -2}, "c": {"name": "调解", "waiting": True}})
    assert [(s.code, s.name, s.waiting) for s in odd] == [("b", "b", 0), ("c", "调解", 0)]
    assert clock_text(NOW, "Asia/Shanghai") == "09:30:05" and clock_text(None, "Asia/Shanghai") == "--:--:--"


def test_age_friendly_style_rules() -> None:
    assert NORMAL.small >= MIN_TEXT and NORMAL.body >= MIN_TEXT
    assert LARGE.small >= MIN_TEXT_LARGE and LARGE.body >= MIN_TEXT_LARGE
    for foreground, background in TEXT_PAIRS:
        assert contrast_ratio(foreground, background) >= MIN_CONTRAST, (foreground, background)
    assert round(contrast_ratio("#000000", "#ffffff"), 1) == 21.0
    assert contrast_ratio("#777777", "#ffffff") < MIN_CONTRAST      # the check can fail


# ------------------------------------------------------------------------------------------- kiosk


def _online() -> ks.KioskState:
    state = ks.with_connection(ks.KioskState(), True, True)
    return ks.with_queues(state, QUEUES)


def test_kiosk_screens_follow_connection_closed_hours_and_results() -> None:
    state = ks.with_queues(ks.KioskState(), QUEUES)
    assert state.screen == "offline" and not state.can_issue
    state = ks.with_connection(state, True, False)        # broker up, daemon's status offline
    assert state.screen == "offline" and not state.can_issue
    state = ks.with_connection(state, True, True)
    assert state.screen == "home" and state.can_issue
    busy = ks.with_request(state)
    assert not busy.can_issue                              # one request at a time
    closed = ks.with_failure(busy, "closed", "当前不在服务时间，请在办公时间内取号")
    assert closed.screen == "closed" and not closed.can_issue and closed.closed_message.startswith("当前不在")
    assert ks.with_schedule(closed, True).screen == "home"
    assert ks.with_schedule(state, None) == state
    assert ks.with_schedule(state, False).screen == "closed"


def test_kiosk_result_from_the_reply_with_and_without_optional_fields() -> None:
    reply = {"ticket": {"number": "A004", "service": "consult", "priority": "elderly",
                        "holder": {"name_masked": "张*", "id_masked": "3101**********1234"}},
             "reprinted": False, "ahead": 3, "estimate": {"low_min": 10, "high_min": 20},
             "printed": False, "print_error": "缺纸"}
    result = ks.with_issued(ks.with_request(_online()), reply)
    r = result.result
    assert result.screen == "result" and not result.busy
    assert (r.number, r.service_name, r.ahead_text, r.estimate) == ("A004", "法律咨询", "前面还有3人", "约10–20分钟")
    assert r.remember_number and r.print_problem == "缺纸" and r.priority_label == "老年人优先" and r.name_masked == "张*"
    bare = ks.with_issued(_online(), {"ticket": {"number": "B001", "service": "legal_aid"}}).result
    assert (bare.ahead, bare.estimate, bare.printed, bare.remember_number, bare.ahead_text) == (None, None, None,
                                                                                                False, "")
    printed = ks.with_issued(_online(), {"ticket": {"number": "B002", "service": "legal_aid"},
                                         "print": {"ok": True}, "ahead": 0}).result
    assert printed.printed is True and printed.ahead_text.startswith("前面没有人")
    assert ks.home(ks.with_issued(_online(), reply)).screen == "home"


def test_kiosk_never_shows_a_number_the_daemon_did_not_give() -> None:
    for bad in ({}, {"ticket": None}, {"ticket": {"number": ""}}, {"ticket": {"number": 7}}):
        state = ks.with_issued(ks.with_request(_online()), bad)
        assert state.result is None and state.message and not state.busy
    for code, expected in (("offline", "网络连接中断"), ("timeout", "系统繁忙"), ("conflict", "请先放置身份证")):
        state = ks.with_failure(ks.with_request(_online()), code, "请先放置身份证")
        assert expected in state.message and state.result is None and state.can_issue


def test_kiosk_card_views() -> None:
    card = {"name_masked": "王*", "id_masked": "1101**********0015", "age": 78, "elderly": True,
            "appointments": [{"code": "YY01", "service": "consult", "start_at": "2026-11-23T10:00:00+08:00"}, "x"]}
    state = ks.with_card(_online(), card, now=100.0)
    info = ks.card_valid(state, 100.0 + ks.CARD_TTL_S - 1)
    assert info is not None and info.greeting == "王*，您好" and info.badge == "老年人优先"
    assert [a["code"] for a in info.appointments] == ["YY01"]
    assert ks.card_valid(state, 100.0 + ks.CARD_TTL_S + 1) is None        # the daemon forgot it by then
    for bad in ({"reason": "有效期已过"}, {"error": {"message": "校验位错误"}}, {"usable": False}):
        refused = ks.with_card(_online(), {"name_masked": "李*", **bad}, now=0.0)
        assert not refused.card.usable and refused.card.problem and ks.card_valid(refused, 0.0) is None
    assert ks.with_card(_online(), "garbage", now=0.0) == _online()


def test_kiosk_guide_from_reply_and_config(sample_config) -> None:
    guide = ks.guide_from_reply({"services": [{"code": "consult", "name": "法律咨询", "category": "consult",
                                               "materials": ["身份证原件", 3]}, {"bad": 1}]})
    assert [(g.code, g.materials) for g in guide] == [("consult", ("身份证原件",))]
    assert guide[0].description
    from_config = ks.guide_from_config(sample_config)
    assert [g.code for g in from_config] == [s.code for s in sample_config.services]
    assert all(g.materials for g in from_config)


# ------------------------------------------------------------------------------------------- display


def _called(number: str, window: int, at: str, ticket_id: str, kind: str = "ticket_called", name: str | None = None):
    holder = {"name_masked": name, "id_masked": "x"} if name else None
    return {"type": kind, "ts": at, "window": window, "event_id": f"{ticket_id}{at}",
            "ticket": {"id": ticket_id, "number": number, "service": "consult", "window": window, "holder": holder}}


def test_display_merges_events_and_retained_calls_without_losing_any() -> None:
    state = ds.with_connection(ds.DisplayState(), True, True)
    at = [f"2026-11-23T09:30:0{i}.{i}00000+08:00" for i in range(8)]
    for i in range(8):                                           # events of 8 calls
        state = ds.with_event(state, _called(f"A00{i + 1}", i + 1, at[i], f"t{i}"), NOW)
    # a coalesced retained update that saw only the first three must not drop the others
    retained = [{"number": f"A00{i + 1}", "window": i + 1, "service": "consult", "at": at[i], "ticket_id": f"t{i}"}
                for i in (2, 1, 0)]
    state = ds.with_calls(state, retained, NOW)
    assert [c.number for c in state.calls] == [f"A00{i}" for i in range(8, 0, -1)]
    assert state.latest.number == "A008" and state.latest.text == "请A008号到8号窗口办理"
    assert len(state.history) == 7 and state.updated_at == NOW


def test_display_recall_masked_name_flash_and_day_reset() -> None:
    state = ds.with_event(ds.DisplayState(), _called("A001", 3, "2026-11-23T09:00:00+08:00", "t1", name="张*"), NOW)
    state = ds.with_event(state, _called("A001", 3, "2026-11-23T09:01:00+08:00", "t1", "ticket_recalled"), NOW)
    assert [(c.number, c.recall) for c in state.calls] == [("A001", True), ("A001", False)]
    assert state.calls[1].name_masked == "张*"
    flashing = ds.with_event(state, {"type": "announcement_started", "ticket": {"id": "t1"}, "window": 3}, NOW)
    assert flashing.flashing == state.latest.key
    by_number = ds.with_event(state, {"type": "announcement_started", "number": "A001", "window": 3}, NOW)
    assert by_number.flashing is not None
    assert ds.with_event(flashing, {"type": "announcement_finished"}, NOW).flashing is None
    assert ds.with_event(state, {"type": "day_reset"}, NOW).calls == ()
    assert ds.with_calls(state, [], NOW).calls == ()                         # the daemon's board is empty


def test_display_windows_and_offline_text() -> None:
    state = ds.with_window(ds.DisplayState(), 6, {"name": "6号窗口", "status": "paused", "ticket": None,
                                                   "paused_reason": "午休"}, NOW)
    state = ds.with_window(state, 1, {"name": "1号窗口", "status": "calling", "ticket": {"number": "A001"}}, NOW)
    state = ds.with_window(state, "x", {"status": "idle"}, NOW)
    assert [(w.number, w.current_text, w.status_text) for w in state.windows] == [(1, "A001", "呼叫中"),
                                                                                   (6, "—", "暂停服务")]
    assert ds.with_window(state, 6, None, NOW).windows[-1].number == 1
    assert "连接中断" in state.offline_text
    assert "暂停响应" in ds.with_connection(state, True, False).offline_text
    assert ds.with_connection(state, True, True).offline_text is None


# ------------------------------------------------------------------------------------------- command line


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, "kiosk-1")
    return parser.parse_args(list(argv))


def test_command_line_forms(tmp_path: Path) -> None:
    url = parse_mqtt_url("mqtt://kiosk-1:p%40ss@127.0.0.1:1884")
    assert (url.username, url.password, url.host, url.port, url.tls) == ("kiosk-1", "p@ss", "127.0.0.1", 1884, False)
    opts = options_from_args(_args("--mqtt-url", "mqtt://kiosk-1:pw@10.0.0.5", "--hall", "demo", "--windowed",
                                   "--screen", "1"))
    assert (opts.client_id, opts.password, opts.host, opts.port, opts.hall_id, opts.windowed, opts.screen) == (
        "kiosk-1", "pw", "10.0.0.5", 1883, "demo", True, 1)
    config = init_hall(tmp_path)
    opts = options_from_args(_args("--config", str(config), "--client", "display-1"))
    assert (opts.client_id, opts.password, opts.hall_id, opts.role) == (
        "display-1", passwords(config)["display-1"], "demo", "display")
    assert opts.config is not None and opts.config.display_notice
    moved = options_from_args(_args("--config", str(config), "--client", "kiosk-1", "--mqtt-url", "mqtt://127.0.0.1:2883"))
    assert (moved.host, moved.port, moved.password) == ("127.0.0.1", 2883, passwords(config)["kiosk-1"])


@pytest.mark.parametrize("argv, fragment", [
    ((), "--mqtt-url"),
    (("--mqtt-url", "http://a:b@h:1", "--hall", "demo"), "mqtt://"),
    (("--mqtt-url", "mqtt://h:1", "--hall", "demo"), "mqtt://"),
    (("--mqtt-url", "mqtt://a:b@h:99999", "--hall", "demo"), "端口"),
    (("--mqtt-url", "mqtt://a:b@h:1",), "--hall"),
    (("--mqtt-url", "mqtt://a:b@h:1", "--config", "x.yaml"), "密码取自密码文件"),
    (("--config", "/nonexistent/hall.yaml"), "cannot read"),
])
def test_command_line_errors_are_clear(argv: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment.replace("-", "\\-")):
        options_from_args(_args(*argv))


def test_unknown_client_in_the_password_file(tmp_path: Path) -> None:
    config = init_hall(tmp_path)
    with pytest.raises(UsageError, match="没有客户端 kiosk-9"):
        options_from_args(_args("--config", str(config), "--client", "kiosk-9"))


# ------------------------------------------------------------------------------------------- the Qt bus


def test_bus_request_reply_and_error_reach_the_ui_thread(qtbot, ui_bus) -> None:
    kiosk = ui_bus("kiosk-1", role="kiosk")
    assert kiosk.broker_online and kiosk.daemon_online
    replies: list[dict] = []
    failures: list[RequestFailure] = []
    kiosk.request("issue_ticket", replies.append, failures.append, service="consult")
    qtbot.waitUntil(lambda: bool(replies), timeout=5000)
    assert replies[0]["ticket"]["number"] == "A001"
    kiosk.request("issue_ticket", replies.append, failures.append, service="nope")
    qtbot.waitUntil(lambda: bool(failures), timeout=5000)
    assert failures[0].code == "not_found" and len(replies) == 1
    guide: list[dict] = []
    kiosk.request("service_guide", guide.append, failures.append)
    qtbot.waitUntil(lambda: bool(guide), timeout=5000)
    assert {s["code"]: s["materials"][0] for s in guide[0]["services"]}["legal_aid"] == "身份证原件及复印件"


def test_bus_refuses_at_once_while_offline(qtbot, ui_bus, hall_daemon) -> None:
    """No broker connection: a request fails at once with `offline` (within 2 s, where a request sent
    to a broker waits 5 s for its reply)."""
    kiosk = ui_bus("kiosk-1", role="kiosk")
    changes: list[tuple[bool, bool]] = []
    kiosk.connection_changed.connect(lambda b, d: changes.append((b, d)))
    hall_daemon.kill()                              # the embedded broker goes with it
    # Not just `online` False: the daemon's last will can say so while its broker child is still up
    # for a moment, and the bus polls the broker connection every 50 ms (the cause of this test's
    # old flakiness: the failure came in before the poll had seen the broker go).
    qtbot.waitUntil(lambda: not kiosk.broker_online, timeout=15_000)
    assert changes and changes[-1][0] is False and not kiosk.online
    failures: list[RequestFailure] = []
    kiosk.request("issue_ticket", None, failures.append, service="consult")
    qtbot.waitUntil(lambda: bool(failures), timeout=2000)
    assert failures[0].code == "offline"
