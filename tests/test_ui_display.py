"""hall-display offscreen against a real daemon and its embedded broker."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from hall_controller.config import sample_config_text
from hw_emulators.hall import EmulatedHall
from hw_emulators.speaker import EmulatedSpeaker
from kiosk_ui.display import DISPLAY_EVENTS, FLASH_MS, DisplayModel, DisplayWindow
from kiosk_ui.qtbus import QtHallBus

from .harness import DaemonProcess, free_port, make_bus, wait_online, wait_until, window_client

SERVICE_OF_WINDOW = {1: "consult", 2: "consult", 3: "consult", 4: "legal_aid", 5: "legal_aid", 6: "mediation",
                     7: "notary", 8: "general"}


def _display(qtbot, ui_bus) -> DisplayWindow:
    return _board(qtbot, ui_bus("display-1", role="display", events=DISPLAY_EVENTS))


def _board(qtbot, bus: QtHallBus) -> DisplayWindow:
    window = DisplayWindow(DisplayModel(bus), "示范区公共法律服务中心", "欢迎来到示范区公共法律服务中心")
    qtbot.addWidget(window)
    window.resize(1920, 1080)
    window.show()
    qtbot.waitUntil(lambda: len(window.model.state.windows) == 8 and len(window.model.state.services) == 6,
                    timeout=5000)
    return window


def _history(window: DisplayWindow) -> list[str]:
    model = window.history_model
    return [model.data(model.index(r, 0)).split()[0] for r in range(model.rowCount())]


def _issue(daemon: DaemonProcess, *services: str) -> list[str]:
    kiosk = daemon.client("kiosk-2", role="kiosk")
    try:
        return [kiosk.request("issue_ticket", service=s)["ticket"]["number"] for s in services]
    finally:
        kiosk.close()


def test_display_shows_the_call_history_windows_and_queues(qtbot, ui_bus, hall_daemon, tmp_path: Path) -> None:
    window = _display(qtbot, ui_bus)
    assert window.number_label.text() == "——" and not window.banner.isVisible()
    assert window.updated_label.text().startswith("更新于 ") and "--" not in window.updated_label.text()
    _issue(hall_daemon, "consult", "consult", "mediation")
    qtbot.waitUntil(lambda: "等候 2 人" in window._queue_labels[0].text(), timeout=5000)
    w1 = window_client(hall_daemon, 1, "S001")
    w6 = window_client(hall_daemon, 6, "S006")
    try:
        assert w1.request("call_next")["ticket"]["number"] == "A001"
        qtbot.waitUntil(lambda: window.number_label.text() == "A001", timeout=5000)
        assert window.where_label.text() == "请到 1号窗口 办理"
        assert w1.request("finish")["ticket"]["number"] == "A001"
        assert w1.request("call_next")["ticket"]["number"] == "A002"
        qtbot.waitUntil(lambda: window.number_label.text() == "A002", timeout=5000)
        assert _history(window) == ["A001"]
        w6.request("pause", reason="午休")
        wm = window.windows_model
        qtbot.waitUntil(lambda: wm.data(wm.index(2, 5)) == "暂停服务", timeout=5000)
        assert wm.data(wm.index(1, 0)) == "A002" and wm.data(wm.index(2, 0)) == "呼叫中"
        assert wm.data(wm.index(2, 2)) == "未开放"
        w1.request("recall")
        qtbot.waitUntil(lambda: window.now_label.text() == "重呼", timeout=5000)
        assert _history(window) == ["A002", "A001"]
    finally:
        w1.close()
        w6.close()
    assert window.grab().save(str(tmp_path / "display.png"))


def test_eight_calls_within_one_second_all_reach_the_history(qtbot, ui_bus, hall_daemon) -> None:
    window = _display(qtbot, ui_bus)
    numbers = _issue(hall_daemon, *(SERVICE_OF_WINDOW[n] for n in range(1, 9)))
    clients = [window_client(hall_daemon, n, f"S00{n}") for n in range(1, 9)]
    try:
        barrier = threading.Barrier(8)
        called: dict[int, tuple[str, float]] = {}

        def call(n: int) -> None:
            barrier.wait()
            ticket = clients[n - 1].request("call_next")["ticket"]
            called[n] = (ticket["number"], time.monotonic())

        threads = [threading.Thread(target=call, args=(n,)) for n in range(1, 9)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(called) == 8 and max(at for _, at in called.values()) - started < 1.0
        assert sorted(number for number, _ in called.values()) == sorted(numbers)
        qtbot.waitUntil(lambda: len(window.model.state.calls) == 8, timeout=5000)
        shown = [window.number_label.text(), *_history(window)]
        assert sorted(shown) == sorted(numbers)
        assert window.history_view.isVisible() and window.history_model.rowCount() == 7
    finally:
        for c in clients:
            c.close()


def test_offline_banner_when_the_broker_stops_and_retained_board_after_reconnect(qtbot, ui_bus, hall_daemon,
                                                                                 tmp_path: Path) -> None:
    window = _display(qtbot, ui_bus)
    _issue(hall_daemon, "consult")
    w1 = window_client(hall_daemon, 1, "S001")
    w1.request("call_next")
    w1.close()
    qtbot.waitUntil(lambda: window.number_label.text() == "A001", timeout=5000)
    before = window.updated_label.text()
    hall_daemon.kill()                                   # the daemon and its embedded broker
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10_000)
    assert "离线" in window.banner.text() and window.updated_label.text() == before   # stale, and says so
    assert window.number_label.text() == "A001"                                       # last known board kept
    assert window.grab().save(str(tmp_path / "display_offline.png"))
    again = DaemonProcess(hall_daemon.config, hall_daemon.port)
    again.start()
    try:
        qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=15_000)
        # after the reconnect the board is the daemon's retained state, never an empty one
        assert window.number_label.text() == "A001"
        wm = window.windows_model
        qtbot.waitUntil(lambda: wm.data(wm.index(1, 0)) == "A001", timeout=5000)
    finally:
        again.kill()


def test_board_flashes_while_its_announcement_plays(qtbot, ui_bus, hall_daemon) -> None:
    """`announcement_started` as the daemon publishes it (voice work, DESIGN §5), delivered as the bus would."""
    window = _display(qtbot, ui_bus)
    _issue(hall_daemon, "consult")
    w1 = window_client(hall_daemon, 1, "S001")
    ticket = w1.request("call_next")["ticket"]
    w1.close()
    qtbot.waitUntil(lambda: window.number_label.text() == "A001", timeout=5000)
    window.model.bus.event.emit({"type": "announcement_started", "event_id": "a1", "ticket": ticket, "window": 1,
                                 "duration": 12.5})   # chime + the phrase twice (the shipped repeat: 2)
    # a finished that never comes stops the flash FLASH_MS after the announced end, never mid-voice
    assert 12_500 < window._flash_end.remainingTime() <= 1.05 * (12_500 + FLASH_MS)   # coarse timers: ±5 %
    states: set[str] = set()
    qtbot.waitUntil(lambda: states.add(window.panel.property("flash")) or len(states) == 2, timeout=3000)
    window.model.bus.event.emit({"type": "announcement_finished", "event_id": "a2", "ticket": ticket, "window": 1})
    assert window.panel.property("flash") == "false" and window.model.state.flashing is None
    assert not window._flash_end.isActive()
    for bad in ("12.5", float("nan"), float("inf"), -3, None):   # an unusable duration: FLASH_MS alone
        window.model.bus.event.emit({"type": "announcement_started", "ticket": ticket, "window": 1, "duration": bad})
        assert window.model.state.flashing is not None and 0 < window._flash_end.remainingTime() <= 1.05 * FLASH_MS
        window.model.bus.event.emit({"type": "announcement_finished", "ticket": ticket, "window": 1})
        assert window.model.state.flashing is None


@pytest.fixture
def speaker_hall(tmp_path: Path, hall_template: Path) -> Iterator[tuple[DaemonProcess, str]]:
    """The sample hall with its PA speaker (one-repeat voice) at `url: emulated`: a real daemon process
    finds the emulated speaker through the emulator's control API and plays to it over TCP.
    Yields the daemon and the control API's base URL."""
    folder = tmp_path / "hall"
    shutil.copytree(hall_template, folder)
    config = folder / "hall.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["devices"] = [d for d in yaml.safe_load(sample_config_text())["devices"] if d["kind"] == "speaker"]
    data["voice"] = {**data.get("voice", {}), "repeat": 1}
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with EmulatedHall(data["devices"], link="tcp") as emu:
        host, port = emu.serve_control()
        daemon = DaemonProcess(config, free_port(), "--emulator", f"{host}:{port}")
        daemon.start()
        try:
            speaker = emu.devices[data["devices"][0]["id"]]
            assert isinstance(speaker, EmulatedSpeaker)
            wait_until(lambda: speaker.link.host_connected, 10, "the daemon's speaker driver to connect")
            yield daemon, f"http://{host}:{port}/speaker/{speaker.id}"
        finally:
            daemon.kill()


