"""The live side of hall-city: MQTT messages into the reducer, the reducer's views out to the pages.

paho's thread only hands each message to the event loop (`call_soon_threadsafe`); the loop applies it
to the CityState, hands summaries to the history writer, and pushes the changed views to the open
pages at most every `push_s` (a burst of 500 summaries is one push). A ticker re-renders once a second
so the 差评 clocks turn amber and red on their own, and sends a heartbeat to every page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import tzinfo
from typing import Any

import orjson

from hall_controller.clock import Clock
from hall_controller.webpush import Stream, sse_message

from .history import History
from .state import DEFAULT_TZ, CityState

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
TICK_SECONDS = 1.0
HISTORY_OFF, HISTORY_OK, HISTORY_DOWN = "off", "ok", "down"


class View:
    """One page's current message and its open streams."""

    __slots__ = ("version", "message", "body", "streams")

    def __init__(self) -> None:
        self.version = 0
        self.message = b""
        self.body = b""
        self.streams: set[Stream] = set()


class CityHub:
    def __init__(self, clock: Clock, *, tz: tzinfo = DEFAULT_TZ, history: History | None = None,
                 push_s: float = 0.1, title: str = "") -> None:
        self.clock = clock
        self.tz = tz
        self.history = history
        self.push_s = self.min_push_s = push_s
        self.title = title
        self.state = CityState()
        self.city = View()
        self.halls: dict[str, View] = {}
        self.connected = False          # the city broker
        self.messages = 0
        self.pushes = 0
        self.last_message_at: float | None = None    # monotonic, for bench/health
        self._dirty: set[str] = set()
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def history_state(self) -> str:
        if self.history is None:
            return HISTORY_OFF
        return HISTORY_OK if self.history.available else HISTORY_DOWN

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.render_all()
        self._ticker = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for view in (self.city, *self.halls.values()):
            for stream in list(view.streams):
                stream.end()

    # ------------------------------------------------------------------ from paho's thread

    def from_thread(self, topic: str, payload: bytes, retained: bool) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.on_message, topic, payload, retained)

    def set_connected(self, connected: bool) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._connected, connected)

    def history_changed(self, available: bool) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.mark, None)

    # ------------------------------------------------------------------ on the loop

    def _connected(self, connected: bool) -> None:
        self.connected = connected
        self.mark(None)

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        self.messages += 1
        self.last_message_at = time.monotonic()
        key = self.state.apply(topic, payload, self.clock.now(), retained=retained)
        if key is None:
            return
        hall = self.state.halls[key]
        if self.history is not None and "/alert/bad_rating" in topic:
            self._keep_rating(topic, payload)
        if self.history is not None and topic.endswith("/summary") and hall.summary is not None \
                and hall.received_at is not None and not hall.bad_data:
            self.history.record(hall.district, hall.hall_id, hall.summary, hall.online)
        self.mark(key)

    def _keep_rating(self, topic: str, payload: bytes) -> None:
        """Hand an open 差评's change to the database (the reducer accepted the alert: it is well formed)."""
        assert self.history is not None
        data = orjson.loads(payload)        # the reducer took it: JSON with an id
        if topic.endswith("/alert/bad_rating"):
            if data["id"] in self.state.ratings:
                self.history.rating("raised", data["id"], topic, payload)
        elif isinstance(data.get("ref"), str) and data.get("note_kind") in ("contact", "fix"):
            op = "contacted" if data["note_kind"] == "contact" else "closed"
            self.history.rating(op, data["ref"], topic, payload)

    def restore(self, kept: list[tuple[str, bytes, bytes | None]]) -> None:
        """The open 差评 kept in the database, applied before any live message (a restart)."""
        for topic, payload, contacted in kept:
            self.state.apply(topic, payload, self.clock.now())
            if contacted is not None:
                contact_topic = topic.rsplit("/", 1)[0] + "/bad_rating_resolved"
                self.state.apply(contact_topic, contacted, self.clock.now())
        log.info("city: %d open 差评 restored from the database", len(kept))
        self.mark(None)

    def mark(self, key: str | None) -> None:
        """Something changed (`key`'s hall, or the whole page): push within push_s."""
        if key is not None:
            self._dirty.add(key)
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_later(self.push_s, self.push)

    def push(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, set()
        started = time.perf_counter()
        self._render(self.city, self.city_payload())
        # a city of thousands of halls takes a while to render: push no more often than it leaves the
        # loop two thirds of its time for the messages
        self.push_s = max(self.min_push_s, 2 * (time.perf_counter() - started))
        for key in dirty:
            view = self.halls.get(key)
            if view is not None and view.streams:
                self._render(view, self.hall_payload(key))

    def render_all(self) -> None:
        self._render(self.city, self.city_payload())
        for key, view in self.halls.items():
            if view.streams:
                self._render(view, self.hall_payload(key))

    def _render(self, view: View, payload: dict[str, Any] | None) -> None:
        body = orjson.dumps(payload)
        if body == view.body:
            return
        view.version += 1
        view.body = body
        view.message = sse_message("state", view.version, body)
        self.pushes += 1
        for stream in list(view.streams):
            stream.send(view.message)

    def common(self) -> dict[str, Any]:
        return {"now": self.clock.now().astimezone(self.tz).strftime("%Y-%m-%d %H:%M"),
                "history": self.history_state, "broker": self.connected, "title": self.title}

    def city_payload(self) -> dict[str, Any]:
        return {**self.common(), **self.state.city_view(self.clock.now(), self.tz)}

    def hall_payload(self, key: str) -> dict[str, Any] | None:
        view = self.state.hall_view(key, self.clock.now(), self.tz)
        return None if view is None else {**self.common(), **view}

    def hall_view(self, key: str) -> View:
        """The page state of one hall (made when its first page opens)."""
        view = self.halls.get(key)
        if view is None:
            view = self.halls[key] = View()
            self._render(view, self.hall_payload(key))
        return view

    async def _tick(self) -> None:
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.render_all()       # the clocks move on their own
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = time.monotonic()
                    for view in (self.city, *self.halls.values()):
                        for stream in list(view.streams):
                            stream.send(b": ping\n\n")
                self.halls = {k: v for k, v in self.halls.items() if v.streams or k in self.state.halls}
            except Exception:       # the ticker must not die with one bad render
                log.exception("city: render failed")
