"""Forwarder: ordering, scans first, dead letters, poison records, a week-long outage, kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select
from sqlalchemy.pool import StaticPool

from hall_controller.store.outbox import enqueue, store_scan
from hall_controller.store.schema import db_time, metadata
from hall_controller.store.schema import outbox as outbox_table
from hall_controller.store.schema import scans as scans_table
from hall_controller.upstream.client import DeliveryResult, UpstreamClient
from hall_controller.upstream.forwarder import Forwarder

from .harness import wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def engine():
    eng = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def add_record(engine, clock, i: int, scans: list[dict[str, Any]] | None = None) -> str:
    key = f"rec-{i:05d}"
    with engine.begin() as conn:
        enqueue(conn, record_key=key, kind="service_record",
                payload={"record_id": key, "ticket_number": f"A{i % 1000:03d}", "scans": scans or []},
                now=clock.now())
    return key


def rows(engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(outbox_table).order_by(outbox_table.c.id))]


def drain(fwd: Forwarder, clock, engine, limit: int = 10_000) -> None:
    """Run rounds, jumping the clock to each next wake-up, until nothing is pending."""
    for _ in range(limit):
        fwd.run_once()
        wakeup = fwd.next_wakeup()
        if wakeup is None:
            return
        if wakeup > clock.now():
            clock.set(wakeup)
    raise AssertionError("outbox did not drain")


def test_delivers_in_id_order_and_marks_rows(engine, emu, client, clock):
    keys = [add_record(engine, clock, i) for i in range(5)]
    fwd = Forwarder(engine, client, clock)
    assert fwd.run_once() == 5
    assert [r["idempotency_key"] for r in emu.received_records()] == keys
    for row in rows(engine):
        assert row["status"] == "delivered" and row["attempts"] == 1
        assert row["delivered_at"] == db_time(clock.now()) and row["last_error"] is None
    assert fwd.run_once() == 0
    assert fwd.next_wakeup() is None
    summary = fwd.outbox_summary()
    assert (summary["pending"], summary["delivered"], summary["dead"]) == (0, 5, 0)


def test_batch_limits_one_round(engine, emu, client, clock):
    for i in range(7):
        add_record(engine, clock, i)
    fwd = Forwarder(engine, client, clock, batch=3)
    assert [fwd.run_once() for _ in range(4)] == [3, 3, 1, 0]
    assert len(emu.received_records()) == 7


def test_scans_are_uploaded_before_their_record_and_only_once(engine, emu, client, clock):
    with engine.begin() as conn:
        scan_a = store_scan(conn, data=b"image-a", content_type="image/jpeg", ticket_id="t1", now=clock.now())
        scan_b = store_scan(conn, data=b"image-b", content_type="image/png", ticket_id="t1", now=clock.now())
    first = add_record(engine, clock, 1, scans=[scan_a, scan_b])
    second = add_record(engine, clock, 2, scans=[scan_a])
    missing = {"sha256": "f" * 64, "size": 3, "type": "image/jpeg"}
    third = add_record(engine, clock, 3, scans=[missing])  # not stored locally: sent without it
    fwd = Forwarder(engine, client, clock)
    assert fwd.run_once() == 3

    scans = {s["sha256"]: s for s in emu.received_scans()}
    records = {r["idempotency_key"]: r for r in emu.received_records()}
    assert set(scans) == {scan_a["sha256"], scan_b["sha256"]}
    assert scans[scan_a["sha256"]]["content_type"] == "image/jpeg"
    assert max(scans[s["sha256"]]["seq"] for s in (scan_a, scan_b)) < records[first]["seq"]
    assert set(records) == {first, second, third}
    assert emu.store.scan_data(scan_b["sha256"]) == b"image-b"
    with engine.connect() as conn:
        assert all(r.uploaded_at is not None for r in conn.execute(select(scans_table)))
    assert fwd.outbox_summary()["scans_waiting"] == 0


def test_failed_scan_upload_holds_its_record(engine, emu, client, clock):
    with engine.begin() as conn:
        scan = store_scan(conn, data=b"img", content_type="image/jpeg", ticket_id="t1", now=clock.now())
    key = add_record(engine, clock, 1, scans=[scan])
    emu.set_fault("5xx", count=1)  # only the scan PUT fails
    fwd = Forwarder(engine, client, clock, rng=random.Random(0))
    fwd.run_once()
    [row] = rows(engine)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["last_error"].startswith(f"HTTP 503: scan {scan['sha256'][:12]}")
    assert emu.received_records() == []
    drain(fwd, clock, engine)
    assert [r["idempotency_key"] for r in emu.received_records()] == [key]


def test_permanent_4xx_dead_letters_and_can_be_retried(engine, emu, client, clock):
    keys = [add_record(engine, clock, i) for i in range(3)]
    dead: list[dict[str, Any]] = []
    fwd = Forwarder(engine, client, clock, on_dead=dead.append)
    emu.set_fault("4xx", count=1)
    assert fwd.run_once() == 3
    assert [r["idempotency_key"] for r in emu.received_records()] == keys[1:]
    [letter] = dead
    assert letter["record_key"] == keys[0] and letter["status"] == "dead" and letter["attempts"] == 1
    assert letter["last_error"].startswith("HTTP 422")
    summary = fwd.outbox_summary()
    assert summary["dead"] == 1 and summary["dead_records"][0]["record_key"] == keys[0]

    assert fwd.retry_dead("no-such-key") == 0
    assert fwd.retry_dead(keys[0]) == 1
    assert fwd.run_once() == 1
    assert [r["idempotency_key"] for r in emu.received_records()] == keys[1:] + keys[:1]
    assert fwd.outbox_summary()["dead"] == 0


def test_retry_dead_all_and_a_failing_callback_does_not_stop_delivery(engine, emu, client, clock):
    for i in range(3):
        add_record(engine, clock, i)

    def explode(row: dict[str, Any]) -> None:
        raise RuntimeError("supervisor bus down")

    fwd = Forwarder(engine, client, clock, on_dead=explode)
    emu.set_fault("4xx", count=2)
    assert fwd.run_once() == 3
    assert fwd.outbox_summary()["dead"] == 2
    assert fwd.retry_dead() == 2
    assert fwd.run_once() == 2
    assert len(emu.received_records()) == 3


def test_bad_rows_are_dead_without_calling_upstream(engine, emu, client, clock):
    now = db_time(clock.now())
    with engine.begin() as conn:
        conn.execute(insert(outbox_table), [
            {"record_key": "weird", "kind": "telemetry", "payload": "{}", "status": "pending", "attempts": 0,
             "created_at": now, "next_attempt_at": now},
            {"record_key": "broken", "kind": "service_record", "payload": "{oops", "status": "pending",
             "attempts": 0, "created_at": now, "next_attempt_at": now},
        ])
    dead: list[str] = []
    fwd = Forwarder(engine, client, clock, on_dead=lambda row: dead.append(row["record_key"]))
    assert fwd.run_once() == 2
    assert dead == ["weird", "broken"]
    assert emu.received_records() == []


def test_row_without_next_attempt_at_is_due(engine, emu, client, clock):
    with engine.begin() as conn:
        conn.execute(insert(outbox_table).values(record_key="bare", kind="service_record", payload="{}",
                                                 status="pending", attempts=0))
    fwd = Forwarder(engine, client, clock)
    assert fwd.next_wakeup() == clock.now()
    assert fwd.run_once() == 1
    assert [r["idempotency_key"] for r in emu.received_records()] == ["bare"]


def test_monthly_report_rows(engine, emu, client, clock):
    report = {"hall": {"code": "demo"}, "month": "2024-05", "totals": {"issued": 3}}
    with engine.begin() as conn:
        assert enqueue(conn, record_key="report:demo:2024-05", kind="monthly_report", payload=report,
                       now=clock.now())
    fwd = Forwarder(engine, client, clock)
    assert fwd.run_once() == 1
    assert [(r["hall"], r["month"]) for r in emu.received_reports()] == [("demo", "2024-05")]
    # a resend after a crash is answered 409 and still counts as delivered
    assert fwd.retry_dead() == 0
    assert client.post_monthly_report(report).outcome == "delivered"


def test_resend_after_a_lost_acknowledgement_is_deduplicated(engine, emu, client, clock):
    key = add_record(engine, clock, 1)
    [row] = rows(engine)
    # the upstream got the record but the hall died before marking it delivered
    assert client.post_service_record(key, json.loads(row["payload"])).status == 201
    fwd = Forwarder(engine, client, clock)
    assert fwd.run_once() == 1
    [received] = emu.received_records()
    assert received["attempts"] == 2
    assert rows(engine)[0]["status"] == "delivered"


class ScriptedClient:
    """Answers per record key: keys in `poison` get 503, everything else 201."""

    def __init__(self, poison: set[str]) -> None:
        self.poison = poison
        self.calls: list[str] = []

    def post_service_record(self, key: str, body: dict[str, Any]) -> DeliveryResult:
        self.calls.append(key)
        if key in self.poison:
            return DeliveryResult("retry", 503, "poisoned")
        return DeliveryResult("delivered", 201, "created")


def test_one_failing_record_does_not_block_the_others(engine, clock):
    keys = [add_record(engine, clock, i) for i in range(6)]
    client = ScriptedClient({keys[1]})
    fwd = Forwarder(engine, client, clock, rng=random.Random(3))
    assert fwd.run_once() == 6
    status = {r["record_key"]: r for r in rows(engine)}
    assert [status[k]["status"] for k in keys] == ["delivered", "pending"] + ["delivered"] * 4
    assert fwd.outbox_summary()["paused_until"] is None  # the upstream answered: not an outage
    # the failing record backs off on its own schedule, growing each time
    delays = []
    for _ in range(6):
        wakeup = fwd.next_wakeup()
        delays.append((wakeup - clock.now()).total_seconds())
        clock.set(wakeup)
        assert fwd.run_once() == 1
    assert all(later > earlier for earlier, later in zip(delays, delays[1:], strict=False))
    client.poison.clear()
    drain(fwd, clock, engine)
    assert rows(engine)[1]["status"] == "delivered" and rows(engine)[1]["attempts"] == 8


def test_adjacent_failing_records_cannot_block_the_queue(engine, clock):
    keys = [add_record(engine, clock, i) for i in range(6)]
    client = ScriptedClient({keys[1], keys[2]})
    fwd = Forwarder(engine, client, clock, rng=random.Random(3))
    fwd.run_once()  # 0 ok, 1 fails, probe 2 fails too: looks like an outage, pause
    assert client.calls == keys[:3]
    clock.set(fwd.next_wakeup())
    fwd.run_once()  # 1 fails, probe 3 (never tried) answers: upstream is up, carry on
    delivered = {r["record_key"] for r in rows(engine) if r["status"] == "delivered"}
    assert delivered == {keys[0], keys[3], keys[4], keys[5]}


@pytest.mark.slow
def test_week_long_outage_delivers_every_record_once_in_order(engine, emu, client, clock):
    """A record every 5 minutes for 7 days while the upstream answers 503, then it recovers."""
    fwd = Forwarder(engine, client, clock, rng=random.Random(11))
    emu.set_fault("5xx")
    start = clock.now()
    end = start + timedelta(days=7)
    interval = timedelta(minutes=5)
    keys: list[str] = []
    scan_of: dict[str, str] = {}
    next_record = start
    rounds = 0
    while clock.now() < end:
        while next_record <= clock.now():
            i = len(keys)
            scans = []
            if i % 100 == 50:
                with engine.begin() as conn:
                    scans = [store_scan(conn, data=f"scan {i}".encode(), content_type="image/jpeg",
                                        ticket_id=str(i), now=clock.now())]
            keys.append(add_record(engine, clock, i, scans))
            if scans:
                scan_of[keys[-1]] = scans[0]["sha256"]
            next_record += interval
        if fwd.run_once():
            rounds += 1
        wakeup = fwd.next_wakeup()
        clock.set(max(clock.now() + timedelta(seconds=1), min(wakeup or end, next_record, end)))
    assert len(keys) == 2016
    assert emu.received_records() == []
    summary = fwd.outbox_summary()
    assert summary["pending"] == len(keys) and summary["paused_until"] is not None
    # the circuit breaker kept the load down: two requests per round, rounds at most every ~4 min
    assert rounds < 7 * 24 * 3600 / 240 + 30
    attempts_during_outage = sum(r["attempts"] for r in rows(engine))
    assert attempts_during_outage <= 2 * rounds

    emu.clear_fault()
    recovered_at = clock.now()
    drain(fwd, clock, engine)
    assert clock.now() - recovered_at <= timedelta(seconds=300)

    received = emu.received_records()
    assert [r["idempotency_key"] for r in received] == keys  # all, once each, in id order
    assert all(r["body"]["record_id"] == r["idempotency_key"] for r in received)
    assert {r["status"] for r in rows(engine)} == {"delivered"}
    scans = {s["sha256"]: s["seq"] for s in emu.received_scans()}
    seq = {r["idempotency_key"]: r["seq"] for r in received}
    assert len(scans) == len(scan_of) == 20
    assert all(scans[sha] < seq[key] for key, sha in scan_of.items())


def test_background_thread_sends_on_wake_and_stops(tmp_path, emu, client, clock):
    engine = create_engine(f"sqlite:///{tmp_path / 'hall.db'}")
    metadata.create_all(engine)
    fwd = Forwarder(engine, client, clock)
    fwd.start()
    try:
        with pytest.raises(RuntimeError):
            fwd.start()
        keys = [add_record(engine, clock, i) for i in range(3)]
        fwd.wake()
        wait_until(lambda: len(emu.received_records()) >= 3, 5, "three records at the management system")
        assert [r["idempotency_key"] for r in emu.received_records()] == keys
    finally:
        started = time.monotonic()
        fwd.stop()
        assert time.monotonic() - started < 2
    engine.dispose()


CHILD = textwrap.dedent("""
    import sys
    from sqlalchemy import create_engine
    from hall_controller.clock import SystemClock
    from hall_controller.upstream.client import UpstreamClient
    from hall_controller.upstream.forwarder import Forwarder

    engine = create_engine("sqlite:///" + sys.argv[1])
    fwd = Forwarder(engine, UpstreamClient(sys.argv[2], "tok", timeout=5), SystemClock(), batch=5)
    print("started", flush=True)
    while True:
        fwd.run_once()
