"""What the LED window screens and the keypad displays show, derived from a window's state.

The screens are rendered from the window's *current* state (``snapshot()["windows"][n]``), never
from the event that triggered the update: a screen that missed frames while it was offline, or
events that arrive in a burst, still end on the right text.

LED window screen (4 Chinese characters):

====================  ====================================================================
window status         text
====================  ====================================================================
calling / serving     the ticket number, e.g. ``A001``
paused                ``暂停服务``
idle                  the LED's ``options.idle_text``, default ``欢迎光临``
closed                the LED's ``options.closed_text``, default ``暂停服务`` — nobody is at
                      the window, and a blank screen would look like a broken one
====================  ====================================================================

Keypad display (4 ASCII characters): the ticket number when calling/serving, ``----`` when idle,
``PAUS`` when paused, blank when closed (the keypad waits for a job number), or after a key that
failed one of the codes in :data:`KEYPAD_ERROR_CODES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PAUSED_TEXT = "暂停服务"
DEFAULT_IDLE_TEXT = "欢迎光临"
DEFAULT_CLOSED_TEXT = PAUSED_TEXT

KEYPAD_IDLE = "----"
KEYPAD_PAUSED = "PAUS"
KEYPAD_CLOSED = ""

# Shown on the keypad display after a key the daemon refused (DomainError code → display).
KEYPAD_ERROR_CODES: dict[str, str] = {
    "not_logged_in": "E1",  # 未登录：先输入工号再按功能键
    "conflict": "E2",  # 当前状态不允许（有号未办结、已暂停、重呼次数已满……）
    "not_found": "E3",  # 没有这个号码
    "forbidden": "E4",  # 工号无效或无权操作
    "bad_request": "E5",  # 输入有误（如转移未输入窗口号）
    "closed": "E6",  # 不在服务时间
}
KEYPAD_OTHER_ERROR = "E9"  # any other failure (e.g. the database refused the write)
KEYPAD_QUEUE_EMPTY = "E0"  # "next" found nobody waiting: not an error, but the clerk must see it


def keypad_error_code(code: str) -> str:
    return KEYPAD_ERROR_CODES.get(code, KEYPAD_OTHER_ERROR)


def _ticket_number(window: Mapping[str, Any]) -> str | None:
    ticket = window.get("ticket")
    return ticket.get("number") if isinstance(ticket, Mapping) else None


def led_text(window: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    """The LED text for a window view; ``options`` are the LED's device options."""
    status = window.get("status")
    number = _ticket_number(window)
    if status in ("calling", "serving") and number:
        return number
    if status == "paused":
        return PAUSED_TEXT
    if status == "closed":
        return str(options.get("closed_text", DEFAULT_CLOSED_TEXT))
    return str(options.get("idle_text", DEFAULT_IDLE_TEXT))


def keypad_text(window: Mapping[str, Any]) -> str:
    """The keypad display for a window view."""
    status = window.get("status")
    number = _ticket_number(window)
    if status in ("calling", "serving") and number:
        return number
    if status == "paused":
        return KEYPAD_PAUSED
    if status == "closed":
        return KEYPAD_CLOSED
    return KEYPAD_IDLE
