"""hall-window driven through its real widgets, offscreen, against a real daemon and broker."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from PIL import Image
from PySide6.QtCore import Qt

from drivers.camera import QtCamera
from hall_controller.bus.client import CommandError
from hall_controller.clock import SystemClock
from hall_controller.config import load_config, parse_config
from hall_controller.faults import CAMERA_FAULT_TEXTS
from hw_emulators.hall import EmulatedHall
from kiosk_ui.qtbus import add_common_arguments, options_from_args
from kiosk_ui.style import apply_style
from kiosk_ui.tablet import TabletView
from window_terminal import app as window_app
from window_terminal import state as st
from window_terminal.app import WINDOW_EVENTS
from window_terminal.camera import SCAN_LONG_SIDE, CameraSource, DocumentCamera, camera_source
from window_terminal.supervisor import SupervisorView
from window_terminal.terminal import WindowTerminal

from .conftest import sample_data
from .harness import free_port, passwords, wait_until, window_client

# Screens are rendered on every run; HALL_SCREENSHOTS=docs/screenshots keeps them for the README.
SHOTS = Path(os.environ.get("HALL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "hall-screenshots")
TIMEOUT = 10_000


@pytest.fixture(autouse=True)
def styled(qapp):
    """The apps' age-friendly style sheet, as run_app applies it."""
    apply_style(qapp)


@pytest.fixture
def emulated_camera():
    """hall-emu's document camera of window 3 on a real TCP link, with its control API: (hall, HOST:PORT)."""
    devices = [{"id": "camera-3", "kind": "camera", "profile": "eloam-s500l", "url": "emulated", "window": 3}]
    with EmulatedHall(devices, link="tcp") as hall:
        host, port = hall.serve_control("127.0.0.1", 0)
        yield hall, f"{host}:{port}"


@pytest.fixture
def hall_window(qtbot, hall_daemon, ui_bus):
    """Factory: what `hall-window --config hall.yaml --client CLIENT [extra …]` builds (the app's own
    command line, bus options and builder), on a test bus; cameras are closed at the end."""
    cameras: list[DocumentCamera] = []

    def build(client: str, *extra: str):
        parser = argparse.ArgumentParser()
        add_common_arguments(parser)
        window_app._arguments(parser)
        args = parser.parse_args(["--config", str(hall_daemon.config), "--client", client,
                                  "--mqtt-url", f"mqtt://127.0.0.1:{hall_daemon.port}", *extra])
        options = options_from_args(args)
        bus = ui_bus(client, role=options.role, **window_app._bus_options(options, args))
        widget = window_app._build(options, bus, args)
        qtbot.addWidget(widget)
        widget.resize(1600, 1000)
        widget.show()
        if getattr(widget, "camera", None) is not None:
            cameras.append(widget.camera)
        return widget

    yield build
    for camera in cameras:
        camera.close()


def terminal(qtbot, ui_bus, number: int, *, camera=None) -> WindowTerminal:
    bus = ui_bus(f"window-{number}", role="window", events=WINDOW_EVENTS)
    widget = WindowTerminal(bus, number, clock=SystemClock(), camera=camera)
    qtbot.addWidget(widget)
    widget.resize(1600, 1000)
    widget.show()
    return widget


def login(qtbot, widget: WindowTerminal, job: str) -> None:
    qtbot.keyClicks(widget.job_edit, job)
    qtbot.keyClicks(widget.pin_edit, "1234")
    qtbot.keyClick(widget.pin_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: widget.state.logged_in and widget.pages.currentIndex() == 1, timeout=TIMEOUT)


def press(qtbot, widget: WindowTerminal, op: str) -> None:
    """The op's keyboard shortcut, once its button is enabled (the previous op has been answered)."""
    qtbot.waitUntil(lambda: widget.buttons[op].isEnabled(), timeout=TIMEOUT)
    widget.activateWindow()                         # shortcuts act in the active window
    qtbot.waitUntil(widget.isActiveWindow, timeout=TIMEOUT)
    qtbot.keySequence(widget, widget.shortcuts[op].key())


def kiosk_issue(daemon, service: str = "consult", **args) -> dict:
    kiosk = daemon.client("kiosk-1", role="kiosk")
    try:
        return kiosk.request("issue_ticket", service=service, **args)["ticket"]
    finally:
        kiosk.close()


def shot(widget, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(SHOTS / name))


def daemon_db(daemon) -> sa.Engine:
    return sa.create_engine(load_config(daemon.config).database)


