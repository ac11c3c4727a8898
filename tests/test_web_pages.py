"""hall-web at the HTTP level (aiohttp's test client) over a bus double that answers the web role's ops
as the contract says (issue 19): the pages (size, no other host, lang, labels, contrast, statuses in
words), unknown tokens alike, the per-address limiter against 10,000 random tokens, SSE with ids,
heartbeats and Last-Event-ID, the polling JSON, leave and rate (same origin, idempotent), coalesced
refreshes, the offline banner, and no token in the log. The daemon's side is tested with the real
daemon in test_web_recovery.py and test_phone_playwright.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hall_controller.bus.client import CommandError, HallState
from hall_controller.clock import SystemClock
from hall_web import pages, view
from hall_web.hub import Hub
from hall_web.server import RUNNER_OPTIONS, Limiter, create_app

HALL = "示范区公共法律服务中心"
MAX_PAGE = 60 * 1024


class FakeWebBus:
    """The daemon as the web role sees it, in memory: tickets by token, the retained state, events
    delivered from another thread (as paho does)."""

    def __init__(self) -> None:
        self.connected = True
        self.status: dict[str, Any] = {"state": "online", "timezone": "Asia/Shanghai"}
        self.queues: dict[str, Any] = {
            "consult": {"name": "法律咨询", "prefix": "A", "waiting": 2, "staffed": 3,
                        "estimate": {"low_min": 10, "high_min": 15, "text": "约10–15分钟"}},
            "mediation": {"name": "人民调解", "prefix": "C", "waiting": 0, "staffed": 0, "estimate": None}}
        self.calls: list[dict[str, Any]] = [{"number": "A001", "window": 2, "service": "consult", "ticket_id": "x"}]
        self.tickets: dict[str, dict[str, Any]] = {}
        self.recent: list[dict[str, Any]] = [{"number": "A001", "window": 2, "at": "2026-11-23T09:00:00+08:00"}]
        self.seq = 10
        self.hall_extra: dict[str, Any] = {"open_now": True, "closed_text": None}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self._events: list[Callable[[dict[str, Any]], None]] = []
        self._states: list[Callable[[str, Any, Any], None]] = []

    # -- HallClient's surface
    @property
    def state(self) -> HallState:
        return HallState(hall=self.status, queues=self.queues, calls=self.calls, windows={})

    def subscribe_events(self, callback: Callable[[dict[str, Any]], None], types: Any = None) -> Callable[[], None]:
        self._events.append(callback)
        return lambda: None

    def add_state_listener(self, listener: Callable[[str, Any, Any], None]) -> Callable[[], None]:
        self._states.append(listener)
        return lambda: None

    def request(self, op: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        with self.lock:
            self.requests.append((op, args))
            return self._answer(op, args)

    def _answer(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "hall_page":
            return {"hall": {"name": HALL, "hours_today": "08:30–17:30", **self.hall_extra}}
        ticket = self.tickets.get(args.get("token"))
        if ticket is None or ticket.get("expired"):
            raise CommandError("not_found", "号码已失效或不存在")
        if op == "ticket_status":
            return {"ticket": {k: v for k, v in ticket.items() if k != "expired"}, "seq": self.seq,
                    "recent_calls": self.recent[:5],
                    "windows": [1, 2, 3], "hall": {"name": HALL}}
        if op == "leave":
            if ticket["status"] not in ("waiting", "left"):
                raise CommandError("conflict", "已叫号，无法取消排队")
            ticket["status"] = "left"
            self.seq += 1
            return {}
        if op == "rate_by_token":
            rating = ticket["rating"]
            if rating["done"] and rating["by"] != "phone":
                raise CommandError("conflict", "已评价")
            ticket["rating"] = {"allowed": False, "done": True, "by": "phone", "score": args["score"]}
            self.seq += 1
            return {}
        raise CommandError("forbidden", "不允许的操作")

    # -- the test's side
    def add(self, status: str = "waiting", number: str = "A003", **fields: Any) -> str:
        token = secrets.token_urlsafe(16)
        self.tickets[token] = {"number": number, "service": "consult", "service_name": "法律咨询", "status": status,
                               "window": fields.pop("window", None), "ahead": 2, "called_at": None,
                               "estimate": {"low_min": 10, "high_min": 15, "text": "约10–15分钟"},
                               "rating": {"allowed": False, "done": False, "by": None}, **fields}
        return token

    def emit(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            event = {"event_id": secrets.token_hex(8), "seq": self.seq, **event}
            if event["type"] == "ticket_called":
                self.recent.insert(0, {"number": event["ticket"]["number"], "window": event["window"], "at": "t"})
        thread = threading.Thread(target=lambda: [cb(event) for cb in self._events])
        thread.start()
        thread.join()

    def set_state(self, section: str, key: Any, value: Any) -> None:
        if section == "hall":
            self.status = value
        thread = threading.Thread(target=lambda: [listener(section, key, value) for listener in self._states])
        thread.start()
        thread.join()

    def count(self, op: str) -> int:
        with self.lock:
            return sum(1 for o, _ in self.requests if o == op)


@asynccontextmanager
async def web_app(bus: FakeWebBus, **kwargs: Any) -> AsyncIterator[tuple[TestClient, Hub]]:
    hub = Hub(bus, SystemClock(), heartbeat=kwargs.pop("heartbeat", 15.0))
    await hub.start()
    server = TestServer(create_app(hub, **kwargs))
    await server.start_server(**{k: v for k, v in RUNNER_OPTIONS.items() if k != "handler_cancellation"})
    client = TestClient(server)
    await client.start_server()
    try:
        yield client, hub
    finally:
        await client.close()
        await hub.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def origin(client: TestClient) -> dict[str, str]:
    return {"Origin": f"http://{client.host}:{client.port}"}


async def eventually(predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
    return value


class SseReader:
    """Reads an aiohttp response as Server-Sent Events: (fields, comments) per message."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.buffer = b""

    async def next(self, timeout: float = 3.0) -> tuple[dict[str, str], list[str]]:
        async with asyncio.timeout(timeout):
            while b"\n\n" not in self.buffer:
                chunk = await self.response.content.readany()
                assert chunk, "stream closed"
                self.buffer += chunk
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        comments: list[str] = []
        for line in block.decode().split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        return fields, comments

    async def state(self, timeout: float = 3.0) -> tuple[str, dict[str, Any]]:
        """The next `state` message: (id, data)."""
        while True:
            fields, _ = await self.next(timeout)
            if fields.get("event") == "state":
                return fields["id"], orjson.loads(fields["data"])