""")


def test_kill_9_mid_delivery_loses_nothing_and_duplicates_nothing(tmp_path, emu):
    from hall_controller.clock import SystemClock

    clock = SystemClock()
    db = tmp_path / "hall.db"
    engine = create_engine(f"sqlite:///{db}")
    metadata.create_all(engine)
    keys = [add_record(engine, clock, i) for i in range(60)]
    emu.set_fault("slow", ms=15)  # so the kill lands while requests are in flight
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), emu.url], cwd=ROOT,
                             stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == b"started"
        wait_until(lambda: len(emu.received_records()) >= 10, 10, "ten records sent before the kill",
                   interval=0.005)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    sent_before = len(emu.received_records())
    assert 10 <= sent_before < 60
    emu.clear_fault()

    fwd = Forwarder(engine, UpstreamClient(emu.url, "tok"), clock)  # the restarted daemon
    while fwd.run_once():
        pass
    received = emu.received_records()
    assert sorted(r["idempotency_key"] for r in received) == keys
    assert len(received) == 60
    assert {r["status"] for r in rows(engine)} == {"delivered"}
    engine.dispose()


def test_rows_stamped_with_plain_utc_isoformat_are_scheduled_correctly(engine, emu, client, clock):
    """The store stamps rows with `datetime.isoformat()` in UTC (no fixed fraction); text order still holds."""
    now = clock.now().replace(microsecond=0)
    clock.set(now)
    with engine.begin() as conn:
        conn.execute(insert(outbox_table), [
            {"record_key": key, "kind": "service_record", "payload": "{}", "status": "pending", "attempts": 0,
             "created_at": at.isoformat(), "next_attempt_at": at.isoformat()}
            for key, at in (("now", now), ("later", now + timedelta(seconds=10)))
        ])
    fwd = Forwarder(engine, client, clock)
    assert fwd.run_once() == 1
    assert fwd.next_wakeup() == now + timedelta(seconds=10)
    clock.advance(seconds=9, microseconds=999_999)
    assert fwd.run_once() == 0
    clock.advance(microseconds=1)
    assert fwd.run_once() == 1
    assert [r["idempotency_key"] for r in emu.received_records()] == ["now", "later"]
