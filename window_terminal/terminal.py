"""The window clerk's terminal: login, the current visit, one button (and key) per window op, the
window's queues, today's served list, reception (代为取号) for 综合接待岗 clerks, and scans.

Everything the daemon says arrives through QtHallBus signals and goes through the pure reducers of
`window_terminal.state`; every op is sent off the UI thread, and all op buttons stay disabled while
one is in flight or while the hall is unreachable, so a double click never sends an op twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hall_controller.clock import Clock
from hall_controller.faults import readable
from hall_controller.redact import is_secret_key
from kiosk_ui.common_state import hall_time_text
from kiosk_ui.qtbus import QtHallBus, RequestFailure
from kiosk_ui.style import PALETTE

from . import state as st
from .camera import DocumentCamera, Scan

log = logging.getLogger(__name__)

LEVEL_STYLE = {
    st.NORMAL: f"background: {PALETTE.surface}; color: {PALETTE.text};",
    st.AMBER: "background: #f2c14e; color: #1a1a1a;",
    st.RED: f"background: {PALETTE.alert}; color: {PALETTE.alert_text};",
}
LEVEL_WORD = {st.NORMAL: "", st.AMBER: "（即将超时）", st.RED: "（已超时）"}
PAUSE_REASONS = ("会议", "休息", "外出协调", "系统故障", "其他")
GREEN_REASONS = ("农民工欠薪", "残疾人", "军人军属", "低保、特困人员", "未成年人", "其他")
RECEPTION_KINDS = (("walk_in", "现场代取号"), ("appointment", "电话/信函预约签到"), ("green", "绿色通道"),
                   ("will", "80周岁以上老人免费遗嘱"), ("elderly", "老年人优先"))
WILL_REASON = "80周岁以上老人免费遗嘱"
RATING_PROMPT = "已办结，请群众在评价器上评价"
FAILURE_TEXT = {"offline": "与大厅服务断开连接，请稍后再试", "timeout": "大厅服务未响应，请重试",
                "internal": "大厅服务出错，操作未完成，请重试；仍不行请联系管理员",
                "error": "操作未完成，请重试；仍不行请联系管理员"}


def failure_text(failure: RequestFailure) -> str:
    """What the clerk reads when an op fails: the daemon's Chinese message, never raw error text."""
    return FAILURE_TEXT.get(failure.code) or readable(failure.message, FAILURE_TEXT["error"])


def loggable_args(args: dict[str, Any]) -> dict[str, Any]:
    """An op's arguments as the log may hold them: no secret (the login PIN) and no scan image."""
    return {k: v for k, v in args.items() if k != "image" and not is_secret_key(k)}


@dataclass(frozen=True)
class Op:
    key: str            # name of the button (and of the op it starts)
    label: str
    shortcut: str


OPS = (
    Op("call_next", "叫下一位", "F1"), Op("call_number", "按号呼叫", "F2"), Op("recall", "重呼", "F3"),
    Op("start", "开始办理", "F4"), Op("finish", "办结", "F5"), Op("skip", "过号", "F6"),
    Op("transfer", "转移", "F7"), Op("return_to_first", "退回首问", "F8"), Op("pause", "暂停服务", "F9"),
    Op("resume", "恢复服务", "Shift+F9"), Op("print_notice", "打印告知单", "F10"), Op("scan", "高拍仪拍照", "F11"),
    Op("reception", "代为取号", "F12"), Op("logout", "退出登录", "Ctrl+Q"),
)


def _label(text: str = "", name: str | None = None, *, wrap: bool = False) -> QLabel:
    label = QLabel(text)
    if name:
        label.setObjectName(name)
    label.setWordWrap(wrap)
    return label


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    return table


