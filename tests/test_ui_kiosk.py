"""hall-kiosk driven by touch, offscreen, against a real daemon and its embedded broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QLabel, QPushButton

from kiosk_ui import kiosk_state as ks
from kiosk_ui.kiosk import KioskModel, KioskWindow
from kiosk_ui.style import LARGE, MIN_TEXT, MIN_TEXT_LARGE, MIN_TOUCH

from .harness import (
    ELDER,
    EXPIRED,
    ONLINE_TIMEOUT_MS,
    DaemonProcess,
    card_hall,
    device_hall,
    free_port,
    init_hall,
    kiosk_window,
    make_bus,
    no_devices,
    passwords,
    wait_until,
)


def _kiosk(qtbot, ui_bus, client_id: str = "kiosk-1", config=None) -> KioskWindow:
    bus = ui_bus(client_id, role="kiosk")
    window = KioskWindow(KioskModel(bus, config), "示范区公共法律服务中心")
    qtbot.addWidget(window)
    window.resize(1920, 1080)
    window.show()
    qtbot.waitUntil(lambda: len(window._buttons) == 6, timeout=5000)
    return window


def _touch(qtbot, button: QPushButton) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=QPoint(button.width() // 2, button.height() // 2))


def _issued(daemon: DaemonProcess) -> dict[str, int]:
    """The daemon's own count of numbers issued today per prefix (admin `status`)."""
    admin = daemon.client("admin", role="admin")
    try:
        snapshot = admin.request("status")
    finally:
        admin.close()
    return {q["prefix"]: q["waiting"] for q in snapshot["queues"].values()}


def test_take_a_number_by_touch(qtbot, ui_bus, hall_daemon, tmp_path: Path) -> None:
    window = _kiosk(qtbot, ui_bus)
    assert window.stack.currentWidget() is window.home_page
    consult = window._buttons["consult"]
    assert "法律咨询" in consult.text() and "等候 0 人" in consult.text()
    _touch(qtbot, consult)
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.result_page, timeout=5000)
    assert window.result_number.text() == "A001"
    assert window.result_service.text() == "法律咨询"
    assert window.result_ahead.text() == "前面没有人在等候，请留意叫号"
    assert _issued(hall_daemon)["A"] == 1
    window.grab().save(str(tmp_path / "kiosk_result.png"))
    # the waiting count on the button follows the retained queue state
    _touch(qtbot, window.done_button)
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.home_page, timeout=2000)
    qtbot.waitUntil(lambda: "等候 1 人" in window._buttons["consult"].text(), timeout=5000)
    _touch(qtbot, window._buttons["consult"])
    qtbot.waitUntil(lambda: window.result_number.text() == "A002", timeout=5000)
    assert window.result_ahead.text() == "前面还有1人"


def test_kiosk_refuses_to_issue_while_offline_and_recovers(qtbot, ui_bus, hall_daemon) -> None:
    window = _kiosk(qtbot, ui_bus)
    hall_daemon.kill()
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.offline_page, timeout=10_000)
    assert all(not b.isEnabled() for b in window._buttons.values())
    assert not window.model.issue("consult")             # refused locally, nothing sent
    assert window.model.state.result is None
    # the daemon comes back on the same port: the kiosk reconnects and issues again
    again = DaemonProcess(hall_daemon.config, hall_daemon.port)
    again.start()
    try:
        qtbot.waitUntil(lambda: window.stack.currentWidget() is window.home_page, timeout=15_000)
        qtbot.waitUntil(lambda: window._buttons["consult"].isEnabled(), timeout=5000)
        _touch(qtbot, window._buttons["consult"])
        qtbot.waitUntil(lambda: window.result_number.text() == "A001", timeout=5000)
    finally:
        again.kill()


def test_ui_stays_responsive_while_the_daemon_does_not_answer(qtbot, ui_bus, hall_daemon) -> None:
    window = _kiosk(qtbot, ui_bus)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(50)
    os.kill(hall_daemon.proc.pid, signal.SIGSTOP)        # its broker child keeps running: no reply comes
    try:
        started = time.monotonic()
        _touch(qtbot, window._buttons["consult"])
        assert time.monotonic() - started < 0.5         # the touch returned at once
        assert window.model.state.busy and not window._buttons["legal_aid"].isEnabled()
        qtbot.waitUntil(lambda: window.model.state.message is not None, timeout=10_000)
        assert "系统繁忙" in window.model.state.message and window.message_label.isVisible()
        waited = [t for t in ticks if t >= started]
        gaps = [b - a for a, b in zip(waited, waited[1:], strict=False)]
        assert len(waited) >= 60 and max(gaps) < 0.5     # ~5 s of 50 ms ticks, none held up
        assert window.model.state.result is None          # no number the daemon did not give
    finally:
        os.kill(hall_daemon.proc.pid, signal.SIGCONT)
        timer.stop()


