"""Start-up shared by every Qt app: command line, QApplication, placing the window, clean exit.

An app's `main()` is `run_app(name, description, build, role=...)` where `build(options, bus)`
returns the top-level widget. The bus connects in the background, so the window shows at once
(with its offline screen) even when the hall PC is not up yet.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

from hall_controller.logsetup import setup_logging

from .qtbus import AppOptions, QtHallBus, UsageError, add_common_arguments, options_from_args
from .style import PALETTE, apply_style

log = logging.getLogger(__name__)

Builder = Callable[[AppOptions, QtHallBus, argparse.Namespace], QWidget]


def application(argv: Sequence[str] | None = None) -> QApplication:
    """The process's QApplication (created once)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
    assert isinstance(app, QApplication)
    return app


def place_window(widget: QWidget, options: AppOptions, size: tuple[int, int]) -> None:
    """Full screen on screen N (the default for public screens), or a window of `size` with --windowed."""
    screens = QApplication.screens()
    if options.screen is not None and not 0 <= options.screen < len(screens):
        log.warning("screen %s not found (%d screens): using the first", options.screen, len(screens))
    screen = screens[options.screen] if options.screen is not None and 0 <= options.screen < len(screens) else (
        QApplication.primaryScreen())
    if options.windowed:
        widget.resize(*size)
        if screen is not None:
            widget.move(screen.availableGeometry().topLeft())
        widget.show()
        return
    if screen is not None:
        widget.setGeometry(screen.geometry())
    widget.showFullScreen()


class RefusedOverlay(QWidget):
    """Covers the whole app when it cannot work at all: the broker refused its client id or password.

    The app would otherwise sit on its offline screen (正在重新连接…) forever, since a refused client
    stops retrying; this says what happened and who can fix it, in the words of every app alike."""

    def __init__(self, parent: QWidget, message: str, client_id: str = "") -> None:
        super().__init__(parent)
        self.setObjectName("refusedOverlay")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet(f"""
            QWidget#refusedOverlay {{ background: {PALETTE.background}; }}
            QLabel {{ background: transparent; }}
            QLabel#refusedTitle {{ color: {PALETTE.alert}; font-size: 72px; font-weight: bold; }}
            QLabel#refusedText {{ color: {PALETTE.text}; font-size: 36px; font-weight: bold; }}
            QLabel#refusedClient {{ color: {PALETTE.muted}; font-size: 24px; }}
        """)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        self.title = QLabel("暂停服务")
        self.title.setObjectName("refusedTitle")
        self.text = QLabel(message)
        self.text.setObjectName("refusedText")
        self.text.setWordWrap(True)
        # which account the administrator has to fix (hallctl client add ID)
        self.client = QLabel(f"本机账号：{client_id}" if client_id else "")
        self.client.setObjectName("refusedClient")
        for label in (self.title, self.text, self.client):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            layout.addWidget(label)
        layout.addStretch(2)
        parent.installEventFilter(self)
        self.setGeometry(parent.rect())
        self.raise_()
        self.show()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if watched is self.parent() and event.type() in (QEvent.Type.Resize, QEvent.Type.ChildAdded):
            self.setGeometry(self.parent().rect())
            self.raise_()
        return False


def show_refused(widget: QWidget, bus: QtHallBus) -> None:
    """Put RefusedOverlay over `widget` once `bus` is refused by the broker (at once if it already was)."""
    def show(message: str) -> None:
        if widget.findChild(RefusedOverlay) is None:
            RefusedOverlay(widget, message, bus.client.client_id)

    def hide() -> None:   # a broker certificate put right: the app works again
        for overlay in widget.findChildren(RefusedOverlay):
            overlay.hide()
            overlay.deleteLater()

    bus.fatal.connect(show)
    bus.recovered.connect(hide)
    if bus.refused:
        show(bus.refused)


def run_app(prog: str, description: str, build: Builder, *, role: str, default_client: str,
            size: tuple[int, int], events: str | list[str] | tuple[str, ...] | None = None,
            add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
            argv: Sequence[str] | None = None,
            bus_options: Callable[[AppOptions, argparse.Namespace], dict[str, Any]] | None = None) -> int:
    """Parse the common command line, connect the bus, show the widget, run until closed or signalled.

    `bus_options(options, args)` may override the bus's `role`, `window` and `events` once the command
    line is known (a tablet's window, a supervisor's events)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_common_arguments(parser, default_client)
    parser.add_argument("--log-level", default="INFO")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        options = options_from_args(args)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    app = application([prog])
    apply_style(app)
    bus_kwargs: dict[str, Any] = {"role": role, "events": events}
    if bus_options:
        try:
            bus_kwargs.update(bus_options(options, args))
        except UsageError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 2
    bus = QtHallBus.from_options(options, **bus_kwargs)
    widget = build(options, bus, args)
    show_refused(widget, bus)
    # Python handles SIGINT/SIGTERM only when it runs: a timer lets it in every 200 ms. Installed before
    # the bus starts, so a stop request is never met by the default handler (no offline status then).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: app.quit())
    place_window(widget, options, size)
    bus.start()
    wake = QTimer()
    wake.start(200)
    wake.timeout.connect(lambda: None)
    app.aboutToQuit.connect(bus.close)
    log.info("%s: started as %s on %s:%s (hall %s)", prog, options.client_id, options.host, options.port,
             options.hall_id)
    code = app.exec()
    bus.close()
    # Tear down in order while Qt still runs: left to the interpreter's exit, PySide may destroy the
    # widgets, the bus and the application in any order (a crash after a clean quit).
    wake.stop()
    widget.deleteLater()
    bus.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    app.shutdown()
    return code
