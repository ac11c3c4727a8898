"""Call keypad keys → the window ops a clerk would run from the window app.

==================  ==========================================================================
keys                op
==================  ==========================================================================
next                ``call_next {finish_current: true}`` (finishes the open ticket first)
digits + next       ``call_number``: the digits are the number without its prefix; the prefix
                    is that of the window's first service, zero-padded to 3 (``12`` → ``A012``)
recall              ``recall``
start               ``start``
evaluate            ``request_rating``
pause               ``pause {finish_current: true}`` when the window is open (an open visit is
                    finished first, as with next), ``resume`` when it is paused
digits + transfer   ``transfer {window: N}``; without digits the key is refused (``bad_request``)
cancel              ``skip`` (no-show)
digits + function   ``login {staff_id: job number}`` (keypad login needs no PIN)
function            ``logout``
==================  ==========================================================================

Digits typed before keys that take none are ignored.
"""

from __future__ import annotations

from typing import Any

from ..domain import DomainError

NUMBER_WIDTH = 3


def key_command(key: str, digits: str, window_status: str, prefix: str) -> tuple[str, dict[str, Any]]:
    """``(op, args)`` for a key press at a window in ``window_status`` whose first service uses ``prefix``."""
    if key == "next":
        if digits:
            return "call_number", {"number": prefix + digits.zfill(NUMBER_WIDTH)}
        return "call_next", {"finish_current": True}
    if key == "transfer":
        if not digits:
            raise DomainError("bad_request", "请先输入要转入的窗口号")
        return "transfer", {"window": int(digits)}
    if key == "function":
        return ("login", {"staff_id": digits}) if digits else ("logout", {})
    if key == "pause":
        return ("resume", {}) if window_status == "paused" else ("pause", {"finish_current": True})
    simple = {"recall": "recall", "start": "start", "evaluate": "request_rating", "cancel": "skip"}
    if key in simple:
        return simple[key], {}
    raise DomainError("bad_request", f"未知按键 {key!r}")
