"""A broker that refuses an app's password (issue 16, faults): each Qt app says so in Chinese on its
screen — not an endless 正在重新连接 — and no log holds the password it was given.

In-process, each app's real widget sits on a QtHallBus with a wrong password and `appkit.show_refused`
(what `run_app` installs): the refusal covers it with `AUTH_REFUSED_TEXT`, also when the broker only
comes up (and refuses) after the app started. As users start them, the four apps run with a wrong
password at `--log-level DEBUG`: each stays up, logs the refusal, and neither its log nor the daemon's
holds the password.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QWidget

from hall_controller.bus.client import HallClient
from hall_controller.clock import SystemClock
from hall_controller.faults import AUTH_REFUSED_TEXT
from kiosk_ui.appkit import RefusedOverlay, show_refused
from kiosk_ui.display import DisplayModel, DisplayWindow
from kiosk_ui.kiosk import KioskModel, KioskWindow
from kiosk_ui.qtbus import QtHallBus
from kiosk_ui.style import apply_style
from kiosk_ui.tablet import TabletView
from window_terminal.supervisor import SupervisorView
from window_terminal.terminal import WindowTerminal

from .harness import DaemonProcess, free_port, wait_until

WRONG = "wrong-Password-7731"
SHOTS = Path(os.environ.get("HALL_SCREENSHOTS") or Path("/tmp/hall-screenshots"))
TIMEOUT = 15_000

APPS: dict[str, tuple[str, str, Any]] = {
    # client id: (role, window, widget factory)
    "kiosk-1": ("kiosk", None, lambda bus: KioskWindow(KioskModel(bus), "示范区公共法律服务中心")),
    "display-1": ("display", None, lambda bus: DisplayWindow(DisplayModel(bus), "示范区公共法律服务中心")),
    "tablet-2": ("tablet", 2, lambda bus: TabletView(bus, 2)),
    "window-2": ("window", None, lambda bus: WindowTerminal(bus, 2, clock=SystemClock())),
    "supervisor": ("window", None, lambda bus: SupervisorView(bus, clock=SystemClock())),
}


def refused_bus(port: int, client_id: str, role: str, window: int | None) -> QtHallBus:
    client = HallClient(client_id, WRONG, "127.0.0.1", port, "demo", role=role, window=window,
                        reconnect_min_delay=0.1, reconnect_max_delay=0.5)
    return QtHallBus(client, poll_ms=50)


def overlay_of(widget: QWidget) -> RefusedOverlay | None:
    overlay = widget.findChild(RefusedOverlay)
    return overlay if overlay is not None and overlay.isVisible() else None


@pytest.mark.parametrize("client_id", list(APPS))
def test_each_app_shows_the_refusal_in_chinese(qtbot, qapp, hall_daemon, client_id):
    apply_style(qapp)
    role, window, make = APPS[client_id]
    bus = refused_bus(hall_daemon.port, client_id, role, window)
    widget = make(bus)
    qtbot.addWidget(widget)
    widget.resize(1600, 1000)
    widget.show()
    show_refused(widget, bus)
    bus.start()
    try:
        qtbot.waitUntil(lambda: overlay_of(widget) is not None, timeout=TIMEOUT)
        overlay = overlay_of(widget)
        assert overlay.text.text() == AUTH_REFUSED_TEXT == "无法连接服务器：账号或密码被拒绝，请联系管理员"
        assert overlay.title.text() == "暂停服务" and overlay.client.text() == f"本机账号：{client_id}"
        assert overlay.geometry() == widget.rect()                  # it covers the whole app
        assert bus.refused == AUTH_REFUSED_TEXT and not bus.online
        widget.resize(1920, 1080)
        qtbot.waitUntil(lambda: overlay.geometry() == widget.rect(), timeout=2000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        widget.grab().save(str(SHOTS / f"refused_{client_id}.png"))
    finally:
        bus.close()


def test_a_broker_that_comes_up_later_and_refuses_is_shown_too(qtbot, qapp, tmp_path, hall_template):
    """The app started before the hall PC: it keeps trying, then the broker refuses it."""
    apply_style(qapp)
    port = free_port()
    bus = refused_bus(port, "kiosk-1", "kiosk", None)
    kiosk = KioskWindow(KioskModel(bus), "示范区公共法律服务中心")
    qtbot.addWidget(kiosk)
    kiosk.show()
    show_refused(kiosk, bus)
    bus.start(timeout=0.5)
    folder = tmp_path / "hall"
    shutil.copytree(hall_template, folder)
    daemon = DaemonProcess(folder / "hall.yaml", port)
    try:
        qtbot.wait(1500)
        assert overlay_of(kiosk) is None and kiosk.stack.currentWidget() is kiosk.offline_page   # still trying
        daemon.start()
        qtbot.waitUntil(lambda: overlay_of(kiosk) is not None, timeout=TIMEOUT)
        assert overlay_of(kiosk).text.text() == AUTH_REFUSED_TEXT
    finally:
        bus.close()
        daemon.kill()


APP_COMMANDS = {
    "hall-kiosk": ("kiosk_ui.app", "main_kiosk", "kiosk-1", ()),
    "hall-display": ("kiosk_ui.app", "main_display", "display-1", ()),
    "hall-tablet": ("kiosk_ui.app", "main_tablet", "tablet-1", ()),
    "hall-window": ("window_terminal.app", "main", "window-1", ("--camera", "none")),
}


def test_apps_started_with_a_wrong_password_say_so_and_log_no_password(hall_daemon, tmp_path):
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        for name, (module, entry, client, extra) in APP_COMMANDS.items():
            log_path = tmp_path / f"{name}.log"
            with log_path.open("w") as log_file:
                procs[name] = (subprocess.Popen(
                    [sys.executable, "-c", f"from {module} import {entry}; raise SystemExit({entry}())",
                     "--mqtt-url", f"mqtt://{client}:{WRONG}@127.0.0.1:{hall_daemon.port}", "--hall", "demo",
                     "--windowed", "--log-level", "DEBUG", *extra],
                    env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, stdout=log_file, stderr=subprocess.STDOUT),
                    log_path)
        for name, (proc, log_path) in procs.items():
            def refusal_logged(name: str = name, proc: subprocess.Popen = proc, log_path: Path = log_path) -> bool:
                assert proc.poll() is None, f"{name} exited:\n{log_path.read_text()}"
                return "broker refused the connection" in log_path.read_text()

            wait_until(refusal_logged, 60, f"{name} to log the broker's refusal", interval=0.2)
            log = log_path.read_text()
            assert "broker refused the connection" in log, f"{name}:\n{log}"
            assert proc.poll() is None, f"{name} should stay up showing the refusal:\n{log}"
        for name, (proc, log_path) in procs.items():
            proc.terminate()
            assert proc.wait(15) == 0, log_path.read_text()
            log = log_path.read_text()
            assert " DEBUG " in log or "started as" in log, log
            assert WRONG not in log, f"{name} logged the password:\n{log}"
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    daemon_log = "\n".join(hall_daemon.log)
    assert "bad username or password" in daemon_log                       # the broker refused them ...
    assert WRONG not in daemon_log                                          # ... without writing the password


def test_a_bad_url_on_the_command_line_is_not_echoed_with_its_password(capsys):
    from kiosk_ui.app import main_kiosk

    assert main_kiosk(["--mqtt-url", f"mqtt://kiosk-1:{WRONG}@127.0.0.1:notaport", "--hall", "demo"]) == 2
    err = capsys.readouterr().err
    assert "mqtt://kiosk-1:***@127.0.0.1:notaport" in err and WRONG not in err
