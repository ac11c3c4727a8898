"""The hall's uplink to the city broker (issue 20 item 1, DESIGN §11): the retained summary and
presence, and the alerts from the durable queue, against a real Mosquitto and the embedded broker as
the city broker, through WAN cuts, a kill -9 and restarts."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa

from hall_controller.bus.broker import EmbeddedBroker
from hall_controller.bus.city_accounts import HALL_CITY, CityCredentialStore, write_city_mosquitto_config
from hall_controller.bus.credentials import CredentialStore
from hall_controller.clock import ManualClock
from hall_controller.config import ConfigError, parse_config
from hall_controller.domain.today import DayTally
from hall_controller.monitoring import CITY_METRICS
from hall_controller.store.schema import city_alerts
from tests.harness import (
    ADMIN,
    FAST_HASH,
    KIOSK,
    MONDAY,
    PIN,
    DaemonProcess,
    Hall,
    Mosquitto,
    card,
    free_port,
    have_mosquitto,
    init_hall,
    no_devices,
    passwords,
    tablet,
    wait_until,
    window,
)

DISTRICT = "310101"
CITY_PASSWORD = "city-secret-pw-1"
OBSERVER_PASSWORD = "hall-city-pw-1"
needs_mosquitto = pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")


def city_section(port: int, hall_id: str = "demo") -> dict[str, Any]:
    return {"url": f"mqtt://127.0.0.1:{port}", "district": DISTRICT, "username": f"hall-{DISTRICT}-{hall_id}",
            "password_file": "city-password"}


def with_city(port: int, *, devices: bool = False):  # noqa: ANN201 - a mutate for init_hall / Hall
    def mutate(data: dict[str, Any]) -> None:
        if not devices:
            no_devices(data)
        data["city"] = city_section(port, data["hall"]["id"])

    return mutate


def write_password(folder: Path) -> None:
    (folder / "city-password").write_text(CITY_PASSWORD + "\n")
    (folder / "city-password").chmod(0o600)


class CityMosquitto(Mosquitto):
    """The city broker as `hallctl city-credentials mosquitto` configures it (passwords and the ACL: the
    hall writes only under its own prefix, the observer is the read-only `hall-city` account), with
    persistence on so that sessions and retained messages outlive a restart: a WAN cut is the broker
    stopping and starting again on the same port."""

    def __init__(self, workdir: Path, halls: tuple[str, ...] = ("demo",)) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        accounts = CityCredentialStore(workdir / "accounts.yaml", iterations=FAST_HASH)
        for hall in halls:
            accounts.add_hall(hall, DISTRICT, CITY_PASSWORD)
        accounts.add_service(HALL_CITY, OBSERVER_PASSWORD)
        files = write_city_mosquitto_config(workdir / "mqtt", accounts, port=self.port, bind_address="127.0.0.1")
        super().__init__(workdir, files.conf_file.read_text() + f"persistence true\npersistence_location {workdir}/\n"
                                                                 "autosave_interval 1\n")

    def start(self) -> None:  # type: ignore[override]
        super().start(self.port)


class Observer:
    """hall-city's stand-in: a persistent session on `city/#` at QoS 1 that keeps every message with
    its QoS and retain flag (and gets what was queued for it while the broker was away)."""

    def __init__(self, port: int, username: str = HALL_CITY, password: str = OBSERVER_PASSWORD) -> None:
        self.messages: list[tuple[str, dict[str, Any], int, bool, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv311,
                                  clean_session=False)
        self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.2, 1)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("city/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        assert self.subscribed.wait(5), "observer not subscribed"

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload), msg.qos, bool(msg.retain), bytes(msg.payload)))

    def on(self, suffix: str) -> list[tuple[dict[str, Any], int, bool]]:
        with self.lock:
            return [(p, q, r) for t, p, q, r, _ in self.messages if t.endswith("/" + suffix)]

    def latest(self, suffix: str) -> dict[str, Any] | None:
        found = self.on(suffix)
        return found[-1][0] if found else None

    def alerts(self, type_: str) -> list[dict[str, Any]]:
        return [p for p, _q, _r in self.on(f"alert/{type_}")]

    def raw(self) -> list[bytes]:
        with self.lock:
            return [m[4] for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rate_badly(hall: Hall, score: int = 1, number: int = 3) -> dict[str, Any]:
    """Serve the next visit at window `number` (one is issued) and rate it `score` from its tablet; the
    finished ticket."""
    assert isinstance(hall.clock, ManualClock)
    if hall.service.snapshot()["windows"][str(number)]["staff"] is None:
        hall.run(window(number), "login", staff_id=f"S00{number}", pin=PIN)
    hall.issue()
    hall.run(window(number), "call_next")
    hall.run(window(number), "start")
    hall.clock.advance(minutes=4)
    ticket = hall.run(window(number), "finish")["ticket"]
    hall.run(tablet(number), "rate", ticket=ticket["id"], score=score)
    return ticket


def queue_rows(hall: Hall) -> list[dict[str, Any]]:
    assert hall.store is not None
    with hall.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(city_alerts).order_by(city_alerts.c.id))]


@pytest.fixture
def city(tmp_path: Path):
    broker = CityMosquitto(tmp_path / "city")
    broker.start()
    yield broker
    broker.stop()


def city_hall(tmp_path: Path, port: int, **kwargs: Any) -> Hall:
    folder = tmp_path / "hall"
    folder.mkdir()
    write_password(folder)
    return Hall(folder, mutate=with_city(port), clock=ManualClock(MONDAY), **kwargs)


# ------------------------------------------------------------------------------------------ config

def test_city_config_is_checked_and_absent_by_default(tmp_path: Path):
    hall = init_hall(tmp_path)
    import yaml

    data = yaml.safe_load(hall.read_text())
    assert data["city"] is None                      # the sample hall reports to no city
    base = parse_config(data, base_dir=tmp_path)
    assert base.city_url is None and base.city_district is None
    data["city"] = {**city_section(1883), "ca": "tls/city-ca.crt", "follow_up": {"contact_minutes": 30}}
    cfg = parse_config(data, base_dir=tmp_path)
    assert (cfg.city_district, cfg.city_username, cfg.city_contact_minutes, cfg.city_fix_hours) == \
        (DISTRICT, "hall-310101-demo", 30, 72)
    assert cfg.city_password_file == str(tmp_path / "city-password") and cfg.city_ca == str(tmp_path / "tls/city-ca.crt")
    data["city"] = {"url": "http://x", "district": "31/01", "extra": 1}
    with pytest.raises(ConfigError) as err:
        parse_config(data, base_dir=tmp_path)
    fields = {f for f, _ in err.value.problems}
    assert {"city.url", "city.district", "city.extra", "city.username", "city.password_file"} <= fields


def test_day_tally_waits_count_the_first_call_only():
    tally = DayTally()
    issued = "2026-11-23T09:00:00+08:00"
    for i, (ticket, called) in enumerate([("a", "09:01:00"), ("b", "09:05:00"), ("a", "09:20:00"), ("c", "09:10:00")]):
        tally.observe({"type": "ticket_called", "seq": i, "ts": f"2026-11-23T{called}+08:00", "window": 3,
                       "ticket": {"id": ticket, "issued_at": issued}})
    assert tally.waits == [60.0, 300.0, 600.0]
    assert (tally.wait_quantile(0.5), tally.wait_quantile(0.9)) == (300.0, 600.0)
    assert DayTally().wait_quantile(0.5) is None


# ------------------------------------------------------------------------------------------ the queue

def test_alerts_commit_with_their_event_and_devices_offline_over_five_minutes(tmp_path: Path):
    """No uplink at all (the service alone): the queue is filled by the commands and the clock tick."""
    folder = tmp_path / "hall"
    folder.mkdir()
    write_password(folder)
    hall = Hall(folder, mutate=with_city(free_port(), devices=True), clock=ManualClock(MONDAY), daemon=False)
    try:
        ticket = rate_badly(hall, score=2)
        rows = queue_rows(hall)                         # there the moment the rate command returned
        assert [r["type"] for r in rows] == ["bad_rating"] and rows[0]["sent_at"] is None
        alert = json.loads(rows[0]["payload"])
        assert alert["ticket"] == {"number": ticket["number"], "service": "consult", "window": 3}
        assert (alert["score"], alert["level"], alert["hall"]) == (2, "不满意", {"id": "demo", "district": DISTRICT})
        raised = datetime.fromisoformat(alert["raised_at"])
        assert raised == MONDAY + timedelta(minutes=4)              # when the tablet rated it
        assert datetime.fromisoformat(alert["contact_by"]) == raised + timedelta(hours=1)
        assert datetime.fromisoformat(alert["fix_by"]) == raised + timedelta(hours=72)
        hall.run(ADMIN, "resolve_bad_rating", ticket=ticket["number"], note="已电话回访并整改")
        resolved = json.loads(queue_rows(hall)[-1]["payload"])
        assert resolved["type"] == "bad_rating_resolved" and resolved["ref"] == alert["id"]
        assert resolved["ticket"] == {"number": ticket["number"]}

        hall.service.device_status("printer-1", False, "dory-dl6009", "no paper")
        hall.clock.advance(minutes=4, seconds=59)
        hall.service.tick()
        assert [r["type"] for r in queue_rows(hall)][2:] == []
        hall.clock.advance(seconds=1)
        hall.service.tick()
        hall.clock.advance(minutes=3)
        hall.service.tick()
        offline = [json.loads(r["payload"]) for r in queue_rows(hall) if r["type"] == "device_offline"]
        assert len(offline) == 1 and offline[0]["device"] == {"id": "printer-1", "kind": "printer"}
        hall.service.device_status("printer-1", True, "dory-dl6009")
        hall.service.device_status("led-3", False, "x")        # offline for a minute only: no alert
        hall.clock.advance(minutes=1)
        hall.service.tick()
        hall.service.device_status("led-3", True, "x")
        types = [r["type"] for r in queue_rows(hall)]
        assert types == ["bad_rating", "bad_rating_resolved", "device_offline", "device_online"]
        restarted_alerts = len(types)
        hall.restart()             # the offline spell alerted before the restart is remembered
        assert len(queue_rows(hall)) == restarted_alerts
    finally:
        hall.close()


def test_an_overdue_visit_and_a_dead_letter_are_queued(tmp_path: Path):
    folder = tmp_path / "hall"
    folder.mkdir()
    write_password(folder)
    hall = Hall(folder, mutate=with_city(free_port()), clock=ManualClock(MONDAY), daemon=False)
    try:
        hall.run(window(3), "login", staff_id="S003", pin=PIN)
        number = hall.issue()
        hall.run(window(3), "call_next")
        hall.run(window(3), "start")
        hall.clock.advance(minutes=29)
        hall.service.tick()
        assert queue_rows(hall) == []                  # the warning is the hall's own business
        hall.clock.advance(minutes=1)
        hall.service.tick()
        hall.clock.advance(minutes=5)
        hall.service.tick()
        rows = queue_rows(hall)
        assert [r["type"] for r in rows] == ["overdue_visit"]
        overdue = json.loads(rows[0]["payload"])
        assert overdue["ticket"] == {"number": number, "service": "consult", "window": 3} and overdue["minutes"] == 30
        hall.service.supervisor_alert("upstream_dead_letter", {"kind": "service_record", "record_key": "k-1",
                                                               "attempts": 3, "error": "400"})
        dead = json.loads(queue_rows(hall)[-1]["payload"])
        assert (dead["type"], dead["record"]) == ("dead_letter", "k-1")
    finally:
        hall.close()


def test_a_hall_without_city_queues_nothing(tmp_path: Path):
    hall = Hall(tmp_path, mutate=no_devices, clock=ManualClock(MONDAY), daemon=False)
    try:
        rate_badly(hall)
        assert queue_rows(hall) == [] and hall.service.city_hall is None
    finally:
        hall.close()


# ------------------------------------------------------------------------------------------ on a real broker

def summary_has(observer: Observer, check: Any, timeout: float = 5, what: str = "summary") -> dict[str, Any]:
    return wait_until(lambda: (s := observer.latest("summary")) is not None and check(s) and s, timeout, what)


@needs_mosquitto
@pytest.mark.mosquitto
def test_summary_and_alerts_reach_the_city_mosquitto(tmp_path: Path, city: CityMosquitto):
    observer = Observer(city.port)
    hall = city_hall(tmp_path, city.port)
    try:
        wait_until(lambda: (observer.latest("online") or {}).get("online") is True, 10, "online")
        _online, qos, _retained = observer.on("online")[-1]
        assert qos == 1
        first = summary_has(observer, lambda s: s["seq"] == hall.service.snapshot()["seq"])
        assert first["hall"] == {"id": "demo", "name": hall.config.name, "district": DISTRICT,
                                 "code": hall.config.hall_code}
        assert first["schema"] == 1 and first["open"] is True and first["at"].endswith("+08:00")
        assert first["outbox"] == {"pending": 0, "dead": 0} and first["devices_offline"] == []

        # a ticket with a card holder: its masked name and ID hash must never leave the hall
        hall.service.card_inserted("kiosk-1", card("王小明", serial="456"))
        held = hall.run(KIOSK, "issue_ticket", service="consult", use_card=True)["ticket"]
        before = len(observer.on("summary"))
        started = time.monotonic()
        for _ in range(20):
            hall.issue("consult")
        s = summary_has(observer, lambda s: s["counts"]["issued"] == 21)
        elapsed = time.monotonic() - started
        published = len(observer.on("summary")) - before
        assert published <= elapsed / 1.0 + 1.5, (published, elapsed)      # at most once a second
        consult = next(x for x in s["services"] if x["code"] == "consult")
        assert consult["waiting"] == 21 and consult["oldest_wait_s"] == 0.0

        hall.clock.advance(minutes=2)
        hall.run(window(3), "login", staff_id="S003", pin=PIN)
        called = hall.run(window(3), "call_next")["ticket"]
        s = summary_has(observer, lambda s: s["windows"]["staffed"] == 1 and s["wait_today"]["median_s"] == 120.0)
        assert s["windows"]["total"] == len(hall.config.windows)
        hall.run(window(3), "start")
        hall.clock.advance(minutes=3)
        hall.run(window(3), "finish")
        hall.run(tablet(3), "rate", ticket=called["id"], score=1)
        s = summary_has(observer, lambda s: s["ratings"]["bad_open"] == 1)
        assert s["ratings"] == {"count": 1, "good": 0, "bad": 1, "bad_open": 1}
        assert s["counts"] == {"issued": 21, "served": 1, "left": 0, "no_show": 0}

        wait_until(lambda: observer.alerts("bad_rating"), 5, "the 差评 alert")
        bad, qos, retained = observer.on("alert/bad_rating")[0]
        assert qos == 1 and not retained
        assert bad["ticket"]["number"] == called["number"] and bad["score"] == 1 and bad["level"] == "非常不满意"
        hall.run(ADMIN, "resolve_bad_rating", ticket=called["number"], note="已回访")
        wait_until(lambda: observer.alerts("bad_rating_resolved"), 5, "the follow-up alert")
        summary_has(observer, lambda s: s["ratings"]["bad_open"] == 0)
        wait_until(lambda: all(r["sent_at"] for r in queue_rows(hall)), 5, "alerts marked sent")
        time.sleep(1.5)                                  # nothing comes twice
        assert len(observer.alerts("bad_rating")) == 1 and len(observer.alerts("bad_rating_resolved")) == 1
        assert observer.alerts("bad_rating_resolved")[0]["ref"] == bad["id"]

        # no personal data: not the holder's (masked) name or ID, no ID hash, no ticket id anywhere
        ticket_ids = {e["ticket"]["id"] for e in hall.events if isinstance(e.get("ticket"), dict)}
        holder = held["holder"]
        assert holder and holder["name_masked"]
        secrets = {holder["name_masked"], holder["id_masked"], "王小明", *ticket_ids}
        with hall.store.engine.connect() as conn:
            secrets |= {k for k in conn.execute(sa.text("SELECT person_key FROM tickets")).scalars() if k}
        leaked = [(s, raw[:80]) for raw in observer.raw() for s in secrets if s.encode() in raw]
        assert not leaked
        uplink = hall.daemon.uplink
        assert uplink.connected and wait_until(lambda: uplink.alerts_queued == 0, 5, "queue empty")
        samples = {s.name: s.value for m in hall.daemon.monitoring.registry.collect() for s in m.samples}
        assert {k: samples[k] for k in CITY_METRICS} == {"hall_city_connected": 1, "hall_city_alerts_queued": 0}
    finally:
        hall.close()
        observer.close()
    # a clean stop says offline itself (retained)
    late = Observer(city.port)
    try:
        # both retained messages, each on its own topic: they may arrive in either order
        wait_until(lambda: late.latest("online") is not None and late.latest("summary") is not None, 5,
                   "retained online and summary")
        assert late.latest("online")["online"] is False and "will" not in late.latest("online")
        assert late.latest("summary")["counts"]["issued"] == 21       # the retained summary stays
    finally:
        late.close()


@needs_mosquitto
@pytest.mark.mosquitto
@pytest.mark.slow
def test_a_wan_cut_queues_the_alert_and_the_summary_is_current_on_return(tmp_path: Path, city: CityMosquitto):
    observer = Observer(city.port)
    hall = city_hall(tmp_path, city.port)
    try:
        wait_until(lambda: (observer.latest("online") or {}).get("online") is True, 10, "online")
        hall.issue()
        summary_has(observer, lambda s: s["counts"]["issued"] == 1)
        city.stop()                                                     # the WAN is cut
        wait_until(lambda: not hall.daemon.uplink.connected, 10, "the uplink to notice")
        started = time.monotonic()
        for _ in range(5):
            hall.issue()
        ticket = rate_badly(hall, score=1)
        assert time.monotonic() - started < 2.0                         # the hall never waited on the WAN
        assert [r["sent_at"] for r in queue_rows(hall)] == [None]
        wait_until(lambda: hall.daemon.uplink.alerts_queued == 1, 5, "the queued alert counted")
        samples = {s.name: s.value for m in hall.daemon.monitoring.registry.collect() for s in m.samples}
        assert {k: samples[k] for k in CITY_METRICS} == {"hall_city_connected": 0, "hall_city_alerts_queued": 1}
        seq = hall.service.snapshot()["seq"]
        city.start()                                                    # back
        summary_has(observer, lambda s: s["seq"] == seq, 20, "the current summary")
        wait_until(lambda: observer.alerts("bad_rating"), 20, "the 差评 raised during the cut")
        wait_until(lambda: all(r["sent_at"] for r in queue_rows(hall)), 5, "the alert marked sent")
        time.sleep(1.5)
        bad = observer.alerts("bad_rating")
        assert len(bad) == 1 and bad[0]["ticket"]["number"] == ticket["number"]
        s = observer.latest("summary")
        assert s["counts"]["issued"] == 7 and s["ratings"]["bad_open"] == 1
        assert observer.latest("online")["online"] is True
    finally:
        hall.close()
        observer.close()


def _daemon_bad_rating(daemon: DaemonProcess) -> str:
    """Over MQTT as the apps do: a ticket served at window 3 and rated 2 by its tablet; its number."""
    kiosk, win, tab = daemon.client("kiosk-1"), daemon.client("window-3", "window", 3), daemon.client("tablet-3")
    try:
        number = kiosk.request("issue_ticket", service="consult")["ticket"]["number"]
        win.request("login", staff_id="S003", pin=PIN)
        ticket = win.request("call_next")["ticket"]
        win.request("start")
        win.request("finish")
        tab.request("rate", ticket=ticket["id"], score=2)
        win.request("logout")
        return number
    finally:
        for c in (kiosk, win, tab):
            c.close()


@needs_mosquitto
@pytest.mark.mosquitto
@pytest.mark.slow
def test_kill_9_leaves_the_last_will_and_a_restart_delivers_the_queue_once(tmp_path: Path, city: CityMosquitto):
    folder = tmp_path / "hall"
    folder.mkdir()
    config = init_hall(folder, with_city(city.port))
    write_password(folder)
    assert passwords(config)["kiosk-1"]
    observer = Observer(city.port)
    daemon = DaemonProcess(config, free_port())
    try:
        daemon.start()
        wait_until(lambda: (observer.latest("online") or {}).get("online") is True, 10, "online")
        first = _daemon_bad_rating(daemon)
        wait_until(lambda: observer.alerts("bad_rating"), 10, "the first 差评")
        time.sleep(1.2)          # its PUBACK marked it sent before the kill
        daemon.kill()
        wait_until(lambda: (observer.latest("online") or {}).get("will") is True, 10, "the last will")
        assert observer.latest("online") == {"online": False, "at": None, "will": True}

        city.stop()                                                        # WAN down
        daemon = DaemonProcess(config, free_port())
        daemon.start()                                                     # starts without the city
        second = _daemon_bad_rating(daemon)                                # queued in the database
        daemon.kill()                                                      # and killed again
        city.start()
        assert len(observer.alerts("bad_rating")) == 1
        daemon = DaemonProcess(config, free_port())
        daemon.start()
        wait_until(lambda: (observer.latest("online") or {}).get("online") is True, 15, "online again")
        wait_until(lambda: len(observer.alerts("bad_rating")) >= 2, 15, "the queued 差评")
        time.sleep(2)
        numbers = [a["ticket"]["number"] for a in observer.alerts("bad_rating")]
        assert numbers == [first, second]                                  # each once, in order
        assert len({a["id"] for a in observer.alerts("bad_rating")}) == 2
        assert daemon.terminate() == 0
        wait_until(lambda: observer.latest("online")["online"] is False, 5, "offline on a clean stop")
        assert "will" not in observer.latest("online")
    finally:
        daemon.kill()
        observer.close()


# ------------------------------------------------------------------------------------------ embedded broker

def test_the_embedded_broker_as_city_broker(tmp_path: Path):
    """The hall's own amqtt broker, run as a city broker (no hall ACL; accounts by password)."""
    accounts = CredentialStore(tmp_path / "city-accounts.yaml", iterations=FAST_HASH)
    accounts.add_or_reset(f"hall-{DISTRICT}-demo", "admin", password=CITY_PASSWORD)
    accounts.add_or_reset("observer", "admin", password="observer-pw-1")
    broker = EmbeddedBroker("127.0.0.1", 0, accounts)
    broker.start()
    observer = Observer(broker.port, "observer", "observer-pw-1")
    hall = city_hall(tmp_path, broker.port)
    try:
        wait_until(lambda: (observer.latest("online") or {}).get("online") is True, 10, "online")
        hall.issue()
        summary_has(observer, lambda s: s["counts"]["issued"] == 1)
        ticket = rate_badly(hall)
        wait_until(lambda: observer.alerts("bad_rating"), 10, "the 差评")
        wait_until(lambda: all(r["sent_at"] for r in queue_rows(hall)), 5, "marked sent")
        time.sleep(1)
        assert [a["ticket"]["number"] for a in observer.alerts("bad_rating")] == [ticket["number"]]
        assert observer.on("alert/bad_rating")[0][1] == 1
    finally:
        hall.close()
        observer.close()
        broker.stop()


