"""A card leaves with its holder (issue 16, item 3): the daemon holds a card read at a kiosk for one
ticket at most, and drops it when it is used, cancelled (取消 / 不是本人), replaced by another card,
not read whole, or taken off the reader with no touch for `rules.card_idle_seconds`.

A real daemon (embedded broker, ManualClock) and the emulated reader of kiosk-1 over a pty or TCP,
driven through the emulator's control API; kiosk-1 is a real MQTT client that hears its card topic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hall_controller.bus.client import CommandError
from hall_controller.service import CARD_TTL_SECONDS

from .harness import ELDER, EXPIRED, NOW, Hall, card_hall, wait_until

READER = "/card-reader/card-reader-1"
# 36 on NOW: a normal ticket when the card is used
YOUNGER = {"name": "王五", "id_number": "440304199001010011", "valid_to": "长期"}
IDLE = 20   # the sample hall's rules.card_idle_seconds (the default)


def _hall(tmp_path: Path, link: str) -> Iterator[Hall]:
    hall = card_hall(tmp_path, link)
    try:
        wait_until(lambda: hall.service.snapshot()["devices"].get("card-reader-1", {}).get("online"), 10,
                   "card reader online")
        yield hall
    finally:
        hall.close()


@pytest.fixture(params=["pty", "tcp"])
def hall(request, tmp_path: Path) -> Iterator[Hall]:
    yield from _hall(tmp_path, request.param)


@pytest.fixture
def tcp_hall(tmp_path: Path) -> Iterator[Hall]:
    yield from _hall(tmp_path, "tcp")


def finds_since(hall: Hall, since: float) -> int:
    """Find-card polls the emulated reader heard since `since` (time.monotonic())."""
    emu = hall.emu.device("card-reader-1")
    return sum(1 for t, name in list(emu.history) if name == "find_card" and t > since)


def put_on(hall: Hall, fields: dict[str, Any]) -> dict[str, Any]:
    """Put a card on the reader and leave it there; returns the read the kiosk was told of."""
    seen = len(hall.cards)
    assert hall.post(f"{READER}/insert", fields)[0] == 200
    return wait_until(lambda: hall.reads(seen), 5, "the card read at kiosk-1")[0]


def take_off(hall: Hall) -> None:
    """Take the card away and wait until the driver has polled the empty reader twice."""
    removed = time.monotonic()
    assert hall.post(f"{READER}/remove")[0] == 200
    wait_until(lambda: finds_since(hall, removed) >= 2, 5, "two polls of the empty reader")


def told(hall: Hall, event: str, since: int = 0, timeout: float = 5.0) -> dict[str, Any]:
    """The first message of type `event` on kiosk-1's card topic after index `since`."""
    return wait_until(lambda: next((c for c in hall.cards[since:] if c.get("event") == event), None), timeout,
                      f"a {event} message on the card topic")


def plain_ticket(hall: Hall, service: str = "consult") -> dict[str, Any]:
    ticket = hall.kiosk.request("issue_ticket", service=service)["ticket"]
    assert ticket["priority"] == "normal" and ticket.get("holder") is None
    return ticket


# ------------------------------------------------------------------------------------------ the bug


def test_a_card_taken_away_is_not_used_by_the_next_visitor(hall: Hall) -> None:
    """The issue's scenario: 李秀英 (78) reads her card and takes it away without a ticket; 20 s later the
    next visitor taps 法律咨询. Before the fix that tap issued an elderly ticket in her name."""
    card = put_on(hall, ELDER)
    assert card["name_masked"] == "李**" and card["elderly"] is True
    take_off(hall)
    hall.clock.advance(seconds=IDLE)
    with pytest.raises(CommandError, match="请先在读卡区放置身份证") as refused:
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)
    assert refused.value.code == "conflict"
    ticket = plain_ticket(hall)
    assert ticket["number"] == "A001"
    # what the kiosk was told, in order: the read, the removal, the drop
    removed = told(hall, "removed")
    assert removed["idle_seconds"] == IDLE and removed["active"] is True
    dropped = told(hall, "dropped")
    assert dropped["active"] is False and dropped["dropped"] == "idle" and "身份证信息已清除" in dropped["message"]
    assert [c["event"] for c in hall.cards][:3] == ["read", "removed", "dropped"]
    assert hall.service.card_state("kiosk-1") is None


