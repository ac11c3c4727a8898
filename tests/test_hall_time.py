"""One hall clock: every app shows hall time (`hall.timezone`), whatever zone its PC is set to.

The PC is put at UTC (TZ=UTC + tzset, restored afterwards), a real daemon runs in-process on a manual
clock at 2026-10-12T01:30Z = 09:30 in Beijing, and the kiosk, the hall display, a window terminal and
the supervisor view, all started the `--mqtt-url … --hall demo` way (no hall config: the zone comes
from the daemon's retained status), are rendered offscreen. Each must read 09:xx where the PC's own
zone reads 01:xx. The rating tablet shows no time of day.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hall_controller.bus.client import HallClient
from hall_controller.bus.topics import ALL_EVENTS
from hall_controller.clock import ManualClock
from kiosk_ui import display_state as ds
from kiosk_ui.common_state import hall_time_text, hall_zone
from kiosk_ui.display import DISPLAY_EVENTS, DisplayModel, DisplayWindow
from kiosk_ui.kiosk import KioskModel, KioskWindow
from kiosk_ui.qtbus import QtHallBus
from window_terminal import state as ws
from window_terminal.app import WINDOW_EVENTS
from window_terminal.supervisor import SupervisorView
from window_terminal.terminal import WindowTerminal

from .harness import Hall, no_devices, wait_until

START = datetime(2026, 10, 12, 1, 30, tzinfo=UTC)       # Monday 09:30 in the hall (Asia/Shanghai)
TIMEOUT = 10_000


# ------------------------------------------------------------------ the helper, plain

def test_one_helper_formats_an_instant_in_the_hall_zone() -> None:
    assert hall_time_text(START, "Asia/Shanghai") == "09:30"
    assert hall_time_text("2026-10-12T01:30:05.000+00:00", "Asia/Shanghai", "%H:%M:%S") == "09:30:05"
    assert hall_time_text("2026-10-12T09:30:05+08:00", "Asia/Urumqi") == "07:30"
    # unknown zone, unknown or naive moment: dashes in the same shape, never the PC's zone
    assert hall_time_text(START, None) == "--:--"
    assert hall_time_text(None, "Asia/Shanghai", "%H:%M:%S") == "--:--:--"
    assert hall_time_text("2026-10-12T01:30:00", "Asia/Shanghai") == "--:--"
    assert hall_time_text("yesterday", "Asia/Shanghai") == "--:--"
    # the daemon's status wins over the config; a bad name is ignored
    assert hall_zone({"state": "online", "timezone": "Asia/Urumqi"}, "Asia/Shanghai") == "Asia/Urumqi"
    assert hall_zone({"state": "online"}, "Asia/Shanghai") == "Asia/Shanghai"
    assert hall_zone({"timezone": "Mars/Olympus"}, None) is None and hall_zone(None, "../etc") is None


def test_pure_states_show_daemon_stamps_in_hall_time() -> None:
    call = {"number": "A001", "window": 1, "service": "consult", "at": "2026-10-12T01:30:07.000+00:00",
            "ticket_id": "t1"}
    board = ds.with_calls(ds.DisplayState(), [call], START)
    assert board.updated_text == "--:--:--"                     # no zone yet: dashes, not 01:30
    board = ds.with_status(board, {"state": "online", "timezone": "Asia/Shanghai"}, START)
    assert board.updated_text == "09:30:00" and board.call_time(board.calls[0]) == "09:30:07"
    sup = ws.apply_status(ws.SupervisorState(counts_since=START), {"timezone": "Asia/Shanghai"})
    assert sup.counts_since_text == "09:30" and sup.time_text("2026-10-12T02:05:00+00:00") == "10:05"
    view = {"number": 3, "ticket": {"id": "t", "number": "A001", "service": "consult", "status": "called",
                                    "due_at": "2026-10-12T02:00:00+00:00", "appointment_id": "a"}}
    assert ws.visit_view(view, {}, START, zone="Asia/Shanghai").appointment == "预约 10:00"


# ------------------------------------------------------------------ the apps on a PC left at UTC

@pytest.fixture
def utc_pc() -> Iterator[None]:
    """This process's local zone is UTC for the test (as on a hall PC nobody set up), then restored."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def clock_hall(utc_pc, tmp_path: Path) -> Iterator[Hall]:
    """The sample hall (no devices) served in-process on a manual clock, with Qt buses of its clients."""
    hall = Hall(tmp_path, mutate=no_devices, clock=ManualClock(START))
    try:
        yield hall
    finally:
        hall.close()


def _cell(table, row: int, column: int) -> str:
    item = table.item(row, column)
    return item.text() if item is not None else ""


