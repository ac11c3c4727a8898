"""Random sequences of every op (with restarts from the store) must keep the queue invariants."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hall_controller.clock import ManualClock
from hall_controller.config import parse_config
from hall_controller.domain import FINAL, STATUSES, DomainError
from hall_controller.domain.model import PRIORITY_RANK
from hall_controller.service import Actor, HallService
from hall_controller.store import Store

from .conftest import TZ, sample_data
from .harness import card

CONFIG = parse_config(sample_data(), "sample.yaml")
SERVICES = [s.code for s in CONFIG.services]
WINDOWS = [w.number for w in CONFIG.windows]
STAFF = [s.id for s in CONFIG.staff]
PEOPLE = [card(f"人{i}", birth=b, serial=f"{i:03d}") for i, b in enumerate(["19400101", "19800101", "20000101"])]
windows = st.sampled_from(WINDOWS)


def full_scan_pick(engine, number, now):
    """DESIGN §4 by brute force: rank, window weight, effective arrival; the normal-ratio rule."""
    win_cfg = next(w for w in CONFIG.windows if w.number == number)
    keyed = []
    for t in engine.state.tickets.values():
        weight = engine._eligible(win_cfg, t)  # noqa: SLF001
        if weight is not None:
            rank, when = engine._rank(t, now)  # noqa: SLF001
            keyed.append(((rank, -weight, when, t.seq_no, t.id), t))
    if not keyed:
        return None
    best_key, best = min(keyed, key=lambda kt: kt[0])
    normal = [kt for kt in keyed if kt[0][0] == PRIORITY_RANK["normal"]]
    if (best_key[0] < PRIORITY_RANK["normal"] and normal
            and engine.state.windows[number].priority_streak >= CONFIG.rules.priority_ratio):
        return min(normal, key=lambda kt: kt[0])[1]
    return best


class QueueMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.url = f"sqlite:///{Path(self.tmp.name) / 'hall.db'}"
        self.clock = ManualClock(datetime(2026, 11, 23, 8, 0, tzinfo=TZ))
        self.store = Store(self.url, sqlite_sync="OFF")
        self.service = HallService(CONFIG, self.store, self.clock, secret=b"k")
        self.seen: dict[str, dict] = {}            # every ticket ever reported, latest view
        self.first: dict[str, dict] = {}           # first view, for arrival time / first officer
        self.last_seq = 0
        self.violations: list[str] = []            # failed checks of events, see _on_event
        self.service.subscribe(self._on_event)

    def teardown(self):
        if hasattr(self, "store"):
            self.store.close()
            self.tmp.cleanup()

    def _on_event(self, event):
        """Subscriber: HallService._publish logs what a subscriber raises and carries on, so a failed
        check is collected here and asserted by the invariant `events_seen_by_subscribers_are_valid`."""
        try:
            self._check_event(event)
        except AssertionError as exc:
            self.violations.append(f"event seq {event.get('seq')} ({event.get('type')}): {exc}")

    def _check_event(self, event):
        assert event["seq"] == self.last_seq + 1, "event sequence must be gap-free and monotonic"
        self.last_seq = event["seq"]
        t = event.get("ticket")
        if t is None:
            return
        prev = self.seen.get(t["id"])
        if prev is not None and prev["status"] in FINAL:
            assert t["status"] == prev["status"], f"{t['number']} left final state {prev['status']}"
        if prev is not None and prev["status"] == "no_show" and t["status"] not in ("no_show", "waiting",
                                                                                     "cancelled"):
            raise AssertionError(f"no_show ticket {t['number']} became {t['status']}")
        self.seen[t["id"]] = t
        self.first.setdefault(t["id"], t)

    def _do(self, actor: Actor, op: str, **args):
        try:
            return self.service.execute(actor, op, args)
        except DomainError as exc:
            assert exc.code != "internal"
            return None

    def _window(self, n: int) -> Actor:
        return Actor(f"window-{n}", "window", n)

    @rule(service=st.sampled_from(SERVICES), person=st.none() | st.sampled_from(PEOPLE), green=st.booleans())
    def issue(self, service, person, green):
        kiosk = Actor("kiosk-1", "kiosk")
        if person is not None:
            self.service.card_inserted("kiosk-1", person)
        self._do(kiosk, "issue_ticket", service=service, use_card=person is not None, green=green)

    @rule(window=windows, staff=st.sampled_from(STAFF))
    def login(self, window, staff):
        self._do(self._window(window), "login", staff_id=staff, pin="1234")

    @rule(window=windows)
    def logout(self, window):
        self._do(self._window(window), "logout")

    @rule(window=windows, finish=st.booleans())
    def call_next(self, window, finish):
        self._do(self._window(window), "call_next", finish_current=finish)

    @rule(window=windows, data=st.data())
    def call_number(self, window, data):
        if self.seen:
            number = data.draw(st.sampled_from(sorted(t["number"] for t in self.seen.values())))
            self._do(self._window(window), "call_number", number=number)

    @rule(window=windows, op=st.sampled_from(["recall", "start", "skip", "pause", "resume", "request_rating",
                                               "return_to_first"]))
    def simple(self, window, op):
        self._do(self._window(window), op)

    @rule(window=windows, outcome=st.sampled_from([None, "completed", "referred"]))
    def finish(self, window, outcome):
        self._do(self._window(window), "finish", outcome=outcome)

    @rule(window=windows, data=st.data())
    def reinstate(self, window, data):
        if self.seen:
            number = data.draw(st.sampled_from(sorted(t["number"] for t in self.seen.values())))
            self._do(self._window(window), "reinstate", number=number)

    @rule(window=windows, to_service=st.none() | st.sampled_from(SERVICES), to_window=st.none() | windows)
    def transfer(self, window, to_service, to_window):
        args = {"service": to_service} if to_service else {"window": to_window} if to_window else {}
        self._do(self._window(window), "transfer", **args)

    @rule(window=windows, score=st.integers(0, 6), data=st.data())
    def rate(self, window, score, data):
        if self.seen:
            ticket = data.draw(st.sampled_from(sorted(self.seen)))
            self._do(Actor(f"tablet-{window}", "tablet", window), "rate", ticket=ticket, score=score)

    @rule(minutes=st.integers(0, 200))
    def time_passes(self, minutes):
        self.clock.advance(minutes=minutes)
        self.service.tick()

    @rule()
    def reset_day(self):
        self._do(Actor("admin", "admin"), "reset_day")

    @rule()
    def restart(self):
        """Rebuild from the database as after a crash: same state, numbering continues."""
        before = self.service.snapshot()
        self.store.close()
        self.store = Store(self.url, sqlite_sync="OFF")
        self.service = HallService(CONFIG, self.store, self.clock, secret=b"k")
        self.service.subscribe(self._on_event)
        after = self.service.snapshot()
        assert {k: v for k, v in after.items() if k != "devices"} == \
            {k: v for k, v in before.items() if k != "devices"}

    @invariant()
    def events_seen_by_subscribers_are_valid(self):
        assert not getattr(self, "violations", []), self.violations

    @invariant()
    def numbers_unique_per_day_and_prefix(self):
        if not hasattr(self, "seen"):
            return
        keys = [(t["day"], t["epoch"], t["number"]) for t in self.seen.values()]
        assert len(keys) == len(set(keys))

    @invariant()
    def one_state_per_ticket_and_one_ticket_per_window(self):
        if not hasattr(self, "service"):
            return
        state = self.service.engine.state
        indexed = {tid for queue in self.service.engine._waiting.values() for tid in queue}  # noqa: SLF001
        assert indexed == {t.id for t in state.tickets.values() if t.status == "waiting"}
        busy: dict[int, list[str]] = {}
        for t in state.tickets.values():
            assert t.status in STATUSES
            if t.status in ("called", "serving"):
                busy.setdefault(t.window, []).append(t.id)
        for number, win in state.windows.items():
            holders = busy.get(number, [])
            assert len(holders) <= 1, f"window {number} serves {holders}"
            assert (win.current is None) == (not holders)
            if win.current:
                assert holders == [win.current]
        for tid, t in self.seen.items():
            mem = state.tickets.get(tid)
            if mem is not None:
                assert mem.status == t["status"]
            else:
                assert t["closed_at"] is not None, f"{t['number']} vanished without being closed"

    @invariant()
    def calling_order_matches_a_full_scan(self):
        """pick_next uses per-class sorted lines; a scan of every waiting ticket must agree."""
        if not hasattr(self, "service"):
            return
        engine = self.service.engine
        now = self.clock.now()
        for number in WINDOWS:
            assert engine.pick_next(number, now) is full_scan_pick(engine, number, now)

    @invariant()
    def transfers_keep_arrival_and_first_officer(self):
        if not hasattr(self, "seen"):
            return
        for tid, t in self.seen.items():
            first = self.first[tid]
            assert t["arrival_at"] == first["arrival_at"]
            if t["transfers"]:
                assert t["first_officer"] is not None
                assert t["first_officer"] == t["transfers"][0]["staff_id"] or any(
                    tr["staff_id"] == t["first_officer"] for tr in t["transfers"])


QueueMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestQueueMachine = pytest.mark.slow(QueueMachine.TestCase)


def test_a_failed_check_in_the_subscriber_fails_the_machine():
    """The service swallows a subscriber's exception; the invariant must not."""
    machine = QueueMachine()
    try:
        machine.setup()
        machine.issue("consult", None, False)              # seq 1 reaches the subscriber: fine
        machine.events_seen_by_subscribers_are_valid()
        machine.last_seq += 5                              # the next event now looks like a gap
        machine.issue("consult", None, True)
        with pytest.raises(AssertionError, match="gap-free"):
            machine.events_seen_by_subscribers_are_valid()
    finally:
        machine.teardown()
