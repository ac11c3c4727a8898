"""The hall as hall-web sees it, cached, and the fan-out to open pages.

One MQTT connection (a HallClient of role `web`) feeds everything: the retained state (status,
queues, calls, windows) and the events. Each open ticket page's status is kept in an `Entry`, shared
by every page (and poll) of that token. An event first edits the entries it concerns at once (the
called visitor sees 请到N号窗口, the others the new call, within one push), then marks them for one
`ticket_status` each: marks coalesce, so a burst of events costs one request per ticket, and the
daemon's answer (前面还有N人, estimate, windows) follows as a second push. Pages learn of a change by
an asyncio.Event per connection and write the entry's latest message: a slow page skips to the
newest state rather than queueing old ones.

HallClient's callbacks run on paho's thread: they only hand the message to the event loop
(`call_soon_threadsafe`); its blocking `request()` runs in a small thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

import orjson

from hall_controller.bus.client import BusError, BusUnavailable, CommandError, RequestTimeout
from hall_controller.clock import Clock
from hall_controller.webpush import MAX_UNSENT, Stream  # noqa: F401  (hall_web.server and tests use them from here)

from . import view

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
REQUEST_TIMEOUT = 5.0
IDLE_ENTRY_SECONDS = 120.0       # an entry no page streams nor polled for this long is dropped
HALL_PAGE_REFRESH = 300.0        # today's hours are re-read this often (and after a day reset)
REFRESH_WORKERS = 8
# Events come in bursts (one command: finished, closed, the next called) and the pages' pushes go out
# first: the daemon is asked again this long after the first event of a burst.
REFRESH_DELAY = 0.1
RECENT = 5

# Events that change what some ticket page shows. ticket_issued only matters when the new ticket can
# go ahead of others (a priority class); a normal one only queues behind everyone already waiting.
TICKET_EVENTS = ("ticket_called", "ticket_recalled", "service_started", "service_finished", "ticket_skipped",
                 "ticket_reinstated", "ticket_transferred", "ticket_left", "ticket_cancelled", "ticket_issued",
                 "ticket_reprinted", "rating_requested", "rating_received", "visit_closed")
WINDOW_EVENTS = ("window_paused", "window_resumed", "staff_login", "staff_logout")
EVENTS = (*TICKET_EVENTS, *WINDOW_EVENTS, "day_reset")


class Bus(Protocol):
    """The part of HallClient hall-web uses (tests put a fake here)."""

    @property
    def connected(self) -> bool: ...

    @property
    def state(self) -> Any: ...

    def request(self, op: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]: ...

    def subscribe_events(self, callback: Callable[[dict[str, Any]], None], types: Any = None) -> Callable[[], None]: ...

    def add_state_listener(self, listener: Callable[[str, Any, Any], None]) -> Callable[[], None]: ...


class Unavailable(Exception):
    """The daemon cannot be asked now (no bus, no reply); the page says so and retries."""


class Refused(Exception):
    """The daemon refused a leave or rating; `message` is its Chinese text for the visitor."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Entry:
    """One token's ticket as the pages show it."""

    __slots__ = ("token", "reply", "number", "service", "seq", "version", "view", "message", "streams",
                 "touched", "expired", "recalls", "queued", "running", "again")

    def __init__(self, token: str) -> None:
        self.token = token
        self.reply: dict[str, Any] = {}
        self.number = ""
        self.service = ""
        self.seq = -1
        self.version = 0
        self.view: dict[str, Any] = {}
        self.message = b""
        self.streams: set[Stream] = set()
        self.touched = time.monotonic()
        self.expired = False
        self.recalls = 0
        self.queued = self.running = self.again = False


