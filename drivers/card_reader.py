"""Resident ID card reader driver: GA/T 467 SAM frames over any transport (serial, USB-CDC, pty,
``socket://`` or ``rfc2217://`` through a serial server on the kiosk PC).

One polling thread talks to the reader, one exchange at a time (request, then its reply within the
reply timeout): find card → select → read base info. A cycle starts no sooner than the profile's
``framing.poll_ms`` after the previous one. A card is read once and delivered through
``on_card(info)`` (the decoded :class:`drivers.codecs.gat467.BaseInfo`, clear text: the daemon masks
and hashes it); it is not read again until a find reports no card, i.e. until it has been taken away.
That is reported through ``on_card_removed()``: the daemon forgets a card that left with its holder.
A card found and selected whose read fails (taken away mid-read: the reader answers ``41``) or whose
data cannot be decoded is never delivered in part; ``on_card_failed(why)`` says so once per
presentation (``read_failed`` or ``unreadable``), and the read is tried again while it lies there.

The SAM's status is asked when the driver opens and kept for :meth:`health`. A reader that does not
answer within the reply timeout, or a transport failure, stops the thread and is reported once
through ``on_error``; reopening with backoff is the daemon's ``DeviceLink``'s job. The reader counts
as answering (:meth:`GatCardReader.answering`, the link's judgement of "up") only once the SAM status
and the first find card have both been answered in time: a slow reader whose one late reply lands
in the next exchange is not taken for a working one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from device_profiles import Profile, transport_options
from drivers.base import CardReaderDriver, ErrorCallback, Health, ThreadedDriver
from drivers.codecs.gat467 import (
    BASE_INFO_SIZE,
    SW3_FOUND,
    SW3_NO_CARD,
    SW3_OK,
    BaseInfo,
    Gat467Framing,
    Response,
    ResponseDecoder,
    decode_base_info,
    encode_request,
    gat467_framing,
)
from drivers.registry import register
from drivers.transport import Transport, TransportIOError, TransportTimeout, open_transport

log = logging.getLogger(__name__)

__all__ = ["GatCardReader", "ReaderStats", "open_card_reader"]

CardCallback = Callable[[BaseInfo], None]
RemovedCallback = Callable[[], None]
FailedCallback = Callable[[str], None]
# Replies carry the holder's name and ID number: the DEBUG traffic log keeps only the preamble,
# length and status words of each chunk.
TRAFFIC_LOG_BYTES = 10

# Reply sizes beyond the preamble, for the transfer-time part of the reply timeout.
_REPLY_BYTES = {"read_base_info": 7 + BASE_INFO_SIZE + 4}
_SHORT_REPLY_BYTES = 24
# Exchanges answered in time since open before the reader counts as answering (SAM status, find card).
UP_AFTER_ANSWERS = 2


@dataclass
class ReaderStats:
    """Counters for diagnostics and tests (updated by the polling thread)."""

    polls: int = 0
    cards_read: int = 0
    read_failures: int = 0


class GatCardReader(ThreadedDriver, CardReaderDriver):
    """A GA/T 467 reader on one transport; its polling thread is a :class:`ThreadedDriver`'s."""

    kind = "card_reader"
    device_name = "读卡器"

    def __init__(self, url: str, profile: Profile, *, on_error: ErrorCallback | None = None,
                 on_card: CardCallback | None = None, on_card_removed: RemovedCallback | None = None,
                 on_card_failed: FailedCallback | None = None, poll_ms: int | None = None) -> None:
        super().__init__(url, on_error=on_error)
        self.profile = profile
        self.framing: Gat467Framing = gat467_framing(profile)
        # A site may poll more slowly than the profile allows, never faster.
        self.poll_interval = max(self.framing.poll_ms, poll_ms or 0) / 1000
        self._on_card = on_card
        self._on_card_removed = on_card_removed
        self._on_card_failed = on_card_failed
        options = transport_options(profile)
        self._options = options
        self._read_timeout = float(options.get("timeout", 0.2))
        self._char_time = 10 / int(options.get("baudrate", 9600))
        self._transport: Transport | None = None
        self._exchange_lock = threading.Lock()
        self._sam: str | None = None
        self._card_present = False
        self._failure_told = False    # a failed read of the card on the reader was reported
        self._answers = 0             # exchanges answered in time since open()
        self.stats = ReaderStats()

    # ------------------------------------------------------------------------------ life cycle

    def open(self) -> None:
        if self.running:
            return
        self._transport = open_transport(self.url, **self._options)
        self._transport.log_limit = TRAFFIC_LOG_BYTES
        self._card_present = False
        self._failure_told = False
        self._answers = 0
        self._start_threads({"card-reader": self._poll_loop})

    def close(self) -> None:
        self._stop_threads(self._reply_timeout("read_base_info") + self.poll_interval + 1.0)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def health(self) -> Health:
        detail = {"sam": self._sam, "card_present": self._card_present, "cards_read": self.stats.cards_read}
        if self._failed is not None:
            return Health(online=False, error=str(self._failed), detail=detail)
        return Health(online=self._transport is not None, detail=detail)

    def answering(self) -> bool:
        """True once :data:`UP_AFTER_ANSWERS` exchanges in a row were answered within their timeout
        (a timeout stops the driver, so every answer since open() is one of a row)."""
        return self._answers >= UP_AFTER_ANSWERS and self._failed is None

    # ------------------------------------------------------------------------------ operations

    def sam_status(self) -> str:
        """The SAM's status text (``操作成功`` when healthy); raises TransportError."""
        return self._check_sam().status_text

    def _check_sam(self) -> Response:
        reply = self._exchange("sam_status")
        self._sam = reply.status_text
        return reply

    def _reply_timeout(self, command: str) -> float:
        """The read timeout plus the time the reply takes on the wire at the profile's baud rate."""
        return self._read_timeout + _REPLY_BYTES.get(command, _SHORT_REPLY_BYTES) * self._char_time

    def _exchange(self, command: str) -> Response:
        """Send one command and return its reply; TransportTimeout when none comes in time."""
        with self._exchange_lock:
            transport = self._transport
            if transport is None:
                raise TransportIOError(f"读卡器未打开 {self.url}")
            decoder = ResponseDecoder(self.framing)  # a stale partial reply must not merge into this one
            transport.write(encode_request(self.framing.command(command), self.framing))
            deadline = time.monotonic() + self._reply_timeout(command)
            while time.monotonic() < deadline:
                data = transport.read(4096)
                frames = decoder.feed(data) if data else decoder.flush()
                if frames:
                    self._answers += 1
                    return frames[0]
            raise TransportTimeout(f"读卡器无应答 {self.url}（{command}）")

    # ------------------------------------------------------------------------------ polling

    def _poll_loop(self) -> None:
        sam = self._check_sam()
        if sam.sw3 == SW3_OK:
            log.info("%s: SAM ready", self.url)
        else:
            log.warning("%s: SAM reports %s", self.url, sam.status_text)
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = time.monotonic() + self.poll_interval
            self._poll_once()

    def _poll_once(self) -> None:
        self.stats.polls += 1
        found = self._exchange("find_card")
        if found.sw3 != SW3_FOUND:
            if found.sw3 != SW3_NO_CARD:
                log.debug("%s: find card: %s", self.url, found.status_text)
            self._failure_told = False
            if self._card_present:
                log.info("%s: card removed", self.url)
                self._card_present = False
                self._notify("on_card_removed", self._on_card_removed)
            return
        if self._card_present:
            return  # the card that was read is still there
        selected = self._exchange("select_card")
        if selected.sw3 != SW3_OK:
            log.info("%s: select card: %s", self.url, selected.status_text)
            return
        reply = self._exchange("read_base_info")
        if reply.sw3 != SW3_OK:
            # Found and selected, then gone (or the read failed): nothing of the card is delivered.
            self.stats.read_failures += 1
            log.warning("%s: read base info: %s", self.url, reply.status_text)
            self._tell_failure("read_failed")
            return
        self._card_present = True
        try:
            info = decode_base_info(reply.data)
        except ValueError as exc:
            # The checksum held, so this is what the card holds: do not read it over and over.
            self.stats.read_failures += 1
            log.warning("%s: unreadable card data: %s", self.url, exc)
            self._tell_failure("unreadable")
            return
        self._failure_told = False
        self.stats.cards_read += 1
        log.info("%s: card read (%d bytes of photo)", self.url, len(info.photo))
        self._notify("on_card", self._on_card, info)

    def _tell_failure(self, why: str) -> None:
        """Report a failed read once until the field is empty again (a card left lying is retried)."""
        if not self._failure_told:
            self._failure_told = True
            self._notify("on_card_failed", self._on_card_failed, why)

    def _notify(self, name: str, callback: Callable[..., None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("%s: %s callback failed", self.url, name)


@register("card_reader", interface=CardReaderDriver, codec="drivers.codecs.gat467")
def open_card_reader(url: str, profiles: Sequence[Profile], *, on_error: ErrorCallback | None = None,
                     on_card: CardCallback | None = None, on_card_removed: RemovedCallback | None = None,
                     on_card_failed: FailedCallback | None = None, poll_ms: int | None = None) -> GatCardReader:
    """An unopened reader for ``url``; ``profiles`` holds the reader's one card_reader profile."""
    chosen = {p.name: p for p in profiles if p.kind == "card_reader"}
    if len(chosen) != 1:
        raise ValueError(f"读卡器需要恰好一个 card_reader 设备档案，实际为：{'、'.join(sorted(chosen)) or '无'}")
    return GatCardReader(url, next(iter(chosen.values())), on_error=on_error, on_card=on_card,
                         on_card_removed=on_card_removed, on_card_failed=on_card_failed, poll_ms=poll_ms)
