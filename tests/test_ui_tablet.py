"""The rating tablet: its pure screen machine, and the real widget offscreen against a real daemon."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from kiosk_ui import tablet_state as ts
from kiosk_ui.style import apply_style
from kiosk_ui.tablet import TabletView

from .harness import window_client

# Screens are rendered on every run; HALL_SCREENSHOTS=docs/screenshots keeps them for the README.
SHOTS = Path(os.environ.get("HALL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "hall-screenshots")
TIMEOUT = 10_000


def requested(window: int = 3, tid: str = "t1", **ticket) -> dict:
    return {"type": "rating_requested", "window": window, "ticket": {"id": tid, "number": "A001", **ticket}}


# ------------------------------------------------------------------ pure screens

def test_rating_flow_with_dimensions_then_thanks_then_idle():
    s = ts.on_event(ts.TabletState(window=3), requested(), now=0)
    assert s.screen == ts.RATING and s.request["id"] == "t1"
    s = ts.choose_score(s, 2, now=1)
    s = ts.choose_dimension(s, "服务态度", 1, now=2)
    s = ts.choose_dimension(s, "不存在", 5, now=2)          # ignored
    s, rate = ts.submit(s, now=3)
    assert rate.args() == {"ticket": "t1", "score": 2, "dimensions": {"服务态度": 1}} and s.sending
    assert ts.submit(s, now=3)[1] is None                     # no second rate while the first is in flight
    s = ts.on_rate_reply(s, now=4, ok=True)
    assert s.screen == ts.THANKS
    s, none = ts.tick(s, now=4 + ts.THANKS_TIMEOUT - 0.1)
    assert s.screen == ts.THANKS and none is None
    s, _ = ts.tick(s, now=4 + ts.THANKS_TIMEOUT)
    assert s.screen == ts.IDLE and s.request is None and s.score is None


def test_only_this_windows_requests_and_only_the_asked_ticket():
    s = ts.TabletState(window=3)
    assert ts.on_event(s, requested(window=4), now=0) is s
    assert ts.on_event(s, requested(rating={"score": 5}), now=0) is s      # already rated
    assert ts.choose_score(s, 5, now=0) is s                                  # nothing asked: nothing to rate
    s = ts.on_event(s, requested(), now=0)
    other = {"type": "rating_received", "window": 3, "ticket": {"id": "t2"}}
    assert ts.on_event(s, other, now=1).screen == ts.RATING
    same = {"type": "rating_received", "window": 3, "ticket": {"id": "t1"}}
    assert ts.on_event(s, same, now=1).screen == ts.THANKS
    assert ts.on_event(s, {"type": "day_reset"}, now=1).screen == ts.IDLE


def test_timeouts_idle_the_rating_screen_and_send_the_score_alone_from_dimensions():
    s = ts.on_event(ts.TabletState(window=3), requested(), now=0)
    assert ts.tick(s, now=ts.RATING_TIMEOUT)[0].screen == ts.IDLE
    s = ts.choose_score(s, 5, now=10)
    s, rate = ts.tick(s, now=10 + ts.DIMENSIONS_TIMEOUT)
    assert rate == ts.Rate("t1", 5, {}) and s.sending


def test_failures_keep_the_choice_unless_the_rating_is_settled():
    s = ts.choose_score(ts.on_event(ts.TabletState(window=3), requested(), now=0), 4, now=1)
    s, _ = ts.submit(s, now=2, with_dimensions=False)
    failed = ts.on_rate_reply(s, now=3, ok=False, code="offline", message="网络连接中断")
    assert failed.screen == ts.DIMENSIONS and failed.error == "网络连接中断" and not failed.sending
    assert ts.on_rate_reply(s, now=3, ok=False, code="conflict").screen == ts.THANKS    # rated already
    assert ts.back(failed, now=4).screen == ts.RATING


def test_clerk_card_text():
    s = ts.on_window(ts.TabletState(window=3), {"number": 3, "status": "paused", "staff": {"name": "张伟"},
                                               "ticket": None})
    assert s.service_text == "暂停服务" and s.staff["name"] == "张伟" and s.current_number is None
    assert ts.on_window(s, {"number": 4, "status": "idle"}) is s
    assert ts.on_window(s, None).service_text == "未开放"


# ------------------------------------------------------------------ the widget against a daemon

@pytest.fixture(autouse=True)
def styled(qapp):
    apply_style(qapp)


def test_tablet_rates_the_finished_visit_and_returns_to_idle(qtbot, hall_daemon, ui_bus):
    clock = [0.0]
    bus = ui_bus("tablet-5", role="tablet", window=5)
    tablet = TabletView(bus, 5, now=lambda: clock[0])
    qtbot.addWidget(tablet)
    tablet.resize(1280, 800)
    tablet.show()
    kiosk = hall_daemon.client("kiosk-1", role="kiosk")
    clerk = window_client(hall_daemon, 5, "S005")
    try:
        kiosk.request("issue_ticket", service="legal_aid")
        called = clerk.request("call_next")["ticket"]
        qtbot.waitUntil(lambda: tablet.current_label.text() == called["number"], timeout=TIMEOUT)
        assert tablet.name_label.text() == "陈静" and tablet.job_label.text() == "工号 1005"
        assert tablet.service_label.text() == "服务中"
        SHOTS.mkdir(parents=True, exist_ok=True)
        tablet.grab().save(str(SHOTS / "tablet-idle.png"))
        clerk.request("start")
        clerk.request("finish")
        qtbot.waitUntil(lambda: tablet.state.screen == ts.RATING, timeout=TIMEOUT)
        tablet.grab().save(str(SHOTS / "tablet-rating.png"))
        qtbot.mouseClick(tablet.score_buttons[5], Qt.MouseButton.LeftButton)
        for name in ts.DIMENSIONS_NAMES:
            qtbot.mouseClick(tablet.dimension_buttons[(name, 5)], Qt.MouseButton.LeftButton)
        assert tablet.dimension_buttons[("廉洁从政", 5)].isChecked()
        tablet.grab().save(str(SHOTS / "tablet-dimensions.png"))
        qtbot.mouseClick(tablet.submit_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: tablet.state.screen == ts.THANKS, timeout=TIMEOUT)
        tablet.grab().save(str(SHOTS / "tablet-thanks.png"))
        rated = clerk.wait_for_event(lambda e: e["type"] == "rating_received"
                                     and e["ticket"]["id"] == called["id"])
        assert rated["ticket"]["rating"]["score"] == 5
        assert rated["ticket"]["rating"]["dimensions"] == dict.fromkeys(ts.DIMENSIONS_NAMES, 5)
        clock[0] += ts.THANKS_TIMEOUT
        qtbot.waitUntil(lambda: tablet.state.screen == ts.IDLE, timeout=TIMEOUT)

        # paused: the card says so
        clerk.request("pause", reason="会议")
        qtbot.waitUntil(lambda: tablet.service_label.text() == "暂停服务", timeout=TIMEOUT)
    finally:
        kiosk.close()
        clerk.close()


def test_hall_tablet_refuses_a_client_without_a_window(capsys):
    from kiosk_ui.tablet import main_tablet

    code = main_tablet(["--mqtt-url", "mqtt://someone:pw@127.0.0.1:1", "--hall", "demo"])
    assert code == 2 and "--window" in capsys.readouterr().err
