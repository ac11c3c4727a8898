"""The daemon's Prometheus /metrics and /healthz, scraped over HTTP from a real daemon.

Each value is checked to follow the hall: tickets issued and called over MQTT move the waiting
counts, commits and the command latency histogram; a device fault takes its gauge to 0; a refused
and then unreachable management system shows as dead letters and a backlog; /healthz names the part
that fails (the bus stopped, the database refusing connections).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hall_controller.bus.client import CommandError
from hall_controller.config import ConfigError, parse_config
from hall_controller.daemon import read_runtime
from hall_controller.monitoring import METRICS, TimedCall
from hw_emulators.mgmt import MgmtEmulator

from .conftest import sample_data
from .harness import Hall, no_devices, on_database, passwords, two_windows, wait_until

TOKEN = "metrics-test-token"


def get(hall: Hall, path: str) -> tuple[int, str]:
    assert hall.daemon is not None and hall.daemon.monitoring is not None
    address = hall.daemon.monitoring.address
    assert address is not None, "the daemon serves no metrics"
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8")


def scrape(hall: Hall) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics, by (sample name, its labels)."""
    status, text = get(hall, "/metrics")
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(hall: Hall, name: str, **labels: str) -> float | None:
    return scrape(hall).get((name, frozenset(labels.items())))


def healthz(hall: Hall) -> tuple[int, dict[str, Any]]:
    status, text = get(hall, "/healthz")
    return status, json.loads(text)


# ------------------------------------------------------------------------------------ the hall's figures

@pytest.fixture
def mgmt():
    with MgmtEmulator(token=TOKEN) as emulator:
        yield emulator


def _hall_with_devices(tmp_path: Path, mgmt: MgmtEmulator) -> Hall:
    def prepare(data: dict) -> None:
        two_windows(data)
        data["voice"] = {**data.get("voice", {}), "repeat": 1}

    return Hall(tmp_path, mutate=prepare, devices="tcp", upstream_url=mgmt.url, upstream_token=TOKEN)


def _serve_and_rate(window: Any, tablet: Any) -> None:
    """Call the next ticket at window 3, serve it, and the tablet rates it: the visit closes and its
    record goes to the outbox."""
    ticket = window.request("call_next", finish_current=True)["ticket"]
    window.request("start")
    window.request("finish")
    tablet.request("rate", ticket=ticket["id"], score=5)