def fill_table(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            item.setToolTip(text)           # a narrow column elides; the whole text is a hover away
            table.setItem(r, c, item)


def fit_rows(table: QTableWidget, rows: int) -> None:
    """Make a short table exactly as tall as its header and `rows` rows (at least one), so the lists
    below it get the rest of the column."""
    body = sum(table.rowHeight(r) for r in range(min(rows, table.rowCount())))
    body += table.verticalHeader().defaultSectionSize() * max(0, max(rows, 1) - table.rowCount())
    table.setFixedHeight(table.horizontalHeader().sizeHint().height() + body + 2 * table.frameWidth())


def seed_state(bus: QtHallBus, apply: Callable[[str, Any, Any], None]) -> None:
    """Feed the retained state the bus already holds (a view built after the bus connected)."""
    held = bus.client.state
    apply("hall", None, held.hall)
    apply("queues", None, held.queues)
    for number, view in held.windows.items():
        apply("window", number, view)
    for device_id, info in held.devices.items():
        apply("device", device_id, info)


class Form(QFrame):
    """A side-panel form with a title, fields, a confirm button (Enter) and 取消 (Esc)."""

    def __init__(self, title: str, confirm: str, on_confirm: Callable[[], None], on_cancel: Callable[[], None]):
        super().__init__()
        self.setObjectName("card")
        self.body = QVBoxLayout(self)
        self.body.addWidget(_label(title, "title"))
        self.fields = QVBoxLayout()
        self.body.addLayout(self.fields)
        self.body.addStretch(1)
        buttons = QHBoxLayout()
        self.confirm = QPushButton(confirm)
        self.confirm.clicked.connect(on_confirm)
        self.cancel = QPushButton("取消 Esc")
        self.cancel.setObjectName("secondary")
        self.cancel.clicked.connect(on_cancel)
        buttons.addWidget(self.confirm, 2)
        buttons.addWidget(self.cancel, 1)
        self.body.addLayout(buttons)
        for key in ("Return", "Enter"):
            enter = QShortcut(QKeySequence(key), self)
            enter.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            enter.activated.connect(self.confirm.click)      # click() does nothing while disabled

    def add(self, label: str | None, widget: QWidget) -> QWidget:
        if label:
            self.fields.addWidget(_label(label, "muted"))
        self.fields.addWidget(widget)
        return widget


class WindowTerminal(QWidget):
    """One window's terminal. `clock.now()` gives business time (SystemClock, or a ManualClock in tests)."""

    def __init__(self, bus: QtHallBus, window: int, *, clock: Clock, camera: DocumentCamera | None = None,
                 staff_names: dict[str, str] | None = None, parent: QWidget | None = None,
                 zone: str | None = None) -> None:
        """`zone`: the config's hall time zone (--config), used until the daemon's status names one."""
        super().__init__(parent)
        self.bus, self.window, self.clock, self.camera = bus, window, clock, camera
        self.state = st.apply_status(st.TerminalState(window=window), None, zone)
        self.staff_names = dict(staff_names or {})
        self.windows: dict[int, dict[str, Any]] = {}       # every window's state, for the transfer picker
        self.busy: str | None = None                       # the op in flight
        self.scan: Scan | None = None                      # captured, not attached yet
        self._served_rows: list[list[str]] | None = None   # the served table as drawn
        self.setWindowTitle(f"{window}号窗口 · 窗口呼叫软件")
        self._build()
        bus.state_changed.connect(self._on_state)
        bus.event.connect(self._on_event)
        bus.online_changed.connect(self._on_online)
        seed_state(bus, self._on_state)
        self._ticker = QTimer(self)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start(1000)
        if bus.online:
            self._ask_day()
        self._render()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        self.banner = _label("与大厅服务断开连接，正在重连……操作已暂停", "banner", wrap=True)
        root.addWidget(self.banner)
        header = QHBoxLayout()
        self.header = _label(f"{self.window}号窗口", "title")
        self.status_label = _label("", "muted")
        header.addWidget(self.header, 1)
        header.addWidget(self.status_label)
        root.addLayout(header)
        self.pages = QStackedWidget()
        self.pages.addWidget(self._build_login())
        self.pages.addWidget(self._build_work())
        root.addWidget(self.pages, 1)
        self.message = _label("", "accent", wrap=True)
        root.addWidget(self.message)

    def _build_login(self) -> QWidget:
        page = QWidget()
        outer = QVBoxLayout(page)
        outer.addStretch(1)
        card = QFrame()
        card.setObjectName("card")
        card.setMaximumWidth(560)
        form = QVBoxLayout(card)
        form.addWidget(_label("工作人员登录", "title"))
        self.job_edit = QLineEdit()
        self.job_edit.setPlaceholderText("工号，如 1001")
        self.pin_edit = QLineEdit()
        self.pin_edit.setPlaceholderText("密码")
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        form.addWidget(_label("工号", "muted"))
        form.addWidget(self.job_edit)
        form.addWidget(_label("密码", "muted"))
        form.addWidget(self.pin_edit)
        self.login_button = QPushButton("登录")
        self.login_button.clicked.connect(self._login)
        self.job_edit.returnPressed.connect(self.pin_edit.setFocus)
        self.pin_edit.returnPressed.connect(self._login)
        form.addWidget(self.login_button)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(card)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)
        return page

    def _build_work(self) -> QWidget:
        page = QWidget()
        grid = QHBoxLayout(page)
        left = QVBoxLayout()
        grid.addLayout(left, 3)
        right = QVBoxLayout()
        grid.addLayout(right, 2)

        visit = QFrame()
        visit.setObjectName("card")
        vbox = QVBoxLayout(visit)
        top = QHBoxLayout()
        self.number_label = _label("—")
        self.number_label.setStyleSheet(f"font-size: 84px; font-weight: bold; color: {PALETTE.primary};")
        top.addWidget(self.number_label)
        self.visit_status = _label("", "title")
        top.addWidget(self.visit_status, 1, Qt.AlignmentFlag.AlignRight)
        vbox.addLayout(top)
        self.visit_info = _label("当前没有办理中的号", wrap=True)
        vbox.addWidget(self.visit_info)
        self.countdown_label = _label("")
        self.countdown_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.countdown_label.setMinimumHeight(64)
        vbox.addWidget(self.countdown_label)
        left.addWidget(visit)

        buttons = QGridLayout()
        self.buttons: dict[str, QPushButton] = {}
        self.shortcuts: dict[str, QShortcut] = {}
        handlers = {"call_next": lambda: self._send("call_next"), "recall": lambda: self._send("recall"),
                    "start": lambda: self._send("start"), "skip": lambda: self._send("skip"),
                    "return_to_first": lambda: self._send("return_to_first"),
                    "resume": lambda: self._send("resume"), "logout": lambda: self._send("logout"),
                    "scan": self._capture}
        for i, op in enumerate(OPS):
            button = QPushButton(f"{op.label}\n{op.shortcut}")
            button.setMinimumHeight(84)
            button.setStyleSheet("padding: 6px 4px;")     # four characters fit a fifth of a 1366 px screen's column
            button.clicked.connect(handlers.get(op.key) or (lambda _=False, k=op.key: self._open_form(k)))
            if op.key == "logout":
                button.setObjectName("secondary")
            buttons.addWidget(button, i // 5, i % 5)
            self.buttons[op.key] = button
            shortcut = QShortcut(QKeySequence(op.shortcut), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(button.click)      # click() does nothing on a disabled button
            self.shortcuts[op.key] = shortcut
        left.addLayout(buttons)
        left.addWidget(_label("本窗口等候情况", "muted"))
        self.queue_table = _table(["业务", "等候人数", "预计等待"])
        self.queue_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2):
            self.queue_table.horizontalHeader().setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        left.addWidget(self.queue_table)                  # as tall as its rows (fit_rows)
        left.addStretch(1)

        # The right column's first page holds the day's finished visits with the reminders below, only
        # as tall as they need (the forms take the page's place while open): a 1366×768 screen shows
        # a dozen finished visits.
        self.side = QStackedWidget()
        right.addWidget(self.side, 1)
        lists = QWidget()
        lbox = QVBoxLayout(lists)
        lbox.setContentsMargins(0, 0, 0, 0)
        self.served_title = _label("今日已办结", "muted")
        lbox.addWidget(self.served_title)
        self.served_table = _table(["号码", "业务", "办结时间", "结果", "评价"])
        header = self.served_table.horizontalHeader()
        for col in range(5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch if col in (1, 3)
                                        else QHeaderView.ResizeMode.ResizeToContents)
        lbox.addWidget(self.served_table, 1)
        alerts = QFrame()
        alerts.setObjectName("card")
        abox = QVBoxLayout(alerts)
        abox.setContentsMargins(8, 4, 8, 4)
        abox.addWidget(_label("提醒", "muted"))
        self.alert_list = QListWidget()
        self.alert_list.setWordWrap(True)
        abox.addWidget(self.alert_list)
        self.no_alerts = _label("暂无提醒")
        abox.addWidget(self.no_alerts)
        lbox.addWidget(alerts)
        self.side.addWidget(lists)
        self.forms: dict[str, Form] = {}
        self._build_forms()
        Esc = QShortcut(QKeySequence("Esc"), self)
        Esc.activated.connect(self._close_form)
        return page

    def _build_forms(self) -> None:
        f = self._form("call_number", "按号呼叫", "呼叫", self._confirm_call_number)
        self.number_edit = f.add("号码（如 A012）", QLineEdit())

        f = self._form("finish", "办结", "确认办结", self._confirm_finish)
        self.outcome_combo = f.add("办理结果", QComboBox())
        for code, text in st.OUTCOMES.items():
            self.outcome_combo.addItem(text, code)
        self.note_edit = f.add("备注（可选）", QLineEdit())

        f = self._form("transfer", "转移", "确认转移", self._confirm_transfer)
        kinds = QHBoxLayout()
        self.to_service = QRadioButton("转其他业务")
        self.to_window = QRadioButton("转指定窗口")
        self.to_service.setChecked(True)
        group = QButtonGroup(f)
        group.addButton(self.to_service)
        group.addButton(self.to_window)
        kinds.addWidget(self.to_service)
        kinds.addWidget(self.to_window)
        box = QWidget()
        box.setLayout(kinds)
        f.add(None, box)
        self.transfer_list = f.add("转往", QListWidget())
        self.to_service.toggled.connect(self._fill_transfer_list)
        self.transfer_note = f.add("转移说明（可选）", QLineEdit())

        f = self._form("pause", "暂停服务", "确认暂停", self._confirm_pause)
        self.pause_combo = f.add("暂停原因", QComboBox())
        self.pause_combo.setEditable(True)
        self.pause_combo.addItems(PAUSE_REASONS)

        f = self._form("print_notice", "一次性告知单", "打印", self._confirm_notice)
        self.notice_combo = f.add("业务", QComboBox())
        self.notice_text = f.add(None, _label("", wrap=True))

        f = self._form("scan", "高拍仪拍照", "附加到本次业务", self._confirm_attach)
        self.scan_preview = f.add(None, QLabel("（尚未拍照）"))
        self.scan_preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scan_preview.setMinimumHeight(360)
        retake = QPushButton("重拍")
        retake.setObjectName("secondary")
        retake.clicked.connect(self._capture)
        self.retake_button = f.add(None, retake)

        f = self._form("reception", "代为取号（综合接待）", "取号", self._confirm_reception)
        self.reception_kind = f.add("类别", QComboBox())
        for code, text in RECEPTION_KINDS:
            self.reception_kind.addItem(text, code)
        self.reception_service = f.add("业务", QComboBox())
        self.appointment_edit = f.add("预约码（预约签到时填写）", QLineEdit())
        self.green_combo = f.add("绿色通道事由", QComboBox())
        self.green_combo.setEditable(True)
        self.green_combo.addItems(GREEN_REASONS)
        self.reception_result = f.add(None, _label("", wrap=True))
        self.reception_result.setStyleSheet(f"font-size: 40px; font-weight: bold; color: {PALETTE.primary};")
        self.reception_kind.currentIndexChanged.connect(self._reception_fields)
        self._reception_fields()

    def _form(self, key: str, title: str, confirm: str, on_confirm: Callable[[], None]) -> Form:
        form = Form(title, f"{confirm} Enter", on_confirm, self._close_form)
        self.forms[key] = form
        self.side.addWidget(form)
        return form

    # ------------------------------------------------------------------ bus input
    @Slot(str, object, object)
    def _on_state(self, section: str, key: Any, value: Any) -> None:
        if section == "window" and isinstance(key, int):
            if isinstance(value, dict):
                self.windows[key] = value
                staff = value.get("staff")
                if isinstance(staff, dict) and staff.get("id"):
                    self.staff_names.setdefault(str(staff["id"]), str(staff.get("name") or staff["id"]))
            else:
                self.windows.pop(key, None)
            if key == self.window:
                self.state = st.apply_window(self.state, value)
        elif section == "queues":
            self.state = st.apply_queues(self.state, value)
        elif section == "hall":
            self.state = st.apply_status(self.state, value)
        else:
            return
        self._render()

    @Slot(dict)
    def _on_event(self, event: dict) -> None:
        before = self.state
        self.state = st.apply_event(self.state, event, self.clock.now())
        if self.state is not before:
            self._render()

    @Slot(bool)
    def _on_online(self, online: bool) -> None:
        if online:
            self._ask_day()
        self._render()

    def _ask_day(self) -> None:
        """The window's finished visits of the hall day, from the daemon (also those finished before this
        terminal started or while it was away); events after the summary's seq keep it current."""
        self.bus.request("day_summary", self._on_day,
                         lambda failure: log.warning("window %s: no day summary from the daemon (%s)",
                                                     self.window, failure.code))

    def _on_day(self, summary: dict) -> None:
        self.state = st.apply_summary(self.state, summary)
        self._render()

    def _tick(self) -> None:
        """Every second: the countdown, ratings whose time ran out (未评价), the rating prompt."""
        self._render_visit()
        self._render_served()

    # ------------------------------------------------------------------ sending ops
    def _send(self, op: str, on_ok: Callable[[dict], None] | None = None, **args: Any) -> None:
        if self.busy is not None or not self.bus.online:
            return
        self.busy = op
        self._render_buttons()
        log.info("window %s: %s %s", self.window, op, loggable_args(args))
        self.bus.request(op, lambda result: self._done(op, result, on_ok), self._failed, **args)

    def _done(self, op: str, result: dict, on_ok: Callable[[dict], None] | None) -> None:
        self.busy = None
        self.state = st.apply_reply(self.state, op, result)
        ticket = result.get("ticket") if isinstance(result.get("ticket"), dict) else None
        texts = {"call_next": f"请{ticket['number']}号到{self.window}号窗口" if ticket else "当前没有等候的号",
                 "call_number": f"已呼叫{ticket['number']}号" if ticket else "", "recall": "已重呼",
                 "start": "开始办理", "finish": "已办结，群众已评价" if ticket and ticket.get("rating") else RATING_PROMPT,
                 "skip": "已过号",
                 "transfer": "已转移", "return_to_first": "已退回首问责任人", "pause": "已暂停服务",
                 "resume": "已恢复服务", "logout": "已退出登录", "login": "登录成功"}
        self._say(texts.get(op, ""))
        if on_ok:
            on_ok(result)
        if op in ("finish", "transfer", "return_to_first", "pause", "call_number", "attach_scan", "logout"):
            self._close_form()
        self._render()

    def _failed(self, failure: RequestFailure) -> None:
        self.busy = None
        self._say(failure_text(failure), error=True)      # the raw reply is in the log (QtHallBus)
        self._render()

    def _say(self, text: str, *, error: bool = False) -> None:
        colour = PALETTE.alert if error else PALETTE.ok
        self.message.setStyleSheet(f"color: {colour}; font-weight: bold;")
        self.message.setText(text)

    # ------------------------------------------------------------------ actions
    def _login(self) -> None:
        job, pin = self.job_edit.text().strip(), self.pin_edit.text()
        if not job or not pin:
            self._say("请输入工号和密码", error=True)
            return
        self.pin_edit.clear()
        self._send("login", staff_id=job, pin=pin)

    def _open_form(self, key: str) -> None:
        if key == "transfer":
            self._fill_transfer_list()
        elif key == "print_notice":
            self._fill_services(self.notice_combo, (self.state.ticket or {}).get("service"))
            self.notice_text.setText("")
        elif key == "reception":
            self._fill_services(self.reception_service, None)
            self.reception_result.setText("")
        elif key == "call_number":
            self.number_edit.clear()
        elif key == "finish":
            self.note_edit.clear()
            self.outcome_combo.setCurrentIndex(0)
        form = self.forms[key]
        self.side.setCurrentWidget(form)
        first = {"call_number": self.number_edit, "finish": self.outcome_combo, "transfer": self.transfer_list,
                 "pause": self.pause_combo, "reception": self.reception_kind}.get(key)
        (first or form.confirm).setFocus()
        self._render_buttons()

    def _close_form(self) -> None:
        self.side.setCurrentIndex(0)

    def _fill_services(self, combo: QComboBox, select: str | None) -> None:
        combo.clear()
        for code, entry in self.state.queues.items():
            if isinstance(entry, dict):
                combo.addItem(str(entry.get("name") or code), code)
        if select is not None and combo.findData(select) >= 0:
            combo.setCurrentIndex(combo.findData(select))

    def _fill_transfer_list(self) -> None:
        self.transfer_list.clear()
        current = (self.state.ticket or {}).get("service")
        if self.to_service.isChecked():
            for code, entry in self.state.queues.items():
                if isinstance(entry, dict) and code != current:
                    item = QListWidgetItem(f"{entry.get('name') or code}（等候{entry.get('waiting', 0)}人）")
                    item.setData(Qt.ItemDataRole.UserRole, ("service", code))
                    self.transfer_list.addItem(item)
        else:
            for number in sorted(self.windows):
                if number == self.window:
                    continue
                view = self.windows[number]
                staff = view.get("staff") if isinstance(view.get("staff"), dict) else None
                who = f"{staff.get('name')}，" if staff else ""
                item = QListWidgetItem(f"{number}号窗口（{who}{st.STATUS_TEXT.get(view.get('status'), '')}）")
                item.setData(Qt.ItemDataRole.UserRole, ("window", number))
                self.transfer_list.addItem(item)
        if self.transfer_list.count():
            self.transfer_list.setCurrentRow(0)

    def _confirm_call_number(self) -> None:
        number = self.number_edit.text().strip().upper()
        if not number:
            self._say("请输入号码", error=True)
            return
        self._send("call_number", number=number)

    def _confirm_finish(self) -> None:
        note = self.note_edit.text().strip()
        self._send("finish", outcome=self.outcome_combo.currentData(), **({"note": note} if note else {}))

    def _confirm_transfer(self) -> None:
        item = self.transfer_list.currentItem()
        if item is None:
            self._say("请选择转往的业务或窗口", error=True)
            return
        kind, target = item.data(Qt.ItemDataRole.UserRole)
        note = self.transfer_note.text().strip()
        self._send("transfer", **{kind: target}, **({"note": note} if note else {}))

    def _confirm_pause(self) -> None:
        reason = self.pause_combo.currentText().strip()
        self._send("pause", **({"reason": reason} if reason else {}))

    def _confirm_notice(self) -> None:
        def show(result: dict) -> None:
            notice = result.get("notice") if isinstance(result.get("notice"), dict) else {}
            lines = notice.get("lines") or notice.get("materials") or []
            body = "\n".join(str(x) for x in lines) if isinstance(lines, list) else str(lines)
            self.notice_text.setText(f"{notice.get('title') or '一次性告知单'}\n{body}".strip())
            self._say("告知单已发送打印")
        self._send("print_notice", show, service=self.notice_combo.currentData())

    def _reception_fields(self) -> None:
        kind = self.reception_kind.currentData()
        self.appointment_edit.setEnabled(kind == "appointment")
        self.green_combo.setEnabled(kind == "green")

    def _confirm_reception(self) -> None:
        kind = self.reception_kind.currentData()
        args: dict[str, Any] = {"service": self.reception_service.currentData()}
        if kind == "appointment":
            code = self.appointment_edit.text().strip()
            if not code:
                self._say("请输入预约码", error=True)
                return
            args["appointment_code"] = code
        elif kind in ("green", "will"):
            reason = WILL_REASON if kind == "will" else self.green_combo.currentText().strip()
            if not reason:
                self._say("请填写绿色通道事由", error=True)
                return
            args.update(priority="green", green_reason=reason)
        elif kind == "elderly":
            args["priority"] = "elderly"

        def issued(result: dict) -> None:
            ticket = result.get("ticket") or {}
            label = st.PRIORITY_TEXT.get(ticket.get("priority"), "")
            self.reception_result.setText(f"{ticket.get('number')}（{label}）")
            self._say(f"已取号 {ticket.get('number')}，请交给群众")
        self._send("issue_ticket", issued, **args)

    def _capture(self) -> None:
        if self.camera is None:
            self._say("未连接高拍仪", error=True)
            return
        if self.state.ticket is None:
            self._say("请先呼叫并办理一个号，再拍照", error=True)
            return
        self.side.setCurrentWidget(self.forms["scan"])
        self._say("正在拍照……")
        self.camera.capture(self._captured, lambda message: self._say(message, error=True))

    def _captured(self, scan: Scan) -> None:
        self.scan = scan
        pixmap = QPixmap.fromImage(scan.image).scaled(self.scan_preview.width() or 320, 360,
                                                      Qt.AspectRatioMode.KeepAspectRatio,
                                                      Qt.TransformationMode.SmoothTransformation)
        self.scan_preview.setPixmap(pixmap)
        self._say(f"已拍摄（{scan.image.width()}×{scan.image.height()}，{len(scan.jpeg) // 1024} KB），请确认后附加")
        self._render_buttons()

    def _confirm_attach(self) -> None:
        ticket = self.state.ticket
        if self.scan is None or ticket is None:
            self._say("没有可附加的照片", error=True)
            return

        def attached(result: dict) -> None:
            self.scan = None
            self.scan_preview.setText("（尚未拍照）")
            count = len((result.get("ticket") or {}).get("scans") or ())
            self._say("这张照片已附加过" if result.get("duplicate") else f"扫描件已附加（本次业务共{count}份）")
        self._send("attach_scan", attached, ticket=ticket["id"], image=self.scan.payload())

    # ------------------------------------------------------------------ rendering
    def _render(self) -> None:
        s = self.state
        online = self.bus.online
        self.banner.setVisible(not online)
        self.pages.setCurrentIndex(1 if s.logged_in else 0)
        staff = s.staff
        if staff:
            self.header.setText(f"{self.window}号窗口 · {staff.get('name')}（工号{staff.get('job_number')}，"
                                f"{staff.get('position')}）")
        else:
            self.header.setText(f"{self.window}号窗口 · 未登录")
        status = st.STATUS_TEXT.get(s.status, s.status)
        reason = (s.view or {}).get("paused_reason")
        self.status_label.setText(f"{status}（{reason}）" if s.status == "paused" and reason else status)
        queues = s.window_queues()
        fill_table(self.queue_table, [[name, str(waiting), est] for _, name, waiting, est in queues])
        fit_rows(self.queue_table, len(queues))
        self.alert_list.clear()
        self.alert_list.addItems(list(s.alerts))
        self.alert_list.setVisible(bool(s.alerts))
        self.alert_list.setFixedHeight(min(len(s.alerts), 3) * (self.alert_list.sizeHintForRow(0) if s.alerts else 0)
                                       + 2 * self.alert_list.frameWidth() + 4)
        self.no_alerts.setVisible(not s.alerts)
        self._render_served()
        self._render_visit()
        self._render_buttons()

    def _render_served(self) -> None:
        """The day's finished visits, newest first, with their rating as of now; redrawn when it changes.
        The rating prompt after 办结 is taken down once the visit is rated or its rating time is over."""
        s, now = self.state, self.clock.now()
        rows = [[e.number, st.service_name(s.queues, e.service), hall_time_text(e.finished_at, s.zone),
                 st.OUTCOMES.get(e.outcome, e.outcome), e.rating_text_at(now)] for e in s.served]
        if rows != self._served_rows:
            self._served_rows = rows
            fill_table(self.served_table, rows)
            total = s.finished_total if s.finished_total is not None else len(s.served)
            self.served_title.setText(f"今日已办结（{total}）")
        if self.message.text() == RATING_PROMPT and not st.awaiting_rating(s, now):
            self._say("")

    def _render_visit(self) -> None:
        visit = st.visit_view(self.state.view, self.state.queues, self.clock.now(), self.staff_names,
                              zone=self.state.zone)
        if visit is None:
            self.number_label.setText("—")
            self.visit_status.setText("")
            self.visit_info.setText("当前没有办理中的号。按 F1 叫下一位。")
            self.countdown_label.setText("")
            self.countdown_label.setStyleSheet(LEVEL_STYLE[st.NORMAL])
            self.countdown_level = st.NORMAL
            return
        self.number_label.setText(visit.number)
        self.visit_status.setText(visit.status_text)
        lines = [f"业务：{visit.service_name}　　等候：{visit.waited_minutes}分钟",
                 f"群众：{visit.holder}　　类别：{visit.priority_text}"
                 + (f"（{visit.green_reason}）" if visit.green_reason else "")
                 + (f"　{visit.appointment}" if visit.appointment else ""),
                 f"首问责任人：{visit.first_officer or '—'}"
                 + (f"　　已转移{visit.transfers}次" if visit.transfers else "")
                 + (f"　　扫描件{visit.scans}份" if visit.scans else "")
                 + (f"　　已重呼{visit.recall_count}次" if visit.recall_count else "")]
        self.visit_info.setText("\n".join(lines))
        cd = visit.countdown
        if cd is None:
            self.countdown_label.setText("叫号中，群众到达后请按 F4 开始办理" if visit.status == "called" else "")
            self.countdown_label.setStyleSheet(LEVEL_STYLE[st.NORMAL])
        else:
            self.countdown_label.setText(f"办理时限{cd.limit_minutes:g}分钟 · {cd.text}{LEVEL_WORD[cd.level]}")
            self.countdown_label.setStyleSheet(LEVEL_STYLE[cd.level] + " font-size: 30px; font-weight: bold;"
                                               " border-radius: 12px; padding: 8px;")
        self.countdown_level = cd.level if cd else st.NORMAL

    def enabled_ops(self) -> set[str]:
        """The ops that make sense now (the daemon checks again; this only spares the clerk a refusal)."""
        s = self.state
        if not s.logged_in:
            return set()
        ticket = s.ticket
        status = (ticket or {}).get("status")
        paused = s.status == "paused"
        ops = {"print_notice"}
        if s.is_reception:
            ops.add("reception")
        if ticket is None:
            ops |= {"resume", "logout"} if paused else {"call_next", "call_number", "pause", "logout"}
        else:
            ops |= {"finish", "transfer", "scan"}
            if status == "called":
                ops |= {"recall", "start", "skip"}
            if ticket.get("first_officer") and ticket.get("first_officer") != (s.staff or {}).get("id"):
                ops.add("return_to_first")
        return ops

    def _render_buttons(self) -> None:
        live = self.bus.online and self.busy is None
        allowed = self.enabled_ops() if live else set()
        for key, button in self.buttons.items():
            button.setEnabled(key in allowed)
        self.login_button.setEnabled(live)
        open_form = self.side.currentWidget()
        for key, form in self.forms.items():
            ok = live and (key in allowed or key in ("scan",) and "scan" in allowed)
            if key == "scan":
                ok = ok and self.scan is not None
            form.confirm.setEnabled(ok and form is open_form)
        self.retake_button.setEnabled(live and "scan" in allowed)