def test_closed_hours_show_paused_screen(qtbot, tmp_path: Path) -> None:
    def closed(data):
        no_devices(data)
        data["hall"]["opening_hours"] = {day: "closed" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}

    config_path = init_hall(tmp_path, closed)
    daemon = DaemonProcess(config_path, free_port())
    daemon.start()
    bus = make_bus(daemon, "kiosk-1", "kiosk")
    try:
        window = KioskWindow(KioskModel(bus), "示范区")            # --mqtt-url form: no config, the daemon tells
        qtbot.addWidget(window)
        window.show()
        bus.start()
        qtbot.waitUntil(lambda: len(window._buttons) == 6 and window._buttons["consult"].isEnabled(), timeout=15_000)
        _touch(qtbot, window._buttons["consult"])
        qtbot.waitUntil(lambda: window.stack.currentWidget() is window.closed_page, timeout=5000)
        assert "不在服务时间" in window.closed_text.text()
        assert not window._buttons["consult"].isEnabled()
        # with the config the kiosk knows the hours before anyone touches it
        from hall_controller.config import load_config

        known = KioskModel(bus, load_config(config_path))
        assert known.state.screen in ("closed", "offline") and known.state.closed_message
    finally:
        bus.close()
        daemon.kill()


def test_guide_lists_materials_and_prints_a_notice(qtbot, ui_bus, tmp_path: Path) -> None:
    window = _kiosk(qtbot, ui_bus)
    qtbot.waitUntil(lambda: bool(window.model.state.guide), timeout=5000)   # from `service_guide`
    _touch(qtbot, window.guide_button)
    assert window.stack.currentWidget() is window.guide_page
    legal_aid = next(b for b in window.guide_page.findChildren(QPushButton) if b.text() == "法律援助")
    _touch(qtbot, legal_aid)
    assert window.stack.currentWidget() is window.detail_page
    assert "1. 身份证原件及复印件" in window.detail_materials.text()
    assert "经济困难" in window.detail_description.text()
    _touch(qtbot, window.print_button)
    qtbot.waitUntil(lambda: window.detail_status.text() not in ("", "正在打印…"), timeout=5000)
    assert "告知单" in window.detail_status.text()
    window.grab().save(str(tmp_path / "kiosk_guide.png"))


def test_large_text_mode_and_touch_targets(qtbot, ui_bus) -> None:
    window = _kiosk(qtbot, ui_bus)
    buttons = [b for b in window.findChildren(QPushButton) if b.isVisible()]
    assert len(buttons) >= 8
    for button in buttons:
        assert button.width() >= MIN_TOUCH and button.height() >= MIN_TOUCH, button.text()
    normal = [lb.font().pixelSize() for lb in window.home_page.findChildren(QLabel) if lb.text()]
    assert min(normal) >= MIN_TEXT
    _touch(qtbot, window.large_button)
    assert window.scale is LARGE and window.large_button.text() == "标准字体"
    large = [lb.font().pixelSize() for lb in window.home_page.findChildren(QLabel) if lb.text()]
    assert min(large) >= MIN_TEXT_LARGE


def test_card_greeting_and_priority_badge(qtbot, ui_bus) -> None:
    """The card view as the daemon publishes it on `kiosk/{id}/card` (DESIGN §5), delivered as the bus would."""
    window = _kiosk(qtbot, ui_bus)
    window.model.bus.card.emit({"name_masked": "王*", "id_masked": "1101**********0015", "age": 78,
                                "elderly": True, "appointments": [], "read_at": "2026-11-23T09:00:00+08:00"})
    assert window.card_title.text() == "王*，您好  【老年人优先】"
    window.model.bus.card.emit({"name_masked": "李*", "reason": "有效期已过"})
    assert window.card_title.text() == "该身份证无法取号" and "有效期已过" in window.card_detail.text()


def test_idle_return_to_the_start_screen(qtbot, ui_bus, monkeypatch) -> None:
    monkeypatch.setattr(ks, "RESULT_RETURN_S", 0.3)
    window = _kiosk(qtbot, ui_bus)
    _touch(qtbot, window._buttons["mediation"])
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.result_page, timeout=5000)
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.home_page, timeout=5000)
    assert window.model.state.result is None