@pytest.mark.slow
def test_metrics_follow_the_hall(tmp_path: Path, mgmt: MgmtEmulator) -> None:
    hall = _hall_with_devices(tmp_path, mgmt)
    try:
        hall.emu.device("speaker-1").speed = 8.0     # the calls' announcements need not take real time
        def offline() -> list[str]:
            return sorted(dict(labels)["device"] for (name, labels), v in scrape(hall).items()
                          if name == "hall_device_online" and v == 0)

        wait_until(lambda: not offline(), 15, "every device online in /metrics")
        status, body = healthz(hall)
        assert status == 200 and body["status"] == "ok" and body["hall"] == "demo"
        assert body["checks"] == {"database": "ok", "clock": "ok", "bus": "ok"} and "failing" not in body
        before = scrape(hall)
        assert before[("hall_waiting_tickets", frozenset({("service", "consult")}))] == 0
        assert before[("hall_oldest_wait_seconds", frozenset({("service", "consult")}))] == 0
        assert before[("hall_client_online", frozenset({("client", "kiosk-1"), ("role", "kiosk")}))] == 0
        assert before[("hall_outbox_pending", frozenset())] == 0 and before[("hall_outbox_dead", frozenset())] == 0
        assert before[("hall_bus_connected", frozenset())] == 1 and before[("hall_open", frozenset())] == 1
        assert {dict(labels)["check"]: v for (name, labels), v in before.items() if name == "hall_healthy"} == {
            "database": 1, "clock": 1, "bus": 1}
        commits = before[("hall_store_commits_total", frozenset())]
        devices = sorted(dict(labels)["device"] for name, labels in before if name == "hall_device_online")
        assert {"bus-1", "led-3", "keypad-6", "printer-1", "speaker-1", "card-reader-1"} <= set(devices)

        # Tickets over MQTT: waiting goes up, commits and the latency histogram grow.
        kiosk = hall.client("kiosk-1")
        for _ in range(3):
            kiosk.request("issue_ticket", service="consult")
        now = scrape(hall)
        assert now[("hall_waiting_tickets", frozenset({("service", "consult")}))] == 3
        assert now[("hall_waiting_tickets", frozenset({("service", "mediation")}))] == 0
        assert now[("hall_oldest_wait_seconds", frozenset({("service", "consult")}))] > 0
        assert now[("hall_store_commits_total", frozenset())] >= commits + 3
        assert now[("hall_command_duration_seconds_count", frozenset({("op", "issue_ticket")}))] == 3
        assert now[("hall_client_online", frozenset({("client", "kiosk-1"), ("role", "kiosk")}))] == 1
        assert now[("hall_client_online", frozenset({("client", "kiosk-2"), ("role", "kiosk")}))] == 0

        # A record the management system refuses for good: a dead letter.
        window, tablet = hall.client("window-3"), hall.client("tablet-3")
        hall.login(window, "S003")
        mgmt.set_fault("4xx")
        _serve_and_rate(window, tablet)
        assert metric(hall, "hall_waiting_tickets", service="consult") == 2
        wait_until(lambda: metric(hall, "hall_outbox_dead") == 1, 15, "a dead letter in /metrics")
        assert metric(hall, "hall_outbox_pending") == 0
        # The management system down: the next record waits, and ages; back up, it drains.
        mgmt.set_fault("5xx")
        _serve_and_rate(window, tablet)
        wait_until(lambda: metric(hall, "hall_outbox_pending") == 1, 10, "a record waiting")
        wait_until(lambda: (metric(hall, "hall_outbox_oldest_pending_seconds") or 0) > 0.5, 10, "its age")
        mgmt.clear_fault()
        wait_until(lambda: metric(hall, "hall_outbox_pending") == 0, 30, "the backlog delivered")
        assert metric(hall, "hall_outbox_oldest_pending_seconds") == 0 and metric(hall, "hall_outbox_dead") == 1
        calls = metric(hall, "hall_command_duration_seconds_count", op="call_next")
        assert calls == 2 and metric(hall, "hall_command_duration_seconds_count", op="rate") == 2

        # The speaker unplugged: its gauge drops and the next call waits in its queue; back, it plays.
        wait_until(lambda: metric(hall, "hall_announcements_queued", device="speaker-1") == 0, 30,
                   "the announcements so far played")
        speaker = hall.emu.device("speaker-1")
        speaker.set_fault("disconnect")
        wait_until(lambda: metric(hall, "hall_device_online", device="speaker-1", kind="speaker") == 0, 15,
                   "speaker-1 offline in /metrics")
        window.request("call_next", finish_current=True)
        assert metric(hall, "hall_waiting_tickets", service="consult") == 0
        wait_until(lambda: metric(hall, "hall_announcements_queued", device="speaker-1") == 1, 5,
                   "the call queued for the speaker")
        speaker.clear_fault()
        wait_until(lambda: metric(hall, "hall_announcements_queued", device="speaker-1") == 0, 30,
                   "the queued call played")
        # A printer pulled, found out at the next ticket: one device fewer online.
        hall.emu.device("printer-1").set_fault("disconnect")
        assert kiosk.request("issue_ticket", service="consult")["printed"] is False
        wait_until(lambda: metric(hall, "hall_device_online", device="printer-1", kind="printer") == 0, 15,
                   "printer-1 offline in /metrics")
        wait_until(lambda: metric(hall, "hall_device_online", device="speaker-1", kind="speaker") == 1, 15,
                   "speaker-1 online again")
        assert offline() == ["printer-1"]
        after = scrape(hall)
        assert after[("hall_store_commits_total", frozenset())] > now[("hall_store_commits_total", frozenset())]
        assert {name for name, _ in after} >= {n if n != "hall_command_duration_seconds" else n + "_count"
                                              for n in METRICS}
    finally:
        hall.close()


# ------------------------------------------------------------------------------------ health

def test_healthz_names_the_part_that_fails_and_shows_no_secret(tmp_path: Path) -> None:
    hall = Hall(tmp_path, mutate=no_devices)
    try:
        assert healthz(hall)[0] == 200
        kiosk = hall.client("kiosk-1")
        with pytest.raises(CommandError):
            kiosk.request("frobnicate")                                  # an op nobody may send …
        samples = scrape(hall)
        assert samples[("hall_command_duration_seconds_count", frozenset({("op", "other")}))] == 1
        assert not any(("op", "frobnicate") in labels for _, labels in samples)   # … is no label of its own
        assert get(hall, "/nothing")[0] == 404

        assert hall.daemon is not None and hall.daemon.bridge is not None
        hall.daemon.bridge.stop()                              # the daemon loses its broker
        status, body = healthz(hall)
        assert status == 503 and body["status"] == "fail" and body["failing"] == ["bus"]
        assert body["checks"]["database"] == "ok" and body["checks"]["clock"] == "ok"
        assert body["checks"]["bus"].startswith("未连接MQTT代理")
        assert metric(hall, "hall_bus_connected") == 0           # /metrics still served
        assert metric(hall, "hall_healthy", check="bus") == 0 and metric(hall, "hall_healthy", check="database") == 1
        assert hall.daemon.watchdog_problem() is None             # no restart for a broker outage
        text = json.dumps(body, ensure_ascii=False)
        for secret in (*passwords(hall.config_path).values(), Path(hall.config.secret_path).read_bytes().hex()):
            assert secret not in text
    finally:
        hall.close()


