"""`hall-display`: the call board on the hall's 46" TV (1920×1080).

The latest call large (flashing while its announcement plays), the calls before it, every window
with its current number or 暂停服务, waiting counts and estimates per service, a scrolling notice,
and "更新于 hh:mm:ss" with a red banner when the daemon is unreachable: a stale board looks stale.
Thin views over `DisplayModel` (pure reducers in display_state) and two Qt table models.
"""

from __future__ import annotations

import argparse
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QPainter
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from hall_controller.clock import Clock, SystemClock

from . import display_state as ds
from .common_state import hall_time_text, hall_zone
from .qr import QrBox
from .qtbus import AppOptions, QtHallBus
from .style import NORMAL, PALETTE, font, stylesheet

# The display acts on calls and announcements; windows, queues and recent calls come retained.
DISPLAY_EVENTS = ("ticket_called", "ticket_recalled", "announcement_started", "announcement_finished", "day_reset")
NUMBER_PX = 230          # the latest call, readable across the hall
WHERE_PX = 72
FLASH_MS = 8000          # an announcement that never says finished stops flashing this long after its end
BLINK_MS = 450
DEFAULT_NOTICE = "请留意叫号，过号请到综合接待窗口咨询 · 12348 公共法律服务热线"

Index = QModelIndex | QPersistentModelIndex


class DisplayModel(QObject):
    """The board's state; reducers run in the UI thread, `changed` after each."""

    changed = Signal()

    def __init__(self, bus: QtHallBus, clock: Clock | None = None, parent: QObject | None = None, *,
                 zone: str | None = None) -> None:
        """`zone`: the config's hall time zone (--config), used until the daemon's status names one."""
        super().__init__(parent)
        self.clock = clock or SystemClock()
        self.bus = bus
        self.fallback_zone = zone
        self.state = ds.DisplayState(zone=hall_zone(None, zone))
        bus.state_changed.connect(self._on_state)
        bus.event.connect(self._on_event)
        bus.connection_changed.connect(self._on_connection)
        for section, key, value in bus.retained():
            self._on_state(section, key, value)
        self._on_connection(bus.broker_online, bus.daemon_online)

    def _set(self, state: ds.DisplayState) -> None:
        if state != self.state:
            self.state = state
            self.changed.emit()

    def _now(self) -> Any:
        return self.clock.now()     # an instant; shown in the hall's zone (DisplayState.zone), never the PC's

    def _on_state(self, section: str, key: Any, value: Any) -> None:
        if section == "calls":
            self._set(ds.with_calls(self.state, value, self._now()))
        elif section == "window":
            self._set(ds.with_window(self.state, key, value, self._now()))
        elif section == "queues":
            self._set(ds.with_queues(self.state, value, self._now()))
        elif section == "hall":
            self._set(ds.with_status(self.state, value, self._now(), self.fallback_zone))

    def _on_event(self, event: dict[str, Any]) -> None:
        self._set(ds.with_event(self.state, event, self._now()))

    def _on_connection(self, broker: bool, daemon: bool) -> None:
        self._set(ds.with_connection(self.state, broker, daemon))

    def stop_flash(self) -> None:
        self._set(ds.stop_flash(self.state))