def test_the_daemon_drops_an_idle_card_by_its_own_clock(hall: Hall) -> None:
    """No command at all: the daemon's tick drops the card and tells the kiosk, which goes home."""
    put_on(hall, ELDER)
    take_off(hall)
    assert hall.service.card_state("kiosk-1") == "removed"
    hall.clock.advance(seconds=IDLE - 1)
    time.sleep(1.5)                                   # a tick or more of the daemon's clock loop
    assert hall.service.card_state("kiosk-1") == "removed"      # positive control: not before its time
    assert not [c for c in hall.cards if c.get("event") == "dropped"]
    hall.clock.advance(seconds=1)
    dropped = told(hall, "dropped", timeout=5)        # from the tick, without any kiosk command
    assert dropped["dropped"] == "idle"
    assert hall.service.card_state("kiosk-1") is None


def test_a_touch_keeps_a_removed_card_and_the_card_serves_one_ticket(tcp_hall: Hall) -> None:
    hall = tcp_hall
    put_on(hall, ELDER)
    take_off(hall)
    hall.clock.advance(seconds=IDLE - 5)
    assert hall.kiosk.request("card_touch") == {"active": True}    # the visitor touches the greeting
    hall.clock.advance(seconds=IDLE - 5)              # 30 s after the removal, 15 s after the touch
    ticket = hall.kiosk.request("issue_ticket", service="consult", use_card=True)["ticket"]
    assert (ticket["priority"], ticket["holder"]["name_masked"]) == ("elderly", "李**")
    dropped = told(hall, "dropped")
    assert dropped["dropped"] == "used"
    # used once: the same card is not used again, not even right away
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="mediation", use_card=True)
    assert plain_ticket(hall, "mediation")["number"] == "C001"
    assert hall.kiosk.request("card_touch") == {"active": False}


def test_a_failed_ticket_does_not_use_the_card(tcp_hall: Hall) -> None:
    """A refused issue (an unknown service) leaves the card for the visitor's next tap."""
    hall = tcp_hall
    put_on(hall, ELDER)
    with pytest.raises(CommandError):
        hall.kiosk.request("issue_ticket", service="nope", use_card=True)
    assert hall.service.card_state("kiosk-1") == "present"
    assert hall.kiosk.request("issue_ticket", service="consult", use_card=True)["ticket"]["priority"] == "elderly"


def test_a_card_lying_on_the_reader_stays_until_the_upper_bound(tcp_hall: Hall) -> None:
    hall = tcp_hall
    put_on(hall, ELDER)
    hall.clock.advance(seconds=IDLE * 3)              # on the reader: the idle time has not started
    assert hall.service.card_state("kiosk-1") == "present"
    hall.clock.advance(seconds=CARD_TTL_SECONDS - IDLE * 3)
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)
    assert told(hall, "dropped")["dropped"] == "idle"


# ------------------------------------------------------------------------------------------ 取消 / 不是本人


def test_cancel_drops_the_card_and_only_the_kiosk_may(tcp_hall: Hall) -> None:
    hall = tcp_hall
    put_on(hall, ELDER)
    window = hall.client("window-1", "window", 1)
    with pytest.raises(CommandError) as refused:
        window.request("drop_card")
    assert refused.value.code == "forbidden"
    assert hall.service.card_state("kiosk-1") == "present"    # untouched by the refused op
    assert hall.kiosk.request("drop_card") == {"dropped": True}
    dropped = told(hall, "dropped")
    assert (dropped["dropped"], dropped["message"]) == ("cancelled", "已取消，身份证信息已清除")
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)
    assert hall.kiosk.request("drop_card") == {"dropped": False}  # nothing left to drop
    plain_ticket(hall)


