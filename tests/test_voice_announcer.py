"""The announcer's queue: order, no cut-off, recall merging, the late policy, an offline speaker."""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.codecs.audio_frames import read_wav
from drivers.speaker import open_speaker
from drivers.transport import TransportIOError
from hall_controller.clock import Clock, ManualClock, SystemClock
from hall_controller.domain.model import iso
from hall_controller.voice.announcer import Announcer, LatePolicy
from hall_controller.voice.composer import Composed, Composer
from hall_controller.voice.pack import load_pack
from hall_controller.voice.template import VoiceTemplate
from tests.harness import wait_until
from tests.test_voice_compose import spoken_tokens

PACK = load_pack()
TEMPLATE = VoiceTemplate("请{number}号到{window}号窗口办理", frozenset(PACK.clips))


def call(clock: Clock, number: str, window: int, kind: str = "ticket_called", ticket_id: str | None = None) -> dict:
    """A call event as the engine publishes it."""
    return {"event_id": f"ev-{kind}-{number}-{time.monotonic_ns()}", "seq": 1, "ts": iso(clock.now()),
            "type": kind, "window": window,
            "ticket": {"id": ticket_id or f"t-{number}", "number": number, "window": window, "status": "called"}}


class Player:
    """Records what is played; with ``gated`` each play waits until released (a long announcement)."""

    def __init__(self, gated: bool = False, failures: int = 0) -> None:
        self.gated = gated
        self.failures = failures
        self.played: list[tuple[dict, Composed]] = []
        self.calls = 0
        self._gates: list[threading.Event] = []
        self._lock = threading.Lock()

    def __call__(self, composed: Composed, meta: dict) -> None:
        with self._lock:
            self.calls += 1
            if self.failures:
                self.failures -= 1
                raise TransportIOError("speaker unplugged")
            gate = threading.Event()
            self._gates.append(gate)
            self.played.append((meta, composed))
        if self.gated:
            assert gate.wait(10), "test never released the announcement"

    def release(self, n: int = 1) -> None:
        wait_until(lambda: len(self._gates) >= n, what=f"announcement {n} playing")
        self._gates[n - 1].set()

    def numbers(self) -> list[tuple[str, int]]:
        return [(m["number"], m["window"]) for m, _ in self.played]


class Events(list):
    def __call__(self, type_: str, payload: dict) -> None:
        self.append((type_, payload))

    def types(self) -> list[str]:
        return [t for t, _ in self]

    def of(self, type_: str) -> list[dict]:
        return [p for t, p in self if t == type_]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 23, 9, 0).astimezone())


def make(clock: Clock, player: Player, events: Events, **options: Any) -> Announcer:
    options.setdefault("repeat", 2)
    announcer = Announcer(Composer(PACK, TEMPLATE), clock, player, events, zone="hall", device="speaker-1", **options)
    announcer.start()
    return announcer


def stop(announcer: Announcer) -> None:
    announcer.stop()
    announcer.join()


def test_calls_are_spoken_in_call_order_with_the_number_of_each_call(clock) -> None:
    player, events = Player(gated=True), Events()
    announcer = make(clock, player, events)
    try:
        announcer.on_event(call(clock, "A001", 3))
        announcer.on_event(call(clock, "A002", 4))
        # A001 is transferred and called again at window 6 while both are still waiting/playing:
        announcer.on_event(call(clock, "A001", 6))
        for n in (1, 2, 3):
            player.release(n)
        wait_until(lambda: len(events.of("announcement_finished")) == 3, what="three announcements")
    finally:
        stop(announcer)
    assert player.numbers() == [("A001", 3), ("A002", 4), ("A001", 6)]
    texts = [p["text"] for p in events.of("announcement_started")]
    assert texts == ["请A001号到3号窗口办理", "请A002号到4号窗口办理", "请A001号到6号窗口办理"]
    assert events.types() == ["announcement_started", "announcement_finished"] * 3
    first = events.of("announcement_started")[0]
    assert first["window"] == 3 and first["ticket"]["number"] == "A001" and first["zone"] == "hall"
    assert first["repeat"] == 2 and first["tokens"].count("窗口") == 2 and first["tokens"][0] == "chime"