class HistoryModel(QAbstractTableModel):
    """Calls before the latest one: 号码 | 窗口 | 时间."""

    HEADERS = ("号码", "窗口", "叫号时间")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.calls: tuple[ds.Call, ...] = ()
        self.flashing: tuple[str, str] | None = None
        self.blink = False
        self.zone: str | None = None    # the hall's time zone, for 叫号时间

    def update(self, calls: tuple[ds.Call, ...], flashing: tuple[str, str] | None, blink: bool,
               zone: str | None = None) -> None:
        if (calls, flashing, blink, zone) == (self.calls, self.flashing, self.blink, self.zone):
            return
        self.beginResetModel()
        self.calls, self.flashing, self.blink, self.zone = calls, flashing, blink, zone
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.calls)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        call = self.calls[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            if index.column() == 0:
                return call.number + (f" {call.name_masked}" if call.name_masked else "") + (" (重呼)" if call.recall else "")
            if index.column() == 1:
                return f"{call.window}号窗口" if call.window is not None else "—"
            return hall_time_text(call.at, self.zone, "%H:%M:%S")
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.BackgroundRole and call.key == self.flashing and self.blink:
            return QBrush(QColor(PALETTE.board_highlight))
        if role == Qt.ItemDataRole.ForegroundRole and call.key == self.flashing and self.blink:
            return QBrush(QColor(PALETTE.board))
        return None


class WindowsModel(QAbstractTableModel):
    """One column per window, rows 窗口 / 当前号码 / 状态 (暂停服务 in words, not only in colour):
    eight windows fit across the TV."""

    ROWS = ("窗口", "当前号码", "状态")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: tuple[ds.WindowRow, ...] = ()

    def update(self, rows: tuple[ds.WindowRow, ...]) -> None:
        if rows == self.rows:
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.ROWS)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = self.rows[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return (row.name, row.current_text, row.status_text)[index.row()]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ForegroundRole and row.status == "paused":
            return QBrush(QColor(PALETTE.board_highlight))
        return None


class Marquee(QWidget):
    """The scrolling notice line (the publicity rows of the catalog)."""

    def __init__(self, text: str, px: int) -> None:
        super().__init__()
        self.text = text
        self.offset = 0
        self.setFont(font(px, bold=True))
        self.setMinimumHeight(px * 2)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._step)
        self._timer.start(30)

    def _step(self) -> None:
        width = self.fontMetrics().horizontalAdvance(self.text + "　　　")
        self.offset = (self.offset + 3) % max(width, 1)
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(PALETTE.primary))
        painter.setPen(QColor(PALETTE.primary_text))
        painter.setFont(self.font())
        gap = self.text + "　　　"
        width = self.fontMetrics().horizontalAdvance(gap)
        x = -self.offset
        baseline = (self.height() + self.fontMetrics().ascent() - self.fontMetrics().descent()) // 2
        while x < self.width():
            painter.drawText(x, baseline, gap)
            x += width
        painter.end()


def _css(px: int, colour: str, bold: bool = False, background: str = "transparent") -> str:
    """Label style: sizes go in the style sheet too, since the app's sheet would override setFont."""
    return f"font-size: {px}px; font-weight: {'bold' if bold else 'normal'}; color: {colour}; background: {background};"


def _label(text: str, px: int, *, bold: bool = False, colour: str = PALETTE.board_text,
           align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft) -> QLabel:
    label = QLabel(text)
    label.setFont(font(px, bold=bold))
    label.setStyleSheet(_css(px, colour, bold))
    label.setAlignment(align | Qt.AlignmentFlag.AlignVCenter)
    return label


def _table(model: QAbstractTableModel, px: int, *, header: bool = True) -> QTableView:
    table = QTableView()
    table.setModel(model)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.horizontalHeader().setVisible(header)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    table.verticalHeader().setDefaultSectionSize(int(px * 1.55))
    table.setShowGrid(False)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setSelectionMode(QTableView.SelectionMode.NoSelection)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setStyleSheet(f"""
        QTableView {{ background: {PALETTE.board}; color: {PALETTE.board_text}; border: none;
                      font-size: {px}px; font-weight: bold; }}
        QHeaderView::section {{ background: {PALETTE.board}; color: {PALETTE.board_muted}; border: none;
                                border-bottom: 2px solid {PALETTE.board_muted}; padding: 4px;
                                font-size: {max(px * 3 // 4, 24)}px; }}
    """)
    return table


