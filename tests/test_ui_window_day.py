"""The clerk's terminal and the supervisor tell the whole hall day, from the daemon: driven offscreen
through their real widgets against a real daemon process and its broker, at the 1366×768 of a window
PC. Also the kiosk's button for a service no staffed window serves."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from PySide6.QtCore import QPoint, QRect, Qt

from hall_controller.clock import ManualClock
from kiosk_ui import kiosk_state as ks
from kiosk_ui.kiosk import KioskModel, KioskWindow
from window_terminal import state as st
from window_terminal.app import WINDOW_EVENTS
from window_terminal.terminal import RATING_PROMPT, WindowTerminal

from . import test_ui_window
from .harness import DaemonProcess, free_port, make_bus, wait_online, window_client
from .test_ui_window import SHOTS, kiosk_issue, login, press

hall_window, styled = test_ui_window.hall_window, test_ui_window.styled                      # fixtures

TIMEOUT = 15_000
SCREEN = (1366, 768)


def shot(widget, name: str, rect: QRect | None = None) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    image = widget.grab(rect) if rect is not None else widget.grab()
    assert image.save(str(SHOTS / name))


def rows(table) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def admin_request(daemon: DaemonProcess, op: str, **args) -> dict:
    admin = daemon.client("admin", role="admin")
    try:
        return admin.request(op, **args)
    finally:
        admin.close()


def serve(clerk, tablet=None, score: int | None = None) -> dict:
    """One visit at the clerk's window, to the end; rated on the window's tablet when `score` is given."""
    ticket = clerk.request("call_next")["ticket"]
    clerk.request("start")
    finished = clerk.request("finish")["ticket"]
    assert finished["id"] == ticket["id"]
    if score is not None:
        tablet.request("rate", ticket=ticket["id"], score=score)
    return finished


def visible_rows(table) -> int:
    return table.viewport().height() // max(1, table.verticalHeader().defaultSectionSize())


def test_the_terminal_restarted_mid_day_lists_the_visits_finished_before_it(qtbot, hall_daemon, ui_bus,
                                                                           hall_window):
    for _ in range(4):
        kiosk_issue(hall_daemon)
    tablet = hall_daemon.client("tablet-3", role="tablet", window=3)
    try:
        first = hall_window("window-3")
        first.resize(*SCREEN)
        login(qtbot, first, "1003")
        press(qtbot, first, "call_next")
        press(qtbot, first, "start")
        press(qtbot, first, "finish")
        first.forms["finish"].confirm.click()
        # the finish event may update the state before the finish reply arrives: wait for the reply too
        qtbot.waitUntil(lambda: first.state.ticket is None and len(first.state.served) == 1 and first.busy is None,
                        timeout=TIMEOUT)
        assert first.message.text() == RATING_PROMPT and first.served_table.item(0, 4).text() == "待评价"
        a001 = first.state.served[0]
        tablet.request("rate", ticket=a001.ticket_id, score=4)
        # the rating arrives: the row says it and the prompt is taken down
        qtbot.waitUntil(lambda: first.served_table.item(0, 4).text() == "满意", timeout=TIMEOUT)
        qtbot.waitUntil(lambda: first.message.text() == "", timeout=TIMEOUT)
        first.bus.close()                                  # the terminal is closed (a restart, a crash)
        first.close()

        clerk = window_client(hall_daemon, 3)              # the clerk goes on from the keypad meanwhile
        try:
            serve(clerk, tablet, score=1)
            serve(clerk)                                   # not rated yet
        finally:
            clerk.close()
        for _ in range(9):                                 # and a busy hour at window 3
            kiosk_issue(hall_daemon)
        clerk = window_client(hall_daemon, 3)
        try:
            for i in range(9):
                serve(clerk, tablet, score=5 if i % 2 else None)
        finally:
            clerk.close()
    finally:
        tablet.close()

    again = hall_window("window-3")
    again.resize(*SCREEN)
    daemon = admin_request(hall_daemon, "day_summary", window=3)
    qtbot.waitUntil(lambda: again.served_table.rowCount() == 12, timeout=TIMEOUT)
    table = rows(again.served_table)
    assert [r[0] for r in table] == [e["number"] for e in daemon["served"]]
    assert table[-1][0] == "A001" and table[-1][4] == "满意"
    assert table[-2][0] == "A002" and table[-2][4] == "非常不满意"
    assert table[-3][0] == "A003" and table[-3][4] == "待评价"
    assert again.served_title.text() == "今日已办结（12）" == f"今日已办结（{daemon['finished']}）"
    assert all(r[2] != "--:--" and r[1] == "法律咨询" for r in table)        # hall time, service names
    # at 1366×768 the list gets the room: a dozen rows, not one beside an empty 提醒 panel
    qtbot.wait(200)
    assert visible_rows(again.served_table) >= 10, visible_rows(again.served_table)
    assert again.no_alerts.isVisible() and not again.alert_list.isVisible()
    shot(again, "window-served-after-restart.png")


def test_not_rated_after_the_rating_time_and_the_prompt_clears(qtbot, hall_daemon, ui_bus):
    kiosk_issue(hall_daemon)
    clock = ManualClock(datetime.now(UTC))                # the window PC's clock, moved by hand
    bus = ui_bus("window-3", role="window", events=WINDOW_EVENTS)
    w = WindowTerminal(bus, 3, clock=clock)
    qtbot.addWidget(w)
    w.resize(*SCREEN)
    w.show()
    login(qtbot, w, "1003")
    press(qtbot, w, "call_next")
    press(qtbot, w, "finish")
    w.forms["finish"].confirm.click()
    qtbot.waitUntil(lambda: w.served_table.rowCount() == 1 and w.message.text() == RATING_PROMPT, timeout=TIMEOUT)
    entry = w.state.served[0]
    qtbot.waitUntil(lambda: w.state.served[0].rating_until is not None, timeout=TIMEOUT)   # rating_requested
    assert w.served_table.item(0, 4).text() == "待评价"
    until = datetime.fromisoformat(w.state.served[0].rating_until)
    assert until == datetime.fromisoformat(entry.finished_at) + timedelta(minutes=3)    # rules.rating_minutes
    clock.set(until - timedelta(seconds=2))
    qtbot.wait(1500)
    assert w.served_table.item(0, 4).text() == "待评价" and w.message.text() == RATING_PROMPT
    clock.set(until)
    qtbot.waitUntil(lambda: w.served_table.item(0, 4).text() == "未评价", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.message.text() == "", timeout=TIMEOUT)


@pytest.fixture
def no_rating_time(tmp_path, hall_template):
    """A hall whose tablets take no rating (rules.rating_minutes: 0): the daemon closes a finished visit
    at its next tick, unrated."""
    folder = tmp_path / "hall"
    shutil.copytree(hall_template, folder)
    config = folder / "hall.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["rules"]["rating_minutes"] = 0
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    daemon = DaemonProcess(config, free_port())
    daemon.start()
    yield daemon
    daemon.kill()


def test_the_daemon_closing_a_visit_unrated_says_not_rated(qtbot, no_rating_time):
    kiosk_issue(no_rating_time)
    bus = make_bus(no_rating_time, "window-3", "window", events=WINDOW_EVENTS)
    bus.start()
    try:
        wait_online(qtbot, bus)
        clock = ManualClock(datetime.now(UTC) - timedelta(hours=1))   # a PC clock an hour slow: the daemon decides
        w = WindowTerminal(bus, 3, clock=clock)
        qtbot.addWidget(w)
        w.show()
        login(qtbot, w, "1003")
        press(qtbot, w, "call_next")
        press(qtbot, w, "finish")
        w.forms["finish"].confirm.click()
        qtbot.waitUntil(lambda: w.served_table.rowCount() == 1, timeout=TIMEOUT)
        qtbot.waitUntil(lambda: w.state.served[0].closed, timeout=TIMEOUT)          # visit_closed, unrated
        qtbot.waitUntil(lambda: w.served_table.item(0, 4).text() == "未评价", timeout=TIMEOUT)
        assert w.message.text() == ""
        summary = bus.client.request("day_summary")
        assert summary["counts"]["not_rated"] == 1 and summary["served"][0]["closed"] is True
    finally:
        bus.close()


def test_the_supervisor_opened_late_shows_the_days_counts(qtbot, hall_daemon, ui_bus, hall_window):
    for service in ("consult",) * 5 + ("mediation",) * 2:
        kiosk_issue(hall_daemon, service)
    tablet = hall_daemon.client("tablet-3", role="tablet", window=3)
    clerk3, clerk6 = window_client(hall_daemon, 3, "S003"), window_client(hall_daemon, 6, "S006")
    try:
        serve(clerk3, tablet, score=5)
        serve(clerk3, tablet, score=2)                    # 差评
        serve(clerk3)
        clerk3.request("call_next")
        clerk3.request("skip")                            # 过号
        serve(clerk6)
        sup = hall_window("supervisor")
        sup.resize(*SCREEN)
        qtbot.waitUntil(lambda: sup.state.whole_day, timeout=TIMEOUT)
        daemon = admin_request(hall_daemon, "status")["today"]["counts"]
        assert sup.state.counts == st.Counts(**daemon)
        assert (daemon["issued"], daemon["called"], daemon["finished"], daemon["no_show"], daemon["rated"],
                daemon["bad"]) == (7, 5, 4, 1, 2, 1)
        month, day = hall_daemon_day(hall_daemon)
        qtbot.waitUntil(lambda: sup.counts_label.text().startswith(
            f"今日（{month}月{day}日）取号 7　叫号 5　办结 4　过号 1　评价 2　未评价 0"), timeout=TIMEOUT)
        assert "待回访差评 1" in sup.counts_label.text() and "自" not in sup.counts_label.text()
        labels = [w.text() for w in sup.findChildren(type(sup.counts_label))]
        assert "上报失败（需处理）" in labels and not any("死信" in t for t in labels)
        # and it keeps up with the daemon
        serve(clerk6)
        qtbot.waitUntil(lambda: sup.state.counts.finished == 5, timeout=TIMEOUT)
        assert sup.state.counts == st.Counts(**admin_request(hall_daemon, "status")["today"]["counts"])
        qtbot.wait(300)
        table = sup.window_table                           # the header and the first five windows
        height = table.y() + table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(5)) + 4
        shot(sup, "window-supervisor-header.png", QRect(0, 0, sup.width(), height))
        shot(sup, "window-supervisor-1366.png")
    finally:
        for c in (tablet, clerk3, clerk6):
            c.close()


def hall_daemon_day(daemon: DaemonProcess) -> tuple[int, int]:
    day = admin_request(daemon, "status")["day"]
    return int(day[5:7]), int(day[8:10])


def test_a_kiosk_button_says_when_no_staffed_window_serves_its_service(qtbot, hall_daemon, ui_bus):
    bus = ui_bus("kiosk-1", role="kiosk")
    window = KioskWindow(KioskModel(bus), "示范区公共法律服务中心")
    qtbot.addWidget(window)
    window.resize(1920, 1080)
    window.show()
    qtbot.waitUntil(lambda: len(window._buttons) == 6, timeout=TIMEOUT)
    assert all(ks.UNSTAFFED_TEXT in b.text() for b in window._buttons.values())     # nobody logged in yet
    clerk = window_client(hall_daemon, 3, "S003")                                   # window 3: 法律咨询
    try:
        consult, notary = window._buttons["consult"], window._buttons["notary"]
        qtbot.waitUntil(lambda: ks.UNSTAFFED_TEXT not in consult.text(), timeout=TIMEOUT)
        assert notary.text().splitlines()[:2] == ["公证服务  (D)", ks.UNSTAFFED_TEXT]
        assert notary.isEnabled() and notary.property("unstaffed") is True and consult.property("unstaffed") is False
        assert "暂无窗口办理" in notary.accessibleName()
        shot(window, "kiosk-unstaffed-service.png")
        # still tappable: the number is issued in order, and the visitor is told nobody is at the window yet
        qtbot.mouseClick(notary, Qt.MouseButton.LeftButton, pos=QPoint(notary.width() // 2, notary.height() // 2))
        qtbot.waitUntil(lambda: window.stack.currentWidget() is window.result_page, timeout=TIMEOUT)
        assert window.result_number.text() == "D001" and window.result_estimate.text() == ks.UNSTAFFED_RESULT
        assert window.result_estimate.isVisible()
        shot(window, "kiosk-unstaffed-result.png")
        clerk.request("logout")
        qtbot.waitUntil(lambda: ks.UNSTAFFED_TEXT in consult.text(), timeout=TIMEOUT)
    finally:
        clerk.close()
