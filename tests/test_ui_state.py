"""Qt-free parts of the apps (state reducers, styling rules) and the shared Qt bus layer."""

from __future__ import annotations

from kiosk_ui.qtbus import RequestFailure

from . import uikit

hall_daemon, ui_bus = uikit.hall_daemon, uikit.ui_bus   # fixtures


def test_bus_request_reply_and_error_reach_the_ui_thread(qtbot, ui_bus) -> None:
    kiosk = ui_bus("kiosk-1", role="kiosk")
    assert kiosk.broker_online and kiosk.daemon_online
    replies: list[dict] = []
    failures: list[RequestFailure] = []
    kiosk.request("issue_ticket", replies.append, failures.append, service="consult")
    qtbot.waitUntil(lambda: bool(replies), timeout=5000)
    assert replies[0]["ticket"]["number"] == "A001"
    kiosk.request("issue_ticket", replies.append, failures.append, service="nope")
    qtbot.waitUntil(lambda: bool(failures), timeout=5000)
    assert failures[0].code == "not_found" and len(replies) == 1
