"""Estimated waiting time (预计等待, DESIGN §4): pure forecasting, no I/O, the time passed in.

How long a waiting ticket still waits depends on who is ahead of it *at every window that may call
it*: a consult ticket shares windows 4, 6 and 8 with their own services, which those windows prefer
by weight, and any elderly ticket of any of their services goes first. Rather than a formula for
that, `forecast` replays the calling rules forward: each open window becomes free when its current
visit is expected to end, takes the ticket the engine's own choice function would give it (priority
class, weight, arrival, the anti-starvation ratio), and stays busy for a visit length of that
ticket's service. The simulated call time of a ticket is one forecast of its call.

Waits scatter (visit lengths are heavy-tailed, priority visitors come at random and rank ahead), so
the replay runs SAMPLES times with visit lengths drawn from each service's recent occupancy (a visit
under way: beyond what it has run already) and walk-ins arriving at random at the recent rates; the
range shown is where most replays call the ticket (`shown_range`). The range is a guide printed as
约10–15分钟, never a promise. Nothing but the number of people ahead is shown without enough recent
visits of a service, and when the replays scatter too widely for the range to hold most of them.
What it cannot know at all (a clerk about to pause) is not in the replays.
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from ..config import Window
from .model import CALLED, FINISHED, PRIORITY_RANK, SERVING, WAITING, EngineState, Ticket

MIN_SAMPLES = 3            # recent visits of a service needed before its waits are estimated
KEEP_SAMPLES = 20          # occupancy samples kept per service (the most recent ones)
RATE_WINDOW = timedelta(minutes=60)      # a service's arrival rate is what came over this long ...
RATE_MIN_SPAN = timedelta(minutes=15)    # ... (at least this long, just after opening)
SHARE_MEMORY = timedelta(hours=4)        # how arrivals split into classes is learnt over this long ...
SHARE_PRIOR = 10.0                       # ... as if this many more had split like the whole hall's
HORIZON = timedelta(hours=4)             # no forecast further ahead than this
REFRESH = timedelta(seconds=5)           # per-service estimates are recomputed at most this often ...
MAX_AGE = timedelta(seconds=60)          # ... and at least this often
RESIDUAL_FLOOR = 0.3       # without a fit, a visit past its mean length still has this share of one left
TURNAROUND_S = 20.0        # from a window being free to its next call (the clerk presses 下一位)
# The range shown, from SAMPLES replays with drawn visit lengths and arrivals (see shown_range).
SAMPLES = 20
CALL_BUDGET = 400          # simulated calls per estimate, all replays together (bounds its cost)
SHOW_SHARE = 0.6           # shown only when at least this share of the replays falls inside the range
QUICK_SHARE = 0.9          # 约5分钟内 when this share of the replays is called within 5 minutes
NARROW_LIMIT_MIN = 30      # median replay below this: a range 10 minutes wide; above, ...
WIDE_WIDTH = 0.5           # ... about half the median wide
TRANSFER = "transfer"      # arrivals by transfer: normal class, but ahead of every normal ticket
LINE_MARKER = "line:"      # id prefix of the virtual newcomer placed behind a service's queue

Line = Sequence[tuple[Any, ...]]            # the engine's calling lines: entries ending with the ticket
Choose = Callable[[Window, list[Any], int, datetime], Any]     # the engine's choice among candidates
Rank = Callable[[Any, datetime], tuple[int, datetime]]      # the engine's priority rank and ordering time


@dataclass(frozen=True)
class Estimate:
    """A waiting-time range in whole minutes; `low_min` 0 means "within `high_min` minutes"."""

    low_min: int
    high_min: int

    @property
    def text(self) -> str:
        if self.low_min == 0:
            return f"约{self.high_min}分钟内"
        return f"约{self.low_min}–{self.high_min}分钟"

    def to_dict(self) -> dict[str, Any]:
        return {"low_min": self.low_min, "high_min": self.high_min, "text": self.text}


CALLED_NOW = Estimate(0, 5)


def shown_range(waits_s: Sequence[float]) -> Estimate | None:
    """The range shown for the waits of the replays (seconds; inf for not called within HORIZON).

    The range on a 5-minute grid that holds the most replays: 约5分钟内 when nearly all are that
    short, else 10 minutes wide while the median replay is under half an hour, about half the median
    wide above. Visit lengths are heavy-tailed and priority visitors come at random, so waits scatter
    more above the mean than below: placing the range where the replays are, rather than around a
    mean, follows that skew. When even the best range holds less than SHOW_SHARE of the replays the
    wait is too uncertain for a narrow range and nothing is shown (only 前面还有N人)."""
    minutes = sorted(w / 60 for w in waits_s)
    n = len(minutes)
    if not n:
        return None
    if bisect_left(minutes, 5.0 + 1e-9) >= QUICK_SHARE * n:
        return CALLED_NOW
    median = minutes[n // 2]
    if math.isinf(median):
        return None         # most replays do not reach it within HORIZON
    if median < NARROW_LIMIT_MIN:
        width, first = 10, 0
    else:       # a wide range is centred at NARROW_LIMIT_MIN or above: narrow ones cover below it
        width = max(15, 5 * math.ceil(WIDE_WIDTH * median / 5))
        first = 5 * math.ceil((NARROW_LIMIT_MIN - width / 2) / 5)

    def held(low: int) -> int:
        return bisect_left(minutes, low + width + 1e-9) - bisect_left(minutes, low)

    lows = range(first, max(first, int(median // 5) * 5) + 5, 5)
    best = max(lows, key=lambda low: (held(low), -abs(low + width / 2 - median)))
    if held(best) < SHOW_SHARE * n:
        return None
    return Estimate(best, best + width)


class History:
    """What the hall did recently: window occupancy per service (from a window's call to that window
    being free again: finished, skipped or transferred, which is what throughput is made of) and
    arrivals per service and class (who will still come and rank ahead)."""

    def __init__(self, keep: int = KEEP_SAMPLES):
        self._logs: dict[str, deque[float]] = {}           # log seconds of the recent samples ...
        self._log_sums: dict[str, list[float]] = {}        # ... their sum and sum of squares
        self._fits: dict[str, tuple[float, float]] = {}     # lognormal (mu, sigma) of the samples
        self._busy_since: dict[int, datetime] = {}
        # Arrivals (when, service, kind) over RATE_WINDOW and over SHARE_MEMORY, with their counts.
        self._recent: deque[tuple[datetime, str, str]] = deque()
        self._memory: deque[tuple[datetime, str, str]] = deque()
        self._recent_count: Counter[tuple[str, str]] = Counter()
        self._memory_count: Counter[tuple[str, str]] = Counter()
        self._rates: tuple[datetime, dict[tuple[str, str], float]] | None = None
        self._keep = keep

    def called(self, window: int, now: datetime) -> None:
        self._busy_since[window] = now

    def freed(self, window: int, service: str, now: datetime, fallback_since: datetime | None = None) -> None:
        """Window `window` is free again after a visit of `service`."""
        since = self._busy_since.pop(window, None) or fallback_since
        if since is not None and now >= since:
            self.add(service, (now - since).total_seconds())

    def add(self, service: str, seconds: float) -> None:
        logs = self._logs.setdefault(service, deque())
        sums = self._log_sums.setdefault(service, [0.0, 0.0])
        x = math.log(max(seconds, 1.0))
        logs.append(x)
        sums[0], sums[1] = sums[0] + x, sums[1] + x * x
        if len(logs) > self._keep:
            y = logs.popleft()
            sums[0], sums[1] = sums[0] - y, sums[1] - y * y
        n = len(logs)
        if n >= MIN_SAMPLES:
            mu = sums[0] / n
            self._fits[service] = (mu, max(math.sqrt(max(sums[1] / n - mu * mu, 0.0)), 0.05))

    def busy_since(self, window: int, fallback: datetime | None) -> datetime | None:
        return self._busy_since.get(window, fallback)

    def mean(self, service: str) -> float | None:
        """Mean occupancy in seconds (of the lognormal fitted to the samples: steadier than the plain
        mean of a few heavy-tailed ones), or None below MIN_SAMPLES."""
        if service not in self._fits:
            return None
        mu, sigma = self._fits[service]
        return math.exp(mu + sigma * sigma / 2)

    def draw(self, service: str, rng: random.Random, elapsed: float = 0.0) -> float | None:
        """A visit length of `service` drawn from the lognormal fitted to the samples, or what is left
        of one already `elapsed` seconds at the window (drawn from the fit beyond `elapsed`: a visit
        that has run long tends to go on, the tail is heavy); None below MIN_SAMPLES."""
        if service not in self._fits:
            return None
        mu, sigma = self._fits[service]
        if elapsed <= 1.0:
            return math.exp(rng.gauss(mu, sigma))
        done = _NORMAL.cdf((math.log(elapsed) - mu) / sigma)
        if done > 1 - 1e-6:
            return elapsed * sigma * 2 * rng.random()   # far in the tail: the fit says little
        q = done + (1 - done) * rng.random()
        return max(math.exp(mu + sigma * _NORMAL.inv_cdf(min(max(q, 1e-12), 1 - 1e-12))) - elapsed, 0.0)

    def pooled_mean(self) -> float | None:
        """Mean over every service: stands in for a service too rare to have its own yet."""
        n = sum(len(logs) for logs in self._logs.values())
        return sum(math.exp(x) for logs in self._logs.values() for x in logs) / n if n >= MIN_SAMPLES else None

    def arrived(self, service: str, kind: str, now: datetime) -> None:
        """A ticket of `service` joined the queue as `kind` (a priority class, or TRANSFER)."""
        for window, counts in ((self._recent, self._recent_count), (self._memory, self._memory_count)):
            window.append((now, service, kind))
            counts[service, kind] += 1

    def rates(self, now: datetime) -> dict[tuple[str, str], float]:
        """Expected arrivals per second per (service, kind).

        A service's rate is what came in over the last RATE_WINDOW; how it splits into kinds is
        learnt over SHARE_MEMORY and pulled towards the whole hall's split, since one elderly visitor
        for a rare service in the last hour says little about the next four. Counts are kept as
        arrivals come and go, so this costs the same however busy the hall is; the answer is kept for
        REFRESH (a few seconds more or less of arrivals change nothing that is shown)."""
        if self._rates is not None and timedelta(0) <= now - self._rates[0] < REFRESH:
            return self._rates[1]
        self._rates = (now, self._count_rates(now))
        return self._rates[1]

    def _count_rates(self, now: datetime) -> dict[tuple[str, str], float]:
        for window, counts, keep in ((self._recent, self._recent_count, RATE_WINDOW),
                                     (self._memory, self._memory_count, SHARE_MEMORY)):
            while window and window[0][0] < now - keep:
                _, service, kind = window.popleft()
                counts[service, kind] -= 1
        if not self._recent:
            return {}
        span = min(max(now - self._recent[0][0], RATE_MIN_SPAN), RATE_WINDOW).total_seconds()
        per_service: Counter[str] = Counter()
        for (service, _), n in self._recent_count.items():
            per_service[service] += n
        kinds: Counter[str] = Counter()
        of_service: Counter[str] = Counter()
        for (service, kind), n in self._memory_count.items():
            kinds[kind] += n
            of_service[service] += n
        total = len(self._memory)
        return {(service, kind): per_service[service] / span
                * (self._memory_count[service, kind] + SHARE_PRIOR * kinds[kind] / total)
                / (of_service[service] + SHARE_PRIOR)
                for service in per_service if per_service[service] for kind in kinds if kinds[kind]}


_NORMAL = NormalDist()


@dataclass
class Desk:
    """An open window in the forecast: its calling config, when it is next free, its priority streak."""

    cfg: Window
    free_at: datetime
    streak: int = 0


@dataclass(slots=True)
class Visitor:
    """Someone not in the queue yet (a newcomer taking a number now, or one expected later), with just
    what the engine's choice needs of a ticket: far cheaper to make than a `Ticket`."""

    id: str
    service: str
    priority: str
    issued_at: datetime
    arrival_at: datetime
    due_at: datetime | None = None
    seq_no: int = 1 << 30
    target_window: int | None = None
    status: str = WAITING


