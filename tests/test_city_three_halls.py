"""Issue 20's must-show: three real hall daemons (`hallctl run`), a real Mosquitto as the city broker
(the accounts and ACL of `hallctl city-credentials`) and `hall-city`. The WAN (the city broker) stops for
HALL_CITY_CUT_SECONDS (60 by default) while the halls keep issuing and calling and a 差评 is raised;
on its return the page shows every hall's true state and the 差评 exactly once. A hall killed with -9
shows offline (its last will) and online again after its restart."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from hall_controller.bus.client import HallClient
from tests.harness import PIN, DaemonProcess, free_port, have_mosquitto, init_hall, passwords, wait_until
from tests.test_city_page import RunningCity
from tests.test_city_uplink import OBSERVER_PASSWORD, CityMosquitto, with_city, write_password

HALLS = ("h1", "h2", "h3")
CUT_SECONDS = float(os.environ.get("HALL_CITY_CUT_SECONDS", "60"))


def make_hall(tmp_path: Path, hall_id: str, port: int) -> Path:
    folder = tmp_path / hall_id
    folder.mkdir()
    city = with_city(port)

    def mutate(data: dict[str, Any]) -> None:
        data["hall"]["id"] = hall_id
        data["hall"]["name"] = f"示范中心{hall_id[-1]}"
        city(data)

    config = init_hall(folder, mutate)
    write_password(folder)
    return config


class Desk:
    """A hall's kiosk, window 3 and tablet 3 over its own bus, as the apps drive it."""

    def __init__(self, daemon: DaemonProcess, hall_id: str) -> None:
        def client(client_id: str, role: str | None = None, window: int | None = None) -> HallClient:
            c = HallClient(client_id, passwords(daemon.config)[client_id], "127.0.0.1", daemon.port, hall_id,
                           role=role, window=window)
            c.connect(timeout=10)
            return c

        self.kiosk = client("kiosk-1")
        self.window = client("window-3", "window", 3)
        self.tablet = client("tablet-3")
        self.admin = client("admin")
        self.window.request("login", staff_id="S003", pin=PIN)

    def issue(self) -> str:
        return self.kiosk.request("issue_ticket", service="consult")["ticket"]["number"]

    def call(self) -> dict[str, Any] | None:
        return self.window.request("call_next", finish_current=True).get("ticket")

    def bad_rating(self) -> str:
        self.issue()
        ticket = self.window.request("call_next", finish_current=True)["ticket"]
        self.window.request("start")
        self.window.request("finish")
        self.tablet.request("rate", ticket=ticket["id"], score=1)
        return ticket["number"]

    def truth(self) -> tuple[int, int]:
        """(tickets waiting, issued today) as the hall itself says (hallctl's status op)."""
        status = self.admin.request("status")
        return sum(q["waiting"] for q in status["queues"].values()), status["today"]["counts"]["issued"]

    def close(self) -> None:
        for client in (self.kiosk, self.window, self.tablet, self.admin):
            client.close()


@pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")
@pytest.mark.mosquitto
@pytest.mark.slow
def test_three_halls_through_a_wan_cut_and_a_kill_9_on_the_city_page(tmp_path: Path):
    broker = CityMosquitto(tmp_path / "city", HALLS)
    broker.start()
    city = RunningCity(broker.port, OBSERVER_PASSWORD, f"sqlite:///{tmp_path / 'city-history.db'}")
    daemons = {h: DaemonProcess(make_hall(tmp_path, h, broker.port), free_port()) for h in HALLS}
    desks: dict[str, Desk] = {}
    try:
        for hall, daemon in daemons.items():
            daemon.start()
            desks[hall] = Desk(daemon, hall)

        def tiles() -> dict[str, dict[str, Any]]:
            return {t["hall"]: t for t in city.state()["tiles"]}

        wait_until(lambda: {h for h, t in tiles().items() if t["online"]} == set(HALLS), 20, "three halls online")
        issued = dict.fromkeys(HALLS, 0)
        for hall in HALLS:
            for _ in range(3):
                desks[hall].issue()
                issued[hall] += 1
        wait_until(lambda: all((tiles()[h]["issued"] or 0) == issued[h] for h in HALLS), 10, "the first tickets")

        broker.stop()                                          # the WAN is cut
        cut_until = time.monotonic() + CUT_SECONDS
        called = dict.fromkeys(HALLS, 0)
        bad_number = desks["h2"].bad_rating()                  # a 差评 during the cut
        issued["h2"] += 1
        called["h2"] += 1
        while time.monotonic() < cut_until:                    # the halls keep working
            for hall in HALLS:
                started = time.monotonic()
                desks[hall].issue()
                issued[hall] += 1
                if desks[hall].call() is not None:
                    called[hall] += 1
                assert time.monotonic() - started < 1.0, "a hall waited on the WAN"
            time.sleep(1.0)
        truth = {hall: desks[hall].truth() for hall in HALLS}
        assert all(truth[h][1] == issued[h] for h in HALLS)
        broker.start()                                         # back

        def true_state() -> bool:
            now = tiles()
            return all((now[h]["waiting"], now[h]["issued"]) == truth[h] for h in HALLS)

        wait_until(true_state, 30, f"every hall's true state {truth}")
        view = wait_until(lambda: (v := city.state())["ratings"] and v, 15, "the 差评 raised during the cut")
        time.sleep(2)
        view = city.state()
        assert [(r["number"], r["hall"]) for r in view["ratings"]] == [(bad_number, "示范中心2")], view["ratings"]
        assert all(tiles()[h]["online"] for h in HALLS)

        desks.pop("h3").close()
        daemons["h3"].kill()                                   # kill -9: the last will
        wait_until(lambda: tiles()["h3"]["online"] is False, 35, "h3 offline within its keepalive")
        daemons["h3"] = DaemonProcess(daemons["h3"].config, free_port())
        daemons["h3"].start()
        wait_until(lambda: tiles()["h3"]["online"] is True, 15, "h3 online after its restart")
        assert len(city.state()["ratings"]) == 1
    finally:
        for desk in desks.values():
            desk.close()
        for daemon in daemons.values():
            daemon.kill()
        city.stop()
        broker.stop()
