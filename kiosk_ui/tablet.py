"""`hall-tablet`: the evaluation tablet (排队评价屏幕) at a window.

Idle it shows the clerk's card (photo, name, job number, window, 服务中/暂停服务) and the current
number; on the daemon's `rating_requested` for its window it asks for a rating (five large buttons),
then the optional four dimensions, thanks the visitor and returns to idle. The screens are the pure
state machine of `kiosk_ui.tablet_state`; this module only draws them and sends `rate`.

    hall-tablet --mqtt-url mqtt://tablet-3:PASSWORD@HALL-PC:1883 --hall demo [--window 3]
    hall-tablet --config hall.yaml --client tablet-3
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QRectF, Qt, QTimer, Slot
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from hall_controller.faults import readable

from . import tablet_state as ts
from .qtbus import QtHallBus, RequestFailure, UsageError
from .style import PALETTE, font

PAGES = (ts.IDLE, ts.RATING, ts.DIMENSIONS, ts.THANKS)
SCORE_COLOURS = {5: "#0a6b2f", 4: "#2e7d32", 3: "#0b4ea2", 2: "#8a4b00", 1: "#b00020"}   # white text on each


def _label(text: str = "", px: int = 28, *, bold: bool = False, colour: str | None = None) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    label.setStyleSheet(label_style(px, bold=bold, colour=colour))
    return label


def label_style(px: int, *, bold: bool = False, colour: str | None = None) -> str:
    """Per-label size as a style sheet: the app's sheet sets every widget's font size, which beats setFont."""
    return (f"font-size: {px}px; font-weight: {'bold' if bold else 'normal'}; background: transparent;"
            + (f" color: {colour};" if colour else ""))


def photo_placeholder(name: str, size: int = 220) -> QPixmap:
    """A neutral portrait placeholder until the hall supplies staff photos: a silhouette and the surname."""
    pixmap = QPixmap(size, int(size * 1.25))
    pixmap.fill(QColor(PALETTE.surface))
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor("#9fb3c8"))
    p.drawEllipse(QRectF(size * 0.3, size * 0.15, size * 0.4, size * 0.4))
    p.drawRoundedRect(QRectF(size * 0.15, size * 0.62, size * 0.7, size * 0.7), size * 0.3, size * 0.3)
    p.setPen(QColor(PALETTE.primary_text))
    p.setFont(font(int(size * 0.2), bold=True))
    p.drawText(QRectF(size * 0.3, size * 0.15, size * 0.4, size * 0.4), Qt.AlignmentFlag.AlignCenter, name[:1])
    p.end()
    return pixmap


class TabletView(QWidget):
    """`now()` is a monotonic clock in seconds (the screens' timeouts); tests pass their own."""

    def __init__(self, bus: QtHallBus, window: int, *, now: Callable[[], float] = time.monotonic,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bus, self.window, self.now = bus, window, now
        # what the bus already holds (a view built after the bus connected), then every change
        self.state = ts.on_window(ts.TabletState(window=window, since=now()), bus.client.state.windows.get(window),
                                  now())
        self.setWindowTitle(f"{window}号窗口 · 服务评价")
        self._build()
        bus.state_changed.connect(self._on_state)
        bus.event.connect(self._on_event)
        bus.online_changed.connect(lambda _online: self._render())
        self._ticker = QTimer(self)
        self._ticker.timeout.connect(self.tick)
        self._ticker.start(500)
        self._render()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(24, 24, 24, 24)
        self.banner = QLabel("网络连接中断，暂时无法评价")
        self.banner.setObjectName("banner")
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        root.addWidget(self.banner)
        self.pages = QStackedWidget()
        root.addWidget(self.pages, 1)
        self.pages.addWidget(self._build_idle())
        self.pages.addWidget(self._build_rating())
        self.pages.addWidget(self._build_dimensions())
        self.pages.addWidget(self._build_thanks())

    def _build_idle(self) -> QWidget:
        page = QWidget()
        row = QHBoxLayout(page)
        card = QFrame()
        card.setObjectName("card")
        box = QHBoxLayout(card)
        self.photo = QLabel()
        box.addWidget(self.photo)
        info = QVBoxLayout()
        self.name_label = _label("", 56, bold=True)
        self.job_label = _label("", 30)
        self.window_label = _label(f"{self.window}号窗口", 36, bold=True, colour=PALETTE.primary)
        self.service_label = _label("", 32, bold=True)
        for widget in (self.name_label, self.job_label, self.window_label, self.service_label):
            info.addWidget(widget)
        box.addLayout(info, 1)
        row.addWidget(card, 3)
        current = QFrame()
        current.setObjectName("card")
        cbox = QVBoxLayout(current)
        cbox.addWidget(_label("当前办理", 32))
        self.current_label = _label("—", 120, bold=True, colour=PALETTE.primary)
        cbox.addWidget(self.current_label)
        row.addWidget(current, 2)
        return page

    def _build_rating(self) -> QWidget:
        page = QWidget()
        box = QVBoxLayout(page)
        box.addWidget(_label("请您对本次服务作出评价", 48, bold=True))
        self.rating_info = _label("", 30, colour=PALETTE.muted)
        box.addWidget(self.rating_info)
        row = QHBoxLayout()
        self.score_buttons: dict[int, QPushButton] = {}
        for score, text in ts.SCORES:
            button = QPushButton(text)
            button.setMinimumSize(200, 220)
            button.setStyleSheet(f"QPushButton {{ background: {SCORE_COLOURS[score]}; color: #ffffff;"
                                 f" font-size: 36px; border-radius: 24px; }}")
            button.clicked.connect(lambda _=False, s=score: self.choose_score(s))
            row.addWidget(button)
            self.score_buttons[score] = button
        box.addLayout(row, 1)
        self.rating_error = _label("", 28, colour=PALETTE.alert)
        box.addWidget(self.rating_error)
        return page

    def _build_dimensions(self) -> QWidget:
        page = QWidget()
        box = QVBoxLayout(page)
        self.dims_title = _label("", 40, bold=True)
        box.addWidget(self.dims_title)
        box.addWidget(_label("可选：请对以下方面分别评价，也可直接提交", 26, colour=PALETTE.muted))
        grid = QGridLayout()
        self.dimension_buttons: dict[tuple[str, int], QPushButton] = {}
        for r, name in enumerate(ts.DIMENSIONS_NAMES):
            grid.addWidget(_label(name, 32, bold=True), r, 0)
            for c, (score, text) in enumerate(ts.SCORES):
                button = QPushButton(text)
                button.setCheckable(True)
                button.setObjectName("secondary")
                button.setStyleSheet(f"QPushButton {{ font-size: 24px; }} QPushButton:checked {{"
                                     f" background: {PALETTE.primary}; color: {PALETTE.primary_text}; }}")
                button.clicked.connect(lambda _=False, n=name, s=score: self.choose_dimension(n, s))
                grid.addWidget(button, r, c + 1)
                self.dimension_buttons[(name, score)] = button
        box.addLayout(grid, 1)
        row = QHBoxLayout()
        self.back_button = QPushButton("返回重选")
        self.back_button.setObjectName("secondary")
        self.back_button.clicked.connect(self.back)
        self.skip_button = QPushButton("跳过，直接提交")
        self.skip_button.setObjectName("secondary")
        self.skip_button.clicked.connect(lambda: self.submit(with_dimensions=False))
        self.submit_button = QPushButton("提交评价")
        self.submit_button.clicked.connect(lambda: self.submit(with_dimensions=True))
        row.addWidget(self.back_button, 1)
        row.addWidget(self.skip_button, 1)
        row.addWidget(self.submit_button, 2)
        box.addLayout(row)
        self.dims_error = _label("", 28, colour=PALETTE.alert)
        box.addWidget(self.dims_error)
        return page

    def _build_thanks(self) -> QWidget:
        page = QWidget()
        box = QVBoxLayout(page)
        box.addStretch(1)
        box.addWidget(_label("感谢您的评价！", 72, bold=True, colour=PALETTE.ok))
        self.thanks_note = _label("您的意见是我们改进工作的动力", 36, colour=PALETTE.muted)
        box.addWidget(self.thanks_note)
        box.addStretch(1)
        return page

    # ------------------------------------------------------------------ input
    @Slot(str, object, object)
    def _on_state(self, section: str, key: Any, value: Any) -> None:
        if section == "window":
            self.state = ts.on_window(self.state, value, self.now())
            self._render()

    @Slot(dict)
    def _on_event(self, event: dict) -> None:
        self.state = ts.on_event(self.state, event, self.now())
        self._render()

    def choose_score(self, score: int) -> None:
        self.state = ts.choose_score(self.state, score, self.now())
        self._render()

    def choose_dimension(self, name: str, score: int) -> None:
        self.state = ts.choose_dimension(self.state, name, score, self.now())
        self._render()

    def back(self) -> None:
        self.state = ts.back(self.state, self.now())
        self._render()

    def submit(self, *, with_dimensions: bool) -> None:
        self.state, rate = ts.submit(self.state, self.now(), with_dimensions=with_dimensions)
        self._send(rate)

    def tick(self) -> None:
        before = self.state
        self.state, rate = ts.tick(self.state, self.now())
        self._send(rate)
        if self.state is not before:
            self._render()

    def _send(self, rate: ts.Rate | None) -> None:
        if rate is not None:
            self.bus.request("rate", self._rated, self._rate_failed, **rate.args())
        self._render()

    def _rated(self, _result: dict) -> None:
        self.state = ts.on_rate_reply(self.state, self.now(), ok=True)
        self._render()

    def _rate_failed(self, failure: RequestFailure) -> None:
        message = ("网络连接中断，请稍后再试" if failure.code in ("offline", "timeout")
                   else readable(failure.message, "评价提交失败，请稍后再试"))
        self.state = ts.on_rate_reply(self.state, self.now(), ok=False, code=failure.code, message=message)
        self._render()

    # ------------------------------------------------------------------ rendering
    def _render(self) -> None:
        s = self.state
        online = self.bus.online
        self.banner.setVisible(not online)
        self.pages.setCurrentIndex(PAGES.index(s.screen))
        staff = s.staff
        name = str(staff.get("name")) if staff else "暂无工作人员"
        self.photo.setPixmap(photo_placeholder(name if staff else "—"))
        self.name_label.setText(name)
        self.job_label.setText(f"工号 {staff.get('job_number')}" if staff else "")
        self.service_label.setText(s.service_text)
        colour = {"服务中": PALETTE.ok, "暂停服务": PALETTE.alert}.get(s.service_text, PALETTE.muted)
        self.service_label.setStyleSheet(label_style(32, bold=True, colour=colour))
        self.current_label.setText(s.current_number or "—")
        number = (s.request or {}).get("number", "")
        who = f" · {name}" if staff else ""
        self.rating_info.setText(f"{number}号 · {self.window}号窗口{who}")
        self.dims_title.setText(f"总体评价：{dict(ts.SCORES).get(s.score or 0, '')}")
        for (dim, score), button in self.dimension_buttons.items():
            chosen = s.dimensions.get(dim) == score
            button.setChecked(chosen)
            button.setText(("✓ " if chosen else "") + dict(ts.SCORES)[score])
        live = online and not s.sending
        for button in self.score_buttons.values():
            button.setEnabled(live)
        for button in (self.submit_button, self.skip_button, self.back_button):
            button.setEnabled(live)
        self.thanks_note.setText(s.note or "您的意见是我们改进工作的动力")
        self.rating_error.setText(s.error or "")
        self.dims_error.setText(s.error or ("正在提交……" if s.sending else ""))


def tablet_window(options: Any, args: argparse.Namespace) -> int:
    """--window, else the config's client entry, else a client id `tablet-N`."""
    if args.window is not None:
        return int(args.window)
    if options.config is not None:
        client = next((c for c in options.config.clients if c.id == options.client_id), None)
        if client is not None and client.window is not None:
            return client.window
    match = re.fullmatch(r"tablet-(\d+)", options.client_id)
    if match:
        return int(match.group(1))
    raise UsageError(f"无法确定 {options.client_id} 所在的窗口，请加 --window N")


def main_tablet(argv: list[str] | None = None) -> int:
    from .appkit import run_app

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--window", type=int, help="window number (default: from the config or the client id)")

    return run_app("hall-tablet", "服务评价屏 / rating tablet",
                   lambda options, bus, args: TabletView(bus, tablet_window(options, args)),
                   role="tablet", default_client="tablet-1", size=(1280, 800), add_arguments=arguments,
                   argv=argv, bus_options=lambda options, args: {"window": tablet_window(options, args)})
