"""The durable store, run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import sqlalchemy as sa

from hall_controller.clock import ManualClock
from hall_controller.domain import DomainError
from hall_controller.service import Actor, HallService
from hall_controller.store import Store, schema

from .conftest import TZ
from .harness import card

KIOSK = Actor("kiosk-1", "kiosk")
W3 = Actor("window-3", "window", 3)


def build(config, url, clock):
    store = Store(url)
    return HallService(config, store, clock, secret=b"k"), store


def test_state_survives_a_restart(sample_config, db_url, clock):
    svc, store = build(sample_config, db_url, clock)
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})
    svc.execute(W3, "login", {"staff_id": "S003", "pin": "1234"})
    called = svc.execute(W3, "call_next", {})["ticket"]
    svc.execute(W3, "start", {})
    before = svc.snapshot()
    store.close()

    svc2, store2 = build(sample_config, db_url, clock)
    after = svc2.snapshot()
    assert after["windows"]["3"]["ticket"]["id"] == called["id"]
    assert after["windows"]["3"]["status"] == "serving"
    assert after["queues"] == before["queues"] and after["seq"] == before["seq"]
    assert after["calls"] == before["calls"]
    assert svc2.execute(KIOSK, "issue_ticket", {"service": "consult"})["ticket"]["number"] == "A003"
    store2.close()


def test_event_log_is_append_only_and_gap_free(sample_config, db_url, clock):
    svc, store = build(sample_config, db_url, clock)
    for _ in range(3):
        svc.execute(KIOSK, "issue_ticket", {"service": "mediation"})
    svc.execute(Actor("window-6", "window", 6), "login", {"staff_id": "S006", "pin": "1234"})
    svc.execute(Actor("window-6", "window", 6), "call_next", {})
    events = list(store.iter_events())
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events] == ["ticket_issued"] * 3 + ["staff_login", "ticket_called"]
    assert len({e["event_id"] for e in events}) == len(events)
    assert list(store.iter_events(since_seq=4))[0]["type"] == "ticket_called"
    store.close()


def test_unique_constraint_rejects_a_duplicate_number(sample_config, db_url, clock):
    svc, store = build(sample_config, db_url, clock)
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})
    row = dict(svc.store.engine.connect().execute(sa.select(schema.tickets)).mappings().one())
    row["id"] = "another"
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(schema.tickets), row)
    store.close()


def test_a_failed_commit_rolls_back_memory_too(sample_config, db_url, clock, monkeypatch):
    svc, store = build(sample_config, db_url, clock)
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})

    def boom(*args, **kwargs):
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(store, "write", boom)
    with pytest.raises(DomainError) as err:
        svc.execute(KIOSK, "issue_ticket", {"service": "consult"})
    assert err.value.code == "internal"
    monkeypatch.undo()
    # Nothing of the failed command stayed in memory: the number is issued again, not skipped.
    assert svc.execute(KIOSK, "issue_ticket", {"service": "consult"})["ticket"]["number"] == "A002"
    assert svc.snapshot()["queues"]["consult"]["waiting"] == 2
    store.close()


def test_redelivered_command_is_answered_not_executed(sample_config, db_url, clock):
    svc, store = build(sample_config, db_url, clock)
    first = svc.execute(KIOSK, "issue_ticket", {"service": "consult"}, command_id="cmd-1")
    again = svc.execute(KIOSK, "issue_ticket", {"service": "consult"}, command_id="cmd-1")
    assert again == first
    store.close()
    svc2, store2 = build(sample_config, db_url, clock)           # also across a restart, where the visit
    stored = {k: v for k, v in first.items() if k not in ("visit_token", "visit_url")}   # token is not stored
    assert first["visit_token"] and svc2.execute(KIOSK, "issue_ticket", {"service": "consult"},
                                                 command_id="cmd-1") == stored
    assert svc2.snapshot()["queues"]["consult"]["waiting"] == 1
    store2.close()


def test_only_hashes_and_masks_of_id_numbers_are_stored(sample_config, db_url, clock):
    svc, store = build(sample_config, db_url, clock)
    person = card("王五", birth="19500505", serial="777")
    svc.card_inserted("kiosk-1", person)
    ticket = svc.execute(KIOSK, "issue_ticket", {"service": "consult", "use_card": True})["ticket"]
    assert ticket["priority"] == "elderly" and ticket["holder"]["name_masked"] == "王*"
    with store.engine.connect() as conn:
        dump = json.dumps([list(map(str, r)) for t in schema.metadata.sorted_tables
                           for r in conn.execute(sa.select(t))], ensure_ascii=False)
    assert person.id_number not in dump and "王五" not in dump
    assert "310101********" in dump
    store.close()


def test_closed_visits_leave_memory_but_stay_queryable(sample_config, db_url, clock):
    svc, store = build(sample_config, db_url, clock)
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})
    svc.execute(W3, "login", {"staff_id": "S003", "pin": "1234"})
    t = svc.execute(W3, "call_next", {})["ticket"]
    svc.execute(W3, "finish", {})
    svc.execute(Actor("tablet-3", "tablet", 3), "rate", {"ticket": t["id"], "score": 4})
    assert svc.engine.state.tickets == {}
    rows = store.tickets_of_day("2026-11-23")
    assert [(r["number"], r["status"], r["rating"]["score"]) for r in rows] == [("A001", "finished", 4)]
    assert rows[0]["closed_at"] is not None
    store.close()


def test_day_and_epoch_are_persisted(sample_config, db_url):
    clock = ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    svc, store = build(sample_config, db_url, clock)
    svc.execute(KIOSK, "issue_ticket", {"service": "consult"})
    svc.execute(Actor("admin", "admin"), "reset_day", {})
    assert svc.execute(KIOSK, "issue_ticket", {"service": "consult"})["ticket"]["number"] == "A001"
    store.close()
    svc2, store2 = build(sample_config, db_url, clock)
    assert (svc2.engine.state.day, svc2.engine.state.epoch) == ("2026-11-23", 1)
    assert svc2.execute(KIOSK, "issue_ticket", {"service": "consult"})["ticket"]["number"] == "A002"
    store2.close()


def test_migrations_are_idempotent(db_url):
    from hall_controller.store import upgrade

    upgrade(db_url)
    upgrade(db_url)
    eng = sa.create_engine(db_url)
    names = set(sa.inspect(eng).get_table_names())
    eng.dispose()
    assert {t.name for t in schema.metadata.sorted_tables} | {"alembic_version"} <= names
