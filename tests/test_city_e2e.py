"""hall-city with a real hall's uplink (hall_controller.uplink) through a real Mosquitto city broker
(`hallctl city-credentials` accounts): the hall's real summaries and alerts are the contract's shape for
the reducer (no 数据异常), a 差评 rated at the hall shows once on the 大屏 with its clocks and leaves it
when the hall records the follow-up, and the hall's clean stop shows it offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from hall_controller.clock import ManualClock

from .harness import ADMIN, MONDAY, have_mosquitto, wait_until
from .test_city_page import RunningCity
from .test_city_uplink import DISTRICT, OBSERVER_PASSWORD, CityMosquitto, city_hall, rate_badly

pytestmark = [pytest.mark.mosquitto, pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")]


def test_a_real_halls_uplink_on_the_city_screen(tmp_path: Path):
    broker = CityMosquitto(tmp_path / "city")
    broker.start()
    city_clock = ManualClock(MONDAY)        # the hall's clock: no skew
    city = RunningCity(broker.port, OBSERVER_PASSWORD, f"sqlite:///{tmp_path / 'history.db'}", clock=city_clock)
    hall = city_hall(tmp_path, broker.port)
    key = f"{DISTRICT}/demo"
    try:
        def tile() -> dict | None:
            return next((t for t in city.state()["tiles"] if t["key"] == key), None)

        first = wait_until(lambda: (t := tile()) and t["online"] and t["issued"] is not None and t, 15, "the hall")
        assert first["reasons"] == [] and first["level"] == "ok", first
        assert first["name"] == hall.config.name
        for _ in range(3):
            hall.issue("consult")
        wait_until(lambda: (tile() or {}).get("waiting") == 3, 10, "3 waiting on the page")
        ticket = rate_badly(hall, score=1)
        view = wait_until(lambda: (v := city.state())["ratings"] and v, 10, "the 差评 on the page")
        assert [r["number"] for r in view["ratings"]] == [ticket["number"]]
        row = view["ratings"][0]
        assert row["contact"]["state"] == "ok" and row["fix"]["state"] in ("ok", "none")
        assert view["totals"]["bad_open"] == 1 and "数据异常" not in tile()["reasons"]
        city_clock.set(hall.clock.now())
        hall_view = city.state(f"hall/{key}/state")
        assert hall_view["ratings"][0]["number"] == ticket["number"] and hall_view["skew_s"] is None
        hall.run(ADMIN, "resolve_bad_rating", ticket=ticket["number"], note="已回访")
        wait_until(lambda: not city.state()["ratings"], 10, "the 差评 closed on the page")
        health = city.state("healthz")
        assert health["malformed"] == 0 and health["duplicates"] == 0, health
    finally:
        hall.close()
        try:
            wait_until(lambda: next(t for t in city.state()["tiles"] if t["key"] == key)["online"] is False, 10,
                       "the hall's clean stop")
        finally:
            city.stop()
            broker.stop()
