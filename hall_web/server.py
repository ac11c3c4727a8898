"""The HTTP side: routes, Server-Sent Events, the per-address limit on token lookups, same-origin posts.

- `/t/{token}`: the ticket page; `/t/{token}/events` its SSE stream, `/t/{token}/state` the same state
  as JSON (the page polls it every 5 s where SSE keeps failing); POST `/t/{token}/leave` and `/rate`.
- `/`: the hall page; `/events` and `/state` likewise. `/healthz`: counts for the operator.

Every stream message has an `id:`; a page that comes back (EventSource sends Last-Event-ID) gets the
current state at once, whatever it missed. A heartbeat every 15 s (a comment for proxies and a `ping`
event for the page's watchdog) keeps idle connections open and tells the page the state is current.

Abuse: a token hall-web does not hold as valid costs its client address one lookup from a token
bucket (burst 10, 20 a minute by default); an unknown, malformed or expired token gets the same page
and status (404) — the daemon answers all three alike. Tokens never reach a log: the access log
writes `/t/…`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import pages, view
from .hub import Entry, Hub, Refused, Stream, Unavailable

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{22}")
RETRY_MS = 3000
HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)


class Limiter:
    """A token bucket per client address: `burst` lookups at once, refilled at `per_minute`."""

    def __init__(self, per_minute: float = 20.0, burst: int = 10, *, clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_addresses = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, address: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_addresses and address not in self._buckets:
            self._forget_full(now)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return False
        self._buckets[address] = (tokens - 1.0, now)
        return True

    def _forget_full(self, now: float) -> None:
        """Drop the addresses whose bucket has filled up again (they are as good as new)."""
        full = [a for a, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for address in full:
            del self._buckets[address]


class Settings:
    """What the routes need besides the hub."""

    def __init__(self, limiter: Limiter, max_streams_per_address: int = 64) -> None:
        self.limiter = limiter
        self.max_streams_per_address = max_streams_per_address
        self.streams_by_address: Counter[str] = Counter()
        self.closing = False
        self.open_streams: set[Stream] = set()


SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's access log without the visit tokens (they are the key to a ticket)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = re.sub(r"^/t/[^/]+", "/t/…", request.path)
        self.logger.debug("%s %s %s %d %.1f ms", request.remote, request.method, path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={**pages.HEADERS, **(headers or {})})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


_REFUSED_HTML = {404: pages.EXPIRED_PAGE, 429: pages.TOO_MANY_PAGE, 503: pages.UNAVAILABLE_PAGE}
_REFUSED_JSON = {404: {"expired": True, "message": view.EXPIRED_TITLE},
                 429: {"error": "too_many", "message": view.TOO_MANY_TITLE},
                 503: {"error": "unavailable", "message": view.UNAVAILABLE_TITLE}}


def _refused(status: int, as_json: bool) -> web.Response:
    headers = {"Retry-After": "60"} if status == 429 else {"Retry-After": "10"} if status == 503 else None
    if as_json:
        response = _json(_REFUSED_JSON[status], status)
        response.headers.update(headers or {})
        return response
    return _html(_REFUSED_HTML[status], status, headers)


async def _entry(request: web.Request, *, as_json: bool) -> Entry | web.Response:
    """The token's entry, or the refusal to send (429 limited, 404 unknown/expired, 503 no daemon)."""
    hub, settings = request.app[HUB], request.app[SETTINGS]
    token = request.match_info["token"]
    if not hub.known(token):
        if not settings.limiter.allow(request.remote or "?"):
            return _refused(429, as_json)
        if not TOKEN_RE.fullmatch(token):
            return _refused(404, as_json)
        try:
            entry = await hub.lookup(token)
        except Unavailable:
            return _refused(503, as_json)
        if entry is None:
            return _refused(404, as_json)
        return entry
    entry = await hub.lookup(token)       # known: from the cache, no daemon round trip
    return entry if entry is not None else _refused(404, as_json)


# ------------------------------------------------------------------ pages and state


async def ticket_page(request: web.Request) -> web.Response:
    entry = await _entry(request, as_json=False)
    if isinstance(entry, web.Response):
        return entry
    return _html(pages.ticket_page(entry.view))


async def ticket_state(request: web.Request) -> web.Response:
    entry = await _entry(request, as_json=True)
    if isinstance(entry, web.Response):
        return entry
    return _json(entry.view)


async def hall_page(request: web.Request) -> web.Response:
    return _html(pages.hall_page(request.app[HUB].hall_json))


async def hall_state(request: web.Request) -> web.Response:
    return _json(request.app[HUB].hall_json)


async def healthz(request: web.Request) -> web.Response:
    return _json(request.app[HUB].stats())


# ------------------------------------------------------------------ Server-Sent Events


async def ticket_events(request: web.Request) -> web.StreamResponse:
    entry = await _entry(request, as_json=True)
    if isinstance(entry, web.Response):
        return entry
    return await _stream(request, entry.streams, lambda: (entry.version, entry.message), lambda: entry.expired)


async def hall_events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    return await _stream(request, hub.hall_streams, lambda: (hub.hall_version, hub.hall_message), lambda: False)


