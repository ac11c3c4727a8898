"""End to end over MQTT: an ID card put on the emulated reader of kiosk-1, through the control API, a
real pty/TCP link, the card reader driver and the daemon, to the kiosk app's card topic and its
``issue_ticket {use_card}``; then a window calls.

The daemon runs in-process on a ManualClock: ages and the expiry of cards follow the clock's date.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hall_controller.bus.client import CommandError, HallClient
from hall_controller.clock import ManualClock
from hall_controller.config import load_config
from hall_controller.daemon import DaemonOptions, HallDaemon
from hall_controller.service import Actor
from hw_emulators.hall import EmulatedHall

from .daemonkit import init_hall, passwords, wait_until

NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
# 78 on NOW: born 1948-03-15; check digit worked in tests/test_identity_table.py
ELDER = {"name": "李秀英", "sex": "女", "birth": "19480315", "id_number": "310101194803150022",
         "valid_from": "20100101", "valid_to": "长期"}
# a valid number on a card whose validity ended the day before NOW
EXPIRED = {"name": "王五", "id_number": "440304199001010011", "valid_from": "20061122", "valid_to": "20261122"}
# ELDER's number with the last digit changed: 1 instead of 2
WRONG_CHECK = {**ELDER, "name": "赵六", "id_number": "310101194803150021"}


def card_reader_only(data: dict[str, Any]) -> None:
    """The hall with kiosk-1's card reader as its only device: nothing else to wait for."""
    data["devices"] = [d for d in data["devices"] if d["id"] == "card-reader-1"]
    for window in data["windows"]:
        window["devices"] = []


class CardHall:
    def __init__(self, tmp_path: Path, link: str, log_file: Path | None = None) -> None:
        self.tmp_path = tmp_path
        self.config_path = init_hall(tmp_path, card_reader_only)
        self.config = load_config(self.config_path)
        self.clock = ManualClock(NOW)
        self.emu = EmulatedHall(self.config.devices, link=link)
        self.emu.start()
        host, port = self.emu.serve_control()
        self.control = f"http://{host}:{port}"
        self.db_url = f"sqlite:///{tmp_path}/hall.db"
        self.daemon = HallDaemon(self.config, DaemonOptions(db_url=self.db_url, mqtt_listen="127.0.0.1:0",
                                                            emulator_control=f"{host}:{port}"),
                                 clock=self.clock, config_path=str(self.config_path))
        self.daemon.start()
        assert self.daemon.service is not None
        self.service = self.daemon.service
        self.clients: list[HallClient] = []
        self.cards: list[dict[str, Any]] = []
        self.kiosk = self.client("kiosk-1", "kiosk")
        self.kiosk.subscribe_cards(self.cards.append)

    def client(self, client_id: str, role: str, window: int | None = None) -> HallClient:
        assert self.daemon.mqtt_address is not None
        host, port = self.daemon.mqtt_address
        client = HallClient(client_id, passwords(self.config_path)[client_id], host, port, self.config.hall_id,
                            role=role, window=window)
        client.connect(timeout=10)
        self.clients.append(client)
        return client

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.control + path, data=json.dumps(body or {}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    def put_card(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Put a card on the reader and wait for what the kiosk is told; then take it away."""
        seen = len(self.cards)
        status, _ = self.post("/card-reader/card-reader-1/insert", fields)
        assert status == 200
        wait_until(lambda: self.reads(seen), 5, "the card event at kiosk-1")
        assert self.post("/card-reader/card-reader-1/remove")[0] == 200
        card = self.reads(seen)[0]
        text = json.dumps(card, ensure_ascii=False)
        assert fields["id_number"] not in text and fields["id_number"][6:14] not in text
        assert fields["name"] not in text
        return card

    def reads(self, since: int = 0) -> list[dict[str, Any]]:
        """The card reads the kiosk was told of (its card topic also says removed / dropped)."""
        return [c for c in self.cards[since:] if c.get("event", "read") == "read"]

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.daemon.stop()
        self.emu.stop()


@pytest.fixture(params=["pty", "tcp"])
def hall(request, tmp_path) -> Iterator[CardHall]:
    h = CardHall(tmp_path, request.param)
    try:
        yield h
    finally:
        h.close()


def test_elderly_card_gets_priority_and_is_called_first(hall: CardHall) -> None:
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


def test_unusable_cards_get_chinese_reasons(hall: CardHall) -> None:
    expired = hall.put_card(EXPIRED)
    assert (expired["usable"], expired["reason"], expired["name_masked"]) == (False, "身份证有效期已过", "王*")
    with pytest.raises(CommandError, match="请先在读卡区放置身份证"):
        hall.kiosk.request("issue_ticket", service="consult", use_card=True)

    wrong = hall.put_card(WRONG_CHECK)
    assert (wrong["usable"], wrong["reason"]) == (False, "身份证号码校验位错误")

    # the day the card still holds it is valid (through its last day inclusive)
    hall.clock.set(NOW - timedelta(days=1))
    assert hall.put_card(EXPIRED)["usable"] is True


def test_card_checks_in_the_holders_due_appointment(hall: CardHall) -> None:
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


def test_insert_requests_are_checked(hall: CardHall) -> None:
    status, body = hall.post("/card-reader/card-reader-1/insert", {**ELDER, "sex": "M"})
    assert status == 400 and "sex 须为 男 或 女" in body["error"]["message"]
    status, body = hall.post("/card-reader/card-reader-1/insert", {"name": "张三"})
    assert status == 400 and "id_number" in body["error"]["message"]
    status, body = hall.post("/card-reader/nope/insert", ELDER)
    assert status == 404