def test_two_calls_50_ms_apart_are_two_whole_announcements(tmp_path: Path) -> None:
    """Real time on a paced WAV sink: the second starts only after the first has ended."""
    driver = open_speaker(f"wavdir://{tmp_path}?paced=1")
    driver.open()
    spans: list[tuple[str, float, float]] = []

    def play(composed: Composed, meta: dict) -> None:
        start = time.monotonic()
        driver.play(composed.wav, meta)
        spans.append((meta["number"], start, time.monotonic()))

    events = Events()
    clock = SystemClock()
    template = VoiceTemplate("{number}号到{window}号", frozenset(PACK.clips))
    announcer = Announcer(Composer(PACK, template), clock, play, events, zone="hall", repeat=1, chime=False)
    announcer.start()
    try:
        announcer.on_event(call(clock, "B001", 4))
        time.sleep(0.05)
        announcer.on_event(call(clock, "B002", 5))
        wait_until(lambda: len(spans) == 2, timeout=15, what="both announcements played")
    finally:
        stop(announcer)
        driver.close()
    (n1, s1, e1), (n2, s2, e2) = spans
    assert (n1, n2) == ("B001", "B002")
    d1 = read_wav((tmp_path / "0001.wav").read_bytes()).duration
    assert e1 - s1 >= d1 * 0.98  # played whole, in real time
    assert s2 >= e1               # never on top of the first
    assert spoken_tokens(read_wav((tmp_path / "0002.wav").read_bytes()).frames, PACK.clips) == \
        ["B", "零", "零", "二", "号", "到", "五", "号"]
    assert events.types() == ["announcement_started", "announcement_finished"] * 2


def test_recall_of_a_queued_call_is_merged_not_doubled(clock) -> None:
    player, events = Player(gated=True), Events()
    announcer = make(clock, player, events)
    try:
        announcer.on_event(call(clock, "A001", 3))
        wait_until(lambda: player.calls == 1, what="A001 playing")
        announcer.on_event(call(clock, "A002", 4))
        announcer.on_event(call(clock, "A002", 4, "ticket_recalled"))   # still queued: merged
        announcer.on_event(call(clock, "A002", 4, "ticket_recalled"))   # again: merged
        announcer.on_event(call(clock, "A001", 3, "ticket_recalled"))   # A001 is playing now: queued anew
        assert [r.number for r in announcer.queue.pending()] == ["A002", "A001"]
        for n in (1, 2, 3):
            player.release(n)
        wait_until(lambda: len(events.of("announcement_finished")) == 3, what="three announcements")
    finally:
        stop(announcer)
    assert player.numbers() == [("A001", 3), ("A002", 4), ("A001", 3)]
    started = events.of("announcement_started")
    assert [s["merged_recalls"] for s in started] == [0, 2, 0]
    assert [s["trigger"] for s in started] == ["ticket_called", "ticket_called", "ticket_recalled"]


def test_late_calls_are_shortened_then_dropped_and_say_so(clock) -> None:
    player, events = Player(gated=True), Events()
    announcer = make(clock, player, events, policy=LatePolicy(max_wait_seconds=20, drop_after_seconds=120))
    try:
        announcer.on_event(call(clock, "A001", 1))
        wait_until(lambda: player.calls == 1, what="A001 playing")
        announcer.on_event(call(clock, "A002", 2))
        announcer.on_event(call(clock, "A003", 3))
        clock.advance(seconds=30)           # A002 and A003 now 30 s late
        player.release(1)
        wait_until(lambda: player.calls == 2, what="A002 playing")
        clock.advance(seconds=100)          # A003 now 130 s late
        player.release(2)
        wait_until(lambda: events.of("announcement_dropped"), what="A003 dropped")
    finally:
        stop(announcer)
    assert player.numbers() == [("A001", 1), ("A002", 2)]
    (short,) = events.of("announcement_shortened")
    assert short["ticket"]["number"] == "A002" and short["repeat"] == 1 and short["configured_repeat"] == 2
    assert short["waited"] == pytest.approx(30, abs=1)
    assert player.played[1][1].tokens.count("窗口") == 1   # spoken once
    (dropped,) = events.of("announcement_dropped")
    assert dropped["ticket"]["number"] == "A003" and dropped["reason"] == "late" and dropped["waited"] > 120
    assert dropped["text"] == "请A003号到3号窗口办理"