class Stream:
    """Visitors expected for one service and kind at the given times; `arrival` fixes their place in
    the queue (a transfer keeps its old one), else each ranks from the time it comes."""

    def __init__(self, service: str, kind: str, times: Iterator[datetime], arrival: datetime | None = None):
        self.service, self.kind = service, kind
        self._times, self._arrival, self._n = times, arrival, 0
        self._head: Visitor | None = None
        self.head_at: datetime | None = None
        self.advance()

    def advance(self) -> None:
        self.head_at = next(self._times, None)
        self._n += 1
        self._head = None

    def holds(self, visitor: Visitor) -> bool:
        return self._head is visitor

    @property
    def head(self) -> Visitor | None:
        """The next visitor (made only when a window looks at it)."""
        at = self.head_at
        if self._head is None and at is not None:
            priority = "normal" if self.kind == TRANSFER else self.kind
            self._head = Visitor(f"~{self.service}:{self.kind}:{self._n}", self.service, priority, at,
                                 self._arrival or at, at if priority == "appointment" else None)
        return self._head


def poisson(now: datetime, rate: float, until: datetime, rng: random.Random) -> Iterator[datetime]:
    """Arrival times of a Poisson stream of `rate` per second from `now` up to `until`."""
    at = now
    while (at := at + timedelta(seconds=rng.expovariate(rate))) <= until:
        yield at