@needs_mosquitto
@pytest.mark.mosquitto
def test_mqtts_to_the_city_broker_with_its_ca(tmp_path: Path):
    """city.url mqtts:// with city.ca: the broker's certificate is checked against the city's CA."""
    from hall_controller.bus.tls import ensure_hall_ca

    files = ensure_hall_ca(tmp_path / "city-tls", "市公共法律服务中心", ["localhost"], ["127.0.0.1"])
    plain, tls = free_port(), free_port()
    broker = Mosquitto(tmp_path, f"listener {plain} 127.0.0.1\nallow_anonymous true\n"
                                 f"listener {tls} 127.0.0.1\nallow_anonymous true\ncafile {files.ca_cert}\n"
                                 f"certfile {files.server_cert}\nkeyfile {files.server_key}\n")
    broker.start(plain, tls)
    observer = Observer(plain)
    folder = tmp_path / "hall"
    folder.mkdir()
    write_password(folder)

    def mutate(data: dict[str, Any]) -> None:
        no_devices(data)
        data["city"] = {**city_section(tls), "url": f"mqtts://localhost:{tls}", "ca": str(files.ca_cert)}

    hall = Hall(folder, mutate=mutate, clock=ManualClock(MONDAY))
    try:
        wait_until(lambda: (observer.latest("online") or {}).get("online") is True, 10, "online over TLS")
        hall.issue()
        summary_has(observer, lambda s: s["counts"]["issued"] == 1)
    finally:
        hall.close()
        observer.close()
        broker.stop()


