"""The announcer of one PA zone: calls queue up and are spoken one after the other, never cut off.

Rules (issue 11, DESIGN §6):

* One queue per zone, one worker thread playing it: an announcement plays to its end before the
  next starts (the speaker driver's ``play`` returns when the last sample has gone out).
* The number spoken is the one of the event that queued it: each request keeps the ticket number
  and window *from the call event*, never the window's current state.
* A recall of a ticket that is still waiting in the queue is merged into it (counted, not played
  twice). A recall of the ticket being spoken right now queues a new announcement.
* Late calls (policy, from the ``voice`` config): an announcement that would start more than
  ``max_wait_seconds`` after its call is *shortened* — spoken once, without repeats — and one more
  than ``drop_after_seconds`` late is *dropped*; either way an event says so
  (``announcement_shortened`` / ``announcement_dropped``). Setting both to the same value gives a
  pure drop policy. Waiting time is measured on the hall clock from the call event's ``ts``.
* When the speaker is offline (``ready()`` false) the queue waits and ages: requests past
  ``drop_after_seconds`` are dropped while waiting, the rest are played (or shortened) once it is
  back. An announcement interrupted by a device failure is reported finished with
  ``completed: false`` and tried again under the same policy, at most :data:`MAX_ATTEMPTS` times
  (then ``announcement_dropped`` with reason ``speaker_failed``).

Subscribers of the hall service are called while it publishes, so :meth:`Announcer.on_event` only
enqueues; composing, playing and publishing ``announcement_*`` events happen on the worker thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clock import Clock
from .composer import Composed, Composer

log = logging.getLogger(__name__)

__all__ = ["AnnouncementQueue", "Announcer", "LatePolicy", "Request", "TRIGGERS"]

TRIGGERS = ("ticket_called", "ticket_recalled")
PLAY, SHORTEN, DROP = "play", "shorten", "drop"
RETRY_S = 0.5
MAX_ATTEMPTS = 3  # a request the speaker failed on this often is dropped (reason speaker_failed)


@dataclass(frozen=True)
class LatePolicy:
    max_wait_seconds: float = 20.0
    drop_after_seconds: float = 120.0

    def decide(self, waited: float) -> str:
        if waited > self.drop_after_seconds:
            return DROP
        if waited > self.max_wait_seconds:
            return SHORTEN
        return PLAY


@dataclass
class Request:
    """One announcement to make, as the call event that queued it said."""

    id: str
    trigger: str
    event_id: str
    ticket: dict[str, Any]
    window: int | None
    called_at: datetime
    merged_recalls: int = 0
    attempts: int = 0
    merged_events: list[str] = field(default_factory=list)

    @property
    def number(self) -> str:
        return str(self.ticket.get("number") or "")

    @classmethod
    def from_event(cls, event: dict[str, Any], request_id: str) -> Request:
        ticket = event.get("ticket")
        if not isinstance(ticket, dict) or not ticket.get("number"):
            raise ValueError(f"event {event.get('type')} {event.get('event_id')} carries no ticket number")
        window = event.get("window", ticket.get("window"))
        return cls(request_id, str(event["type"]), str(event.get("event_id", "")), dict(ticket),
                   window if isinstance(window, int) else None, datetime.fromisoformat(str(event["ts"])))


class AnnouncementQueue:
    """The pure part: FIFO with recall merging and the late policy (not thread-safe)."""

    def __init__(self, policy: LatePolicy) -> None:
        self.policy = policy
        self._items: deque[Request] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def pending(self) -> list[Request]:
        return list(self._items)

    def push(self, request: Request) -> Request | None:
        """Queue ``request``; a recall of a ticket already queued is merged: returns the request it
        was merged into (nothing new is queued), else None."""
        if request.trigger == "ticket_recalled":
            for queued in self._items:
                if queued.ticket.get("id") == request.ticket.get("id"):
                    queued.merged_recalls += 1
                    queued.merged_events.append(request.event_id)
                    return queued
        self._items.append(request)
        return None

    def push_front(self, request: Request) -> None:
        """Put back a request whose playback failed (it keeps its place at the head)."""
        self._items.appendleft(request)

    def expire(self, now: datetime) -> list[tuple[Request, float]]:
        """Remove and return ``(request, waited)`` of every request the policy would drop now."""
        kept: deque[Request] = deque()
        expired: list[tuple[Request, float]] = []
        for request in self._items:
            waited = (now - request.called_at).total_seconds()
            if self.policy.decide(waited) == DROP:
                expired.append((request, waited))
            else:
                kept.append(request)
        self._items = kept
        return expired

    def pop(self, now: datetime) -> tuple[Request, str, float] | None:
        """``(request, decision, waited seconds)`` for the head of the queue, or None when empty."""
        if not self._items:
            return None
        request = self._items.popleft()
        waited = (now - request.called_at).total_seconds()
        return request, self.policy.decide(waited), waited


Player = Callable[[Composed, dict[str, Any]], None]
Publisher = Callable[[str, dict[str, Any]], None]


class Announcer:
    """One zone's queue and its worker thread.

    ``play(composed, meta)`` blocks until the announcement has been played to its end and raises on
    a device failure; ``publish(event_type, payload)`` records an ``announcement_*`` event.
    """

    def __init__(self, composer: Composer, clock: Clock, play: Player, publish: Publisher, *, zone: str,
                 repeat: int = 1, chime: bool = True, policy: LatePolicy | None = None,
                 windows: Iterable[int] | None = None,
                 device: str | None = None, ready: Callable[[], bool] | None = None) -> None:
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        self.composer = composer
        self.clock = clock
        self.zone = zone
        self.device = device
        self.repeat = repeat
        self.chime = chime
        self.windows = frozenset(windows) if windows is not None else None
        self.queue = AnnouncementQueue(policy or LatePolicy())
        self._play = play
        self._publish = publish
        self._ready = ready or (lambda: True)
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._stopping = False
        self._playing: Request | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ input (any thread)
    def on_event(self, event: dict[str, Any]) -> None:
        """Service subscriber: queue calls and recalls of this zone's windows; nothing else, nothing slow."""
        if event.get("type") not in TRIGGERS:
            return
        try:
            request = Request.from_event(event, f"{self.zone}-{next(self._ids)}")
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("%s: cannot announce %s: %s", self.zone, event.get("event_id"), exc)
            return
        if self.windows is not None and request.window not in self.windows:
            return
        with self._cond:
            merged = self.queue.push(request)
            self._cond.notify_all()
        if merged is not None:
            log.info("%s: recall of %s merged into queued announcement %s", self.zone, request.number, merged.id)

    def wake(self) -> None:
        """The speaker came back: retry the head of the queue now."""
        with self._cond:
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._playing is not None or len(self.queue) > 0

    # ------------------------------------------------------------------ worker
    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=f"announcer-{self.zone}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Take no more requests; the one playing ends when its play returns (close the driver to
        end it sooner), then :meth:`join`."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                item, expired = self._next()
                if item is None and not expired:
                    return  # stopping
                self._playing = item[0] if item else None
            for request, waited in expired:
                self._drop(request, waited, "late")
            if item is None:
                continue
            request = item[0]
            try:
                ok = self._announce(*item)
            except Exception:
                log.exception("%s: announcement %s failed", self.zone, request.id)
                ok = True  # a bug in composing must not loop forever on the same request
            if not ok and request.attempts >= MAX_ATTEMPTS:
                self._drop(request, (self.clock.now() - request.called_at).total_seconds(), "speaker_failed")
                ok = True
            with self._cond:
                self._playing = None
                if not ok and not self._stopping:
                    self.queue.push_front(request)

    def _next(self) -> tuple[tuple[Request, str, float] | None, list[tuple[Request, float]]]:
        """Under the lock: wait for a request and a ready speaker; meanwhile expire requests the
        late policy drops anyway. ``(None, [])`` means stop."""
        while not self._stopping:
            if len(self.queue):
                now = self.clock.now()
                if self._ready():
                    return self.queue.pop(now), []
                expired = self.queue.expire(now)
                if expired:
                    return None, expired
            self._cond.wait(RETRY_S if len(self.queue) else None)
        return None, []

    def _drop(self, request: Request, waited: float, reason: str) -> None:
        log.warning("%s: %s dropped (%s), %.1f s after its call", self.zone, request.number, reason, waited)
        self._publish("announcement_dropped", self._payload(
            request, waited, reason=reason, text=self.composer.phrase(request.number, request.window)[0],
            max_wait_seconds=self.queue.policy.max_wait_seconds,
            drop_after_seconds=self.queue.policy.drop_after_seconds))

    def _payload(self, request: Request, waited: float, **extra: Any) -> dict[str, Any]:
        return {"window": request.window, "ticket": request.ticket, "zone": self.zone, "device": self.device,
                "announcement_id": request.id, "trigger": request.trigger, "source_event": request.event_id,
                "merged_recalls": request.merged_recalls, "waited": round(waited, 3), **extra}

    def _announce(self, request: Request, decision: str, waited: float) -> bool:
        """Play one request; False when the speaker failed and it should be tried again."""
        if decision == DROP:
            self._drop(request, waited, "late")
            return True
        repeat = 1 if decision == SHORTEN else self.repeat
        composed = self.composer.compose(request.number, request.window, repeat, chime=self.chime)
        described = {"text": composed.text, "tokens": composed.tokens, "duration": round(composed.duration, 3),
                     "repeat": composed.repeat}
        if decision == SHORTEN and request.attempts == 0:
            self._publish("announcement_shortened", self._payload(
                request, waited, reason="late", **described, configured_repeat=self.repeat,
                max_wait_seconds=self.queue.policy.max_wait_seconds))
        request.attempts += 1
        self._publish("announcement_started", self._payload(request, waited, **described))
        started = time.monotonic()
        meta = {"text": composed.text, "tokens": composed.tokens, "zone": self.zone, "announcement_id": request.id,
                "number": request.number, "window": request.window}
        try:
            self._play(composed, meta)
        except Exception as exc:
            log.warning("%s: playing %s failed: %s", self.zone, request.number, exc)
            self._publish("announcement_finished", self._payload(
                request, waited, **described, completed=False, error=str(exc) or type(exc).__name__,
                played=round(time.monotonic() - started, 3)))
            return False
        self._publish("announcement_finished", self._payload(
            request, waited, **described, completed=True, played=round(time.monotonic() - started, 3)))
        return True