def forecast(now: datetime, desks: Sequence[Desk], lines: Mapping[tuple[str, str], Line],
             targeted: Mapping[int, Mapping[str, Ticket]], *, choose: Choose, rank: Rank,
             occupancy: Callable[[str], float], targets: Iterable[str],
             newcomers: Mapping[str, Visitor] | None = None,
             streams: Callable[[], Iterable[Stream]] = tuple, max_calls: int | None = None) -> dict[str, datetime]:
    """Simulated call time of each ticket id in `targets` (and of each newcomer, by its id).

    `lines` and `targeted` are the engine's calling indexes, read only; `choose` is the engine's own
    choice among candidates, so the forecast follows the real calling rules. A newcomer is placed
    behind its service's normal line and takes no window time (it is not there yet); `streams()`
    gives the visitors expected later, who take window time and may rank ahead (asked for only
    once the forecast looks past `now`: none of them is there yet). Tickets not called within
    HORIZON, or within `max_calls` simulated calls, are left out of the answer.
    """
    pending = set(targets)
    extra = dict(newcomers or {})
    pending.update(t.id for t in extra.values())
    found: dict[str, datetime] = {}
    if not pending:
        return found
    taken: set[str] = set()
    cursors: dict[tuple[str, str], int] = {}
    plans: dict[int, tuple[Desk, list[Stream]]] = {d.cfg.number: (d, []) for d in desks}
    heap = [(d.free_at, d.cfg.number) for d in desks]
    heapq.heapify(heap)
    normal, until = PRIORITY_RANK["normal"], now + HORIZON
    parked: list[int] | None = []       # windows with nothing to call now, until the streams are made
    calls = 0
    while heap and pending and (max_calls is None or calls < max_calls):
        at, number = heapq.heappop(heap)
        if at > until:
            break
        if parked is not None and at > now:
            _open_streams(streams(), desks, plans, parked, heap)
            heapq.heappush(heap, (at, number))
            parked = None
            continue
        desk, mine = plans[number]
        while True:
            candidates = _candidates(desk.cfg, lines, targeted, cursors, taken, extra)
            candidates += [s.head for s in mine if s.head_at is not None and s.head_at <= at]
            ticket = choose(desk.cfg, candidates, desk.streak, at)
            if ticket is None:      # nothing to call: wait for the next visitor this window may call
                if parked is not None:
                    parked.append(number)
                else:
                    _wake_at_next_visitor(number, mine, heap)
                break
            calls += 1
            if ticket.id in pending:
                found[ticket.id] = at
                pending.discard(ticket.id)
            if extra.get(ticket.service) is ticket:
                taken.add(ticket.id)
                continue        # a newcomer only marks the spot: the window calls on at once
            if isinstance(ticket, Visitor):
                next(s for s in mine if s.holds(ticket)).advance()
            else:
                taken.add(ticket.id)
            desk.streak = 0 if rank(ticket, at)[0] == normal else desk.streak + 1
            heapq.heappush(heap, (at + timedelta(seconds=occupancy(ticket.service) + TURNAROUND_S), number))
            break
    return found