def test_every_app_shows_hall_time_on_a_pc_left_at_utc(qtbot, clock_hall: Hall, tmp_path: Path) -> None:
    hall, clock = clock_hall, clock_hall.clock
    # positive control: this PC's own zone really is UTC, so the old `.astimezone()` showed 01:30
    assert START.astimezone().strftime("%H:%M") == "01:30"
    assert hall.daemon.bridge is not None

    kiosk = KioskWindow(KioskModel(hall.bus(qtbot, "kiosk-1", "kiosk"), None, clock), "示范区公共法律服务中心")
    display = DisplayWindow(DisplayModel(hall.bus(qtbot, "display-1", "display", events=DISPLAY_EVENTS), clock),
                            "示范区公共法律服务中心", "")
    terminal = WindowTerminal(hall.bus(qtbot, "window-3", "window", window=3, events=WINDOW_EVENTS), 3, clock=clock)
    supervisor = SupervisorView(hall.bus(qtbot, "supervisor", "window", events=ALL_EVENTS), clock=clock)
    for widget, size in ((kiosk, (1920, 1080)), (display, (1920, 1080)), (terminal, (1600, 1000)),
                         (supervisor, (1600, 1000))):
        qtbot.addWidget(widget)
        widget.resize(*size)
        widget.show()

    # the zone came from the daemon's retained status, not from a config
    qtbot.waitUntil(lambda: kiosk.model.zone == "Asia/Shanghai", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: kiosk.clock_label.text() == "09:30", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: display.updated_label.text() == "更新于 09:30:00", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: supervisor.counts_label.text().count("（自09:30起）") == 1, timeout=TIMEOUT)

    # a visit at window 3 from 09:30 to 09:42, then a 非常不满意 from its tablet at 09:43
    kiosk2 = hall.client("kiosk-2", "kiosk")
    assert [kiosk2.request("issue_ticket", service="consult")["ticket"]["number"] for _ in range(2)] == ["A001", "A002"]
    w3 = terminal.bus.client
    w3.request("login", staff_id="S003", pin="1234")
    assert w3.request("call_next")["ticket"]["number"] == "A001"
    clock.advance(minutes=1)
    w3.request("start")
    clock.advance(minutes=25)          # past 80 % of 法律咨询's 30 minutes: the daemon's tick warns
    qtbot.waitUntil(lambda: terminal.alert_list.count() > 0, timeout=TIMEOUT)
    assert terminal.alert_list.item(0).text().startswith("09:56 A001号即将超时")
    clock.advance(minutes=1)                                     # 09:57
    finished = w3.request("finish")["ticket"]
    qtbot.waitUntil(lambda: terminal.served_table.rowCount() == 1, timeout=TIMEOUT)
    assert _cell(terminal.served_table, 0, 0) == "A001" and _cell(terminal.served_table, 0, 2) == "09:57"
    clock.advance(minutes=1)                                     # 09:58
    hall.client("tablet-3", "tablet", window=3).request("rate", ticket=finished["id"], score=1)
    qtbot.waitUntil(lambda: supervisor.bad_table.rowCount() == 1, timeout=TIMEOUT)
    assert _cell(supervisor.bad_table, 0, 0) == "A001" and _cell(supervisor.bad_table, 0, 4) == "09:58"

    # the display: A002 called at 09:59 makes A001 (09:30) history; the board's 更新于 follows the clock
    clock.advance(minutes=1)
    assert w3.request("call_next")["ticket"]["number"] == "A002"
    qtbot.waitUntil(lambda: display.history_model.rowCount() == 1, timeout=TIMEOUT)
    model = display.history_model
    assert model.data(model.index(0, 0)).startswith("A001") and model.data(model.index(0, 2)) == "09:30:00"
    qtbot.waitUntil(lambda: display.updated_label.text() == "更新于 09:59:00", timeout=TIMEOUT)
    kiosk._update_clock()
    assert kiosk.clock_label.text() == "09:59"
    # what the PC's own zone would have said at that instant
    assert clock.now().astimezone().strftime("%H:%M") == "01:59"

    for name, widget in (("kiosk", kiosk), ("display", display), ("terminal", terminal), ("supervisor", supervisor)):
        assert widget.grab().save(str(tmp_path / f"hall-time-{name}.png"))


def test_an_app_started_with_the_config_uses_its_zone_until_the_daemon_says(utc_pc, qtbot) -> None:
    """--config form before the daemon's status arrives (broker down): the config's hall.timezone."""
    from hall_controller.config import parse_config

    from .conftest import sample_data

    config = parse_config(sample_data(), "sample.yaml")
    client = HallClient("kiosk-1", "x", "127.0.0.1", 9, "demo", role="kiosk")   # never connects
    bus = QtHallBus(client)
    try:
        kiosk = KioskWindow(KioskModel(bus, config, ManualClock(START)), "示范区")
        qtbot.addWidget(kiosk)
        assert kiosk.clock_label.text() == "09:30"
        bare = KioskWindow(KioskModel(bus, None, ManualClock(START)), "示范区")
        qtbot.addWidget(bare)
        assert bare.clock_label.text() == "--:--"        # no zone known: no guess from the PC
    finally:
        bus.close()


def test_status_payload_names_the_zone(clock_hall: Hall) -> None:
    watcher = clock_hall.client("display-1", "display")
    wait_until(lambda: isinstance(watcher.state.hall, dict), 5, "the daemon's retained status")
    status = watcher.state.hall
    assert status["state"] == "online" and status["timezone"] == "Asia/Shanghai"
    assert status["started_at"] == START.isoformat(timespec="seconds")