class Hub:
    """The cache and fan-out; every method runs on the event loop (see the module doc)."""

    def __init__(self, bus: Bus, clock: Clock, *, hall_name: str = "", timezone: str | None = None,
                 hours: Callable[[datetime], str] | None = None, workers: int = REFRESH_WORKERS,
                 heartbeat: float = HEARTBEAT_SECONDS, request_timeout: float = REQUEST_TIMEOUT,
                 refresh_delay: float = REFRESH_DELAY) -> None:
        self.bus, self.clock = bus, clock
        self.boot = secrets.token_hex(3)        # event ids of this process: `{boot}.{version}`
        self.hall_name = hall_name
        self._timezone = timezone
        self._hours_fallback = hours
        self.hours = ""
        self.closed = ""             # the daemon's words while the hall is closed (hall_page), else ""
        self.heartbeat = heartbeat
        self.request_timeout = request_timeout
        self.entries: dict[str, Entry] = {}
        self._by_service: dict[str, set[Entry]] = {}
        self._by_number: dict[str, set[Entry]] = {}
        self._lookups: dict[str, asyncio.Future[Entry | None]] = {}
        self._window_services: dict[int, tuple[str, ...]] = {}
        self._queue: asyncio.Queue[Entry] = asyncio.Queue()
        self._marked: list[Entry] = []
        self._flush: asyncio.TimerHandle | None = None
        self.refresh_delay = refresh_delay
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers + 4, thread_name_prefix="hall-web-bus")
        self._tasks: list[asyncio.Task[Any]] = []
        self._unhook: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._back_online: Callable[[], Any] | None = None
        self.online = False
        self.confirmed: datetime | None = None     # when the cached state was last known current
        self._ping_data = b'{"online":false,"updated":""}'
        self._last_ping = time.monotonic()
        # the hall page
        self.hall_streams: set[Stream] = set()
        self.hall_version = 0
        self.hall_message = b""
        self.hall_json: dict[str, Any] = {}
        self.refreshes = 0                          # ticket_status requests sent (bench, tests)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()

        def on_event(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self.on_event, event)

        def on_state(section: str, key: Any, value: Any) -> None:
            loop.call_soon_threadsafe(self.on_state, section, key, value)

        self._unhook = [self.bus.subscribe_events(on_event, EVENTS), self.bus.add_state_listener(on_state)]
        state = self.bus.state
        for number, value in (state.windows or {}).items():
            self._set_window(number, value)
        self._set_online()
        self._back_online = lambda: loop.create_task(self._read_hall_page())
        self._rebuild_hall()
        self._tasks = [loop.create_task(self._refresher()) for _ in range(self._workers)]
        self._tasks += [loop.create_task(self._ticker()), loop.create_task(self._hall_page_loop())]

    async def stop(self) -> None:
        for unhook in self._unhook:
            unhook()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ asking the daemon

    async def _ask(self, op: str, **args: Any) -> dict[str, Any]:
        """`op` on the daemon from the thread pool; Unavailable when there is no answer."""
        assert self._loop is not None
        call = functools.partial(self.bus.request, op, self.request_timeout, **args)
        try:
            return await self._loop.run_in_executor(self._pool, call)
        except (BusUnavailable, RequestTimeout) as exc:
            raise Unavailable(str(exc)) from None
        except CommandError:
            raise
        except BusError as exc:
            raise Unavailable(str(exc)) from None

    async def lookup(self, token: str) -> Entry | None:
        """The entry of `token`, asking the daemon the first time; None for an unknown, malformed or
        expired token (all alike). Raises Unavailable when the daemon cannot be asked."""
        entry = self.entries.get(token)
        if entry is not None and not entry.expired:
            entry.touched = time.monotonic()
            return entry
        pending = self._lookups.get(token)
        if pending is not None:
            return await asyncio.shield(pending)
        assert self._loop is not None
        future: asyncio.Future[Entry | None] = self._loop.create_future()
        self._lookups[token] = future
        try:
            result = await self._first_lookup(token)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()          # retrieved: nobody else may be waiting
            raise
        finally:
            del self._lookups[token]

    async def _first_lookup(self, token: str) -> Entry | None:
        self.refreshes += 1
        try:
            reply = await self._ask("ticket_status", token=token)
        except CommandError as exc:
            if exc.code in ("not_found", "bad_request"):
                return None
            log.warning("ticket_status refused: %s", exc.code)
            raise Unavailable(exc.code) from None
        entry = Entry(token)
        self.entries[token] = entry
        self._apply_reply(entry, reply)
        return entry

    def known(self, token: str) -> bool:
        """A token this process holds as valid (its lookups are free of the per-address limit)."""
        entry = self.entries.get(token)
        return entry is not None and not entry.expired

    async def leave(self, entry: Entry) -> None:
        await self._change(entry, "leave")

    async def rate(self, entry: Entry, score: int, dimensions: dict[str, int] | None) -> None:
        args: dict[str, Any] = {"score": score}
        if dimensions:
            args["dimensions"] = dimensions
        await self._change(entry, "rate_by_token", **args)

    async def _change(self, entry: Entry, op: str, **args: Any) -> None:
        """Run a visitor's op, then show its result at once (the event would also bring it, later)."""
        try:
            await self._ask(op, token=entry.token, **args)
        except CommandError as exc:
            await self._refresh(entry)
            if exc.code == "not_found":
                raise Refused("not_found", view.EXPIRED_TITLE) from None
            raise Refused(exc.code, exc.message or "操作未成功，请稍后再试") from None
        await self._refresh(entry)

    # ------------------------------------------------------------------ entries

    def _apply_reply(self, entry: Entry, reply: dict[str, Any]) -> None:
        seq = reply.get("seq")
        if isinstance(seq, int) and seq < entry.seq:
            return          # older than an event already shown; the event queued a newer ask
        ticket = reply.get("ticket") if isinstance(reply.get("ticket"), dict) else {}
        number, service = str(ticket.get("number") or ""), str(ticket.get("service") or "")
        if number != entry.number:
            _move(self._by_number, entry, entry.number, number)
            entry.number = number
        if service != entry.service:
            _move(self._by_service, entry, entry.service, service)
            entry.service = service
        if ticket.get("status") != "called":
            entry.recalls = 0
        entry.reply = reply
        if isinstance(seq, int):
            entry.seq = seq
        self.confirmed = self.clock.now()
        self._publish(entry)

    def _expire(self, entry: Entry) -> None:
        entry.expired = True
        entry.view = view.expired_view()
        entry.version += 1
        entry.message = self._message(entry)
        self._drop(entry)
        self._send(entry.streams, entry.message)
        for stream in entry.streams:
            stream.end()

    def _drop(self, entry: Entry) -> None:
        if self.entries.get(entry.token) is entry:
            del self.entries[entry.token]
        _move(self._by_number, entry, entry.number, "")
        _move(self._by_service, entry, entry.service, "")

    def _publish(self, entry: Entry) -> None:
        """Rebuild the entry's view and message and wake its pages."""
        entry.view = view.ticket_view(entry.reply, online=self.online, updated=self._updated(),
                                      recalls=entry.recalls)
        entry.version += 1
        entry.message = self._message(entry)
        self._send(entry.streams, entry.message)

    def _message(self, entry: Entry) -> bytes:
        return b"id: %s.%d\nevent: state\ndata: %s\n\n" % (self.boot.encode(), entry.version,
                                                           orjson.dumps(entry.view))

    def event_id(self, entry: Entry | None) -> str:
        return f"{self.boot}.{entry.version if entry is not None else self.hall_version}"

    def ping_message(self, entry: Entry | None) -> bytes:
        """The heartbeat: a comment for proxies, and a `ping` event the page's watchdog sees."""
        return b": heartbeat\nid: %s\nevent: ping\ndata: %s\n\n" % (self.event_id(entry).encode(), self._ping_data)

    @staticmethod
    def _send(streams: set[Stream], message: bytes) -> None:
        for stream in list(streams):
            stream.send(message)

    def _mark(self, entry: Entry) -> None:
        """Ask the daemon for this ticket again, once, however many events asked for it meanwhile."""
        if entry.expired or entry.queued:
            return
        if entry.running:
            entry.again = True
            return
        entry.queued = True
        self._marked.append(entry)
        if self._flush is None and self._loop is not None:
            self._flush = self._loop.call_later(self.refresh_delay, self._enqueue_marked)

    def _enqueue_marked(self) -> None:
        self._flush = None
        marked, self._marked = self._marked, []
        for entry in marked:
            self._queue.put_nowait(entry)

    async def _refresher(self) -> None:
        while True:
            entry = await self._queue.get()
            entry.queued = False
            if entry.expired or self.entries.get(entry.token) is not entry:
                continue
            await self._refresh(entry)

    async def _refresh(self, entry: Entry) -> None:
        entry.running = True
        self.refreshes += 1
        try:
            reply = await self._ask("ticket_status", token=entry.token)
        except CommandError as exc:
            if exc.code in ("not_found", "bad_request"):
                self._expire(entry)
            else:
                log.warning("ticket_status refused: %s", exc.code)
            return
        except Unavailable:
            return              # the online watch refreshes everything once the daemon is back
        finally:
            entry.running = False
        self._apply_reply(entry, reply)
        if entry.again:
            entry.again = False
            self._mark(entry)

    def mark_all(self) -> None:
        for entry in list(self.entries.values()):
            self._mark(entry)

    # ------------------------------------------------------------------ from the bus (event loop)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "day_reset":
            self.mark_all()
            self._loop and self._loop.create_task(self._read_hall_page())
            return
        ticket = event.get("ticket") if isinstance(event.get("ticket"), dict) else {}
        window = event.get("window") if isinstance(event.get("window"), int) else None
        number, service = ticket.get("number"), ticket.get("service")
        services = set(self._window_services.get(window, ())) if window is not None else set()
        if isinstance(service, str) and not (kind == "ticket_issued" and ticket.get("priority") == "normal"):
            services.add(service)
        touched: set[Entry] = set()
        for code in services:
            touched |= self._by_service.get(code, set())
        own = self._by_number.get(number, set()) if isinstance(number, str) else set()
        seq = event.get("seq") if isinstance(event.get("seq"), int) else None
        called = kind == "ticket_called" and isinstance(number, str)
        for entry in own:                   # the visitor it is about first: 请到N号窗口 before the others
            if called and entry.service == service:
                _add_call(entry.reply, number, window, event.get("ts"))
            if self._apply_own(entry, kind, ticket, window, seq) or called:
                self._publish(entry)
            self._mark(entry)
        for entry in touched - own:
            if called and entry.service == service and entry.view and not entry.expired:
                # only its recent calls change: patch the view rather than build it again
                _add_call(entry.reply, number, window, event.get("ts"))
                entry.view = view.with_calls(entry.view, entry.reply["recent_calls"])
                entry.version += 1
                entry.message = self._message(entry)
                self._send(entry.streams, entry.message)
            self._mark(entry)

    def _apply_own(self, entry: Entry, kind: Any, ticket: dict[str, Any], window: int | None,
                   seq: int | None) -> bool:
        """The event is about this page's own ticket: show its new status before the daemon is asked."""
        if seq is not None and seq <= entry.seq:
            return False
        current = entry.reply.get("ticket")
        if not isinstance(current, dict) or not isinstance(ticket.get("status"), str):
            return False
        if kind == "ticket_recalled":
            entry.recalls += 1
        updated = dict(current, status=ticket["status"], window=ticket.get("window", window),
                       called_at=ticket.get("called_at", current.get("called_at")))
        entry.reply = dict(entry.reply, ticket=updated)
        if seq is not None:
            entry.seq = seq
        return True

    def on_state(self, section: str, key: Any, value: Any) -> None:
        if section == "window" and isinstance(key, int):
            if self._set_window(key, value):
                for code in self._window_services.get(key, ()):
                    for entry in self._by_service.get(code, ()):
                        self._mark(entry)
        elif section == "hall":
            self._set_online()
        if section in ("hall", "queues", "calls"):
            self._rebuild_hall()

    def _set_window(self, number: Any, value: Any) -> bool:
        """Keep which services each window serves (nothing else of the window: its clerk is personal)."""
        services = tuple(s for s in value.get("services") or () if isinstance(s, str)) if isinstance(value, dict) \
            else ()
        before = self._window_services.get(number)
        self._window_services[number] = services
        return before is not None

    def _set_online(self) -> None:
        state = self.bus.state
        status = state.hall if isinstance(state.hall, dict) else {}
        if isinstance(status.get("timezone"), str):
            self._timezone = status["timezone"]
        online = bool(self.bus.connected and status.get("state") == "online")
        if online == self.online:
            return
        self.online = online
        log.info("hall %s", "online: refreshing the open pages" if online else "offline: pages show the banner")
        if online:
            self.confirmed = self.clock.now()
            self.mark_all()
            if self._back_online is not None:     # not at start: _hall_page_loop reads it then
                self._back_online()
        for entry in list(self.entries.values()):
            self._publish(entry)
        self._rebuild_hall()

    # ------------------------------------------------------------------ the hall page

    def _updated(self) -> str:
        return view.updated_text(self.confirmed, view.zone(self._timezone))

    def _rebuild_hall(self) -> None:
        state = self.bus.state
        if self.online:
            self.confirmed = self.clock.now()
        self.hall_json = view.hall_view(self.hall_name, state.queues, state.calls, self.hours,
                                        online=self.online, updated=self._updated(), closed=self.closed)
        self.hall_version += 1
        self.hall_message = b"id: %s\nevent: state\ndata: %s\n\n" % (self.event_id(None).encode(),
                                                                    orjson.dumps(self.hall_json))
        self._send(self.hall_streams, self.hall_message)

    async def _read_hall_page(self) -> None:
        """The hall's name and today's hours (`hall_page`); the config's when the daemon cannot say."""
        hours = self._hours_fallback(self.clock.now()) if self._hours_fallback else ""
        try:
            page = await self._ask("hall_page")
        except (Unavailable, CommandError) as exc:
            log.info("hall_page not answered (%s): the config's hours are shown", exc)
            page = {}
        hall = page.get("hall") if isinstance(page.get("hall"), dict) else {}
        if isinstance(hall.get("name"), str) and hall["name"]:
            self.hall_name = hall["name"]
        if isinstance(hall.get("hours_today"), str):
            hours = hall["hours_today"]
        closed = hall["closed_text"] if hall.get("open_now") is False and isinstance(hall.get("closed_text"), str) else ""
        if hours != self.hours or closed != self.closed or page:
            self.hours, self.closed = hours, closed
            self._rebuild_hall()

    async def _hall_page_loop(self) -> None:
        while True:
            await self._read_hall_page()
            await asyncio.sleep(HALL_PAGE_REFRESH)

    # ------------------------------------------------------------------ heartbeat and housekeeping

    async def _ticker(self) -> None:
        """Every heartbeat: the connection watch, the pings, and dropping entries no page uses."""
        while True:
            await asyncio.sleep(min(1.0, self.heartbeat))
            self._set_online()
            now = time.monotonic()
            if now - self._last_ping >= self.heartbeat:
                self._last_ping = now
                self.ping()
                for entry in [e for e in self.entries.values()
                              if not e.streams and now - e.touched > IDLE_ENTRY_SECONDS]:
                    self._drop(entry)

    def ping(self) -> None:
        """Say to every page that the state is still current (or that it is not)."""
        if self.online:
            self.confirmed = self.clock.now()
        self._ping_data = orjson.dumps({"online": self.online, "updated": self._updated() if self.online else ""})
        self._send(self.hall_streams, self.ping_message(None))
        for entry in self.entries.values():
            if entry.streams:
                self._send(entry.streams, self.ping_message(entry))

    def stats(self) -> dict[str, Any]:
        return {"online": self.online, "entries": len(self.entries),
                "streams": sum(len(e.streams) for e in self.entries.values()) + len(self.hall_streams),
                "refreshes": self.refreshes}


def _move(index: dict[str, set[Entry]], entry: Entry, old: str, new: str) -> None:
    if old:
        bucket = index.get(old)
        if bucket is not None:
            bucket.discard(entry)
            if not bucket:
                del index[old]
    if new:
        index.setdefault(new, set()).add(entry)


def _add_call(reply: dict[str, Any], number: str, window: int | None, at: Any) -> bool:
    """Put a call of the page's service at the top of its recent calls."""
    calls = [c for c in reply.get("recent_calls") or [] if isinstance(c, dict) and c.get("number") != number]
    calls.insert(0, {"number": number, "window": window, "at": at})
    reply["recent_calls"] = calls[:RECENT]
    return True
