"""hall-web soaked for a few minutes (HALL_WEB_SOAK_SECONDS, default 120) beside the real daemon: tickets
taken all along, windows 1 and 2 calling about every second, 200 pages open on the tickets, some of
them closed and opened again each second (phones come and go), polls and hall pages mixed in. It
must stay up, log no error, keep every open page pushed to the end, hold no stream of a page that
left, and keep its RSS steady (after the first quarter it may not grow by more than a few MiB).
"""

from __future__ import annotations

import json
import os
import random
import re
import selectors
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from .harness import DaemonProcess, WebProcess, free_port, init_hall, no_devices, wait_until, window_client

SECONDS = float(os.environ.get("HALL_WEB_SOAK_SECONDS", "120"))
PAGES = 200
CHURN = 5            # pages closed and opened again each second
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


class Page:
    """An SSE connection on a plain socket: counts the state messages it gets."""

    def __init__(self, address: tuple[str, int], path: str, selector: selectors.BaseSelector) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.sock.setblocking(False)
        self.states = 0
        self.last = time.monotonic()
        self.closed = False
        self.selector = selector
        selector.register(self.sock, selectors.EVENT_READ, self)

    def read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.states += data.count(b"event: state")
        self.last = time.monotonic()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.selector.unregister(self.sock)
            self.sock.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
        return json.loads(body) if resp.headers.get_content_type() == "application/json" else body


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 240)
def test_hall_web_stays_up_with_steady_memory_under_calls_and_page_churn(tmp_path: Path) -> None:
    mqtt_port, web_port = free_port(), free_port()

    def mutate(data: dict[str, Any]) -> None:
        no_devices(data)
        data["web"]["listen"] = f"127.0.0.1:{web_port}"

    config = init_hall(tmp_path, mutate)
    daemon = DaemonProcess(config, mqtt_port)
    web = WebProcess(config, mqtt_port, web_port, "--lookup-rate", "100000", "--lookup-burst", "10000",
                     "--max-streams-per-address", "10000")
    selector = selectors.DefaultSelector()
    pages: list[Page] = []
    clients: list[Any] = []
    rng = random.Random(19)
    try:
        daemon.start()
        web.start()
        kiosk = daemon.client("kiosk-1", role="kiosk")
        windows = [window_client(daemon, 1, "S001"), window_client(daemon, 2, "S002")]
        clients += [kiosk, *windows]
        tokens = [kiosk.request("issue_ticket", service="consult")["visit_token"] for _ in range(40)]
        address = ("127.0.0.1", web_port)
        pages = [Page(address, f"/t/{tokens[i % len(tokens)]}/events", selector) for i in range(PAGES - 10)]
        pages += [Page(address, "/events", selector) for _ in range(10)]
        process = psutil.Process(web.proc.pid)
        samples: list[tuple[float, float]] = []
        started = time.monotonic()
        next_second = started
        calls = 0
        while (now := time.monotonic()) - started < SECONDS:
            for key, _ in selector.select(0.05):
                key.data.read()
            if now < next_second:
                continue
            next_second += 1.0
            tokens.append(kiosk.request("issue_ticket", service="consult")["visit_token"])
            window = windows[calls % 2]
            window.request("call_next", finish_current=calls >= 2)
            calls += 1
            for _ in range(CHURN):                      # phones come and go
                leaving = rng.randrange(PAGES - 10)
                pages[leaving].close()
                pages[leaving] = Page(address, f"/t/{rng.choice(tokens[-40:])}/events", selector)
            _get(f"{web.url}/t/{rng.choice(tokens[-40:])}/state")
            if int(now - started) % 5 == 0:
                samples.append((now - started, process.memory_info().rss / 2**20))
        for key, _ in selector.select(0.5):
            key.data.read()
        assert web.proc.poll() is None, "hall-web died:\n" + "\n".join(web.log[-30:])
        assert not [line for line in web.log if ERROR_LINE.search(line)], "\n".join(web.log[-30:])
        # every page open at the end is still being pushed to (the last calls reached it)
        stale = [p for p in pages if not p.closed and time.monotonic() - p.last > 20]
        assert not stale and all(p.states for p in pages if not p.closed)
        wait_until(lambda: _get(f"{web.url}/healthz")["streams"] == sum(not p.closed for p in pages), 10,
                   "hall-web holding exactly the open pages' streams")
        settled = [rss for t, rss in samples if t >= SECONDS / 4]
        growth = max(settled) - settled[0]
        print(f"\nhall-web soak: {SECONDS:.0f} s, {calls} calls, {PAGES} pages ({CHURN}/s replaced), RSS "
              f"{samples[0][1]:.1f} -> {settled[0]:.1f} -> {settled[-1]:.1f} MiB (peak {max(settled):.1f}), "
              f"CPU {sum(process.cpu_times()[:2]) / SECONDS:.2f} cores")
        assert growth < 6.0, f"RSS grew {growth:.1f} MiB after the first quarter: {samples}"
    finally:
        for page in pages:
            page.close()
        for client in clients:
            client.close()
        web.kill()
        daemon.kill()
