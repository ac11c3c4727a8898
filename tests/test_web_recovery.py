"""hall-web with the real daemon (`hallctl run` and `hall-web` as child processes): a phone page left
open through a daemon crash and through hall-web's restart recovers by itself, and a phone that slept
through its call shows the true state at once when it wakes (one push or one poll). The page is an
EventSource stand-in: it reads the stream, reconnects after `retry` with Last-Event-ID, as browsers do.
"""

from __future__ import annotations

import json
import secrets
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .harness import DaemonProcess, WebProcess, free_port, init_hall, no_devices, wait_until, window_client


class EventSourceClient:
    """A browser's EventSource, in a thread: every `state`/`ping` message with its arrival time; on a
    dropped connection it waits `retry` ms and comes back with Last-Event-ID."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[tuple[float, str, str, Any]] = []     # (time, event, id, data)
        self.sent_ids: list[str | None] = []                       # Last-Event-ID of each connection
        self.last_id: str | None = None
        self.retry = 3.0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped:
            headers = {"Accept": "text/event-stream"}
            if self.last_id:
                headers["Last-Event-ID"] = self.last_id
            try:
                with urllib.request.urlopen(urllib.request.Request(self.url, headers=headers), timeout=30) as resp:
                    self.sent_ids.append(self.last_id)
                    self._read(resp)
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(self.retry)

    def _read(self, resp: Any) -> None:
        fields: dict[str, str] = {}
        for raw in resp:
            if self.stopped:
                return
            line = raw.decode().rstrip("\n")
            if line.startswith("retry:"):
                self.retry = int(line[6:]) / 1000
            elif line == "":
                if "data" in fields:
                    self.last_id = fields.get("id", self.last_id)
                    self.messages.append((time.monotonic(), fields.get("event", "message"), fields.get("id", ""),
                                          json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")

    def states(self) -> list[dict[str, Any]]:
        return [m[3] for m in self.messages if m[1] == "state"]

    def latest(self) -> dict[str, Any] | None:
        states = self.states()
        return states[-1] if states else None

    def wait_for(self, predicate: Any, what: str, timeout: float = 30.0) -> dict[str, Any]:
        return wait_until(lambda: (s := self.latest()) is not None and predicate(s) and s, timeout, what)


def web_hall(tmp_path: Path) -> tuple[Path, int, int]:
    mqtt_port, web_port = free_port(), free_port()

    def mutate(data: dict[str, Any]) -> None:
        no_devices(data)
        data["web"]["listen"] = f"127.0.0.1:{web_port}"

    return init_hall(tmp_path, mutate), mqtt_port, web_port


@pytest.mark.slow
def test_a_page_recovers_through_a_daemon_crash_and_a_hall_web_restart(tmp_path: Path) -> None:
    config, mqtt_port, web_port = web_hall(tmp_path)
    daemon = DaemonProcess(config, mqtt_port)
    web = WebProcess(config, mqtt_port, web_port)
    clients: list[Any] = []
    page: EventSourceClient | None = None
    try:
        daemon.start()
        web.start()
        kiosk = daemon.client("kiosk-1", role="kiosk")
        window = window_client(daemon, 1, "S001")
        clients += [kiosk, window]
        ticket = kiosk.request("issue_ticket", service="consult")
        token = ticket["visit_token"]
        assert ticket["visit_url"] == f"{web.url}/t/{token}"
        page = EventSourceClient(f"{web.url}/t/{token}/events")
        page.wait_for(lambda s: s["status"] == "waiting" and s["online"], "the waiting page")

        # the daemon dies (its broker with it): the page stays connected to hall-web and says offline
        daemon.kill()
        page.wait_for(lambda s: not s["online"], "the offline banner")
        assert len(page.sent_ids) == 1
        daemon.start()
        page.wait_for(lambda s: s["online"] and s["status"] == "waiting", "back online")
        wait_until(lambda: window.connected, 15, "the window's reconnection")
        called_at = time.monotonic()
        window.request("call_next")
        state = page.wait_for(lambda s: s["status"] == "called", "请到1号窗口")
        assert state["called"]["text"] == "请到1号窗口" and state["text"]["status"] == "请到1号窗口办理"
        assert len(page.sent_ids) == 1 and time.monotonic() - called_at < 5

        # hall-web restarts: the page comes back with Last-Event-ID and gets the current state at once
        seen = len(page.messages)
        web.kill()
        web.start()
        wait_until(lambda: len(page.sent_ids) == 2, 15, "the page's reconnection")
        assert page.sent_ids[1] is not None and page.sent_ids[1] == page.messages[seen - 1][2]
        wait_until(lambda: len(page.messages) > seen, 5, "the state after the reconnection")
        assert page.messages[seen][1] == "state" and page.messages[seen][3]["status"] == "called"
        window.request("start")
        page.wait_for(lambda s: s["status"] == "serving", "办理中")

        # the phone sleeps through the end of the visit; awake, one poll and one push show the truth
        page.stopped = True
        window.request("finish")
        polled = wait_until(lambda: (s := json.loads(web.get(f"/t/{token}/state")[1]))["status"] == "finished"
                            and s["show"]["rate"] and s, 10, "the poll")
        assert polled["text"]["status"] == "已办结"
        awake = EventSourceClient(f"{web.url}/t/{token}/events")
        awake.last_id = page.last_id
        first = awake.wait_for(lambda s: True, "the first push")
        assert first["status"] == "finished" and first["text"]["status"] == "已办结" and first["show"]["rate"]
        awake.stopped = True
    finally:
        if page is not None:
            page.stopped = True
        for client in clients:
            client.close()
        web.kill()
        daemon.kill()


@pytest.mark.slow
def test_a_replaced_token_answers_as_a_guessed_one(tmp_path: Path) -> None:
    """A reprint replaces the ticket's token: the old one now gets what a never-issued token gets —
    the same status, the same bytes, in about the same time (both are asked of the daemon)."""
    config, mqtt_port, web_port = web_hall(tmp_path)
    daemon = DaemonProcess(config, mqtt_port)
    web = WebProcess(config, mqtt_port, web_port, "--lookup-rate", "100000", "--lookup-burst", "1000")
    kiosk = None
    try:
        daemon.start()
        web.start()
        kiosk = daemon.client("kiosk-1", role="kiosk")
        issued = kiosk.request("issue_ticket", service="consult")
        old = issued["visit_token"]
        assert web.get(f"/t/{old}/state")[0] == 200
        new = kiosk.request("reprint", number=issued["ticket"]["number"])["visit_token"]
        assert new != old and web.get(f"/t/{new}/state")[0] == 200
        # hall-web held the old token as good: the reprint's event has it asked again at once
        wait_until(lambda: web.get(f"/t/{old}/state")[0] == 404, 2, "the replaced token refused")
        times: dict[str, list[float]] = {"replaced": [], "guessed": []}
        answers = set()
        for _ in range(30):
            for kind, token in (("replaced", old), ("guessed", secrets.token_urlsafe(16))):
                started = time.perf_counter()
                answers.add(web.get(f"/t/{token}"))
                times[kind].append(time.perf_counter() - started)
        assert len(answers) == 1 and next(iter(answers))[0] == 404
        replaced, guessed = (statistics.median(times[k]) for k in ("replaced", "guessed"))
        print(f"\nmedian answer: replaced token {replaced * 1000:.2f} ms, guessed token {guessed * 1000:.2f} ms")
        assert abs(replaced - guessed) < max(0.003, 0.5 * max(replaced, guessed))
    finally:
        if kiosk is not None:
            kiosk.close()
        web.kill()
        daemon.kill()