async def _stream(request: web.Request, streams: set[Stream], current: Callable[[], tuple[int, bytes]],
                  finished: Callable[[], bool]) -> web.StreamResponse:
    """Send the current state at once (a resumed stream too: Last-Event-ID changes nothing but that the
    page has seen an older state), then hand the socket to the hub, which writes every change and
    heartbeat to it, until the page goes (aiohttp cancels this handler) or the stream is ended."""
    settings = request.app[SETTINGS]
    address = request.remote or "?"
    if settings.streams_by_address[address] >= settings.max_streams_per_address or settings.closing:
        return _refused(429, True)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
    response.enable_chunked_encoding()      # the hub frames its writes as chunks (hub.Stream)
    stream = Stream(request.transport, asyncio.get_running_loop().create_future())
    settings.streams_by_address[address] += 1
    settings.open_streams.add(stream)
    try:
        await response.prepare(request)
        version, message = current()
        await response.write(b"retry: %d\n\n" % RETRY_MS + message)   # the headers go out with it
        while current()[0] != version:       # changed while that was written
            version, message = current()
            await response.write(message)
        if not finished():
            streams.add(stream)              # from here on the hub writes to the socket itself
            await stream.done
    except (ConnectionResetError, asyncio.CancelledError):
        pass        # the page went away
    finally:
        streams.discard(stream)
        settings.open_streams.discard(stream)
        settings.streams_by_address[address] -= 1
        if settings.streams_by_address[address] <= 0:
            del settings.streams_by_address[address]
    return response


# ------------------------------------------------------------------ the visitor's changes


def _same_origin(request: web.Request) -> bool:
    """A post from our own page: Origin (or, without it, Sec-Fetch-Site / Referer) names this host."""
    origin = request.headers.get("Origin")
    if origin:
        return urlsplit(origin).netloc == request.host
    site = request.headers.get("Sec-Fetch-Site")
    if site:
        return site == "same-origin"
    referer = request.headers.get("Referer")
    return bool(referer) and urlsplit(referer).netloc == request.host


async def _change(request: web.Request, act: Callable[[Hub, Entry, dict[str, Any]], Awaitable[None]]) -> web.Response:
    if not _same_origin(request) or request.content_type != "application/json":
        return _json({"ok": False, "message": "请在本页面内操作"}, 403)
    entry = await _entry(request, as_json=True)
    if isinstance(entry, web.Response):
        return entry
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _json({"ok": False, "message": "请求格式有误，请刷新页面后再试"}, 400)
    hub = request.app[HUB]
    try:
        await act(hub, entry, body)
    except Refused as exc:
        if exc.code == "not_found":
            return _refused(404, True)
        return _json({"ok": False, "message": exc.message, "view": entry.view}, 409)
    except ValueError as exc:
        return _json({"ok": False, "message": str(exc), "view": entry.view}, 400)
    except Unavailable:
        return _refused(503, True)
    return _json({"ok": True, "message": "", "view": entry.view})


async def _leave(hub: Hub, entry: Entry, body: dict[str, Any]) -> None:
    await hub.leave(entry)


async def _rate(hub: Hub, entry: Entry, body: dict[str, Any]) -> None:
    score = body.get("score")
    if isinstance(score, bool) or not isinstance(score, int) or score not in view.LEVELS:
        raise ValueError("请选择总体评价")
    dims = body.get("dimensions") or {}
    if not isinstance(dims, dict) or any(k not in view.DIMENSIONS or isinstance(v, bool) or v not in view.LEVELS
                                         for k, v in dims.items()):
        raise ValueError("分项评价有误，请重新选择")
    await hub.rate(entry, score, dims or None)


async def leave(request: web.Request) -> web.Response:
    return await _change(request, _leave)


async def rate(request: web.Request) -> web.Response:
    return await _change(request, _rate)


# ------------------------------------------------------------------ the application


# How the app is run (hall-web and the tests alike): a page that goes away cancels its stream at once,
# and the access log is the redacting one.
RUNNER_OPTIONS: dict[str, Any] = {"handler_cancellation": True, "access_log_class": RedactingAccessLogger,
                                  "access_log": logging.getLogger("hall_web.access")}


def create_app(hub: Hub, *, limiter: Limiter | None = None, max_streams_per_address: int = 64) -> web.Application:
    """The aiohttp application over a started (or, in tests, a to-be-started) hub."""
    app = web.Application(client_max_size=16 * 1024)
    app[HUB] = hub
    app[SETTINGS] = Settings(limiter or Limiter(), max_streams_per_address)
    app.router.add_get("/", hall_page)
    app.router.add_get("/events", hall_events)
    app.router.add_get("/state", hall_state)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/t/{token}", ticket_page)
    app.router.add_get("/t/{token}/events", ticket_events)
    app.router.add_get("/t/{token}/state", ticket_state)
    app.router.add_post("/t/{token}/leave", leave)
    app.router.add_post("/t/{token}/rate", rate)
    app.on_shutdown.append(_close_streams)
    return app


async def _close_streams(app: web.Application) -> None:
    """End every open stream so the server stops at once (the pages reconnect to the next one)."""
    settings = app[SETTINGS]
    settings.closing = True
    for stream in list(settings.open_streams):
        stream.end()
    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(2.0):
            while settings.open_streams:
                await asyncio.sleep(0.01)
