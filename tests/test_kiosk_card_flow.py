"""End to end over MQTT: an ID card put on the emulated reader of kiosk-1, through the control API, a
real pty/TCP link, the card reader driver and the daemon, to the kiosk app's card topic and its
``issue_ticket {use_card}``; then a window calls.

The daemon runs in-process on a ManualClock: ages and the expiry of cards follow the clock's date.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from hall_controller.bus.client import CommandError
from hall_controller.service import Actor

from .harness import ELDER, EXPIRED, NOW, WRONG_CHECK, Hall, card_hall, wait_until


@pytest.fixture(params=["pty", "tcp"])
def hall(request, tmp_path) -> Iterator[Hall]:
    h = card_hall(tmp_path, request.param)
    try:
        yield h
    finally:
        h.close()


def test_elderly_card_gets_priority_and_is_called_first(hall: Hall) -> None:
    wait_until(lambda: hall.service.snapshot()["devices"].get("card-reader-1", {}).get("online"), 5,
               "card reader online")
    # an earlier visitor takes a normal number at the other kiosk
    other = hall.client("kiosk-2", "kiosk")
    assert other.request("issue_ticket", service="consult")["ticket"]["number"] == "A001"
    hall.clock.advance(minutes=2)

    card = hall.put_card(ELDER)
    assert card["usable"] is True and card["reason"] is None
    assert (card["name_masked"], card["age"], card["elderly"], card["flags"]) == ("李**", 78, True, ["elderly"])
    assert card["id_masked"] == "310101********0022"

    ticket = hall.kiosk.request("issue_ticket", service="consult", use_card=True)
    assert (ticket["ticket"]["number"], ticket["ticket"]["priority"], ticket["reprinted"]) == ("A002", "elderly", False)
    assert ticket["ticket"]["holder"] == {"name_masked": "李**", "id_masked": "310101********0022"}

    # the card was used: a second use_card needs the card again
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)
    # the same person again for the same service: the existing ticket is reprinted
    hall.put_card(ELDER)
    again = hall.kiosk.request("issue_ticket", service="consult", use_card=True)
    assert (again["ticket"]["number"], again["reprinted"]) == ("A002", True)

    window = hall.client("window-1", "window", 1)
    window.request("login", staff_id="S001", pin="1234")
    assert window.request("call_next")["ticket"]["number"] == "A002"
    assert window.request("call_next", finish_current=True)["ticket"]["number"] == "A001"


def test_unusable_cards_get_chinese_reasons(hall: Hall) -> None:
    expired = hall.put_card(EXPIRED)
    assert (expired["usable"], expired["reason"], expired["name_masked"]) == (False, "身份证有效期已过", "王*")
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)

    wrong = hall.put_card(WRONG_CHECK)
    assert (wrong["usable"], wrong["reason"]) == (False, "身份证号码校验位错误")

    # the day the card still holds it is valid (through its last day inclusive)
    hall.clock.set(NOW - timedelta(days=1))
    assert hall.put_card(EXPIRED)["usable"] is True


def test_card_checks_in_the_holders_due_appointment(hall: Hall) -> None:
    admin = Actor("admin", "admin")
    start = (NOW + timedelta(minutes=20)).isoformat()
    hall.service.execute(admin, "add_appointment", {"code": "Y0001", "service": "legal_aid", "start_at": start,
                                                    "source": "online", "name": "王五",
                                                    "id_number": EXPIRED["id_number"]})
    card = hall.put_card({**EXPIRED, "valid_to": "长期"})
    assert card["usable"] is True and card["flags"] == ["appointment"]
    assert [a["code"] for a in card["appointments"]] == ["Y0001"]
    ticket = hall.kiosk.request("issue_ticket", service="legal_aid", use_card=True)["ticket"]
    assert ticket["priority"] == "appointment" and ticket["appointment_id"]
    appointment = next(iter(hall.service.engine.state.appointments.values()))
    assert (appointment.status, appointment.ticket_id) == ("checked_in", ticket["id"])


def test_insert_requests_are_checked(hall: Hall) -> None:
    status, body = hall.post("/card-reader/card-reader-1/insert", {**ELDER, "sex": "M"})
    assert status == 400 and "sex 须为 男 或 女" in body["error"]["message"]
    status, body = hall.post("/card-reader/card-reader-1/insert", {"name": "张三"})
    assert status == 400 and "id_number" in body["error"]["message"]
    status, body = hall.post("/card-reader/nope/insert", ELDER)
    assert status == 404