class DisplayWindow(QWidget):
    def __init__(self, model: DisplayModel, hall_name: str = "公共法律服务中心", notice: str = "", *,
                 hall_url: str | None = None, wifi_qr: str | None = None) -> None:
        """`hall_url`: the phone's hall page (扫码看排队, config web.public_url + "/"); `wifi_qr`: the visitor
        Wi-Fi's join payload (config web.wifi), shown first when set."""
        super().__init__()
        self.model = model
        self.setWindowTitle(f"{hall_name} · 叫号显示屏")
        self.setObjectName("board")
        self.setStyleSheet(stylesheet(NORMAL) + f"""
            QWidget#board {{ background: {PALETTE.board}; }}
            QFrame#panel {{ background: {PALETTE.board}; border: 3px solid {PALETTE.board_muted}; border-radius: 16px; }}
            QFrame#panel[flash="true"] {{ background: {PALETTE.board_highlight}; }}
            QLabel#banner {{ font-size: 36px; }}
        """)
        self.history_model = HistoryModel(self)
        self.windows_model = WindowsModel(self)
        self._blink = False

        root = QVBoxLayout(self)
        root.setContentsMargins(28, 18, 28, 0)
        root.setSpacing(14)
        top = QHBoxLayout()
        top.addWidget(_label(hall_name, 44, bold=True), 1)
        self.updated_label = _label("更新于 --:--:--", 30, colour=PALETTE.board_muted)
        top.addWidget(self.updated_label)
        root.addLayout(top)
        self.banner = QLabel("")
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        root.addWidget(self.banner)

        middle = QHBoxLayout()
        middle.setSpacing(24)
        self.panel = QFrame()
        self.panel.setObjectName("panel")
        panel_layout = QVBoxLayout(self.panel)
        self.now_label = _label("正在呼叫", 44, bold=True, colour=PALETTE.board_muted, align=Qt.AlignmentFlag.AlignCenter)
        self.number_label = _label("——", NUMBER_PX, bold=True, colour=PALETTE.board_highlight,
                                   align=Qt.AlignmentFlag.AlignCenter)
        self.where_label = _label("请留意叫号", WHERE_PX, bold=True, align=Qt.AlignmentFlag.AlignCenter)
        self.name_label = _label("", 40, colour=PALETTE.board_muted, align=Qt.AlignmentFlag.AlignCenter)
        for widget in (self.now_label, self.number_label, self.where_label, self.name_label):
            panel_layout.addWidget(widget)
        middle.addWidget(self.panel, 11)
        right = QVBoxLayout()
        right.addWidget(_label("最近叫号", 34, bold=True, colour=PALETTE.board_muted))
        self.history_view = _table(self.history_model, 36)
        right.addWidget(self.history_view, 1)
        qr_css = f"color: {PALETTE.board_text}; font-size: 26px; font-weight: bold;"
        self.wifi_qr = QrBox("① 先扫码连接大厅Wi-Fi", 210, caption_css=qr_css)
        self.hall_qr = QrBox("② 再扫码看排队" if wifi_qr else "手机扫码看排队", 210, caption_css=qr_css)
        qr_row = QHBoxLayout()
        qr_row.addStretch(1)
        qr_row.addWidget(self.wifi_qr)
        qr_row.addSpacing(28)
        qr_row.addWidget(self.hall_qr)
        qr_row.addStretch(1)
        right.addLayout(qr_row)
        self.hall_qr.set_payload(hall_url)
        self.wifi_qr.set_payload(wifi_qr if hall_url else None)
        middle.addLayout(right, 9)
        root.addLayout(middle, 1)

        self.windows_view = _table(self.windows_model, 30, header=False)
        self.windows_view.setFixedHeight(int(30 * 1.55) * 3 + 6)
        self.windows_view.setStyleSheet(self.windows_view.styleSheet() + f"""
            QTableView {{ border-top: 2px solid {PALETTE.board_muted}; }}""")
        root.addWidget(self.windows_view)
        self.queue_row = QHBoxLayout()
        self.queue_row.setSpacing(12)
        root.addLayout(self.queue_row)
        self.marquee = Marquee(notice or DEFAULT_NOTICE, 34)
        root.addWidget(self.marquee)
        self._queue_labels: list[QLabel] = []

        self._blinker = QTimer(self)
        self._blinker.setInterval(BLINK_MS)
        self._blinker.timeout.connect(self._toggle_blink)
        self._flash_end = QTimer(self)
        self._flash_end.setSingleShot(True)
        self._flash_end.timeout.connect(model.stop_flash)
        self._flashing: tuple[str, str] | None = None
        model.changed.connect(self.render)
        self.render()

    def _toggle_blink(self) -> None:
        self._blink = not self._blink
        self._paint_flash()

    def _paint_flash(self) -> None:
        state = self.model.state
        latest_flash = state.flashing is not None and state.latest is not None and state.flashing == state.latest.key
        on = latest_flash and self._blink
        self.panel.setProperty("flash", "true" if on else "false")
        self.panel.style().unpolish(self.panel)
        self.panel.style().polish(self.panel)
        self.number_label.setStyleSheet(_css(NUMBER_PX, PALETTE.board if on else PALETTE.board_highlight, True))
        self.where_label.setStyleSheet(_css(WHERE_PX, PALETTE.board if on else PALETTE.board_text, True))
        self.history_model.update(state.history, state.flashing, self._blink, state.zone)

    def render(self) -> None:
        state = self.model.state
        latest = state.latest
        if latest is not None:
            self.now_label.setText("重呼" if latest.recall else "正在呼叫")
            self.number_label.setText(latest.number)
            self.where_label.setText(f"请到 {latest.window}号窗口 办理" if latest.window is not None else "请到窗口办理")
            self.name_label.setText(latest.name_masked or "")
        else:
            self.now_label.setText("正在呼叫")
            self.number_label.setText("——")
            self.where_label.setText("请留意叫号")
            self.name_label.setText("")
        self.windows_model.update(state.windows)
        self._render_queues(state)
        self.updated_label.setText(f"更新于 {state.updated_text}")
        offline = state.offline_text
        self.banner.setText(f"⚠ 离线：{offline}" if offline else "")
        self.banner.setVisible(offline is not None)
        self.updated_label.setStyleSheet(_css(30, PALETTE.board_highlight if offline else PALETTE.board_muted))
        if state.flashing != self._flashing:
            self._flashing = state.flashing
            if state.flashing is not None:
                self._blink = True
                self._blinker.start()
                self._flash_end.start(FLASH_MS + round(1000 * state.flash_seconds))
            else:
                self._blink = False
                self._blinker.stop()
                self._flash_end.stop()
        self._paint_flash()

    def _render_queues(self, state: ds.DisplayState) -> None:
        """One tile per service: its name, waiting count and estimate."""
        if len(self._queue_labels) != len(state.services):
            for label in self._queue_labels:
                self.queue_row.removeWidget(label)
                label.deleteLater()
            self._queue_labels = []
            for _ in state.services:
                label = _label("", 26, bold=True, align=Qt.AlignmentFlag.AlignCenter)
                label.setStyleSheet(_css(26, PALETTE.board_text, True) + f"border: 2px solid {PALETTE.board_muted};"
                                    "border-radius: 10px; padding: 6px;")
                self.queue_row.addWidget(label, 1)
                self._queue_labels.append(label)
        for label, info in zip(self._queue_labels, state.services, strict=True):
            label.setText(f"{info.prefix} {info.name}\n等候 {info.waiting} 人"
                          + (f" · {info.estimate}" if info.estimate else ""))


def build(options: AppOptions, bus: QtHallBus, args: argparse.Namespace) -> DisplayWindow:
    config = options.config
    model = DisplayModel(bus, zone=config.timezone if config is not None else None)
    notice = args.notice or (config.display_notice if config is not None else "")
    hall_url = args.web_url or (config.hall_page_url if config is not None else None)
    window = DisplayWindow(model, config.name if config is not None else "公共法律服务中心", notice,
                           hall_url=hall_url, wifi_qr=config.wifi_qr if config is not None else None)
    model.setParent(window)
    return window


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notice", default="", help="scrolling notice (default: display.notice of the config)")
    parser.add_argument("--web-url", default="", help="the phone's hall page shown as a QR code (扫码看排队; "
                                                      "default: web.public_url of the config + /)")
