"""hall-city's HTTP side: the 大屏 `/` and a hall's page `/hall/{district}/{hall}`, each with its SSE
stream (`…/events`) and its state as JSON (`…/state`); `/hall/…/history` the hall's 5-minute rows of
the last two hours; `/healthz` counts for the operator. Read-only: nothing here changes any state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from aiohttp import web

from hall_controller.webpush import Stream

from . import pages
from .hub import CityHub, View
from .state import SEGMENT_RE

log = logging.getLogger(__name__)

RETRY_MS = 3000
HISTORY_SPAN = timedelta(hours=2)
HUB: web.AppKey[CityHub] = web.AppKey("hub", CityHub)
OPEN: web.AppKey[set[Stream]] = web.AppKey("open", set)
RUNNER_OPTIONS: dict[str, Any] = {"handler_cancellation": True, "access_log": None}


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=pages.HEADERS)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def _key(request: web.Request) -> str | None:
    district, hall = request.match_info["district"], request.match_info["hall"]
    if not SEGMENT_RE.fullmatch(district) or not SEGMENT_RE.fullmatch(hall):
        return None
    return f"{district}/{hall}"


async def city_page(request: web.Request) -> web.Response:
    return _html(pages.city_page(request.app[HUB].city_payload()))


async def city_state(request: web.Request) -> web.Response:
    return _json(request.app[HUB].city_payload())


async def city_events(request: web.Request) -> web.StreamResponse:
    return await _stream(request, request.app[HUB].city)


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def _unknown() -> web.Response:
    return _html(pages.message_page("没有这个大厅", "市级服务尚未收到这个大厅的任何数据。请从全市页面选择大厅。"), 404)


async def hall_page(request: web.Request) -> web.Response:
    key = _key(request)
    payload = request.app[HUB].hall_payload(key) if key else None
    return _unknown() if payload is None else _html(pages.hall_page(payload))


async def hall_state(request: web.Request) -> web.Response:
    key = _key(request)
    payload = request.app[HUB].hall_payload(key) if key else None
    return _json({"error": "unknown hall"}, 404) if payload is None else _json(payload)


async def hall_events(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    hub = request.app[HUB]
    if key is None or key not in hub.state.halls:
        return _json({"error": "unknown hall"}, 404)
    return await _stream(request, hub.hall_view(key))


async def hall_history(request: web.Request) -> web.Response:
    """The hall's last two hours by 5-minute bucket; `available: false` when there is no database now."""
    key, hub = _key(request), request.app[HUB]
    if key is None:
        return _json({"error": "unknown hall"}, 404)
    if hub.history is None:
        return _json({"available": False, "rows": []})
    district, hall = key.split("/")
    history = hub.history
    since = hub.clock.now() - HISTORY_SPAN
    try:
        rows = await asyncio.get_running_loop().run_in_executor(None, history.rows, district, hall, since)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("city history: cannot read %s (%s)", key, type(exc).__name__)
        return _json({"available": False, "rows": []})
    return _json({"available": True, "rows": [
        {"time": _utc(r["bucket"]).astimezone(hub.tz).strftime("%H:%M"), "waiting": r["waiting"], "issued": r["issued"], "served": r["served"],
         "median_s": r["median_s"]} for r in rows]})


def _utc(when: datetime) -> datetime:
    """SQLite gives back the UTC times it was given without their zone."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return _json({"broker": hub.connected, "halls": len(hub.state.halls), "messages": hub.messages,
                  "malformed": hub.state.malformed, "duplicates": hub.state.duplicates, "pushes": hub.pushes,
                  "history": hub.history_state, "pages": len(request.app[OPEN])})


async def _stream(request: web.Request, view: View) -> web.StreamResponse:
    """The current state at once, then the hub writes every change and heartbeat straight to the socket."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
    response.enable_chunked_encoding()      # Stream frames its writes as chunks
    stream = Stream(request.transport, asyncio.get_running_loop().create_future())
    request.app[OPEN].add(stream)
    try:
        await response.prepare(request)
        version = view.version
        await response.write(b"retry: %d\n\n" % RETRY_MS + view.message)
        while view.version != version:       # changed while that was written
            version = view.version
            await response.write(view.message)
        view.streams.add(stream)
        await stream.done
    except (ConnectionResetError, asyncio.CancelledError):
        pass        # the page went away
    finally:
        view.streams.discard(stream)
        request.app[OPEN].discard(stream)
    return response


def create_app(hub: CityHub) -> web.Application:
    app = web.Application(client_max_size=4 * 1024)
    app[HUB] = hub
    app[OPEN] = set()
    app.router.add_get("/", city_page)
    app.router.add_get("/events", city_events)
    app.router.add_get("/state", city_state)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/hall/{district}/{hall}", hall_page)
    app.router.add_get("/hall/{district}/{hall}/events", hall_events)
    app.router.add_get("/hall/{district}/{hall}/state", hall_state)
    app.router.add_get("/hall/{district}/{hall}/history", hall_history)
    app.on_shutdown.append(_close_streams)
    return app


async def _close_streams(app: web.Application) -> None:
    for stream in list(app[OPEN]):
        stream.end()
    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(2.0):
            while app[OPEN]:
                await asyncio.sleep(0.01)