def _open_streams(streams: Iterable[Stream], desks: Sequence[Desk], plans: dict[int, tuple[Desk, list[Stream]]],
                  parked: list[int], heap: list[tuple[datetime, int]]) -> None:
    """The forecast looks past now: give each window the streams of the services it serves, and wake
    the parked windows at their first expected visitor."""
    coming: dict[str, list[Stream]] = {}
    for stream in streams:
        coming.setdefault(stream.service, []).append(stream)
    for d in desks:
        plans[d.cfg.number][1].extend(s for ws in d.cfg.services for s in coming.get(ws.service, ()))
    for n in parked:
        _wake_at_next_visitor(n, plans[n][1], heap)


def _wake_at_next_visitor(number: int, mine: list[Stream], heap: list[tuple[datetime, int]]) -> None:
    """Window `number` calls again when the first of its streams' next visitors arrives (never, if none)."""
    later = [s.head_at for s in mine if s.head_at is not None]
    if later:
        heapq.heappush(heap, (min(later), number))


def _candidates(cfg: Window, lines: Mapping[tuple[str, str], Line], targeted: Mapping[int, Mapping[str, Ticket]],
                cursors: dict[tuple[str, str], int], taken: set[str],
                extra: Mapping[str, Visitor]) -> list[Ticket | Visitor]:
    """As the engine's `_candidates`, without the tickets already called in the forecast: per service
    and class the first one this window may call (every appointment), plus tickets sent to it, plus
    the newcomer behind the normal line."""
    found: list[Ticket | Visitor] = []
    for ws in cfg.services:
        for priority in PRIORITY_RANK:
            key = (ws.service, priority)
            line = lines.get(key, ())
            start = cursors.get(key, 0)
            while start < len(line) and line[start][-1].id in taken:
                start += 1          # called in the forecast: never looked at again
            cursors[key] = start
            first = None
            for i in range(start, len(line)):
                ticket = line[i][-1]
                if ticket.id not in taken and ticket.target_window in (None, cfg.number):
                    found.append(ticket)
                    if priority != "appointment":
                        first = ticket
                        break
            if first is None and priority == "normal":
                new = extra.get(ws.service)
                if new is not None and new.id not in taken:
                    found.append(new)
    if cfg.number in targeted:
        found += [t for t in targeted[cfg.number].values() if t.id not in taken and cfg.weight_of(t.service) is None]
    return found


