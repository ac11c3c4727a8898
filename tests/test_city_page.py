"""hall-city at the HTTP level: the 大屏 and a hall's page (size, no other host, CSP, Chinese), SSE pushes
on a summary, the 差评 clocks turning amber and red on a ManualClock, the history in the real PostgreSQL
(a throw-away database) and the page keeping the live state with 历史数据暂不可用 when it is down; and
hall-city whole over a real Mosquitto (the demo's accounts and ACL): QoS 1 alerts shown exactly once, a hall
denied outside its prefix, a malformed summary marking its hall."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hall_city import cli
from hall_city.app import Options, serve
from hall_city.demo import write_broker
from hall_city.history import History
from hall_city.hub import CityHub
from hall_city.server import create_app
from hall_controller.bus.url import MqttEndpoint
from hall_controller.clock import ManualClock

from .harness import Mosquitto, RawClient, free_port, have_mosquitto, wait_until
from .test_city_state import D, bad_rating, raw, summary, topic
from .test_web_pages import SseReader

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
MAX_PAGE = 60 * 1024
EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+")


class RunningCity:
    """`hall_city.app.serve` on its own thread and loop (as the command runs it), on a free port."""

    def __init__(self, port: int, password: str, db: str | None = None, clock: Any = None,
                 options: Options | None = None) -> None:
        self.ready = threading.Event()
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        options = options or Options(MqttEndpoint("127.0.0.1", port).with_login("hall-city", password),
                                     ("127.0.0.1", 0), db)

        async def main() -> None:
            self._stop, self._loop = asyncio.Event(), asyncio.get_running_loop()
            await serve(options, clock=clock, stop=self._stop, on_ready=self._on_ready)

        self.thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "hall-city did not start"

    def _on_ready(self, url: str) -> None:
        self.url = url
        self.ready.set()

    def state(self, path: str = "state") -> dict[str, Any]:
        async def get() -> dict[str, Any]:
            async with aiohttp.ClientSession() as session, session.get(self.url + path) as resp:
                return await resp.json()
        return asyncio.run(get())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


@asynccontextmanager
async def city_app(clock: ManualClock, history: History | None = None) -> AsyncIterator[tuple[TestClient, CityHub]]:
    hub = CityHub(clock, history=history, push_s=0.02)
    hub.connected = True
    await hub.start()
    if history is not None:
        history.on_change = hub.history_changed
        history.start()
    client = TestClient(TestServer(create_app(hub)))
    await client.start_server()
    try:
        yield client, hub
    finally:
        await client.close()
        await hub.stop()
        if history is not None:
            history.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def eventually(predicate: Any, timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.02)
    return value


async def state_where(reader: SseReader, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            _, data = await reader.state(timeout)
            if predicate(data):
                return data


def test_the_pages_are_small_chinese_self_contained_and_locked_down():
    async def go() -> None:
        async with city_app(ManualClock(NOW)) as (client, hub):
            for i in range(3):
                hub.on_message(topic(f"h{i}", "summary"), raw(summary(f"h{i}")))
            hub.on_message(topic("h1", "alert/bad_rating"), bad_rating("a-1"))
            for path in ("/", f"/hall/{D}/h1"):
                response = await client.get(path)
                html = await response.text()
                assert response.status == 200 and len(html.encode()) < MAX_PAGE, path
                assert EXTERNAL.findall(html) == [], f"a reference to another host on {path}"
                assert '<html lang="zh-CN">' in html and "B017" in html
                csp = response.headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "unsafe" not in csp
            assert "全市公共法律服务大厅" in await (await client.get("/")).text()
            missing = await client.get(f"/hall/{D}/nope")
            assert missing.status == 404 and "没有这个大厅" in await missing.text()
            assert (await client.get("/hall/bad%20id/x")).status == 404
    run(go())


def test_a_summary_is_pushed_to_the_open_city_and_hall_pages():
    async def go() -> None:
        async with city_app(ManualClock(NOW)) as (client, hub):
            hub.on_message(topic("h1", "summary"), raw(summary("h1", waiting=2)))
            city = await client.get("/events")
            hall = await client.get(f"/hall/{D}/h1/events")
            assert city.headers["Content-Type"].startswith("text/event-stream")
            city_reader, hall_reader = SseReader(city), SseReader(hall)
            first = await state_where(city_reader, lambda v: v["tiles"])
            assert first["tiles"][0]["waiting"] == 2
            await state_where(hall_reader, lambda v: v["tile"]["waiting"] == 2)
            hub.on_message(topic("h1", "summary"), raw(summary("h1", waiting=9)))
            pushed = await state_where(city_reader, lambda v: v["tiles"][0]["waiting"] == 9, timeout=2)
            assert pushed["totals"]["waiting"] == 9
            await state_where(hall_reader, lambda v: v["services"][0]["waiting"] == 9, timeout=2)
            state = await (await client.get("/state")).json()
            assert state["tiles"][0]["waiting"] == 9
            city.close()
            hall.close()
    run(go())


def test_the_bad_rating_clocks_turn_amber_then_red_until_resolved_on_the_page():
    async def go() -> None:
        clock = ManualClock(NOW)
        async with city_app(clock) as (client, hub):
            hub.on_message(topic("h1", "summary"), raw(summary("h1")))
            hub.on_message(topic("h1", "alert/bad_rating"), bad_rating("a-1"))
            reader = SseReader(await client.get("/events"))
            row = (await state_where(reader, lambda v: v["ratings"]))["ratings"][0]
            assert row["contact"]["state"] == "ok" and row["status"] == "ok"
            clock.advance(minutes=46)           # no message: the ticker re-renders on its own
            amber = await state_where(reader, lambda v: v["ratings"][0]["status"] == "amber", timeout=3)
            assert amber["ratings"][0]["contact"]["text"] == "剩 14 分钟"
            clock.advance(minutes=15)
            red = await state_where(reader, lambda v: v["ratings"][0]["status"] == "red", timeout=3)
            assert red["ratings"][0]["contact"]["text"] == "超时 1 分钟" and red["tiles"][0]["level"] == "red"
            resolve = {"id": "r-1", "type": "bad_rating_resolved", "at": clock.now().isoformat(), "ref": "a-1",
                       "note_kind": "fix", "resolved_at": clock.now().isoformat(), "ticket": {"number": "B017"}}
            hub.on_message(topic("h1", "alert/bad_rating_resolved"), json.dumps(resolve).encode())
            done = await state_where(reader, lambda v: not v["ratings"], timeout=3)
            assert done["totals"]["bad_open"] == 0 and done["tiles"][0]["level"] == "ok"
    run(go())


@pytest.mark.postgres
def test_history_in_postgresql_and_the_live_page_when_it_is_down(pg_url, pg_allow):
    async def go() -> None:
        clock = ManualClock(NOW)
        history = History(pg_url, clock, flush_s=0.2)
        async with city_app(clock, history) as (client, hub):
            hub.on_message(topic("h1", "summary"), raw(summary("h1", waiting=2)))
            await eventually(lambda: hub.history_state == "ok")
            rows = await _history_rows(client, lambda h: h["available"] and h["rows"])
            assert rows == [{"time": "10:00", "waiting": 2, "issued": 50, "served": 40, "median_s": 300.0}]
            clock.advance(minutes=5)
            hub.on_message(topic("h1", "summary"), raw(summary("h1", waiting=4)))
            rows = await _history_rows(client, lambda h: len(h["rows"]) == 2)
            assert [r["waiting"] for r in rows] == [2, 4]
            # the database goes down: the page keeps the live state and says history is unavailable
            reader = SseReader(await client.get("/events"))
            await asyncio.get_running_loop().run_in_executor(None, pg_allow, False)
            clock.advance(minutes=5)
            hub.on_message(topic("h1", "summary"), raw(summary("h1", waiting=7)))
            down = await state_where(reader, lambda v: v["history"] == "down", timeout=10)
            assert down["tiles"][0]["waiting"] == 7, "the live state goes on"
            page = await (await client.get("/")).text()
            assert '"history":"down"' in page and "历史数据暂不可用" in page
            assert (await (await client.get(f"/hall/{D}/h1/history")).json()) == {"available": False, "rows": []}
            hub.on_message(topic("h1", "summary"), raw(summary("h1", waiting=8)))
            assert (await state_where(reader, lambda v: v["tiles"][0]["waiting"] == 8))["history"] == "down"
            # back: the rows that waited are written
            await asyncio.get_running_loop().run_in_executor(None, pg_allow, True)
            await state_where(reader, lambda v: v["history"] == "ok", timeout=15)
            rows = await _history_rows(client, lambda h: len(h["rows"]) == 3)
            assert [r["waiting"] for r in rows] == [2, 4, 8]
    run(go())


def test_open_bad_ratings_outlive_a_restart_of_hall_city(tmp_path: Path):
    """Alerts are not retained: the open 差评 (and a recorded contact) come back from the database."""
    db = f"sqlite:///{tmp_path / 'city.db'}"

    async def session(*messages: tuple[str, bytes]) -> dict[str, Any]:
        clock = ManualClock(NOW + timedelta(minutes=30))
        history = History(db, clock, flush_s=0.1)
        hub = CityHub(clock, history=history, push_s=0.01)
        await hub.start()
        hub.restore(history.load_open_ratings())
        history.start()
        for name, payload in messages:
            hub.on_message(name, payload)
        view = hub.city_payload()
        history.flush_now()
        await hub.stop()
        await asyncio.get_running_loop().run_in_executor(None, history.stop)
        return view

    contact = json.dumps({"id": "r-1", "type": "bad_rating_resolved", "at": NOW.isoformat(), "ref": "a-1",
                          "note_kind": "contact", "resolved_at": (NOW + timedelta(minutes=20)).isoformat()}).encode()
    fix = json.dumps({"id": "r-2", "type": "bad_rating_resolved", "at": NOW.isoformat(), "ref": "a-2",
                      "note_kind": "fix", "resolved_at": NOW.isoformat()}).encode()
    first = run(session((topic("h1", "alert/bad_rating"), bad_rating("a-1")),
                        (topic("h1", "alert/bad_rating"), bad_rating("a-2")),
                        (topic("h1", "alert/bad_rating_resolved"), contact)))
    assert sorted(r["id"] for r in first["ratings"]) == ["a-1", "a-2"]
    second = run(session((topic("h1", "alert/bad_rating_resolved"), fix),
                         (topic("h1", "alert/bad_rating"), bad_rating("a-1"))))   # a late redelivery: still once
    assert sorted(r["id"] for r in second["ratings"]) == ["a-1"]
    assert second["ratings"][0]["contact"] == {"state": "done", "text": "已联系 10:20"}
    third = run(session())
    assert [r["id"] for r in third["ratings"]] == ["a-1"] and third["ratings"][0]["contact"]["state"] == "done"


async def _history_rows(client: TestClient, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            data = await (await client.get(f"/hall/{D}/h1/history")).json()
            if predicate(data):
                return data["rows"]
            await asyncio.sleep(0.1)


def test_a_database_that_never_answers_leaves_the_page_live_with_the_banner():
    async def go() -> None:
        clock = ManualClock(NOW)
        history = History(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing", clock, flush_s=0.2)
        async with city_app(clock, history) as (client, hub):
            hub.history_changed(False)
            hub.on_message(topic("h1", "summary"), raw(summary("h1", waiting=3)))
            reader = SseReader(await client.get("/events"))
            view = await state_where(reader, lambda v: v["tiles"] and v["history"] == "down", timeout=10)
            assert view["tiles"][0]["waiting"] == 3 and history.available is False
    run(go())


def test_the_command_line_refuses_a_password_in_the_url_and_says_what_to_give(capsys, tmp_path):
    assert cli.main(["--mqtt-url", "mqtt://hall-city:s3cret@127.0.0.1:1883"]) == 2
    err = capsys.readouterr().err
    assert "--password-file" in err and "s3cret" not in err
    assert cli.main([]) == 2 and "--mqtt-url" in capsys.readouterr().err
    (tmp_path / "pw").write_text("pw\n")
    args = cli.parse_args(["--mqtt-url", "mqtt://127.0.0.1:1", "--password-file", str(tmp_path / "pw"),
                           "--listen", "127.0.0.1:0"])
    options = cli.options_from_args(args)
    assert options.endpoint.username == "hall-city" and options.endpoint.password == "pw"
    assert "pw" not in repr(options)


@pytest.mark.mosquitto
@pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")
def test_hall_city_over_a_real_mosquitto_with_the_demo_accounts(tmp_path: Path):
    port = free_port()
    conf, accounts = write_broker(tmp_path, port, ["h1", "h2"], iterations=1000)
    broker = Mosquitto(tmp_path, conf.read_text().replace("user root\n", ""))
    broker.start(port)
    h1 = RawClient(port, f"hall-{D}-h1", accounts[f"hall-{D}-h1"])
    h1.mqtt.reconnect_delay_set(1, 2)
    try:
        assert h1.connect(will=(topic("h1", "online"), '{"online": false, "at": null, "will": true}'))
        h1.publish(topic("h1", "online"), b'{"online": true, "at": null, "version": "t"}', retain=True)
        h1.publish(topic("h1", "summary"), raw(summary("h1", waiting=5)), retain=True)
        h1.publish(topic("h2", "summary"), raw(summary("h2", waiting=99)), retain=True)    # not its prefix: denied
        h1.publish(topic("h1", "alert/bad_rating"), bad_rating("a-1"))    # before hall-city ever connected
        city = RunningCity(port, accounts["hall-city"], f"sqlite:///{tmp_path / 'h.db'}")
        state = city.state
        view = wait_until(lambda: (v := state())["tiles"] and v, 10, "the retained summary")
        assert [t["hall"] for t in view["tiles"]] == ["h1"], "h1's write to h2's prefix was denied"
        assert view["tiles"][0]["waiting"] == 5 and view["tiles"][0]["online"] is True
        for _ in range(3):                          # the same alert again (a QoS 1 redelivery after a cut)
            h1.publish(topic("h1", "alert/bad_rating"), bad_rating("a-2"))
        h1.publish(topic("h1", "summary"), b'{"schema": 1, "hall": "broken"}', retain=True)
        view = wait_until(lambda: "数据异常" in (v := state())["tiles"][0]["reasons"] and v, 10, "the malformed mark")
        assert [r["id"] for r in view["ratings"]] == ["a-2"], "a-2 exactly once; a-1 came before hall-city's session"
        assert view["tiles"][0]["waiting"] == 5, "the malformed summary changed nothing"
        h1.mqtt.disconnect()        # a clean disconnect sends no will: the hall says offline itself first
        h2 = RawClient(port, f"hall-{D}-h2", accounts[f"hall-{D}-h2"])
        assert h2.connect(will=(topic("h2", "online"), '{"online": false, "at": null, "will": true}'))
        h2.mqtt._sock.close()       # a dead link: the broker publishes the will after the keepalive … or at once on EOF
        def h2_offline() -> dict[str, Any] | None:
            v = state()
            return v if any(t["hall"] == "h2" and t["online"] is False for t in v["tiles"]) else None

        view = wait_until(h2_offline, 10, "h2's last will")
        assert view["tiles"][0]["hall"] == "h2" and view["tiles"][0]["reasons"][0] == "离线"
        city.stop()
    finally:
        h1.mqtt.loop_stop()
        broker.stop()


@pytest.mark.mosquitto
@pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")
def test_hall_city_over_mqtts_checks_the_city_ca(tmp_path: Path):
    """--mqtt-url mqtts://… --ca: the broker's certificate is checked against the city CA; another CA is refused."""
    from hall_controller.bus.tls import ensure_hall_ca

    files = ensure_hall_ca(tmp_path / "city-tls", "市公共法律服务中心", ["localhost"], ["127.0.0.1"])
    other = ensure_hall_ca(tmp_path / "other-tls", "别的中心", ["localhost"], ["127.0.0.1"])
    plain, tls = free_port(), free_port()
    broker = Mosquitto(tmp_path, f"listener {plain} 127.0.0.1\nallow_anonymous true\n"
                                 f"listener {tls} 127.0.0.1\nallow_anonymous true\ncafile {files.ca_cert}\n"
                                 f"certfile {files.server_cert}\nkeyfile {files.server_key}\n")
    broker.start(plain, tls)
    (tmp_path / "pw").write_text("unused\n")
    hall = RawClient(plain, "h1", "x")
    cities: list[RunningCity] = []
    try:
        assert hall.connect()
        hall.publish(topic("h1", "summary"), raw(summary("h1", waiting=4)), retain=True)
        for ca in (files.ca_cert, other.ca_cert):
            args = cli.parse_args(["--mqtt-url", f"mqtts://localhost:{tls}", "--ca", str(ca), "--password-file",
                                   str(tmp_path / "pw"), "--listen", "127.0.0.1:0"])
            cities.append(RunningCity(0, "", options=cli.options_from_args(args)))
        good, wrong = cities
        assert wait_until(lambda: good.state()["tiles"], 10, "the summary over TLS")[0]["waiting"] == 4
        assert good.state()["broker"] is True
        time.sleep(1.5)                     # the wrong CA's handshakes keep failing
        assert wrong.state()["tiles"] == [] and wrong.state()["broker"] is False
    finally:
        for city in cities:
            city.stop()
        hall.close()
        broker.stop()