@pytest.mark.postgres
def test_healthz_503_while_the_database_refuses(tmp_path: Path, pg_url: str,
                                               pg_allow: Callable[[bool], None]) -> None:
    hall = Hall(tmp_path, mutate=on_database(pg_url))
    try:
        assert healthz(hall)[0] == 200 and metric(hall, "hall_outbox_pending") == 0
        pg_allow(False)
        status, body = healthz(hall)
        assert status == 503 and body["failing"] == ["database"] and body["checks"]["bus"] == "ok"
        assert hall.daemon is not None and hall.daemon.watchdog_problem() == "database"
        samples = scrape(hall)                                     # what can be read still is
        assert ("hall_outbox_pending", frozenset()) not in samples
        assert samples[("hall_healthy", frozenset({("check", "database")}))] == 0
        assert samples[("hall_waiting_tickets", frozenset({("service", "consult")}))] == 0
        pg_allow(True)
        wait_until(lambda: healthz(hall)[0] == 200, 10, "healthy again")
        assert hall.daemon.watchdog_problem() is None and metric(hall, "hall_outbox_pending") == 0
    finally:
        pg_allow(True)
        hall.close()


def test_a_database_call_that_hangs_times_out_once() -> None:
    release, started = threading.Event(), []

    def hang() -> int:
        started.append(1)
        release.wait(10)
        return 7

    call = TimedCall(hang, 0.05, "database")
    for _ in range(3):
        with pytest.raises(TimeoutError, match="database: no answer within 0.05 s"):
            call()
    assert len(started) == 1            # the later callers waited on the same hung call
    release.set()
    wait_until(lambda: call() == 7, 2, "the answer once it came")


# ------------------------------------------------------------------------------------ address and config

def test_port_0_is_recorded_in_the_runtime_file(tmp_path: Path) -> None:
    hall = Hall(tmp_path, mutate=no_devices)
    try:
        assert hall.config.metrics_listen == "127.0.0.1:0"    # the sample hall's
        assert hall.daemon is not None and hall.daemon.monitoring is not None
        host, port = hall.daemon.monitoring.address or ("", 0)
        assert host == "127.0.0.1" and port > 0
        record = read_runtime(hall.config)
        assert record is not None and record["metrics"] == f"127.0.0.1:{port}"
    finally:
        hall.close()
    with socket.socket() as probe:       # stopped: the port is free again
        probe.bind(("127.0.0.1", port))


def test_a_busy_port_is_logged_and_the_hall_serves_on(tmp_path: Path, caplog) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]

        def prepare(data: dict) -> None:
            no_devices(data)
            data["monitoring"] = {"listen": f"127.0.0.1:{busy}"}

        caplog.set_level(logging.INFO, "hall_controller")
        hall = Hall(tmp_path, mutate=prepare)
        try:
            assert hall.daemon is not None and hall.daemon.monitoring is not None
            assert hall.daemon.monitoring.address is None
            assert any(r.levelno == logging.ERROR and f"cannot listen on 127.0.0.1:{busy}" in r.getMessage()
                       for r in caplog.records)
            record = read_runtime(hall.config)
            assert record is not None and record["metrics"] is None
            assert hall.client("kiosk-1").request("issue_ticket", service="consult")["ticket"]["number"] == "A001"
        finally:
            hall.close()


def test_monitoring_config_is_checked() -> None:
    data = sample_data()
    data["monitoring"] = {"listen": "9108"}
    with pytest.raises(ConfigError, match="monitoring.listen"):
        parse_config(data)
    data["monitoring"] = {"listen": "0.0.0.0:9108", "port": 1}
    with pytest.raises(ConfigError, match="monitoring.port"):
        parse_config(data)
    data["monitoring"] = {"listen": "0.0.0.0:9108"}
    assert parse_config(data).metrics_listen == "0.0.0.0:9108"
    del data["monitoring"]
    assert parse_config(data).metrics_listen is None


def test_scrapes_are_cheap(tmp_path: Path) -> None:
    """A scrape reads live values; a hall with a full queue answers it quickly."""
    hall = Hall(tmp_path, mutate=no_devices)
    try:
        for _ in range(200):
            hall.issue("consult")
        start = time.monotonic()
        for _ in range(10):
            assert metric(hall, "hall_waiting_tickets", service="consult") == 200
        assert (time.monotonic() - start) / 10 < 0.5     # about 10 ms on an idle machine
    finally:
        hall.close()
