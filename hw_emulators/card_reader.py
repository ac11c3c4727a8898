"""The emulated resident ID card reader: answers the host's real GA/T 467 frames.

A card is put on the reader with ``POST /card-reader/{id}/insert`` (DESIGN §9 fields) and taken away
with ``/remove``. While a card lies on it, find card answers ``9F`` (found), select ``90`` and read
base info ``90`` with the card's 256-byte text block and 1024-byte photo; without a card they answer
``80`` / ``81`` / ``41``. A card taken away is seen as gone by the next find (``80``) even when
another card (or the same one) is put on before that find: a hand cannot swap cards faster than the
host polls, so a real reader always sees the field empty in between.

``POST …/remove {"during_read": true}`` takes the next card the host reads away while it reads it
(arm it, then insert): find and select answer as usual, then the card is gone before read base info,
which answers ``41`` (read failed) — the reader lost the card between select and read.

The inserted fields are checked for what the card can hold (lengths, dates, sex, nation), not for a
valid ID number: the dashboard must be able to present a card with a wrong check digit or an
expired one, which is exactly what the daemon has to refuse with a reason.
Frames come from ``drivers.codecs.gat467`` with the framing of the device's profile.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections import Counter, deque
from datetime import date
from typing import Any

from drivers.codecs.gat467 import (
    NATIONS,
    SW3_FOUND,
    SW3_NO_CARD,
    SW3_OK,
    SW3_READ_FAILED,
    SW3_SELECT_FAILED,
    BaseInfo,
    Request,
    RequestDecoder,
    Response,
    encode_base_info,
    encode_response,
    gat467_framing,
    nation_code,
)

from .device import MIN_IDLE_S, IdleFramer, LinkedDevice
from .device import Request as ApiRequest
from .link import Link
from .registry import emulates

logger = logging.getLogger(__name__)

SW3_BAD_COMMAND = 0x21
CARD_FIELDS = ("name", "sex", "nation", "birth", "address", "id_number", "issuer", "valid_from", "valid_to",
               "photo")
DEFAULT_ADDRESS = "上海市黄浦区示范路1号"
DEFAULT_ISSUER = "上海市公安局黄浦分局"
DEFAULT_VALID_FROM = "20200101"
LONG_TERM = "长期"
HISTORY_LIMIT = 1000


def _date_field(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if value is None:
        raise ValueError(f"缺少 {key}（YYYYMMDD）")
    text = str(value).strip()
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise ValueError(f"{key} 须为有效日期 YYYYMMDD，实际为 {value!r}") from None
    return text


def _text_field(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} 须为非空字符串")
    return value.strip()


def card_from_fields(body: Any) -> BaseInfo:
    """The card of an insert request; ValueError with a Chinese message naming the field at fault.

    Required: ``name`` and ``id_number`` (18 characters: 17 digits and a digit or X — the check
    digit itself is not checked). Defaults: ``sex`` and ``birth`` from the ID number, ``nation`` 汉,
    a Shanghai ``address`` and ``issuer``, ``valid_from`` 20200101, ``valid_to`` 长期, no photo.
    """
    if not isinstance(body, dict):
        raise ValueError("请求体须为 JSON 对象")
    unknown = sorted(set(body) - set(CARD_FIELDS))
    if unknown:
        raise ValueError(f"未知字段 {'、'.join(unknown)}（可用：{'、'.join(CARD_FIELDS)}）")
    id_number = _text_field(body, "id_number").upper()
    if len(id_number) != 18 or not id_number[:17].isdigit() or not (id_number[17].isdigit() or id_number[17] == "X"):
        raise ValueError("id_number 须为18位（17位数字加一位数字或X）")
    sex = body.get("sex", "男" if int(id_number[16]) % 2 else "女")
    if sex not in ("男", "女"):
        raise ValueError(f"sex 须为 男 或 女，实际为 {sex!r}")
    nation = body.get("nation", "汉")
    if not isinstance(nation, (str, int)) or isinstance(nation, bool):
        raise ValueError("nation 须为民族名称（如“汉”）或代码")
    valid_to = body.get("valid_to", LONG_TERM)
    info = BaseInfo(
        name=_text_field(body, "name"),
        sex=sex,
        nation=NATIONS[nation_code(str(nation))],
        birth=_date_field(body, "birth", id_number[6:14]),
        address=_text_field(body, "address", DEFAULT_ADDRESS),
        id_number=id_number,
        issuer=_text_field(body, "issuer", DEFAULT_ISSUER),
        valid_from=_date_field(body, "valid_from", DEFAULT_VALID_FROM),
        valid_to=LONG_TERM if valid_to == LONG_TERM else _date_field(body, "valid_to"),
        photo=_photo(body.get("photo")),
    )
    encode_base_info(info)  # names a field that does not fit the card's text block
    return info


def _photo(value: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ValueError("photo 须为 base64 字符串")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("photo 不是有效的 base64") from None


@emulates("card_reader")
class EmulatedCardReader(LinkedDevice):
    """A reader on its own link (USB-serial on the kiosk PC, reached through a serial server)."""

    routes = {("POST", "insert"): "api_insert", ("POST", "remove"): "api_remove", ("GET", ""): "api_view"}
    traffic_log_bytes = 10          # its answers carry the card's name and ID number: never in a log

    def __init__(self, device_id: str, profile_name: str, profile: Any, link: Link, **where: Any) -> None:
        super().__init__(device_id, profile_name, profile, link, **where)
        self.framing = gat467_framing(profile)
        baud = profile.transport.get("baudrate", 115200)
        self._framer = IdleFramer(RequestDecoder(self.framing), max(MIN_IDLE_S, 40 / baud))
        self._card: BaseInfo | None = None
        self._inserted_at: str | None = None
        self._emptied = False  # the field was empty since the last find
        self._pull_during_read = False  # the next read base info finds the card taken away
        self.reads = 0
        self.requests: Counter[str] = Counter()
        #: ``(time.monotonic(), command name)`` of every request heard, for pacing checks.
        self.history: deque[tuple[float, str]] = deque(maxlen=HISTORY_LIMIT)
        self.heard = threading.Condition(self._lock)

    # -- the card -------------------------------------------------------------------------------
    def insert(self, card: BaseInfo) -> None:
        with self._lock:
            self._emptied = self._emptied or self._card is not None
            self._card = card
            self._inserted_at = self.now().isoformat(timespec="seconds")
        logger.info("%s: card of %s* inserted", self.id, card.name[:1])

    def remove(self, *, during_read: bool = False) -> bool:
        """Take the card away now, or (``during_read``) between the host's next select and read."""
        if during_read:
            with self._lock:
                self._pull_during_read = True
            logger.info("%s: the card will be taken away during the next read", self.id)
            return False
        with self._lock:
            had, self._card = self._card is not None, None
            self._emptied = self._emptied or had
        if had:
            logger.info("%s: card removed", self.id)
        return had

    def api_insert(self, request: ApiRequest) -> dict[str, Any]:
        self.insert(card_from_fields(request.body))
        return self.api_view(request)

    def api_remove(self, request: ApiRequest) -> dict[str, Any]:
        during_read = request.body.get("during_read", False) if isinstance(request.body, dict) else False
        if not isinstance(during_read, bool):
            raise ValueError("during_read 须为 true 或 false")
        return {"removed": self.remove(during_read=during_read), **self.api_view(request)}

    def api_view(self, request: ApiRequest) -> dict[str, Any]:
        with self._lock:
            card = self._card
            view = None
            if card is not None:
                # The emulator's own page shows the card as a kiosk would: masked.
                view = {"name": card.name[:1] + "*" * max(1, len(card.name) - 1), "sex": card.sex,
                        "birth": card.birth, "valid_to": card.valid_to,
                        "id_masked": card.id_number[:6] + "*" * 8 + card.id_number[-4:],
                        "inserted_at": self._inserted_at}
            return {"card": view, "reads": self.reads, "requests": dict(self.requests),
                    "pull_during_read": self._pull_during_read}

    # -- the wire -------------------------------------------------------------------------------
    def on_bytes(self, data: bytes) -> None:
        for request in self._framer.feed(data):
            reply = self._answer(request)
            self.send(encode_response(reply, self.framing))

    def _answer(self, request: Request) -> Response:
        name = self.framing.command_name(request)
        with self._lock:
            self.requests[name or "unknown"] += 1
            self.history.append((time.monotonic(), name or "unknown"))
            self.heard.notify_all()
            card = self._card
            if name == "find_card":
                if card is None or self._emptied:
                    self._emptied = False
                    return Response(SW3_NO_CARD)
                return Response(SW3_FOUND, bytes(4))
            if name == "select_card":
                return Response(SW3_OK, bytes(8)) if card is not None else Response(SW3_SELECT_FAILED)
            if name == "read_base_info":
                if card is not None and self._pull_during_read:
                    # the hand took the card away after the select: the read finds the field empty
                    self._pull_during_read = False
                    self._card, card, self._emptied = None, None, True
                    logger.info("%s: card taken away during the read", self.id)
                if card is None:
                    return Response(SW3_READ_FAILED)
                self.reads += 1
                return Response(SW3_OK, encode_base_info(card))
            if name == "sam_status":
                return Response(SW3_OK)
        logger.warning("%s: unknown command %02X %02X", self.id, request.cmd, request.para)
        return Response(SW3_BAD_COMMAND)

    # -- reporting ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {**super().state(), **self.api_view(ApiRequest({}, {}))}