def test_offline_speaker_holds_the_queue_and_expires_stale_calls(clock) -> None:
    online = threading.Event()
    player, events = Player(), Events()
    announcer = make(clock, player, events, ready=online.is_set, policy=LatePolicy(20, 60))
    try:
        announcer.on_event(call(clock, "C001", 6))
        clock.advance(seconds=61)
        wait_until(lambda: events.of("announcement_dropped"), what="C001 expired while offline")
        announcer.on_event(call(clock, "C002", 6))
        clock.advance(seconds=25)   # late but not stale: shortened once the speaker is back
        online.set()
        announcer.wake()
        wait_until(lambda: events.of("announcement_finished"), what="C002 after the speaker came back")
    finally:
        stop(announcer)
    assert player.numbers() == [("C002", 6)]
    assert events.types() == ["announcement_dropped", "announcement_shortened", "announcement_started",
                              "announcement_finished"]


def test_a_failed_play_is_reported_and_tried_again(clock) -> None:
    player, events = Player(failures=1), Events()
    announcer = make(clock, player, events)
    try:
        announcer.on_event(call(clock, "D001", 7))
        wait_until(lambda: len(events.of("announcement_finished")) == 2, what="failure then success")
    finally:
        stop(announcer)
    failed, ok = events.of("announcement_finished")
    assert failed["completed"] is False and "unplugged" in failed["error"] and ok["completed"] is True
    assert player.numbers() == [("D001", 7)]


def test_a_speaker_that_keeps_failing_drops_the_announcement(clock) -> None:
    player, events = Player(failures=10), Events()
    announcer = make(clock, player, events)
    try:
        announcer.on_event(call(clock, "D002", 7))
        wait_until(lambda: events.of("announcement_dropped"), timeout=5, what="dropped after 3 attempts")
    finally:
        stop(announcer)
    assert player.calls == 3
    assert events.of("announcement_dropped")[0]["reason"] == "speaker_failed"


def test_zone_windows_and_malformed_events(clock) -> None:
    player, events = Player(), Events()
    announcer = make(clock, player, events, windows=[1, 2])
    try:
        announcer.on_event(call(clock, "E001", 3))                   # another zone's window
        announcer.on_event({"type": "ticket_called", "event_id": "x", "ts": iso(clock.now())})  # no ticket
        announcer.on_event({**call(clock, "E002", 2), "ts": "yesterday"})                      # bad ts
        announcer.on_event({"type": "service_started", "ticket": {"number": "E003"}})          # not a call
        announcer.on_event(call(clock, "E004", 2))
        wait_until(lambda: events.of("announcement_finished"), what="E004")
    finally:
        stop(announcer)
    assert player.numbers() == [("E004", 2)]


def test_paced_wav_sink_writes_meta_beside_each_wav() -> None:
    folder = Path(tempfile.mkdtemp())
    driver = open_speaker(f"wavdir://{folder}")
    driver.open()
    composed = Composer(PACK, TEMPLATE).compose("A001", 3, 1)
    assert driver.play(composed.wav, {"text": composed.text}) == pytest.approx(composed.duration)
    assert (folder / "0001.wav").read_bytes() == composed.wav
    assert '"text": "请A001号到3号窗口办理"' in (folder / "0001.json").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="WAV"):
        driver.play(b"not a wav")
    driver.close()
    with pytest.raises(TransportIOError):
        driver.play(composed.wav)
