"""The kiosk's card reducers (pure): what the start screen's card zone shows for each message the
daemon sends on `hall/{h}/kiosk/{k}/card` (read, removed, read_failed, dropped)."""

from __future__ import annotations

from kiosk_ui import kiosk_state as ks

QUEUES = {"consult": {"name": "法律咨询", "prefix": "A", "waiting": 0}}
# as HallService.card_inserted publishes them
ELDER = {"event": "read", "active": True, "usable": True, "reason": None, "name_masked": "李**",
         "id_masked": "310101********0022", "age": 78, "elderly": True, "flags": ["elderly"], "appointments": [],
         "read_at": "2026-11-23T10:00:00+08:00", "idle_seconds": 20, "ttl_seconds": 120}
YOUNGER = {**ELDER, "name_masked": "王*", "id_masked": "440304********0011", "age": 36, "elderly": False,
           "flags": []}
REMOVED = {"event": "removed", "active": True, "removed_at": "2026-11-23T10:00:05+08:00", "idle_seconds": 20}


def dropped(why: str) -> dict:
    return {"event": "dropped", "active": False, "dropped": why, "message": "身份证信息已清除"}


def online() -> ks.KioskState:
    return ks.with_queues(ks.with_connection(ks.KioskState(), True, True), QUEUES)


def test_a_card_read_is_greeted_until_the_daemon_drops_it() -> None:
    state = ks.with_card(online(), ELDER, now=10.0)
    card = ks.card_valid(state, 11.0)
    assert card is not None and card.greeting == "李**，您好" and card.badge == "老年人优先"
    assert card.present and card.prompt == "请点击下方要办理的业务取号，您将优先办理"
    # taken off the reader: still greeted, with the time it is kept without a touch
    state = ks.with_card(state, REMOVED, now=12.0)
    card = ks.card_valid(state, 12.0)
    assert card is not None and not card.present and card.idle_seconds == 20
    assert card.prompt.startswith("身份证已取走，请在20秒内点击下方业务取号") and "不是本人" in card.prompt
    for why in ("idle", "cancelled", "used", "replaced", "read_failed", "missing"):
        gone = ks.with_card(state, dropped(why), now=30.0)
        assert gone.card is None and ks.card_valid(gone, 30.0) is None and gone.screen == "home", why


def test_a_drop_leaves_a_ticket_result_on_screen() -> None:
    state = ks.with_card(online(), ELDER, now=0.0)
    state = ks.with_issued(ks.with_request(state), {"ticket": {"number": "A001", "service": "consult",
                                                               "priority": "elderly",
                                                               "holder": {"name_masked": "李**"}}})
    after = ks.with_card(state, dropped("used"), now=1.0)
    assert after.screen == "result" and after.result is not None and after.result.number == "A001"
    assert after == state                              # nothing left to drop: unchanged


def test_a_drop_while_the_ticket_is_on_its_way_keeps_the_request() -> None:
    state = ks.with_request(ks.with_card(online(), ELDER, now=0.0))
    after = ks.with_card(state, dropped("used"), now=0.5)
    assert after.busy and after.card is None


def test_a_swapped_card_greets_the_second_holder_only() -> None:
    state = ks.with_card(online(), ELDER, now=0.0)
    state = ks.with_card(state, REMOVED, now=1.0)
    state = ks.with_card(state, dropped("replaced"), now=2.0)
    state = ks.with_card(state, YOUNGER, now=2.0)
    card = ks.card_valid(state, 3.0)
    assert card is not None and card.name_masked == "王*" and card.badge is None and card.present


def test_a_card_removed_mid_read_shows_what_to_do_and_no_half_card() -> None:
    state = ks.with_card(online(), ELDER, now=0.0)
    failed = {"event": "read_failed", "active": False, "usable": False, "failure": "read_failed",
              "message": "未能读取身份证：请将身份证重新平放在读卡区，屏幕显示您的姓名后再拿开"}
    state = ks.with_card(ks.with_card(state, dropped("read_failed"), now=1.0), failed, now=1.0)
    assert state.card is None and ks.card_valid(state, 1.0) is None
    # shown under the title 未能读取身份证, so the title is not said twice
    assert state.card_notice == "请将身份证重新平放在读卡区，屏幕显示您的姓名后再拿开"
    assert ks.CARD_READ_FAILED_TITLE == "未能读取身份证"
    # without a message from the daemon the kiosk still says what to do
    assert "重新平放在读卡区" in (ks.with_card(online(), {"event": "read_failed"}, now=0.0).card_notice or "")
    # the card put back and read whole replaces the notice; the start screen forgets it
    assert ks.with_card(state, ELDER, now=2.0).card_notice is None
    assert ks.home(state).card_notice is None


def test_removal_of_a_card_that_is_not_greeted_changes_nothing() -> None:
    assert ks.with_card(online(), REMOVED, now=0.0) == online()
    refused = ks.with_card(online(), {"event": "read", "active": False, "usable": False,
                                      "reason": "身份证有效期已过", "name_masked": "王*"}, now=0.0)
    assert refused.card is not None and refused.card.problem == "身份证有效期已过"
    assert ks.with_card(refused, REMOVED, now=1.0) == refused
    assert ks.card_valid(refused, 0.0) is None


def test_a_read_without_an_event_is_still_a_read() -> None:
    """Messages of a daemon from before the card topic carried `event` are reads."""
    legacy = {k: v for k, v in ELDER.items() if k not in ("event", "active", "idle_seconds", "ttl_seconds")}
    card = ks.card_valid(ks.with_card(online(), legacy, now=0.0), 1.0)
    assert card is not None and card.idle_seconds is None and card.prompt.startswith("请点击下方")
    assert ks.card_valid(ks.with_card(online(), legacy, now=0.0), ks.CARD_TTL_S + 1) is None
