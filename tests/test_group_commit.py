"""Concurrent commands: acknowledged only once durable, events in sequence order, failures all-or-nothing."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from hall_controller.domain import DomainError
from hall_controller.service import Actor, HallService
from hall_controller.store import Store

KIOSKS = [Actor(f"kiosk-{i}", "kiosk") for i in (1, 2)]


def test_concurrent_clients_get_unique_numbers_and_ordered_events(sample_config, clock, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'hall.db'}")
    service = HallService(sample_config, store, clock, secret=b"k")
    seen: list[int] = []
    service.subscribe(lambda e: seen.append(e["seq"]))
    numbers: list[str] = []
    lock = threading.Lock()

    def issue(kiosk: Actor) -> None:
        for _ in range(60):
            number = service.execute(kiosk, "issue_ticket", {"service": "consult"})["ticket"]["number"]
            with lock:
                numbers.append(number)

    threads = [threading.Thread(target=issue, args=(KIOSKS[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == [f"A{n:03d}" for n in range(1, 361)]
    assert seen == list(range(1, len(seen) + 1))          # published once each, in order
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM tickets")).scalar() == 360
        assert conn.execute(sa.text("SELECT max(seq) FROM events")).scalar() == len(seen)
    store.close()


def test_a_failed_group_commit_fails_every_command_in_it_and_loses_no_number(sample_config, clock, tmp_path,
                                                                           monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'hall.db'}")
    service = HallService(sample_config, store, clock, secret=b"k")
    service.execute(KIOSKS[0], "issue_ticket", {"service": "consult"})          # A001 durable
    real_write = store.write
    gate = threading.Event()
    entered = threading.Event()

    def failing_write(writesets):
        entered.set()
        gate.wait(5)               # hold the commit so other commands queue behind it
        raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store, "write", failing_write)
    errors: list[str] = []

    def issue() -> None:
        try:
            service.execute(KIOSKS[1], "issue_ticket", {"service": "consult"})
        except DomainError as exc:
            errors.append(exc.code)

    first = threading.Thread(target=issue)
    first.start()
    assert entered.wait(5)
    others = [threading.Thread(target=issue) for _ in range(3)]      # queued behind the failing commit
    for t in others:
        t.start()
    while len(service._queue) < 3:         # noqa: SLF001 - wait until they are queued
        threading.Event().wait(0.01)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert errors == ["internal"] * 4
    monkeypatch.setattr(store, "write", real_write)
    # Nothing of the failed commands stayed in memory: numbering continues right after A001.
    assert service.execute(KIOSKS[0], "issue_ticket", {"service": "consult"})["ticket"]["number"] == "A002"
    assert service.snapshot()["queues"]["consult"]["waiting"] == 2
    store.close()


def test_redelivery_while_the_first_copy_is_in_flight_runs_once(sample_config, clock, tmp_path, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'hall.db'}")
    service = HallService(sample_config, store, clock, secret=b"k")
    real_write = store.write
    gate = threading.Event()

    def slow_write(writesets):
        gate.wait(5)
        real_write(writesets)

    monkeypatch.setattr(store, "write", slow_write)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(
        service.execute(KIOSKS[0], "issue_ticket", {"service": "notary"}, command_id="same-id"))) for _ in range(2)]
    threads[0].start()
    while "same-id" not in service._inflight:      # noqa: SLF001
        threading.Event().wait(0.01)
    threads[1].start()
    threading.Event().wait(0.1)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(results) == 2 and results[0] == results[1]
    assert service.snapshot()["queues"]["notary"]["waiting"] == 1
    store.close()


def test_unchanged_command_with_id_is_remembered(sample_config, clock, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'hall.db'}")
    service = HallService(sample_config, store, clock, secret=b"k")
    w = Actor("window-3", "window", 3)
    service.execute(w, "login", {"staff_id": "S003", "pin": "1234"})
    assert service.execute(w, "call_next", {}, command_id="c1") == {"ticket": None}
    service.execute(KIOSKS[0], "issue_ticket", {"service": "consult"})
    # The redelivered call_next must not call the ticket that arrived in between.
    assert service.execute(w, "call_next", {}, command_id="c1") == {"ticket": None}
    assert service.snapshot()["queues"]["consult"]["waiting"] == 1
    store.close()