HANDOFF_LEAD_S = 0.05   # the event is published as the frame leaves; the emulator stamps on receipt


def test_board_flashes_while_the_emulated_speaker_plays_the_call(qtbot, speaker_hall) -> None:
    """The daemon's own `announcement_started`/`finished` (announcer → speaker driver → emulated speaker
    over TCP) start and stop the flash: it starts after the call, while the voice plays, and it is the
    `announcement_finished` — once the speaker has played it all — that stops it."""
    daemon, speaker_url = speaker_hall
    bus = make_bus(daemon, "display-1", "display", events=DISPLAY_EVENTS)
    announced: list[tuple[str, bool]] = []   # (type, flashing when it arrived)

    def on_event(event: dict) -> None:   # connected before the board's model: sees the state each event finds
        if event["type"].startswith("announcement_"):
            announced.append((event["type"], window.model.state.flashing is not None))

    bus.event.connect(on_event)
    bus.start()
    try:
        wait_online(qtbot, bus)
        window = _board(qtbot, bus)
        transitions: list[tuple[float, tuple[str, str] | None, str]] = []   # (wall time, flashing, panel)

        def record() -> None:   # runs after the board's render (connected first)
            if (transitions[-1][1] if transitions else None) != window.model.state.flashing:
                transitions.append((time.time(), window.model.state.flashing, window.panel.property("flash")))

        window.model.changed.connect(record)
        _issue(daemon, "consult")
        w1 = window_client(daemon, 1, "S001")
        try:
            assert window.model.state.flashing is None and window.panel.property("flash") == "false"
            called_at = time.time()
            assert w1.request("call_next")["ticket"]["number"] == "A001"
        finally:
            w1.close()
        qtbot.waitUntil(lambda: len(announced) == 2 and len(transitions) == 2, timeout=3 * FLASH_MS)
        with urllib.request.urlopen(f"{speaker_url}/announcements", timeout=5) as reply:
            records = json.load(reply)
    finally:
        bus.close()
    assert [r["text"] for r in records] == ["请A001号到1号窗口办理"]
    start = datetime.fromisoformat(records[0]["start"]).timestamp()
    end = start + records[0]["duration"]
    (on_at, on_key, on_panel), (off_at, off_key, off_panel) = transitions
    assert window.number_label.text() == "A001"
    assert on_key == window.model.state.latest.key and on_panel == "true"
    assert off_key is None and off_panel == "false" and window.model.state.flashing is None
    # after the call, while the voice plays: announcement_started goes out as the WAV is handed to the
    # speaker, so the flash may lead the speaker's own start stamp (ms, after the frame's transfer) a little
    assert called_at <= start and called_at <= on_at < end
    assert on_at >= start - HANDOFF_LEAD_S
    assert off_at >= end                              # not before the speaker had played it all
    # and it was the daemon's announcement_finished that stopped it (not the board's fallback timer)
    assert announced == [("announcement_started", False), ("announcement_finished", True)]