# ------------------------------------------------------------------ the pages


class PageParser(HTMLParser):
    """What the accessibility checks need: lang, inputs and whether each sits in a label with text,
    buttons and their text, every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.stack: list[str] = []
        self.inputs: list[bool] = []      # inside a <label>?
        self.buttons: list[str] = []
        self.urls: list[str] = []
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        for key in ("src", "href", "action"):
            if a.get(key):
                self.urls.append(str(a[key]))
        if tag == "input":
            self.inputs.append("label" in self.stack)
        if tag == "button":
            self._button = []
        if tag not in ("input", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self.buttons.append("".join(self._button).strip())
            self._button = None
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)


EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+")


def check_page(html: str, response: Any) -> PageParser:
    """Size, language, labels and no request to another host; returns the parse."""
    assert len(html.encode()) < MAX_PAGE
    assert EXTERNAL.findall(html) == [], "a reference to another host"
    parsed = PageParser()
    parsed.feed(html)
    assert parsed.lang == "zh-CN"
    assert all(parsed.inputs), "an input outside a label"
    assert all(parsed.buttons), "a button without text"
    assert all(u.startswith("/") for u in parsed.urls), parsed.urls
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    return parsed


STATUS_WORDS = {
    "waiting": ("等候中", "前面还有2人", "预计等待约10–15分钟", "我不排了"),
    "called": ("请到4号窗口办理", "请到4号窗口"),
    "serving": ("办理中", "正在4号窗口办理"),
    "finished": ("已办结", "请为本次服务评价", "非常满意", "基本满意", "非常不满意", "服务态度", "业务技能", "服务质量",
                 "廉洁从政"),
    "no_show": ("已过号", "请到综合窗口说明情况"),
    "left": ("已离开队伍", "重新取号"),
    "cancelled": ("已作废",),
}


@pytest.mark.parametrize("status", sorted(STATUS_WORDS))
def test_ticket_page_says_the_status_in_words(status: str) -> None:
    bus = FakeWebBus()
    rating = {"allowed": status == "finished", "done": False, "by": None}
    token = bus.add(status, window=4 if status != "waiting" else None, rating=rating)

    async def scenario() -> None:
        async with web_app(bus) as (client, _):
            response = await client.get(f"/t/{token}")
            html = await response.text()
            assert response.status == 200
            check_page(html, response)
            body = html.split('<script id="data"')[0]     # the words are in the HTML, not only in the script
            for words in STATUS_WORDS[status]:
                assert words in body, words
            assert HALL in body and "A003" in body and "法律咨询" in body
            assert "更新于" in body

    run(scenario())


def test_hall_page_and_message_pages_are_self_contained() -> None:
    bus = FakeWebBus()

    async def scenario() -> None:
        async with web_app(bus) as (client, hub):
            await eventually(lambda: hub.hours)
            response = await client.get("/")
            html = await response.text()
            check_page(html, response)
            body = html.split('<script id="data"')[0]
            for words in (HALL, "法律咨询（A）", "等候2人", "预计等待约10–15分钟", "人民调解（C）", "暂无窗口办理",
                          "A001 → 2号窗口", "今日开放时间：08:30–17:30"):
                assert words in body, words
            assert "ticket_id" not in html
        for page in (pages.EXPIRED_PAGE, pages.TOO_MANY_PAGE, pages.UNAVAILABLE_PAGE):
            assert len(page.encode()) < MAX_PAGE and 'lang="zh-CN"' in page and not EXTERNAL.findall(page)

    run(scenario())


def test_the_hall_page_says_when_the_hall_is_closed() -> None:
    bus = FakeWebBus()
    bus.hall_extra = {"open_now": False, "closed_text": "当前不在服务时间，请在办公时间内取号（今日办公时间 08:30–17:30）"}

    async def scenario() -> None:
        async with web_app(bus) as (client, hub):
            await eventually(lambda: hub.closed)
            body = (await (await client.get("/")).text()).split('<script id="data"')[0]
            assert "当前不在服务时间，请在办公时间内取号（今日办公时间 08:30–17:30）" in body

    run(scenario())


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def test_text_colours_meet_the_contrast_ratio() -> None:
    for fg, bg in pages.CONTRAST_PAIRS:
        a, b = sorted((_luminance(getattr(pages.PALETTE, fg)), _luminance(getattr(pages.PALETTE, bg))), reverse=True)
        ratio = (a + 0.05) / (b + 0.05)
        assert ratio >= 4.5, f"{fg} on {bg}: {ratio:.2f}"
    assert pages.PALETTE.text in pages.CSS and pages.PALETTE.primary in pages.CSS


# ------------------------------------------------------------------ tokens: no oracle, limited


def test_unknown_malformed_and_expired_tokens_look_the_same() -> None:
    bus = FakeWebBus()
    expired = bus.add("finished", expired=True)

    async def scenario() -> None:
        async with web_app(bus) as (client, _):
            answers = []
            for token in (expired, secrets.token_urlsafe(16), "not-a-token", "x" * 300):
                response = await client.get(f"/t/{token}")
                answers.append((response.status, await response.text()))
            assert {a for a in answers} == {(404, pages.EXPIRED_PAGE)}
            # the expired and the never-issued token both cost the daemon one ask (alike in time too)
            assert bus.count("ticket_status") == 2
            for token in (expired, secrets.token_urlsafe(16)):
                response = await client.get(f"/t/{token}/state")
                assert response.status == 404 and await response.json() == {"expired": True, "message": view.EXPIRED_TITLE}

    run(scenario())


@pytest.mark.slow
def test_ten_thousand_random_tokens_find_nothing_and_the_limiter_holds() -> None:
    bus = FakeWebBus()
    real = bus.add("waiting")

    async def scenario() -> None:
        async with web_app(bus) as (client, _):
            assert (await client.get(f"/t/{real}")).status == 200      # opened before the guessing
            statuses: dict[int, int] = {}
            started = time.monotonic()
            for _ in range(10_000):
                response = await client.get(f"/t/{secrets.token_urlsafe(16)}/state")
                statuses[response.status] = statuses.get(response.status, 0) + 1
                response.release()
            refilled = (time.monotonic() - started) / 3.0 + 1        # 20 a minute came back meanwhile
            assert set(statuses) == {404, 429}, statuses              # nothing found
            assert 9 <= statuses[404] <= 9 + refilled, statuses       # the burst (less the real page's lookup)
            assert bus.count("ticket_status") == statuses[404] + 1    # the daemon saw those lookups, no more
            # the visitor's own page, already known, is not throttled with the guesser
            assert (await client.get(f"/t/{real}/state")).status == 200
            too_many = await client.get(f"/t/{secrets.token_urlsafe(16)}")
            assert too_many.status == 429 and "查询过于频繁" in await too_many.text()
            assert too_many.headers["Retry-After"] == "60"

    run(scenario())


def test_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = Limiter(per_minute=20, burst=10, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(11)] == [True] * 10 + [False]
    assert limiter.allow("b")                     # per address
    now[0] += 3.0                                 # 20 a minute: one every 3 s
    assert limiter.allow("a") and not limiter.allow("a")
    now[0] += 600
    assert sum(limiter.allow("a") for _ in range(20)) == 10


# ------------------------------------------------------------------ push


def test_sse_pushes_with_ids_heartbeats_and_resumes_with_last_event_id() -> None:
    bus = FakeWebBus()
    token = bus.add("waiting", number="A003")

    async def scenario() -> None:
        async with web_app(bus, heartbeat=0.3) as (client, hub):
            response = await client.get(f"/t/{token}/events")
            assert response.headers["Content-Type"].startswith("text/event-stream")
            sse = SseReader(response)
            first_id, first = await sse.state()
            assert first["status"] == "waiting" and first["text"]["status"] == "等候中"
            # a call of this ticket: pushed at once from the event, before the daemon is asked again
            asked = bus.count("ticket_status")
            started = time.monotonic()
            bus.tickets[token].update(status="called", window=4, called_at="t1")
            bus.emit({"type": "ticket_called", "window": 4, "ticket": {
                "number": "A003", "service": "consult", "status": "called", "window": 4, "called_at": "t1",
                "holder": {"name_masked": "张*"}}})
            called_id, called = await sse.state()
            assert called["called"]["text"] == "请到4号窗口" and time.monotonic() - started < 1.0
            assert called_id != first_id and "张" not in orjson.dumps(called).decode()
            await eventually(lambda: bus.count("ticket_status") == asked + 1)
            # heartbeats: a comment for proxies and a ping event, with an id
            while True:
                fields, comments = await sse.next(timeout=2.0)
                if fields.get("event") == "ping":
                    break
            assert comments == ["heartbeat"] and fields["id"] and orjson.loads(fields["data"])["online"] is True
            response.close()
            # the page comes back after missing pushes: the current state at once
            bus.emit({"type": "ticket_recalled", "window": 4, "ticket": {
                "number": "A003", "service": "consult", "status": "called", "window": 4, "called_at": "t1"}})
            await eventually(lambda: hub.entries[token].recalls == 1)
            again = await client.get(f"/t/{token}/events", headers={"Last-Event-ID": first_id})
            resumed_id, resumed = await SseReader(again).state(timeout=1.0)
            assert resumed_id == hub.event_id(hub.entries[token]) and resumed_id != first_id
            assert resumed["called"]["key"] != called["called"]["key"]    # a recall alerts again
            again.close()

    run(scenario())


def test_polling_json_and_the_hall_stream() -> None:
    bus = FakeWebBus()
    token = bus.add("waiting")

    async def scenario() -> None:
        async with web_app(bus) as (client, hub):
            polled = await (await client.get(f"/t/{token}/state")).json()
            assert polled == orjson.loads(orjson.dumps(hub.entries[token].view))
            assert polled["text"]["detail"] == "前面还有2人"
            hall = await client.get("/events")
            sse = SseReader(hall)
            _, first = await sse.state()
            assert first["services"][0]["waiting"] == "等候2人"
            bus.queues = {**bus.queues, "consult": {**bus.queues["consult"], "waiting": 5}}
            bus.set_state("queues", None, bus.queues)
            _, changed = await sse.state()
            assert changed["services"][0]["waiting"] == "等候5人"
            assert (await (await client.get("/state")).json())["services"][0]["waiting"] == "等候5人"
            hall.close()

    run(scenario())


def test_a_burst_of_events_costs_at_most_one_ask_per_ticket_and_event() -> None:
    bus = FakeWebBus()
    tokens = [bus.add("waiting", number=f"A{100 + i}") for i in range(200)]

    async def scenario() -> None:
        async with web_app(bus, limiter=Limiter(per_minute=6000, burst=1000)) as (client, hub):
            for token in tokens:
                assert (await client.get(f"/t/{token}/state")).status == 200
            before = bus.count("ticket_status")
            for n in range(20):
                bus.emit({"type": "ticket_called", "window": 1, "ticket": {
                    "number": f"A0{n:02d}", "service": "consult", "status": "called", "window": 1}})
            await eventually(lambda: bus.count("ticket_status") - before >= len(tokens)
                             and not hub._marked and not hub._queue.qsize()
                             and not any(e.running for e in hub.entries.values()))
            asked = bus.count("ticket_status") - before
            assert len(tokens) <= asked < len(tokens) * 20 // 4, asked    # each asked again; the burst coalesced
            assert all(e.view["recent"][0] == "A019 → 1号窗口" for e in hub.entries.values())

    run(scenario())


def test_offline_banner_when_the_daemon_goes_and_refresh_when_it_returns() -> None:
    bus = FakeWebBus()
    token = bus.add("waiting")

    async def scenario() -> None:
        async with web_app(bus) as (client, hub):
            response = await client.get(f"/t/{token}/events")
            sse = SseReader(response)
            await sse.state()
            bus.set_state("hall", None, {"state": "offline", "timezone": "Asia/Shanghai"})
            _, offline = await sse.state()
            assert offline["online"] is False
            html = await (await client.get(f"/t/{token}")).text()
            assert f'<div id="offline" role="status">{view.OFFLINE_TEXT}</div>' in html
            bus.tickets[token]["ahead"] = 0
            asked = bus.count("ticket_status")
            bus.set_state("hall", None, {"state": "online", "timezone": "Asia/Shanghai"})
            while True:
                _, state = await sse.state()
                if state["online"] and state["text"]["detail"] != "前面还有2人":
                    break
            assert state["text"]["detail"] == "前面没有人了，马上轮到您，请留意叫号"
            assert bus.count("ticket_status") == asked + 1
            response.close()

    run(scenario())


def test_a_token_that_expires_while_its_page_is_open_ends_the_stream() -> None:
    bus = FakeWebBus()
    token = bus.add("finished", window=4)

    async def scenario() -> None:
        async with web_app(bus) as (client, hub):
            response = await client.get(f"/t/{token}/events")
            sse = SseReader(response)
            await sse.state()
            bus.tickets[token]["expired"] = True          # 30 minutes after the visit closed
            bus.emit({"type": "visit_closed", "window": 4, "ticket": {"number": "A003", "service": "consult",
                                                                     "status": "finished", "window": 4}})
            while not (last := (await sse.state())[1])["expired"]:
                pass                                       # the event's own push comes first
            assert last == view.expired_view()
            async with asyncio.timeout(3):
                assert await response.content.read() == b""      # the stream ends: the page reloads once
            assert token not in hub.entries
            assert (await client.get(f"/t/{token}/events")).status == 404

    run(scenario())


# ------------------------------------------------------------------ the visitor's changes


def test_leave_needs_the_same_origin_and_is_idempotent() -> None:
    bus = FakeWebBus()
    token, called = bus.add("waiting"), bus.add("called", number="A004", window=2)

    async def scenario() -> None:
        async with web_app(bus) as (client, _):
            path = f"/t/{token}/leave"
            assert (await client.post(path, json={})).status == 403                       # no Origin
            assert (await client.post(path, json={}, headers={"Origin": "http://evil.example"})).status == 403
            assert (await client.post(path, data="{}", headers={**origin(client),
                                                              "Content-Type": "text/plain"})).status == 403
            assert bus.count("leave") == 0
            for _ in range(2):
                response = await client.post(path, json={}, headers=origin(client))
                answer = await response.json()
                assert response.status == 200 and answer["ok"] and answer["view"]["text"]["status"] == "已离开队伍"
            refused = await client.post(f"/t/{called}/leave", json={}, headers=origin(client))
            assert refused.status == 409 and (await refused.json())["message"] == "已叫号，无法取消排队"
            unknown = await client.post(f"/t/{secrets.token_urlsafe(16)}/leave", json={}, headers=origin(client))
            assert unknown.status == 404

    run(scenario())


def test_rate_on_the_phone_and_the_tablet_first() -> None:
    bus = FakeWebBus()
    mine = bus.add("finished", window=4, rating={"allowed": True, "done": False, "by": None})
    tablet = bus.add("finished", number="A005", window=4, rating={"allowed": True, "done": False, "by": None})

    async def scenario() -> None:
        async with web_app(bus) as (client, _):
            bad = await client.post(f"/t/{mine}/rate", json={"score": 7}, headers=origin(client))
            assert bad.status == 400 and (await bad.json())["message"] == "请选择总体评价"
            odd = await client.post(f"/t/{mine}/rate", json={"score": 5, "dimensions": {"颜值": 5}}, headers=origin(client))
            assert odd.status == 400 and bus.count("rate_by_token") == 0
            body = {"score": 4, "dimensions": {"服务态度": 5, "廉洁从政": 4}}
            for _ in range(2):
                response = await client.post(f"/t/{mine}/rate", json=body, headers=origin(client))
                answer = await response.json()
                assert response.status == 200 and answer["view"]["text"]["rated"] == "感谢您的评价！"
                assert not answer["view"]["show"]["rate"]
            assert ("rate_by_token", {"token": mine, **body}) in bus.requests
            # the tablet rated first: the page says so
            assert (await client.get(f"/t/{tablet}")).status == 200
            bus.tickets[tablet]["rating"] = {"allowed": False, "done": True, "by": "tablet"}
            late = await client.post(f"/t/{tablet}/rate", json={"score": 5}, headers=origin(client))
            answer = await late.json()
            assert late.status == 409 and answer["message"] == "已评价"
            assert answer["view"]["text"]["rated"] == "您已在窗口评价器上评价，感谢您的评价！"

    run(scenario())


def test_no_token_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    bus = FakeWebBus()
    token = bus.add("waiting")
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with web_app(bus) as (client, _):
            for path in (f"/t/{token}", f"/t/{token}/state", f"/t/{token}x"):
                (await client.get(path)).release()
            (await client.post(f"/t/{token}/leave", json={}, headers=origin(client))).release()

    run(scenario())
    assert any("/t/…" in r.getMessage() for r in caplog.records)       # the access log ran, redacted
    assert not [r for r in caplog.records if token in r.getMessage()]