def test_started_as_a_user_starts_it_reports_online(hall_daemon, tmp_path: Path) -> None:
    """`hall-kiosk --mqtt-url … --hall demo` runs, publishes its retained client status, and exits on SIGTERM
    leaving `offline` behind. Its log goes to a file (a pipe nobody reads could fill and stall the app) and
    is shown when the test fails."""
    seen: list[str] = []

    def on_message(client, userdata, message):
        seen.append(message.payload.decode())

    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="admin", protocol=mqtt.MQTTv311)
    watcher.username_pw_set("admin", passwords(hall_daemon.config)["admin"])
    watcher.on_message = on_message
    watcher.on_connect = lambda c, *a: c.subscribe("hall/demo/client/kiosk-2/status")
    watcher.connect("127.0.0.1", hall_daemon.port)
    watcher.loop_start()
    url = f"mqtt://kiosk-2:{passwords(hall_daemon.config)['kiosk-2']}@127.0.0.1:{hall_daemon.port}"
    log_path = tmp_path / "hall-kiosk.log"
    with log_path.open("w") as log_file:
        app = subprocess.Popen([sys.executable, "-c",
                                "from kiosk_ui.app import main_kiosk; raise SystemExit(main_kiosk())",
                                "--mqtt-url", url, "--hall", "demo", "--windowed"],
                               env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, stderr=log_file)
    try:
        wait_until(lambda: any('"online"' in s for s in seen), 20, f"kiosk-2's online status (app log: {log_path})")
        app.send_signal(signal.SIGTERM)
        assert app.wait(10) == 0, log_path.read_text()
        wait_until(lambda: '"offline"' in seen[-1], 5, f"kiosk-2's offline status (app log: {log_path})")
    finally:
        if app.poll() is None:
            app.kill()
        watcher.loop_stop()
        watcher.disconnect()


def test_bad_command_line_says_why(capsys) -> None:
    from kiosk_ui.app import main_kiosk

    assert main_kiosk(["--mqtt-url", "mqtt://nobody@127.0.0.1:1", "--hall", "demo"]) == 2
    assert "--password-file" in capsys.readouterr().err      # no password: says where one may come from
    assert main_kiosk(["--mqtt-url", "http://kiosk-1:pw@127.0.0.1:1", "--hall", "demo"]) == 2
    err = capsys.readouterr().err
    assert "mqtt://" in err and "pw" not in err.replace("password", "")   # the scheme it wants; never the password


# ------------------------------------------------------------------ with the emulated card reader and printer


def test_take_a_number_by_card_on_the_emulated_reader(qtbot, tmp_path: Path) -> None:
    hall = card_hall(tmp_path, "tcp")
    try:
        qtbot.waitUntil(lambda: hall.online("card-reader-1"), timeout=ONLINE_TIMEOUT_MS)
        window = kiosk_window(qtbot, hall.kiosk)
        hall.put_card(EXPIRED)
        qtbot.waitUntil(lambda: window.card_title.text() == "该身份证无法取号", timeout=5000)
        assert "有效期" in window.card_detail.text()
        hall.put_card(ELDER)
        qtbot.waitUntil(lambda: window.card_title.text().startswith("李**，您好"), timeout=5000)
        assert "老年人优先" in window.card_title.text()
        _touch(qtbot, window._buttons["consult"])
        qtbot.waitUntil(lambda: window.stack.currentWidget() is window.result_page, timeout=5000)
        assert window.result_number.text() == "A001"
        assert window.result_greeting.text() == "李**，您好  【老年人优先】"
    finally:
        hall.close()


def test_printed_ticket_and_paper_out_on_the_emulated_printer(qtbot, tmp_path: Path) -> None:
    hall = device_hall(tmp_path)
    try:
        qtbot.waitUntil(lambda: hall.online("printer-1"), timeout=ONLINE_TIMEOUT_MS)
        window = kiosk_window(qtbot, hall.client("kiosk-1", "kiosk"))
        _touch(qtbot, window._buttons["consult"])
        qtbot.waitUntil(lambda: window.result_number.text() == "A001", timeout=5000)
        assert window.result_print.text() == "请取走号票，留意叫号"
        printed = hall.emu.device("printer-1").view()["tickets"]
        assert len(printed) == 1 and any("A001" in line for line in printed[0]["lines"])
        normal_size = window.result_number.font().pixelSize()
        _touch(qtbot, window.done_button)
        hall.emu.device("printer-1").set_fault("paper_out")
        _touch(qtbot, window._buttons["consult"])
        qtbot.waitUntil(lambda: window.result_number.text() == "A002", timeout=5000)
        assert window.result_caption.text() == "请记住您的号码"
        assert window.result_print.text() == "打印机暂时无法出票，请记住您的号码，可拍照留存，留意叫号"
        assert "font-size: 210px" in window.result_number.styleSheet() and normal_size != 210
        assert len(hall.emu.device("printer-1").view()["tickets"]) == 1
    finally:
        hall.close()
