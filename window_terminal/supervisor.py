"""The supervisor view (值班长/大厅主任): every window with its current visit and time limit, overdue
visits, devices offline, upstream dead letters, open 差评 with the follow-up form, today's counts.

Runs as a window client bound to no window (the sample hall's `supervisor`) or as the admin: it reads
every window's retained state and every event, and asks `status` for the day's counts. The follow-up is
the daemon's `resolve_bad_rating` {ticket, note}; both ops are all the daemon lets such a client do.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hall_controller.clock import Clock
from kiosk_ui.qtbus import QtHallBus, RequestFailure
from kiosk_ui.style import PALETTE

from . import state as st
from .terminal import _label, _table, failure_text, fill_table, seed_state

log = logging.getLogger(__name__)

ROW_COLOURS = {st.AMBER: ("#f2c14e", "#1a1a1a"), st.RED: (PALETTE.alert, PALETTE.alert_text)}


class SupervisorView(QWidget):
    def __init__(self, bus: QtHallBus, *, clock: Clock, staff_names: dict[str, str] | None = None,
                 parent: QWidget | None = None, zone: str | None = None) -> None:
        """`zone`: the config's hall time zone (--config), used until the daemon's status names one."""
        super().__init__(parent)
        self.bus, self.clock = bus, clock
        self.state = st.apply_status(st.SupervisorState(counts_since=clock.now()), None, zone)
        self.staff_names = dict(staff_names or {})
        self.busy = False
        self.setWindowTitle("大厅值班长 · 服务监督")
        self._build()
        bus.state_changed.connect(self._on_state)
        bus.event.connect(self._on_event)
        bus.online_changed.connect(self._on_online)
        seed_state(bus, self._on_state)
        self._ticker = QTimer(self)
        self._ticker.timeout.connect(self._render)
        self._ticker.start(1000)
        if bus.online:
            self._on_online(True)
        self._render()

    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        self.banner = _label("与大厅服务断开连接，正在重连……显示的可能不是最新情况", "banner", wrap=True)
        root.addWidget(self.banner)
        header = QHBoxLayout()
        header.addWidget(_label("大厅服务监督", "title"), 1)
        self.counts_label = _label("", "muted")
        header.addWidget(self.counts_label)
        root.addLayout(header)
        body = QHBoxLayout()
        root.addLayout(body, 1)
        left = QVBoxLayout()
        body.addLayout(left, 3)
        right = QVBoxLayout()
        body.addLayout(right, 2)

        left.addWidget(_label("各窗口", "muted"))
        self.window_table = _table(["窗口", "状态", "工作人员", "当前号", "业务", "时限"])
        for col in (0, 1, 3):          # short columns fit their text; the clerk's name and job number keep room
            self.window_table.horizontalHeader().setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        left.addWidget(self.window_table, 2)
        left.addWidget(_label("超时提醒", "muted"))
        self.overdue_list = QListWidget()
        left.addWidget(self.overdue_list, 1)

        bad = QFrame()
        bad.setObjectName("card")
        bbox = QVBoxLayout(bad)
        bbox.addWidget(_label("待回访差评", "title"))
        self.bad_table = _table(["号码", "窗口", "工作人员", "评价", "时间"])
        self.bad_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        bbox.addWidget(self.bad_table, 1)
        self.follow_up = QLineEdit()
        self.follow_up.setPlaceholderText("回访/整改情况（必填）")
        self.follow_up.returnPressed.connect(self._resolve)
        bbox.addWidget(self.follow_up)
        self.resolve_button = QPushButton("记录回访 Enter")
        self.resolve_button.clicked.connect(self._resolve)
        bbox.addWidget(self.resolve_button)
        self.message = _label("", "accent", wrap=True)
        bbox.addWidget(self.message)
        right.addWidget(bad, 2)
        right.addWidget(_label("离线设备", "muted"))
        self.device_list = QListWidget()
        right.addWidget(self.device_list, 1)
        right.addWidget(_label(st.DEAD_LETTER_TITLE, "muted"))
        self.dead_list = QListWidget()
        right.addWidget(self.dead_list, 1)
        for sentences in (self.device_list, self.dead_list):     # each row says what to do: show it whole
            sentences.setWordWrap(True)
            sentences.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    # ------------------------------------------------------------------ input
    @Slot(str, object, object)
    def _on_state(self, section: str, key: Any, value: Any) -> None:
        self.state = st.sup_apply_state(self.state, section, key, value)
        if section == "window" and isinstance(value, dict) and isinstance(value.get("staff"), dict):
            staff = value["staff"]
            self.staff_names.setdefault(str(staff.get("id")), str(staff.get("name")))
        self._render()

    @Slot(dict)
    def _on_event(self, event: dict) -> None:
        self.state = st.sup_apply_event(self.state, event, self.clock.now())
        self._render()

    @Slot(bool)
    def _on_online(self, online: bool) -> None:
        if online:   # the hall day's counts and the open 差评, from the daemon
            self.bus.request("status", lambda snap: self._snapshot(snap),
                             lambda failure: log.warning("supervisor: no status from the daemon (%s)", failure.code))
        self._render()

    def _snapshot(self, snapshot: dict) -> None:
        self.state = st.sup_apply_snapshot(self.state, snapshot)
        self._render()

    # ------------------------------------------------------------------ follow-up
    def selected_bad_rating(self) -> st.BadRating | None:
        row = self.bad_table.currentRow()
        entries = self._bad_entries()
        return entries[row] if 0 <= row < len(entries) else (entries[0] if len(entries) == 1 else None)

    def _bad_entries(self) -> list[st.BadRating]:
        return sorted(self.state.bad_ratings.values(), key=lambda b: b.at)

    def _resolve(self) -> None:
        entry = self.selected_bad_rating()
        note = self.follow_up.text().strip()
        if entry is None:
            self._say("请先选择一条差评", error=True)
            return
        if not note:
            self._say("请填写回访/整改情况", error=True)
            return
        if self.busy or not self.bus.online:
            return
        self.busy = True
        self._render()

        def done(_result: dict) -> None:
            self.busy = False
            self.state = st.sup_resolved(self.state, entry.ticket_id)
            self.follow_up.clear()
            self._say(f"{entry.number}号差评已记录回访")
            self._render()

        def failed(failure: RequestFailure) -> None:
            self.busy = False
            self._say(failure_text(failure), error=True)
            self._render()
        self.bus.request("resolve_bad_rating", done, failed, ticket=entry.ticket_id, note=note)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setStyleSheet(f"color: {PALETTE.alert if error else PALETTE.ok}; font-weight: bold;")
        self.message.setText(text)

    # ------------------------------------------------------------------ rendering
    def _render(self) -> None:
        s = self.state
        self.banner.setVisible(not self.bus.online)
        self.counts_label.setText(st.counts_text(s))
        rows = st.window_rows(s, self.clock.now())
        fill_table(self.window_table, [[f"{r['number']}号", r["status"] + (f"（{r['reason']}）" if r["reason"] else ""),
                                        r["staff"], r["ticket"], r["service"], r["time"]] for r in rows])
        for i, r in enumerate(rows):
            if r["level"] in ROW_COLOURS:
                bg, fg = ROW_COLOURS[r["level"]]
                for col in range(self.window_table.columnCount()):
                    item = self.window_table.item(i, col)
                    item.setBackground(QColor(bg))
                    item.setForeground(QColor(fg))
        self.overdue_list.clear()
        for level, event in s.overdue.values():
            ticket = event.get("ticket") or {}
            what = "已超时" if level == st.RED else "即将超时"
            self.overdue_list.addItem(f"{event.get('window')}号窗口 {ticket.get('number')}号{what}"
                                      f"（时限{event.get('limit_minutes', '?')}分钟）")
        selected = self.selected_bad_rating()
        entries = self._bad_entries()
        fill_table(self.bad_table, [[b.number, f"{b.window}号", self.staff_names.get(b.staff_id or "", b.staff_id or ""),
                                     st.SCORE_TEXT.get(b.score, str(b.score)), s.time_text(b.at)] for b in entries])
        if selected in entries:
            self.bad_table.selectRow(entries.index(selected))
        self.device_list.clear()
        for device_id, info in s.devices_offline:
            self.device_list.addItem(f"{device_id}：离线（{st.device_problem(info)}）")
        self.dead_list.clear()
        for event in s.dead_letters:
            self.dead_list.addItem(f"{s.time_text(event.get('ts'))} {st.dead_letter_text(event)}")
        self.resolve_button.setEnabled(self.bus.online and not self.busy and bool(entries))