# ------------------------------------------------------------------------------------------ swaps


def test_a_card_swapped_between_taps_issues_under_the_second_only(hall: Hall) -> None:
    """Card A read and taken away, card B read, then a tap: B's ticket, never A's."""
    put_on(hall, ELDER)
    take_off(hall)
    seen = len(hall.cards)
    b = put_on(hall, YOUNGER)
    assert (b["name_masked"], b["elderly"]) == ("王*", False)
    replaced = told(hall, "dropped", since=seen)
    assert replaced["dropped"] == "replaced"
    assert hall.cards.index(replaced) < hall.cards.index(b)       # the drop of A reaches the kiosk first
    ticket = hall.kiosk.request("issue_ticket", service="consult", use_card=True)["ticket"]
    assert ticket["holder"]["name_masked"] == "王*" and ticket["priority"] == "normal"
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):   # and A is not left behind
        hall.kiosk.request("issue_ticket", service="mediation", use_card=True)


def test_a_card_put_in_place_of_another_replaces_it(tcp_hall: Hall) -> None:
    """B laid on the reader where A lay (no removal in between): B is read and A is dropped."""
    hall = tcp_hall
    put_on(hall, ELDER)
    seen = len(hall.cards)
    assert hall.post(f"{READER}/insert", YOUNGER)[0] == 200
    b = wait_until(lambda: hall.reads(seen), 5, "the second card read")[0]
    assert b["name_masked"] == "王*"
    assert told(hall, "dropped", since=seen)["dropped"] == "replaced"
    ticket = hall.kiosk.request("issue_ticket", service="consult", use_card=True)["ticket"]
    assert ticket["holder"]["name_masked"] == "王*"


def test_an_unusable_card_replaces_the_card_held(tcp_hall: Hall) -> None:
    """An expired card after a good one: the good one is dropped, nothing is held."""
    hall = tcp_hall
    put_on(hall, ELDER)
    take_off(hall)
    expired = put_on(hall, EXPIRED)
    assert (expired["usable"], expired["active"], expired["reason"]) == (False, False, "身份证有效期已过")
    assert told(hall, "dropped")["dropped"] == "replaced"
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)


# ------------------------------------------------------------------------------------------ mid-read


def test_a_card_removed_mid_read_is_not_kept_in_part(hall: Hall) -> None:
    """The reader loses the card between select and read: nothing of it is kept, the card held before
    is dropped, and the kiosk is told in Chinese what to do; the card put back is read whole."""
    put_on(hall, ELDER)
    take_off(hall)
    seen = len(hall.cards)
    status, body = hall.post(f"{READER}/remove", {"during_read": True})
    assert status == 200 and body["pull_during_read"] is True
    assert hall.post(f"{READER}/insert", YOUNGER)[0] == 200
    failed = told(hall, "read_failed", since=seen)
    assert failed["active"] is False and failed["failure"] == "read_failed"
    assert failed["message"].startswith("未能读取身份证") and "重新平放在读卡区" in failed["message"]
    assert "王" not in str(failed) and YOUNGER["id_number"] not in str(failed)
    assert told(hall, "dropped", since=seen)["dropped"] == "read_failed"   # A went too
    emu = hall.emu.device("card-reader-1")
    assert emu.state()["card"] is None and emu.state()["pull_during_read"] is False
    assert not hall.reads(seen)                                      # no card read reached the kiosk
    assert hall.service.card_state("kiosk-1") is None
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)
    # the visitor puts the card back and leaves it until the name shows
    again = put_on(hall, YOUNGER)
    assert again["name_masked"] == "王*"
    assert hall.kiosk.request("issue_ticket", service="consult", use_card=True)["ticket"]["holder"]["name_masked"] == "王*"


def test_a_card_of_the_day_before_is_gone_after_the_night(tcp_hall: Hall) -> None:
    """However long the daemon ran: a card read yesterday evening is not there in the morning."""
    hall = tcp_hall
    put_on(hall, ELDER)
    hall.clock.set(NOW + timedelta(hours=20))
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)