def test_a_city_broker_with_an_unknown_certificate_is_said_once_and_the_hall_serves_on(tmp_path: Path, caplog):
    from hall_controller.bus.tls import ensure_hall_ca

    files = ensure_hall_ca(tmp_path / "city-tls", "市公共法律服务中心", ["localhost"], ["127.0.0.1"])
    other = ensure_hall_ca(tmp_path / "other-tls", "别的CA", ["localhost"], ["127.0.0.1"])
    tls = free_port()
    broker = Mosquitto(tmp_path, f"listener {tls} 127.0.0.1\nallow_anonymous true\ncafile {files.ca_cert}\n"
                                 f"certfile {files.server_cert}\nkeyfile {files.server_key}\n")
    broker.start(tls)
    folder = tmp_path / "hall"
    folder.mkdir()
    write_password(folder)

    def mutate(data: dict[str, Any]) -> None:
        no_devices(data)
        data["city"] = {**city_section(tls), "url": f"mqtts://localhost:{tls}", "ca": str(other.ca_cert)}

    hall = Hall(folder, mutate=mutate, clock=ManualClock(MONDAY))
    try:
        wait_until(lambda: "city uplink cannot reach the city broker" in caplog.text, 10, "the warning")
        started = time.monotonic()
        rate_badly(hall)
        assert time.monotonic() - started < 1.0 and not hall.daemon.uplink.connected
        time.sleep(2.5)                                 # paho retried meanwhile: still one warning
        assert caplog.text.count("city uplink cannot reach the city broker") == 1
        assert [r["type"] for r in queue_rows(hall)] == ["bad_rating"]
    finally:
        hall.close()
        broker.stop()
