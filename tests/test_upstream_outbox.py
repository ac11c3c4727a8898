"""Outbox tables and helpers on SQLite and PostgreSQL, and a forwarder round on each."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, inspect, select

from hall_controller.store import upgrade
from hall_controller.store.outbox import enqueue, store_scan
from hall_controller.store.schema import db_time, outbox, scans
from hall_controller.upstream.client import UpstreamClient
from hall_controller.upstream.forwarder import Forwarder
from hw_emulators.mgmt import MgmtEmulator


@pytest.fixture
def store(db_url):
    """The tables as the store's migrations create them."""
    upgrade(db_url)
    engine = create_engine(db_url)
    yield engine, outbox, scans
    engine.dispose()


def test_table_definitions(store):
    engine, outbox, scans = store
    columns = {c["name"] for c in inspect(engine).get_columns("outbox")}
    assert columns == {"id", "record_key", "kind", "created_at", "payload", "status", "attempts",
                       "next_attempt_at", "last_error", "delivered_at"}
    assert {c["name"] for c in inspect(engine).get_columns("scans")} == {
        "sha256", "ticket_id", "content_type", "size", "data", "created_at", "uploaded_at"}
    assert [c.name for c in outbox.primary_key] == ["id"] and [c.name for c in scans.primary_key] == ["sha256"]


def test_db_time_is_utc_fixed_width_and_orders_as_text():
    shanghai = timezone(timedelta(hours=8))
    a = datetime(2024, 5, 6, 9, 0, tzinfo=shanghai)
    assert db_time(a) == "2024-05-06T01:00:00.000000+00:00"
    later = datetime(2024, 5, 6, 1, 0, 0, 1, tzinfo=UTC)
    assert db_time(a) < db_time(later)
    with pytest.raises(ValueError):
        db_time(datetime(2024, 5, 6))


def test_enqueue_and_store_scan_are_idempotent(store, clock):
    engine, outbox, scans = store
    with engine.begin() as conn:
        ref = store_scan(conn, data=b"jpeg", content_type="image/jpeg", ticket_id="t1", now=clock.now())
        assert store_scan(conn, data=b"jpeg", content_type="image/jpeg", ticket_id="t2", now=clock.now()) == ref
        assert enqueue(conn, record_key="r1", kind="service_record", payload={"scans": [ref], "名": "张*"},
                       now=clock.now())
        assert not enqueue(conn, record_key="r1", kind="service_record", payload={}, now=clock.now())
        with pytest.raises(ValueError):
            enqueue(conn, record_key="r2", kind="other", payload={}, now=clock.now())
    assert ref == {"sha256": hashlib.sha256(b"jpeg").hexdigest(), "size": 4, "type": "image/jpeg"}
    with engine.connect() as conn:
        [row] = conn.execute(select(outbox)).all()
        [scan] = conn.execute(select(scans)).all()
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, db_time(clock.now()))
    assert json.loads(row.payload)["名"] == "张*"
    assert (bytes(scan.data), scan.ticket_id, scan.uploaded_at) == (b"jpeg", "t1", None)


def test_forwarder_round_on_each_database(store, clock):
    engine, outbox, scans = store
    with engine.begin() as conn:
        ref = store_scan(conn, data=b"png", content_type="image/png", ticket_id="t1", now=clock.now())
        for i in range(3):
            enqueue(conn, record_key=f"r{i}", kind="service_record", payload={"i": i, "scans": [ref]},
                    now=clock.now())
    with MgmtEmulator() as emu:
        emu.set_fault("4xx", count=2)  # the scan PUT of r0, then that of r1
        dead: list[str] = []
        fwd = Forwarder(engine, UpstreamClient(emu.url, "tok"), clock, on_dead=lambda row: dead.append(row["record_key"]))
        assert fwd.run_once() == 3
        assert dead == ["r0", "r1"]
        assert [r["idempotency_key"] for r in emu.received_records()] == ["r2"]
        assert fwd.retry_dead() == 2
        assert fwd.run_once() == 2
        assert [r["idempotency_key"] for r in emu.received_records()] == ["r2", "r0", "r1"]
        summary = fwd.outbox_summary()
    assert (summary["pending"], summary["delivered"], summary["dead"], summary["scans_waiting"]) == (0, 3, 0, 0)
