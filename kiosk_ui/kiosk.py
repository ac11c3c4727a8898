"""`hall-kiosk`: the touch ticket machine (DORY DL-6009 screen), for visitors who are often elderly.

Thin views over `KioskModel`, which holds a `KioskState` and applies the pure reducers of
kiosk_state to what arrives from the bus. Screens: start (one big button per service with its
waiting count and estimate, the card zone), result, 办事指南, closed and offline (暂停取号).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from hall_controller.clock import Clock, SystemClock
from hall_controller.faults import VISITOR_PRINT_FAILED, readable

from . import kiosk_state as ks
from .common_state import hall_time_text, hall_zone
from .qr import QrBox
from .qtbus import AppOptions, QtHallBus, RequestFailure
from .style import LARGE, NORMAL, PALETTE, TextScale, stylesheet

log = logging.getLogger(__name__)

SCHEDULE_CHECK_MS = 30_000


class KioskModel(QObject):
    """The kiosk's state as a Qt object: reducers applied in the UI thread, `changed` after each."""

    changed = Signal()
    card_dropped = Signal()     # the card greeted was dropped (by the daemon or 取消): back to the start screen

    def __init__(self, bus: QtHallBus, config: Any = None, clock: Clock | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bus = bus
        self.config = config
        self.clock = clock or SystemClock()
        # the hall's time zone (the daemon's status, else the config's): the clock and times are shown in it
        self.zone = hall_zone(None, config.timezone if config is not None else None)
        self.state = ks.KioskState(guide=ks.guide_from_config(config) if config is not None else ())
        self._last_touch_sent = float("-inf")
        bus.state_changed.connect(self._on_state)
        bus.connection_changed.connect(self._on_connection)
        bus.card.connect(self._on_card)
        for section, key, value in bus.retained():
            self._on_state(section, key, value)
        self._on_connection(bus.broker_online, bus.daemon_online)
        self._schedule = QTimer(self)
        self._schedule.setInterval(SCHEDULE_CHECK_MS)
        self._schedule.timeout.connect(self.check_schedule)
        self._schedule.start()
        self.check_schedule()

    def _set(self, state: ks.KioskState) -> None:
        if state != self.state:
            self.state = state
            self.changed.emit()

    # -- from the bus
    def _on_state(self, section: str, key: Any, value: Any) -> None:
        if section == "queues":
            self._set(ks.with_queues(self.state, value))
        elif section == "hall":
            zone = hall_zone(value, self.config.timezone if self.config is not None else None) or self.zone
            if zone != self.zone:
                self.zone = zone
                self.changed.emit()

    def time_text(self, moment: Any, fmt: str = "%H:%M") -> str:
        """A time of day as the kiosk shows it: in hall time (dashes until the hall's zone is known)."""
        return hall_time_text(moment, self.zone, fmt)

    def _on_connection(self, broker: bool, daemon: bool) -> None:
        self._set(ks.with_connection(self.state, broker, daemon))
        if broker and daemon:
            self.check_schedule()
            if not self.state.guide:
                self.bus.request("service_guide", self._on_guide, lambda f: log.info("no service guide: %s", f))

    def _on_card(self, card: dict[str, Any]) -> None:
        before = self.state.card
        self._set(ks.with_card(self.state, card, time.monotonic()))
        if before is not None and self.state.card is None:
            self.card_dropped.emit()

    # -- the card held for this kiosk (the daemon enforces the same rules: see HallService "cards")
    def cancel_card(self) -> None:
        """取消 / 不是本人: the daemon forgets the card at once; the kiosk goes back to its start screen."""
        if self.state.card is None:
            return
        self._drop_card()
        self._set(ks.with_card_dropped(self.state))
        self.card_dropped.emit()

    def _drop_card(self) -> None:
        if self.state.card is not None and self.state.card.usable:
            self.bus.request("drop_card", None, lambda f: log.info("drop_card not answered: %s", f.code))

    def touched(self) -> None:
        """The visitor touched the screen while a card is greeted: the daemon keeps a removed card alive."""
        card = self.state.card
        now = time.monotonic()
        if card is None or not card.usable or now - self._last_touch_sent < ks.CARD_TOUCH_EVERY_S:
            return
        self._last_touch_sent = now
        self.bus.request("card_touch", None, lambda f: log.info("card_touch not answered: %s", f.code))

    def _on_guide(self, result: dict[str, Any]) -> None:
        self._set(ks.with_guide(self.state, ks.guide_from_reply(result)))

    def check_schedule(self) -> None:
        """With the hall config the kiosk knows the opening hours; without it a `closed` reply tells,
        and the closed screen is lifted again after a while so the next press asks the daemon."""
        if self.config is not None:
            now = self.clock.now()
            self._set(ks.with_schedule(self.state, self.config.is_open(now), self.config.closed_text(now)))
        elif self.state.closed_message is not None:
            self._set(ks.with_schedule(self.state, True))

    # -- visitor actions
    def issue(self, service: str, appointment_code: str | None = None) -> bool:
        """Ask the daemon for a ticket (with the card when one is present). False when refused locally."""
        if not self.state.can_issue:
            return False
        args: dict[str, Any] = {"service": service}
        if ks.card_valid(self.state, time.monotonic()) is not None:
            args["use_card"] = True
        if appointment_code:
            args["appointment_code"] = appointment_code
        self._set(ks.with_request(self.state))
        self.bus.request("issue_ticket", self._on_issued, self._on_failed, **args)
        return True

    def _on_issued(self, reply: dict[str, Any]) -> None:
        self._set(ks.with_issued(self.state, reply))

    def _on_failed(self, failure: RequestFailure) -> None:
        self._set(ks.with_failure(self.state, failure.code, failure.message))

    def print_notice(self, service: str, done: Any) -> None:
        """打印告知单 at this kiosk's printer; `done(text)` gets what to tell the visitor."""
        def ok(result: dict[str, Any]) -> None:
            done("告知单未能打印，请拍照或记下所需材料" if result.get("printed") is False else "告知单已打印，请在出票口取走")

        self.bus.request("print_notice", ok, lambda f: done(ks.ERROR_TEXTS.get(f.code) or readable(
            f.message, "告知单未能打印，请拍照或记下所需材料")), service=service)

    def go_home(self) -> None:
        """Back to the start screen (idle, 完成): a card still greeted is dropped at the daemon too."""
        self._drop_card()
        self._set(ks.home(self.state))


# ----------------------------------------------------------------------------------------------- views


def _label(text: str = "", name: str = "", *, wrap: bool = True, align: Qt.AlignmentFlag | None = None) -> QLabel:
    label = QLabel(text)
    if name:
        label.setObjectName(name)
    label.setWordWrap(wrap)
    if align is not None:
        label.setAlignment(align)
    return label


class ServiceButton(QPushButton):
    """One service: its name, prefix, waiting count and estimate, all on one big touch target.

    A service no staffed window serves says 暂无窗口办理 under its name, in the outlined style, and stays
    tappable: staffing changes by the minute (a clerk logs in after the doors open, another is at lunch),
    the daemon issues its numbers in order, and a visitor who came for it keeps a place in line."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code
        self.setObjectName("service")
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def show_info(self, info: Any) -> None:
        lines = [f"{info.name}  ({info.prefix})", f"等候 {info.waiting} 人"]
        if info.estimate:
            lines[1] += f" · 预计{info.estimate}"
        if info.unstaffed:
            lines.insert(1, ks.UNSTAFFED_TEXT)
        self.setText("\n".join(lines))
        self.setAccessibleName(f"取号：{info.name}，" + (f"{ks.UNSTAFFED_TEXT}，" if info.unstaffed else "")
                               + f"等候{info.waiting}人")
        if self.property("unstaffed") != info.unstaffed:
            self.setProperty("unstaffed", info.unstaffed)
            self.style().unpolish(self)
            self.style().polish(self)


class KioskWindow(QWidget):
    def __init__(self, model: KioskModel, hall_name: str = "公共法律服务中心", *, portrait: bool = False,
                 wifi_qr: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.portrait = portrait
        self.wifi_qr = wifi_qr          # the visitor Wi-Fi's join QR (config web.wifi), shown beside the ticket's
        self.scale: TextScale = NORMAL
        self.setWindowTitle(f"{hall_name} · 自助取号")
        self._buttons: dict[str, ServiceButton] = {}
        self._guide_service: str | None = None
        self._card_style: tuple[str, TextScale] | None = None

        root = QVBoxLayout(self)
        root.setContentsMargins(24, 16, 24, 16)
        root.setSpacing(12)
        header = QHBoxLayout()
        self.hall_label = _label(hall_name, "title", wrap=False)
        self.clock_label = _label("", "clock", wrap=False)
        self.large_button = QPushButton("大字模式")
        self.large_button.setObjectName("secondary")
        self.large_button.setCheckable(True)
        self.large_button.toggled.connect(self.set_large)
        self.guide_button = QPushButton("办事指南")
        self.guide_button.setObjectName("secondary")
        self.guide_button.clicked.connect(self.show_guide)
        header.addWidget(self.hall_label, 1)
        header.addWidget(self.clock_label)
        header.addWidget(self.large_button)
        header.addWidget(self.guide_button)
        root.addLayout(header)

        self.stack = QStackedWidget()
        root.addWidget(self.stack, 1)
        self.home_page = self._build_home()
        self.result_page = self._build_result()
        self.guide_page = self._build_guide()
        self.detail_page = self._build_detail()
        self.closed_page, self.closed_text = self._build_paused("当前不在服务时间")
        self.offline_page, self.offline_text = self._build_paused("系统连接中断，正在重新连接…\n请稍候或联系工作人员")
        for page in (self.home_page, self.result_page, self.guide_page, self.detail_page, self.closed_page,
                     self.offline_page):
            self.stack.addWidget(page)

        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.timeout.connect(self.return_home)
        self._tick = QTimer(self)
        self._tick.timeout.connect(self._update_clock)
        self._tick.start(1000)
        self._update_clock()
        QApplication.instance().installEventFilter(self)   # any touch restarts the idle timer
        model.changed.connect(self.render)
        model.card_dropped.connect(self._on_card_dropped)
        model.changed.connect(self._update_clock)     # the hall's time zone may arrive after the first tick
        self.apply_scale()
        self.render()

    # -- pages
    def _build_home(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setSpacing(16)
        layout.addWidget(_label("请选择办理业务，点击即可取号", "title"))
        self.card_panel = QFrame()
        self.card_panel.setObjectName("card")
        card_layout = QVBoxLayout(self.card_panel)
        self.card_title = _label("刷身份证取号：请将身份证放在读卡区", "")
        self.card_detail = _label("老年人刷身份证可优先办理；已预约的请刷身份证签到", "muted")
        self.appointment_box = QVBoxLayout()
        # whose card is active, and the way out for the next visitor or a wrong card: always on the greeting
        self.cancel_card_button = QPushButton("取消 / 不是本人")
        self.cancel_card_button.setObjectName("secondary")
        self.cancel_card_button.setAccessibleName("取消刷证，清除身份证信息")
        self.cancel_card_button.clicked.connect(self.model.cancel_card)
        self.cancel_card_button.hide()
        title_row = QHBoxLayout()
        title_row.addWidget(self.card_title, 1)
        title_row.addWidget(self.cancel_card_button)
        card_layout.addLayout(title_row)
        card_layout.addWidget(self.card_detail)
        card_layout.addLayout(self.appointment_box)
        layout.addWidget(self.card_panel)
        self.message_label = _label("", "banner")
        self.message_label.hide()
        layout.addWidget(self.message_label)
        self.grid = QGridLayout()
        self.grid.setSpacing(16)
        layout.addLayout(self.grid, 1)
        return page

    def _build_result(self) -> QWidget:
        page = QFrame()
        layout = QVBoxLayout(page)
        layout.setSpacing(10)
        self.result_greeting = _label("", "title", align=Qt.AlignmentFlag.AlignCenter)
        self.result_caption = _label("您的号码", "", align=Qt.AlignmentFlag.AlignCenter)
        self.result_number = _label("", "", wrap=False, align=Qt.AlignmentFlag.AlignCenter)
        self.result_number.setObjectName("ticketNumber")
        self.result_service = _label("", "title", align=Qt.AlignmentFlag.AlignCenter)
        self.result_ahead = _label("", "", align=Qt.AlignmentFlag.AlignCenter)
        self.result_estimate = _label("", "accent", align=Qt.AlignmentFlag.AlignCenter)
        self.result_print = _label("", "", align=Qt.AlignmentFlag.AlignCenter)
        self.done_button = QPushButton("完成，返回首页")
        self.done_button.clicked.connect(self.return_home)
        for widget in (self.result_greeting, self.result_caption, self.result_number, self.result_service,
                       self.result_ahead, self.result_estimate, self.result_print):
            layout.addWidget(widget)
        # the ticket's phone page (the QR printed on the ticket) and, first, the visitor Wi-Fi to reach it
        self.result_wifi_qr = QrBox("① 先扫此码连接大厅Wi-Fi", 240)
        self.result_visit_qr = QrBox("手机扫码查看排队进度", 240)
        qr_row = QHBoxLayout()
        qr_row.addStretch(1)
        qr_row.addWidget(self.result_wifi_qr)
        qr_row.addSpacing(48)
        qr_row.addWidget(self.result_visit_qr)
        qr_row.addStretch(1)
        layout.addLayout(qr_row)
        layout.addStretch(1)
        layout.addWidget(self.done_button)
        return page

    def _build_guide(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(_label("办事指南：请选择要了解的业务", "title"))
        self.guide_grid = QGridLayout()
        self.guide_grid.setSpacing(16)
        layout.addLayout(self.guide_grid)
        layout.addStretch(1)
        back = QPushButton("返回首页")
        back.setObjectName("secondary")
        back.clicked.connect(self.show_home)     # a card greeted stays: the visitor only looked something up
        layout.addWidget(back)
        return page

    def _build_detail(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.detail_title = _label("", "title")
        self.detail_description = _label("", "")
        self.detail_materials = _label("", "")
        self.detail_materials.setTextFormat(Qt.TextFormat.PlainText)
        self.detail_status = _label("", "accent")
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        inner = QWidget()
        inner_layout = QVBoxLayout(inner)
        for widget in (self.detail_title, self.detail_description, _label("请携带以下材料：", "title"),
                       self.detail_materials, self.detail_status):
            inner_layout.addWidget(widget)
        inner_layout.addStretch(1)
        scroll.setWidget(inner)
        layout.addWidget(scroll, 1)
        row = QHBoxLayout()
        self.print_button = QPushButton("打印告知单")
        self.print_button.clicked.connect(self._print_notice)
        self.detail_take = QPushButton("取号")
        self.detail_take.clicked.connect(lambda: self._guide_service and self._issue(self._guide_service))
        back = QPushButton("返回")
        back.setObjectName("secondary")
        back.clicked.connect(self.show_guide)
        row.addWidget(self.print_button)
        row.addWidget(self.detail_take)
        row.addWidget(back)
        layout.addLayout(row)
        return page

    def _build_paused(self, text: str) -> tuple[QWidget, QLabel]:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addStretch(1)
        big = _label("暂停取号", "", align=Qt.AlignmentFlag.AlignCenter)
        big.setObjectName("pausedTitle")
        detail = _label(text, "title", align=Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(big)
        layout.addWidget(detail)
        layout.addStretch(2)
        return page, detail

    # -- rendering
    def set_large(self, on: bool) -> None:
        self.scale = LARGE if on else NORMAL
        self.large_button.setText("标准字体" if on else "大字模式")
        self.apply_scale()
        self.render()

    def apply_scale(self) -> None:
        s = self.scale
        self.setStyleSheet(stylesheet(s) + f"""
            QLabel#ticketNumber {{ font-size: {s.huge}px; font-weight: bold; color: {PALETTE.primary}; }}
            QPushButton#service {{ font-size: {s.title}px; }}
            QPushButton#service[unstaffed="true"] {{ background: {PALETTE.surface}; color: {PALETTE.primary};
                                                    border: 3px dashed {PALETTE.primary}; }}
            QPushButton#service[unstaffed="true"]:disabled {{ color: {PALETTE.muted}; border-color: {PALETTE.muted}; }}
            QLabel#clock {{ font-size: {s.title}px; font-weight: bold; }}
            QLabel#pausedTitle {{ font-size: {s.huge // 2}px; font-weight: bold; color: {PALETTE.alert}; }}
        """)

    def render(self) -> None:
        state = self.model.state
        pages = {"offline": self.offline_page, "closed": self.closed_page, "result": self.result_page}
        current = self.stack.currentWidget()
        if state.screen in pages:
            self.stack.setCurrentWidget(pages[state.screen])
        elif current not in (self.guide_page, self.detail_page):
            self.stack.setCurrentWidget(self.home_page)
        self.guide_button.setEnabled(state.screen != "offline" and bool(state.guide))
        if state.closed_message:
            self.closed_text.setText(state.closed_message)
        self._render_services(state)
        self._render_card(state)
        self._render_result(state)
        self.detail_take.setEnabled(state.can_issue)
        if state.message:
            self.message_label.setText(state.message)
        self.message_label.setVisible(bool(state.message))
        if state.screen == "result":
            self._idle.start(ks.RESULT_RETURN_S * 1000)

    def _render_services(self, state: ks.KioskState) -> None:
        columns = 2 if self.portrait else 3
        codes = [s.code for s in state.services]
        if codes != list(self._buttons):
            for button in self._buttons.values():
                self.grid.removeWidget(button)
                button.deleteLater()
            self._buttons = {}
            for i, info in enumerate(state.services):
                button = ServiceButton(info.code)
                button.clicked.connect(lambda _=False, c=info.code: self._issue(c))
                self.grid.addWidget(button, i // columns, i % columns)
                self._buttons[info.code] = button
            self._render_guide_list(state)
        for info in state.services:
            self._buttons[info.code].show_info(info)
            self._buttons[info.code].setEnabled(state.can_issue)

    def _render_guide_list(self, state: ks.KioskState) -> None:
        while self.guide_grid.count():
            item = self.guide_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        entries = state.guide or tuple(ks.GuideEntry(s.code, s.name, "", ()) for s in state.services)
        for i, entry in enumerate(entries):
            button = QPushButton(entry.name)
            button.setObjectName("secondary")
            button.setMinimumHeight(110)
            button.clicked.connect(lambda _=False, c=entry.code: self.show_detail(c))
            self.guide_grid.addWidget(button, i // 2, i % 2)

    def _render_card(self, state: ks.KioskState) -> None:
        while self.appointment_box.count():
            item = self.appointment_box.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        card = ks.card_valid(state, time.monotonic()) if state.card and state.card.usable else state.card
        self.cancel_card_button.setVisible(card is not None and card.usable)
        if (card is not None or state.card_notice) and not self._idle.isActive():
            self._idle.start(ks.IDLE_RETURN_S * 1000)   # a card nobody touches is not greeted forever
        if card is None and state.card_notice:
            self._card_look("problem")
            self.card_title.setText(ks.CARD_READ_FAILED_TITLE)
            self.card_detail.setText(state.card_notice)
            return
        if card is None:
            self._card_look("start")
            self.card_title.setText("刷身份证取号：请将身份证放在读卡区")
            self.card_detail.setText("老年人刷身份证可优先办理；已预约的请刷身份证签到")
            return
        if not card.usable:
            self._card_look("problem")
            self.card_title.setText("该身份证无法取号")
            self.card_detail.setText(f"{card.problem}。请联系工作人员，或直接点击下方业务取号")
            return
        self._card_look("greeting" if card.present else "removed")
        badge = f"  【{card.badge}】" if card.badge else ""
        self.card_title.setText(f"{card.greeting}{badge}")
        self.card_detail.setText(card.prompt)
        names = {s.code: s.name for s in state.services}
        for appt in card.appointments:
            start = self.model.time_text(appt.get("start_at"))
            code = appt.get("code")
            service = appt.get("service")
            button = QPushButton(f"预约签到：{names.get(service, service)} {start}")
            button.setEnabled(state.can_issue and isinstance(code, str) and isinstance(service, str))
            button.clicked.connect(lambda _=False, s=service, c=code: self._issue(s, c))
            self.appointment_box.addWidget(button)

    def _card_look(self, look: str) -> None:
        """Whose card is active stands out (the name, in the primary colour); a card taken off the reader
        or one that could not be read says so in the note's colour. Styles change only with the look."""
        key = (look, self.scale)
        if key == self._card_style:
            return
        self._card_style = key
        s = self.scale
        title = {"greeting": f"font-size: {s.title}px; font-weight: bold; color: {PALETTE.primary};",
                 "removed": f"font-size: {s.title}px; font-weight: bold; color: {PALETTE.primary};",
                 "problem": f"font-size: {s.title}px; font-weight: bold; color: {PALETTE.alert};"}.get(look, "")
        detail = {"greeting": f"font-size: {s.body}px;",
                  "removed": f"font-size: {s.body}px; font-weight: bold; color: {PALETTE.accent};",
                  "problem": f"font-size: {s.body}px;"}.get(look, "")
        self.card_title.setStyleSheet(title)
        self.card_detail.setStyleSheet(detail)

    def _render_result(self, state: ks.KioskState) -> None:
        result = state.result
        if result is None:
            return
        s = self.scale
        greeting = f"{result.name_masked}，您好" if result.name_masked else ("已为您补打号票" if result.reprinted else "取号成功")
        if result.priority_label:
            greeting += f"  【{result.priority_label}】"
        self.result_greeting.setText(greeting)
        self.result_number.setText(result.number)
        size = int(s.huge * 1.5) if result.remember_number else s.huge
        self.result_number.setStyleSheet(f"font-size: {size}px; font-weight: bold; color: {PALETTE.primary};")
        self.result_service.setText(result.service_name)
        self.result_visit_qr.set_payload(result.visit_url)
        self.result_wifi_qr.set_payload(self.wifi_qr if result.visit_url else None)
        self.result_visit_qr.set_caption("② 再扫此码查看排队进度" if self.result_wifi_qr.payload
                                         else "手机扫码查看排队进度")
        self.result_ahead.setText(result.ahead_text)
        estimate = f"预计等待{result.estimate}（仅供参考）" if result.estimate else ""
        self.result_estimate.setText(ks.UNSTAFFED_RESULT if result.unstaffed else estimate)
        self.result_estimate.setVisible(bool(result.unstaffed or estimate))
        if result.remember_number:
            self.result_caption.setText("请记住您的号码")
            self.result_caption.setStyleSheet(f"font-size: {s.title}px; font-weight: bold; color: {PALETTE.alert};")
            # a fixed sentence (hall_controller.faults), never the printer's raw error
            self.result_print.setText(f"{result.print_problem or VISITOR_PRINT_FAILED}，可拍照留存，留意叫号")
            self.result_print.setStyleSheet(f"color: {PALETTE.alert}; font-weight: bold;")
        else:
            self.result_caption.setText("您的号码")
            self.result_caption.setStyleSheet("")
            self.result_print.setText("请取走号票，留意叫号" if result.printed else "请留意叫号")
            self.result_print.setStyleSheet("")

    # -- actions
    def _issue(self, service: str, appointment_code: str | None = None) -> None:
        if not self.model.issue(service, appointment_code):
            log.info("issue refused at the kiosk: %s", self.model.state.screen)
        if self.stack.currentWidget() is self.detail_page:
            self.stack.setCurrentWidget(self.home_page)

    def show_guide(self) -> None:
        self._render_guide_list(self.model.state)
        self.stack.setCurrentWidget(self.guide_page)
        self._idle.start(ks.IDLE_RETURN_S * 1000)

    def show_detail(self, code: str) -> None:
        state = self.model.state
        entry = next((g for g in state.guide if g.code == code), None)
        name = entry.name if entry else next((s.name for s in state.services if s.code == code), code)
        self._guide_service = code
        self.detail_title.setText(name)
        self.detail_description.setText(entry.description if entry else "")
        materials = entry.materials if entry else ()
        self.detail_materials.setText("\n".join(f"{i}. {m}" for i, m in enumerate(materials, 1))
                                      or "请咨询综合接待窗口")
        self.detail_status.setText("")
        self.stack.setCurrentWidget(self.detail_page)

    def _print_notice(self) -> None:
        if self._guide_service:
            self.detail_status.setText("正在打印…")
            self.model.print_notice(self._guide_service, self.detail_status.setText)

    def return_home(self) -> None:
        self._idle.stop()
        self.model.go_home()
        self.stack.setCurrentWidget(self.home_page)
        self.render()

    def show_home(self) -> None:
        self.stack.setCurrentWidget(self.home_page)
        self.render()

    def _on_card_dropped(self) -> None:
        """The card greeted is gone (used, 取消, replaced, idle): from the guide back to the start screen;
        a ticket result stays on screen."""
        if self.stack.currentWidget() in (self.guide_page, self.detail_page):
            self.stack.setCurrentWidget(self.home_page)
        if self.stack.currentWidget() is self.home_page:
            self._idle.stop()
        self.render()

    def _update_clock(self) -> None:
        self.clock_label.setText(self.model.time_text(self.model.clock.now()))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() in (QEvent.Type.MouseButtonPress, QEvent.Type.TouchBegin):
            if self.stack.currentWidget() is not self.home_page or self.model.state.card is not None:
                self._idle.start(ks.IDLE_RETURN_S * 1000)
            if self.model.state.card is not None:
                self.model.touched()
        return False


def build(options: AppOptions, bus: QtHallBus, args: argparse.Namespace) -> KioskWindow:
    model = KioskModel(bus, options.config)
    name = options.config.name if options.config is not None else "公共法律服务中心"
    window = KioskWindow(model, name, portrait=args.portrait,
                         wifi_qr=options.config.wifi_qr if options.config is not None else None)
    model.setParent(window)
    return window


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--portrait", action="store_true", help="1080×1920 portrait screen (default landscape)")