def stored_scans(daemon) -> dict[str, bytes]:
    """The daemon's scans table: sha256 -> image bytes."""
    with daemon_db(daemon).connect() as conn:
        return {r.sha256: bytes(r.data) for r in conn.execute(sa.text("SELECT sha256, data FROM scans"))}


def visit_record(daemon, ticket_id: str) -> dict | None:
    """The service record of a closed visit, as queued for the management system."""
    with daemon_db(daemon).connect() as conn:
        payload = conn.execute(sa.text("SELECT payload FROM outbox WHERE record_key = :k"), {"k": ticket_id}).scalar()
    return json.loads(payload) if payload else None


def test_visit_from_login_to_rating_and_supervisor_follow_up(qtbot, hall_daemon, ui_bus, hall_window,
                                                            emulated_camera):
    emulator, control = emulated_camera
    first = kiosk_issue(hall_daemon)
    second = kiosk_issue(hall_daemon)
    w = hall_window("window-3", "--camera", "emulated", "--emulator", control)
    assert isinstance(w, WindowTerminal) and w.window == 3 and w.camera.source.device_id == "camera-3"
    assert w.pages.currentIndex() == 0 and not w.buttons["call_next"].isEnabled()
    shot(w, "window-login.png")
    tablet_bus = ui_bus("tablet-3", role="tablet", window=3)
    tablet = TabletView(tablet_bus, 3)
    qtbot.addWidget(tablet)
    sup = hall_window("supervisor")                 # the sample hall's window client bound to no window
    assert isinstance(sup, SupervisorView)
    qtbot.waitUntil(lambda: sup.state.whole_day and "取号 2" in sup.counts_label.text(), timeout=TIMEOUT)  # `status`

    login(qtbot, w, "1003")
    qtbot.waitUntil(lambda: tablet.name_label.text() == "张伟", timeout=TIMEOUT)
    assert "服务中" == tablet.service_label.text()
    # a double click sends one call_next: the second click lands on a disabled button
    qtbot.waitUntil(lambda: w.buttons["call_next"].isEnabled(), timeout=TIMEOUT)
    qtbot.mouseClick(w.buttons["call_next"], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(w.buttons["call_next"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.number_label.text() == first["number"], timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.buttons["start"].isEnabled(), timeout=TIMEOUT)
    queue = dict((code, waiting) for code, _, waiting, _ in w.state.window_queues())
    qtbot.waitUntil(lambda: dict((c, n) for c, _, n, _ in w.state.window_queues())["consult"] == 1, timeout=TIMEOUT)
    assert second["number"] not in w.number_label.text() and queue
    qtbot.waitUntil(lambda: tablet.current_label.text() == first["number"], timeout=TIMEOUT)

    press(qtbot, w, "start")
    qtbot.waitUntil(lambda: w.state.ticket and w.state.ticket["status"] == "serving", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: "剩余" in w.countdown_label.text(), timeout=TIMEOUT)
    assert w.countdown_level == st.NORMAL and "办理时限30分钟" in w.countdown_label.text()

    # scan: hall-emu's camera over TCP through drivers/camera.py, a preview, attach
    emulator.device("camera-3").set_fault("disconnect")               # the cable is out: said, in red
    press(qtbot, w, "scan")
    qtbot.waitUntil(lambda: w.message.text() == CAMERA_FAULT_TEXTS["disconnected"], timeout=TIMEOUT)
    assert w.scan is None and not w.forms["scan"].confirm.isEnabled()
    emulator.device("camera-3").clear_fault()
    qtbot.mouseClick(w.retake_button, Qt.MouseButton.LeftButton)     # 重拍 opens the camera again
    qtbot.waitUntil(lambda: w.scan is not None, timeout=TIMEOUT)
    scan = w.scan
    assert emulator.device("camera-3").captures == 1
    with Image.open(io.BytesIO(scan.jpeg)) as page:     # the 1944×2592 page, scaled to a legible 1200×1600
        assert page.format == "JPEG" and page.size == (1200, SCAN_LONG_SIDE)
    assert 50_000 < len(scan.jpeg) < 1_000_000
    assert w.scan_preview.pixmap() is not None and not w.scan_preview.pixmap().isNull()
    assert w.forms["scan"].confirm.isEnabled()
    shot(w, "window-scan.png")
    w.forms["scan"].confirm.click()
    qtbot.waitUntil(lambda: w.scan is None, timeout=TIMEOUT)
    assert w.message.text() == "扫描件已附加（本次业务共1份）"      # from the daemon's reply
    digest = hashlib.sha256(scan.jpeg).hexdigest()
    ref = {"sha256": digest, "size": len(scan.jpeg), "type": "image/jpeg"}
    qtbot.waitUntil(lambda: (w.state.ticket or {}).get("scans") == [ref], timeout=TIMEOUT)
    assert "扫描件1份" in w.visit_info.text()
    assert stored_scans(hall_daemon) == {digest: scan.jpeg}

    # finish with outcome and note
    press(qtbot, w, "finish")
    assert w.side.currentWidget() is w.forms["finish"]
    w.outcome_combo.setCurrentIndex(w.outcome_combo.findData("accepted"))
    w.note_edit.insert("已受理，材料齐全")   # QTest types ASCII only
    shot(w, "window-finish.png")
    qtbot.keyClick(w.note_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.state.ticket is None and len(w.state.served) == 1, timeout=TIMEOUT)
    assert w.state.served[0].outcome == "accepted" and w.served_table.item(0, 4).text() == "待评价"

    # the tablet asks, the visitor rates 非常不满意 with two dimensions
    qtbot.waitUntil(lambda: tablet.state.screen == "rating", timeout=TIMEOUT)
    assert first["number"] in tablet.rating_info.text()
    qtbot.mouseClick(tablet.score_buttons[1], Qt.MouseButton.LeftButton)
    assert tablet.state.screen == "dimensions"
    qtbot.mouseClick(tablet.dimension_buttons[("服务态度", 1)], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(tablet.dimension_buttons[("廉洁从政", 5)], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(tablet.submit_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tablet.state.screen == "thanks", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.served_table.item(0, 4).text() == "非常不满意", timeout=TIMEOUT)
    record = wait_until(lambda: visit_record(hall_daemon, first["id"]), timeout=10, what="the visit's record")
    assert record["scans"] == [ref]

    # the supervisor's terminal sees the 差评 and records the follow-up
    qtbot.waitUntil(lambda: sup.bad_table.rowCount() == 1, timeout=TIMEOUT)
    assert sup.bad_table.item(0, 0).text() == first["number"] and sup.bad_table.item(0, 3).text() == "非常不满意"
    assert sup.bad_table.item(0, 2).text() == "张伟"
    shot(sup, "window-supervisor.png")
    sup.follow_up.insert("已电话回访，向群众致歉并整改")
    qtbot.keyClick(sup.follow_up, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "已记录回访" in sup.message.text(), timeout=TIMEOUT)
    assert sup.bad_table.rowCount() == 0
    with pytest.raises(CommandError) as err:        # the daemon has no open 差评 left
        sup.bus.client.request("resolve_bad_rating", ticket=first["id"], note="again")
    assert err.value.code == "not_found"
    with pytest.raises(CommandError) as err:        # and it is no window
        sup.bus.client.request("call_next")
    assert err.value.code == "forbidden"


def test_transfer_to_another_window_and_return_to_first_officer(qtbot, hall_daemon, ui_bus):
    ticket = kiosk_issue(hall_daemon)
    w3 = terminal(qtbot, ui_bus, 3)
    w6 = terminal(qtbot, ui_bus, 6)
    login(qtbot, w3, "1003")
    login(qtbot, w6, "1006")
    press(qtbot, w3, "call_next")
    press(qtbot, w3, "start")
    qtbot.waitUntil(lambda: w3.buttons["transfer"].isEnabled() and w3.state.ticket["status"] == "serving",
                    timeout=TIMEOUT)
    assert not w3.buttons["return_to_first"].isEnabled()        # he is the first officer
    press(qtbot, w3, "transfer")
    w3.to_window.setChecked(True)
    qtbot.waitUntil(lambda: w3.transfer_list.count() >= 7, timeout=TIMEOUT)
    row = next(i for i in range(w3.transfer_list.count()) if w3.transfer_list.item(i).text().startswith("6号窗口"))
    assert "杨磊" in w3.transfer_list.item(row).text()
    w3.transfer_list.setCurrentRow(row)
    w3.transfer_note.insert("涉及邻里纠纷，转人民调解")
    shot(w3, "window-transfer.png")
    w3.forms["transfer"].confirm.click()
    qtbot.waitUntil(lambda: w3.state.ticket is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: any("转入本窗口" in a for a in w6.state.alerts), timeout=TIMEOUT)

    press(qtbot, w6, "call_next")
    qtbot.waitUntil(lambda: w6.number_label.text() == ticket["number"], timeout=TIMEOUT)
    assert "首问责任人：张伟" in w6.visit_info.text() and "已转移1次" in w6.visit_info.text()
    press(qtbot, w6, "start")
    press(qtbot, w6, "return_to_first")
    qtbot.waitUntil(lambda: w6.state.ticket is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: any("退回首问责任人" in a for a in w3.state.alerts), timeout=TIMEOUT)
    press(qtbot, w3, "call_next")
    qtbot.waitUntil(lambda: w3.number_label.text() == ticket["number"], timeout=TIMEOUT)
    assert w3.state.ticket["first_officer"] == "S003" and len(w3.state.ticket["transfers"]) == 2


def test_reception_issues_a_green_channel_ticket_that_is_called_first(qtbot, hall_daemon, ui_bus):
    normal = kiosk_issue(hall_daemon)
    w1 = terminal(qtbot, ui_bus, 1)
    login(qtbot, w1, "1001")                     # 王芳, 综合接待岗
    press(qtbot, w1, "reception")
    w1.reception_kind.setCurrentIndex(w1.reception_kind.findData("green"))
    w1.reception_service.setCurrentIndex(w1.reception_service.findData("consult"))
    w1.green_combo.setCurrentText("农民工欠薪")
    w1.forms["reception"].confirm.click()
    qtbot.waitUntil(lambda: "绿色通道" in w1.reception_result.text(), timeout=TIMEOUT)
    green_number = w1.reception_result.text().split("（")[0]
    shot(w1, "window-reception.png")
    clerk = window_client(hall_daemon, 3, "S003")
    try:
        called = clerk.request("call_next")["ticket"]
        assert called["number"] == green_number and called["green_reason"] == "农民工欠薪"
        assert called["number"] != normal["number"]
    finally:
        clerk.close()

    # a clerk of another position at the same window may not issue
    w3 = terminal(qtbot, ui_bus, 3)
    qtbot.waitUntil(lambda: w3.state.logged_in and w3.buttons["start"].isEnabled(), timeout=TIMEOUT)
    assert not w3.buttons["reception"].isEnabled()


def test_offline_banner_disables_ops_and_clears_when_the_daemon_returns(qtbot, hall_daemon, ui_bus):
    w = terminal(qtbot, ui_bus, 3)
    login(qtbot, w, "1003")
    qtbot.waitUntil(lambda: w.buttons["call_next"].isEnabled(), timeout=TIMEOUT)
    assert not w.banner.isVisible()
    hall_daemon.kill()                                # daemon and its broker gone
    qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=15_000)
    assert not any(b.isEnabled() for b in w.buttons.values())
    shot(w, "window-offline.png")
    hall_daemon.start()
    qtbot.waitUntil(lambda: not w.banner.isVisible(), timeout=30_000)
    qtbot.waitUntil(lambda: w.buttons["call_next"].isEnabled(), timeout=TIMEOUT)
    assert w.state.logged_in                          # the login survived in the daemon's store


def test_pause_with_a_reason_and_resume(qtbot, hall_daemon, ui_bus):
    w = terminal(qtbot, ui_bus, 4)
    login(qtbot, w, "1004")
    press(qtbot, w, "pause")
    w.pause_combo.setCurrentText("会议")
    w.forms["pause"].confirm.click()
    qtbot.waitUntil(lambda: w.status_label.text() == "暂停服务（会议）", timeout=TIMEOUT)
    # the window's retained state may come before the reply: resume is enabled once the reply is in
    qtbot.waitUntil(lambda: w.buttons["resume"].isEnabled(), timeout=TIMEOUT)
    assert not w.buttons["call_next"].isEnabled()
    press(qtbot, w, "print_notice")
    w.notice_combo.setCurrentIndex(w.notice_combo.findData("legal_aid"))
    w.forms["print_notice"].confirm.click()
    qtbot.waitUntil(lambda: "经济困难状况说明表" in w.notice_text.text(), timeout=TIMEOUT)
    press(qtbot, w, "resume")
    qtbot.waitUntil(lambda: w.status_label.text() == "空闲", timeout=TIMEOUT)


def test_the_camera_of_a_window_comes_from_the_config_or_the_command_line(qapp):
    data = sample_data()
    data["devices"].append({"id": "camera-9", "kind": "camera", "profile": "eloam-s500l", "url": "uvc://S500L",
                            "window": 4})
    data["devices"] = [d for d in data["devices"] if d["id"] != "camera-4"]
    config = parse_config(data, "sample.yaml")
    assert camera_source(None, 3, config) == CameraSource("emulated", "camera-3", "eloam-s500l", "127.0.0.1:8790")
    assert camera_source(None, 4, config).url == "uvc://S500L"               # a real camera, no emulator
    assert camera_source(None, 3, config, "127.0.0.1:9999").emulator == "127.0.0.1:9999"
    assert camera_source("socket://127.0.0.1:7000", 3, config).url == "socket://127.0.0.1:7000"
    assert camera_source("none", 3, config) is None
    assert camera_source(None, 3, None) is None                                # --mqtt-url alone: no camera
    assert camera_source("emulated", 5, None, "127.0.0.1:8790") == CameraSource("emulated", "camera-5",
                                                                               emulator="127.0.0.1:8790")


def test_camera_failures_are_said_in_chinese_and_the_next_capture_opens_it_again(qtbot, emulated_camera,
                                                                                 monkeypatch):
    emulator, control = emulated_camera
    opened_in: list[threading.Thread] = []
    qt_open = QtCamera.open
    monkeypatch.setattr(QtCamera, "open", lambda self: (opened_in.append(threading.current_thread()), qt_open(self)))

    def capture(camera: DocumentCamera):
        got: list = []
        camera.capture(got.append, got.append)
        qtbot.waitUntil(lambda: bool(got), timeout=TIMEOUT)
        return got[0]

    nowhere = DocumentCamera(CameraSource("emulated", "camera-3", emulator=f"127.0.0.1:{free_port()}"))
    unknown = DocumentCamera(CameraSource("emulated", "camera-9", emulator=control))
    no_emulator = DocumentCamera(camera_source("emulated", 3))
    camera = DocumentCamera(camera_source("emulated", 3, None, control))
    usb = DocumentCamera(camera_source("uvc://S500L", 3))
    try:
        # fixed sentences for each kind of fault (hall_controller.faults); the driver's text is only logged
        assert capture(usb) == CAMERA_FAULT_TEXTS["not_found"]                 # no camera on this PC
        assert opened_in == [threading.main_thread()]                           # QtCamera: in the GUI thread
        assert capture(nowhere) == CAMERA_FAULT_TEXTS["not_found"]            # the emulator is not running
        assert capture(unknown) == CAMERA_FAULT_TEXTS["not_found"]            # it has no camera-9
        assert capture(no_emulator) == CAMERA_FAULT_TEXTS["not_found"]
        emulator.device("camera-3").set_fault("disconnect")                   # the USB cable is out
        failure = capture(camera)
        assert failure == CAMERA_FAULT_TEXTS["disconnected"]
        emulator.device("camera-3").clear_fault()
        busy: list = []
        camera.capture(busy.append, busy.append)
        camera.capture(busy.append, busy.append)                               # pressed twice
        assert busy == ["正在拍摄，请稍候"]
        qtbot.waitUntil(lambda: len(busy) == 2, timeout=TIMEOUT)
        assert busy[1].jpeg[:3] == b"\xff\xd8\xff" and emulator.device("camera-3").captures == 1
    finally:
        for c in (nowhere, unknown, no_emulator, camera, usb):
            c.close()


@pytest.mark.parametrize("client", ["window-2", "supervisor"])
def test_hall_window_starts_as_a_user_starts_it(hall_daemon, tmp_path, client):
    """`hall-window --mqtt-url … --hall demo` runs (offscreen), reports its client status online, and leaves
    `offline` behind on SIGTERM. Its log goes to a file (an unread pipe could fill and stall the app)."""
    pw = passwords(hall_daemon.config)
    url = f"mqtt://{client}:{pw[client]}@127.0.0.1:{hall_daemon.port}"
    log_path = tmp_path / "hall-window.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from window_terminal.app import main; sys.exit(main())",
                                 "--mqtt-url", url, "--hall", "demo", "--windowed", "--camera", "emulated"],
                                env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                                stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        assert client_status(hall_daemon, client, '"online"'), log_path.read_text()
        assert proc.poll() is None, log_path.read_text()
        proc.terminate()
        assert proc.wait(15) == 0, log_path.read_text()
        assert client_status(hall_daemon, client, '"offline"'), log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(15)


def client_status(daemon, client_id: str, wanted: str, timeout: float = 30.0) -> bool:
    """Wait for the retained `client/{id}/status` to say `wanted` (read as the admin); False after `timeout`."""
    seen: list[bytes] = []
    observer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="admin", protocol=mqtt.MQTTv311)
    observer.username_pw_set("admin", passwords(daemon.config)["admin"])
    observer.on_connect = lambda c, *_: c.subscribe(f"hall/demo/client/{client_id}/status")
    observer.on_message = lambda c, u, m: seen.append(m.payload)
    observer.connect("127.0.0.1", daemon.port)
    observer.loop_start()
    try:
        wait_until(lambda: any(wanted.encode() in p for p in seen), timeout=timeout, what=f"{client_id} {wanted}")
        return True
    except AssertionError:
        return False
    finally:
        observer.disconnect()
        observer.loop_stop()
