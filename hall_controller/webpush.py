"""Server push for the web pages (hall-web's phone pages, hall-city's 大屏): the SSE stream that writes
straight to a socket, the SSE message framing, and the Content-Security-Policy hash of an inline script
or style. Pure asyncio and hashlib, no web framework: both servers share it instead of copying it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from typing import Any

log = logging.getLogger(__name__)

MAX_UNSENT = 256 * 1024    # a page that leaves this much unread is cut off (it reconnects to the current state)


class Stream:
    """One open SSE connection: messages are written straight to its socket as HTTP/1.1 chunks, from
    the loop that makes them — no task per page to wake, so a push to 2,000 pages is 2,000 writes."""

    __slots__ = ("transport", "done")

    def __init__(self, transport: Any, done: asyncio.Future[None]) -> None:
        self.transport = transport
        self.done = done             # set when the stream ends (the page is cut off, the server stops)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.done.done():
            return
        if transport.get_write_buffer_size() > MAX_UNSENT:
            log.info("a page stopped reading: its stream is closed")
            self.end()
            transport.close()
            return
        transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def sse_message(event: str, event_id: str | int, data: bytes) -> bytes:
    """One SSE message (`data` is one line of JSON: no line breaks inside)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (str(event_id).encode(), event.encode(), data)


def csp_hash(text: str) -> str:
    """The CSP source that allows exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
