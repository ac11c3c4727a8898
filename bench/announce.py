"""Call command → first audio sample handed to the speaker output, with the shipped clip pack.

The daemon's own parts, in process: HallService on a durable SQLite store (WAL, synchronous=FULL),
the speaker handler's announcer subscribed to its events (it publishes announcement_started /
_finished through the service, i.e. two more commits per announcement) and a speaker driver.
Measured from the moment ``execute(call_next)`` is entered to the moment the driver hands the
first sample of that call's announcement to its output (``driver.started_at``).

Outputs (``--output``):
  emu     the emulated speaker over TCP, as ``hall-emu`` serves it: every announcement travels as a
          PLAY frame (~300–600 kB) and the emulator answers STARTED/DONE; it plays ``--speed`` times
          faster than real time so the bench does not take hours (the queue logic is the same)
  wavdir  an unpaced WAV folder sink (file write)
  null    miniaudio's null audio device, real time (slow: use a few calls)

Two loads:
  single  one window calls, waits for its announcement to end, finishes, calls again
  burst   8 windows call at the same instant (one PA zone): announcements queue; reported are the
          first announcement of each burst (call → first sample) and every later one's "turn"
          latency (previous announcement ended → its first sample), plus whether they were spoken
          in call (commit) order.
Baselines printed beside: the bare commit of call_next (no announcer) and the bare time to read the
clips from disk and concatenate one announcement.

Run: .venv/bin/python bench/announce.py [--calls 200] [--bursts 25] [--output emu] [--speed 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from device_profiles import load_profile
from drivers.speaker import open_speaker
from hall_controller.clock import SystemClock
from hall_controller.config import parse_config, sample_config_text
from hall_controller.service import Actor, HallService
from hall_controller.store import Store
from hall_controller.voice.announcer import Announcer, LatePolicy
from hall_controller.voice.composer import Composed
from hall_controller.voice.pack import load_pack
from hall_controller.voice.settings import composer_for
from hw_emulators.link import TcpLink
from hw_emulators.speaker import EmulatedSpeaker

SERVICE = {1: "consult", 2: "consult", 3: "consult", 4: "legal_aid", 5: "legal_aid", 6: "mediation",
           7: "notary", 8: "general"}
KIOSK = Actor("kiosk-1", "kiosk")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def fmt(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"p50 {pct(ms, 50):7.2f} ms   p99 {pct(ms, 99):7.2f} ms   max {max(ms):7.2f} ms   (n={len(ms)})"


class Bench:
    def __init__(self, folder: Path, output: str, speed: float) -> None:
        self.config = parse_config(yaml.safe_load(sample_config_text()), "sample")
        self.store = Store(f"sqlite:///{folder}/bench.db", sqlite_sync="FULL")
        self.service = HallService(self.config, self.store, SystemClock(), secret=b"bench")
        for n in SERVICE:
            self.service.execute(Actor(f"window-{n}", "window", n), "login", {"staff_id": f"S00{n}", "pin": "1234"})
        self.emulator: EmulatedSpeaker | None = None
        profile = load_profile("pc-speaker")
        if output == "emu":
            self.emulator = EmulatedSpeaker("speaker-1", profile.name, profile, TcpLink("speaker-1"), speed=speed)
            self.emulator.start()
            url = self.emulator.url
        elif output == "wavdir":
            url = f"wavdir://{folder}/wav"
        else:
            url = "audio://null"
        self.driver = open_speaker(url, [profile])
        self.driver.open()
        self.played: list[tuple[str, float, float]] = []  # number, first sample handed, play returned
        self._cond = threading.Condition()
        voice = self.config.voice
        self.announcer = Announcer(composer_for(voice), self.service.clock, self._play,
                                   self.service.announcement_event, zone="speaker-1", repeat=voice.repeat,
                                   policy=LatePolicy(3600, 3600))
        self.service.subscribe(self.announcer.on_event)
        self.call_seq: dict[str, int] = {}  # number -> seq of its ticket_called event (the call order)
        self.service.subscribe(self._record_call)
        self.announcer.start()

    def _record_call(self, event: dict[str, Any]) -> None:
        if event["type"] == "ticket_called":
            self.call_seq[event["ticket"]["number"]] = event["seq"]

    def _play(self, composed: Composed, meta: dict[str, Any]) -> None:
        self.driver.play(composed.wav, meta)  # type: ignore[call-arg]
        with self._cond:
            self.played.append((meta["number"], self.driver.started_at or 0.0, time.perf_counter()))
            self._cond.notify_all()

    def wait_played(self, count: int, timeout: float = 120) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.played) >= count, timeout):
                raise TimeoutError(f"only {len(self.played)} of {count} announcements played")

    def call(self, window: int) -> tuple[str, float, float]:
        """(number, command entered, command returned)."""
        actor = Actor(f"window-{window}", "window", window)
        t0 = time.perf_counter()
        ticket = self.service.execute(actor, "call_next", {})["ticket"]
        return ticket["number"], t0, time.perf_counter()

    def finish(self, window: int) -> None:
        self.service.execute(Actor(f"window-{window}", "window", window), "finish", {})

    def close(self) -> None:
        self.announcer.stop()
        self.driver.close()
        self.announcer.join()
        if self.emulator is not None:
            self.emulator.stop()
        self.store.close()


def single(bench: Bench, calls: int) -> tuple[list[float], list[float]]:
    latency, commit = [], []
    for _ in range(calls):
        bench.service.execute(KIOSK, "issue_ticket", {"service": "consult"})
        number, t0, t1 = bench.call(3)
        bench.wait_played(len(bench.played) + 1)
        played_number, first_sample, _ = bench.played[-1]
        assert played_number == number, (played_number, number)
        latency.append(first_sample - t0)
        commit.append(t1 - t0)
        bench.finish(3)
    return latency, commit


def _call_at_once(bench: Bench, barrier: threading.Barrier, calls: dict[int, tuple[str, float, float]],
                  window: int) -> None:
    barrier.wait()
    calls[window] = bench.call(window)


def burst(bench: Bench, bursts: int) -> tuple[list[float], list[float], bool]:
    first, turns, in_order = [], [], True
    for _ in range(bursts):
        for n in SERVICE:
            bench.service.execute(KIOSK, "issue_ticket", {"service": SERVICE[n]})
        barrier = threading.Barrier(len(SERVICE))
        calls: dict[int, tuple[str, float, float]] = {}
        before = len(bench.played)

        threads = [threading.Thread(target=_call_at_once, args=(bench, barrier, calls, n)) for n in SERVICE]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bench.wait_played(before + len(SERVICE))
        played = bench.played[before:]
        start = min(t0 for _, t0, _ in calls.values())
        first.append(played[0][1] - start)
        for (_, first_sample, _), (_, _, previous_end) in zip(played[1:], played, strict=False):
            turns.append(first_sample - previous_end)
        spoken = [number for number, _, _ in played]
        in_order &= spoken == sorted(spoken, key=bench.call_seq.__getitem__)
        for n in SERVICE:
            bench.finish(n)
    return first, turns, in_order


def bare_compose(samples: int = 200) -> tuple[list[float], list[float]]:
    """Concatenation from the in-memory pack, and from disk (read every clip, then concatenate)."""
    config = parse_config(yaml.safe_load(sample_config_text()), "sample")
    composer = composer_for(config.voice)
    memory, disk = [], []
    for i in range(samples):
        t0 = time.perf_counter()
        composer.compose(f"A{i % 1000:03d}", 3, config.voice.repeat)
        memory.append(time.perf_counter() - t0)
    for i in range(max(10, samples // 10)):
        t0 = time.perf_counter()
        pack = load_pack()
        composer.pack = pack
        composer.compose(f"A{i % 1000:03d}", 3, config.voice.repeat)
        disk.append(time.perf_counter() - t0)
    return memory, disk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="announcement latency")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--bursts", type=int, default=25)
    parser.add_argument("--output", choices=("emu", "wavdir", "null"), default="emu")
    parser.add_argument("--speed", type=float, default=100.0, help="emulated speaker: times real time")
    args = parser.parse_args(argv)
    memory, disk = bare_compose()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), args.output, args.speed)
        try:
            latency, commit = single(bench, args.calls)
            first, turns, in_order = burst(bench, args.bursts)
        finally:
            bench.close()
    print(f"output: {args.output}" + (f" (×{args.speed:g} real time)" if args.output == "emu" else ""))
    print(f"one window   call → first sample      {fmt(latency)}")
    print(f"  bare       call_next commit alone    {fmt(commit)}")
    print(f"  bare       compose (clips in memory) {fmt(memory)}")
    print(f"  bare       read clips + compose      {fmt(disk)}")
    print(f"8 at once    call → first sample      {fmt(first)}  (first announcement of each burst)")
    print(f"  queued     previous end → first sample {fmt(turns)}")
    print(f"  spoken in call order: {'yes' if in_order else 'NO'}")
    target = pct(latency, 99) <= 0.100 and pct(first, 99) <= 0.100
    print(f"target p99 ≤ 100 ms: {'met' if target else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
