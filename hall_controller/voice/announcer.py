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
* A restart forgets nothing (issue 17): the queue lives in memory, but every call and every
  ``announcement_*`` event is in the event log. At start, :meth:`Announcer.recover` queues again, in
  call order and ahead of newer calls, the zone's calls of the hall's current day (at most
  :data:`RECOVERY_LOOKBACK` beyond ``drop_after_seconds``) that have neither an
  ``announcement_finished`` with ``completed: true`` nor an ``announcement_dropped`` — a call queued
  or playing when the daemon stopped or was killed. They then meet the same late policy as if the
  daemon had never stopped (waiting counted from the call): spoken whole, shortened or dropped, and
  their events carry ``recovered: true``. Finished and dropped events name the call they answer
  (``source_event``) and the recalls merged into it (``merged_events``), so nothing said is said again.

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
from datetime import datetime, timedelta, tzinfo
from typing import Any

from ..clock import Clock
from .composer import Composed, Composer

log = logging.getLogger(__name__)

__all__ = ["AnnouncementQueue", "Announcer", "LatePolicy", "RECOVERY_EVENTS", "Request", "TRIGGERS",
           "recovery_since", "unannounced"]

TRIGGERS = ("ticket_called", "ticket_recalled")
PLAY, SHORTEN, DROP = "play", "shorten", "drop"
RETRY_S = 0.5
MAX_ATTEMPTS = 3  # a request the speaker failed on this often is dropped (reason speaker_failed)
#: the event types :func:`unannounced` reads from the log at a restart
RECOVERY_EVENTS = (*TRIGGERS, "announcement_finished", "announcement_dropped")
#: calls older than drop_after_seconds plus this are history at a restart: neither spoken nor reported
RECOVERY_LOOKBACK = timedelta(hours=1)
SEEN_IDS = 4096  # trigger event ids remembered, so a call both published and read back is queued once


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
    recovered: bool = False  # queued again from the event log at a restart

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
                    queued.merged_recalls += 1 + request.merged_recalls
                    queued.merged_events += [request.event_id, *request.merged_events]
                    return queued
        self._items.append(request)
        return None

    def restore(self, requests: Iterable[Request]) -> None:
        """Put calls recovered at a restart (in call order) ahead of those queued since: they were
        made before them. A newer recall of a recovered ticket is merged into it."""
        live, self._items = self._items, deque()
        for request in [*requests, *live]:
            self.push(request)

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


def recovery_since(now: datetime, tz: tzinfo, policy: LatePolicy) -> datetime:
    """Where a restart starts looking for unannounced calls: the hall's current day, at most
    :data:`RECOVERY_LOOKBACK` beyond the drop limit."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return max(midnight, now - timedelta(seconds=policy.drop_after_seconds) - RECOVERY_LOOKBACK)


def unannounced(events: Iterable[dict[str, Any]], zone: str) -> list[dict[str, Any]]:
    """The call/recall events (in log order) that ``zone`` has neither finished announcing nor
    dropped, from the log's events of :data:`RECOVERY_EVENTS`. An announcement cut off by a failure
    or a kill (started, no completed finish) is not done."""
    events = list(events)
    done: set[str] = set()
    for index, event in enumerate(events):
        kind = event.get("type")
        if kind not in ("announcement_finished", "announcement_dropped") or event.get("zone") != zone:
            continue
        if kind == "announcement_finished" and event.get("completed") is not True:
            continue
        done.add(str(event.get("source_event", "")))
        if "merged_events" in event:
            done.update(str(e) for e in event["merged_events"] or ())
        elif event.get("merged_recalls"):
            # logged before merged_events existed: the recalls of that ticket before it are answered
            ticket_id = (event.get("ticket") or {}).get("id")
            done.update(str(e.get("event_id")) for e in events[:index] if e.get("type") == "ticket_recalled"
                        and (e.get("ticket") or {}).get("id") == ticket_id)
    return [e for e in events if e.get("type") in TRIGGERS and str(e.get("event_id")) not in done]


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
        self._seen: dict[str, None] = {}  # trigger event ids queued (insertion-ordered, bounded)

    # ------------------------------------------------------------------ input (any thread)
    def on_event(self, event: dict[str, Any]) -> None:
        """Service subscriber: queue calls and recalls of this zone's windows; nothing else, nothing slow."""
        request = self._request(event)
        if request is None:
            return
        with self._cond:
            if not self._first_time(request):
                return
            merged = self.queue.push(request)
            self._cond.notify_all()
        if merged is not None:
            log.info("%s: recall of %s merged into queued announcement %s", self.zone, request.number, merged.id)

    def recover(self, events: Iterable[dict[str, Any]]) -> list[Request]:
        """At start: queue again, ahead of newer calls, this zone's calls the log shows unannounced
        (``events``: the log's :data:`RECOVERY_EVENTS` since :func:`recovery_since`, in seq order).
        They wait, play, shorten or drop under the late policy from their call's time."""
        requests: list[Request] = []
        with self._cond:
            for event in unannounced(events, self.zone):
                request = self._request(event)
                if request is not None and self._first_time(request):
                    request.recovered = True
                    requests.append(request)
            if requests:
                self.queue.restore(requests)
                self._cond.notify_all()
        if requests:
            log.info("%s: %d call(s) not yet announced at the last stop queued again: %s", self.zone,
                     len(requests), ", ".join(r.number for r in requests))
        return requests

    def _request(self, event: dict[str, Any]) -> Request | None:
        """The request for a call/recall of this zone's windows, or None."""
        if event.get("type") not in TRIGGERS:
            return None
        try:
            request = Request.from_event(event, f"{self.zone}-{next(self._ids)}")
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("%s: cannot announce %s: %s", self.zone, event.get("event_id"), exc)
            return None
        if self.windows is not None and request.window not in self.windows:
            return None
        return request

    def _first_time(self, request: Request) -> bool:
        """Under the lock: False for a call already queued (published live and read back from the log)."""
        if not request.event_id:
            return True
        if request.event_id in self._seen:
            return False
        self._seen[request.event_id] = None
        if len(self._seen) > SEEN_IDS:
            del self._seen[next(iter(self._seen))]
        return True

    def wake(self) -> None:
        """The speaker came back: retry the head of the queue now."""
        with self._cond:
            self._cond.notify_all()

    def queued(self) -> int:
        """Announcements not yet played to their end: those waiting and the one playing."""
        with self._cond:
            return len(self.queue) + (self._playing is not None)

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
                "merged_recalls": request.merged_recalls, "merged_events": list(request.merged_events),
                "waited": round(waited, 3), **({"recovered": True} if request.recovered else {}), **extra}

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