class WaitEstimator:
    """The engine's view of waiting time: it learns from the engine's events and reads the engine's
    calling indexes (never writes them), so calling itself pays nothing for estimates."""

    OBSERVED = frozenset({"ticket_issued", "ticket_called", "service_finished", "ticket_skipped",
                          "ticket_transferred"})

    def __init__(self, services: Iterable[str], windows: Mapping[int, Window], state: EngineState,
                 lines: Mapping[tuple[str, str], Line], targeted: Mapping[int, Mapping[str, Ticket]], *,
                 choose: Choose, rank: Rank):
        self.history = History()
        self._services = list(services)
        self._windows, self._state, self._lines, self._targeted = windows, state, lines, targeted
        self._choose, self._rank = choose, rank
        self._cached: tuple[int, datetime, dict[str, Estimate | None]] | None = None
        # After a restart: the visits still waiting for their rating are the most recent ones known.
        done = sorted((t for t in state.tickets.values() if t.status == FINISHED and t.finished_at
                       and t.last_called_at), key=lambda t: t.finished_at)
        for t in done:
            self.history.add(t.service, (t.finished_at - t.last_called_at).total_seconds())

    def observe(self, type_: str, ticket: Ticket, window: int | None, now: datetime,
                extra: Mapping[str, Any]) -> None:
        """Called by the engine for the event types in OBSERVED."""
        h = self.history
        if type_ == "ticket_issued":
            if ticket.priority != "appointment":    # booked visits are known in advance
                h.arrived(ticket.service, ticket.priority, now)
        elif window is None:
            return
        elif type_ == "ticket_called":
            h.called(window, now)
        elif type_ == "ticket_transferred":
            record = extra["transfer"]
            h.freed(window, record["from_service"], now)
            if "to_service" in record:
                h.arrived(record["to_service"], TRANSFER, now)
        else:
            h.freed(window, ticket.service, now, ticket.last_called_at)

    def occupancy(self, service: str, rng: random.Random, elapsed: float = 0.0) -> float:
        """A visit length (or the rest of one) drawn for `service`; a service too rare to have a fit
        of its own yet stands at the whole hall's mean."""
        drawn = self.history.draw(service, rng, elapsed)
        if drawn is not None:
            return drawn
        mean = self.history.pooled_mean() or 0.0
        return max(mean - elapsed, RESIDUAL_FLOOR * mean)

    def for_ticket(self, ticket: Ticket, now: datetime) -> dict[str, Any]:
        """`ahead` and `estimate` (a dict, or None when hidden) for one waiting ticket."""
        ahead = people_ahead(ticket, self._lines, self._rank, now)
        estimate = None
        if ticket.status == WAITING and self.history.mean(ticket.service) is not None:
            if self._called_now(ticket, now):
                return {"ahead": ahead, "estimate": CALLED_NOW.to_dict()}
            line = self._lines.get((ticket.service, "normal"), ())
            if ticket.priority == "normal" and ticket.target_window is None and line and line[-1][-1] is ticket:
                # The newest normal ticket stands where the per-service forecast's newcomer stands:
                # share that forecast (made at most REFRESH ago) instead of running one per ticket.
                shared = self.for_services(now, newest=ticket)[ticket.service]
                return {"ahead": ahead, "estimate": shared.to_dict() if shared else None}
            if any(cfg.weight_of(ticket.service) is not None for cfg in self._open(now)):
                shown = shown_range(self._replay(now, ticket.id, targets=(ticket.id,))[ticket.id])
                estimate = shown.to_dict() if shown else None
        return {"ahead": ahead, "estimate": estimate}

    def for_waiting(self, now: datetime) -> dict[str, dict[str, Any]]:
        """`ahead` and `estimate` of every waiting ticket, from one forecast for all of them: the phone
        pages ask for their tickets after each event, and one replay per ticket would hold the engine
        lock for each page (seeded by the hall's seq, so the same state gives the same answer)."""
        waiting = [entry[-1] for line in self._lines.values() for entry in line]
        if not waiting:
            return {}
        estimable = [t for t in waiting if self.history.mean(t.service) is not None]
        open_services = {ws.service for cfg in self._open(now) for ws in cfg.services}
        targets = [t.id for t in estimable if t.service in open_services or t.target_window is not None]
        waits = self._replay(now, f"phones-{self._state.seq}", targets=targets) if targets else {}
        views: dict[str, dict[str, Any]] = {}
        for ticket in waiting:
            estimate = None
            if ticket in estimable:
                if self._called_now(ticket, now):
                    estimate = CALLED_NOW.to_dict()
                elif ticket.id in waits:
                    shown = shown_range(waits[ticket.id])
                    estimate = shown.to_dict() if shown else None
            views[ticket.id] = {"ahead": people_ahead(ticket, self._lines, self._rank, now), "estimate": estimate}
        return views

    def _called_now(self, ticket: Ticket, now: datetime) -> bool:
        """Whether a free open window would call this ticket next: the forecast's first step, which
        is the usual case in a quiet hall, without the cost of the rest of it."""
        for number, cfg in self._windows.items():
            win = self._state.windows.get(number)
            if (win is not None and win.staff_id is not None and not win.paused and not win.current
                    and (cfg.weight_of(ticket.service) is not None or ticket.target_window == number)):
                candidates = _candidates(cfg, self._lines, self._targeted, {}, set(), {})
                if self._choose(cfg, candidates, win.priority_streak, now) is ticket:
                    return True
        return False

    def for_services(self, now: datetime, *, newest: Ticket | None = None) -> dict[str, Estimate | None]:
        """Per service, the estimate a visitor taking a normal number now would be shown.

        The retained queue state is rebuilt after every commit and every normal ticket issued
        asks for its service's; under a rush that would mean a forecast per command, so the answer
        is kept for REFRESH (and MAX_AGE if nothing changed; the ranges move in 5-minute steps
        anyway). `newest` is a ticket just issued at the back of its normal line: it stands where
        that service's newcomer would."""
        if self._cached is not None:
            seq, at, cached = self._cached
            age = now - at
            if timedelta(0) <= age < (MAX_AGE if seq == self._state.seq and newest is None else REFRESH):
                return cached
        out = self._for_services(self._services, now, newest)
        self._cached = (self._state.seq, now, out)
        return out

    def _for_services(self, services: Iterable[str], now: datetime,
                      newest: Ticket | None) -> dict[str, Estimate | None]:
        out: dict[str, Estimate | None] = dict.fromkeys(services)
        served = {ws.service for cfg in self._open(now) for ws in cfg.services}
        known = [code for code in out if code in served and self.history.mean(code) is not None]
        if not known:
            return out
        spot = {code: LINE_MARKER + code for code in known}
        if newest is not None:
            spot[newest.service] = newest.id
        news = {code: Visitor(tag, code, "normal", now, now) for code, tag in spot.items() if tag.startswith(LINE_MARKER)}
        waits = self._replay(now, LINE_MARKER, targets=[t for t in spot.values() if not t.startswith(LINE_MARKER)],
                             newcomers=news)
        for code in known:
            out[code] = shown_range(waits[spot[code]])
        return out

    def _replay(self, now: datetime, seed: str, targets: Iterable[str] = (),
                newcomers: Mapping[str, Visitor] | None = None) -> dict[str, list[float]]:
        """The wait in seconds of each target (and newcomer) in SAMPLES forecasts, each with its own
        draw of visit lengths (the current ones conditioned on how long they have run) and of walk-in
        arrivals (inf when not called within HORIZON). The draws come from a generator seeded by
        `seed`, so the same state always gives the same answer."""
        rng = random.Random(zlib.crc32(seed.encode()))
        ids = [*targets, *(v.id for v in (newcomers or {}).values())]
        waits: dict[str, list[float]] = {i: [] for i in ids}
        # The forecast runs under the engine lock: its cost is bounded by CALL_BUDGET simulated calls
        # in all, whatever the queue. A long queue gets fewer replays, and a ticket further back than
        # the budget reaches is not estimated (only 前面还有N人 is shown).
        queue = sum(len(line) for line in self._lines.values()) + sum(len(t) for t in self._targeted.values())
        samples = max(1, min(SAMPLES, CALL_BUDGET // max(1, 2 * queue)))
        for _ in range(samples):
            found = forecast(now, self._desks(now, rng), self._lines, self._targeted, choose=self._choose,
                             rank=self._rank, occupancy=lambda service: self.occupancy(service, rng),
                             targets=targets, newcomers=newcomers, streams=lambda: self._streams(now, rng),
                             max_calls=CALL_BUDGET // samples)
            for i in ids:
                at = found.get(i)
                waits[i].append(math.inf if at is None else (at - now).total_seconds())
        return waits

    def _streams(self, now: datetime, rng: random.Random) -> list[Stream]:
        """Who is expected within HORIZON: walk-ins coming at random at the recent rate of each service
        and class, visitors transferred in (ahead of the normal line), and the booked appointments at
        their slot."""
        until = now + HORIZON
        streams = [Stream(service, kind, poisson(now, rate, until, rng), now if kind == TRANSFER else None)
                   for (service, kind), rate in self.history.rates(now).items()]
        booked: dict[str, list[datetime]] = {}
        for appt in self._state.appointments.values():
            if appt.status == "booked" and now < appt.start_at <= until:
                booked.setdefault(appt.service, []).append(appt.start_at)
        streams += [Stream(service, "appointment", iter(sorted(slots))) for service, slots in booked.items()]
        return streams

    def _open(self, now: datetime) -> list[Window]:
        """The windows open now: logged in, not paused."""
        return [cfg for number, cfg in self._windows.items()
                if (win := self._state.windows.get(number)) is not None and win.staff_id is not None and not win.paused]

    def _desks(self, now: datetime, rng: random.Random) -> list[Desk]:
        """The open windows and when each will be free, drawn: a visit under way ends after a drawn
        length beyond what it has run already."""
        desks = []
        for cfg in self._open(now):
            win = self._state.windows[cfg.number]
            free_at = now
            current = self._state.tickets.get(win.current) if win.current else None
            if current is not None and current.status in (CALLED, SERVING):
                since = self.history.busy_since(cfg.number, current.last_called_at) or now
                left = self.occupancy(current.service, rng, (now - since).total_seconds())
                free_at = now + timedelta(seconds=left + TURNAROUND_S)
            desks.append(Desk(cfg, free_at, win.priority_streak))
        return desks


def people_ahead(ticket: Ticket, lines: Mapping[tuple[str, str], Line], rank: Rank, now: datetime) -> int:
    """Waiting tickets of the same service called before this one (前面还有N人), by class and arrival."""
    mine = rank(ticket, now)
    key = (mine[1], ticket.seq_no, ticket.id)
    ahead = 0
    for priority, order in PRIORITY_RANK.items():
        line = lines.get((ticket.service, priority), ())
        if priority == "appointment":       # ranks by its slot only once the slot is due
            ahead += sum(1 for e in line if e[-1] is not ticket and (*rank(e[-1], now), e[1]) < (*mine, key[1]))
        elif order < mine[0]:
            ahead += len(line)
        elif order == mine[0]:
            ahead += bisect_left(line, key, key=lambda e: e[:3])
    return ahead
