"""Sans-IO codec of the resident ID card reader's SAM frames (GA/T 467 style, DESIGN §6).

Request (host → reader)::

    AA AA AA 96 69 | LEN_H LEN_L | CMD PARA data... | CHK

Response (reader → host)::

    AA AA AA 96 69 | LEN_H LEN_L | SW1 SW2 SW3 data... | CHK

LEN (big-endian) counts every byte after itself up to and including CHK; CHK is the XOR of every
byte after the 5-byte preamble (LEN included) up to CHK. SW1 SW2 are ``00 00``; SW3 is the status:
``9F`` card found, ``90`` success, ``80`` no card (find), ``81`` select failed, ``41`` read failed.

Read base info (``30 01``) answers with ``TEXT_LEN(2) PHOTO_LEN(2)`` = ``01 00 04 00``, 256 bytes
of UCS-2 LE text and a 1024-byte WLT photo, which needs a proprietary decoder and stays opaque.
Text fields (byte offset/length): name 0/30, sex 30/2, nation 32/4, birth 36/16, address 52/70,
ID number 122/36, issuer 158/30, valid-from 188/16, valid-to 204/16, then 36 reserved bytes.
Fields are padded with spaces.

The decoders are :class:`drivers.codecs.framing.FrameScanner` s: they take arbitrary chunks, skip
garbage before a preamble (counted in ``discarded``) and reject frames with an impossible length or a
bad checksum with a logged reason (``last_error``, ``rejected``). ``flush()`` ends a partial frame
when the line has gone quiet (a reply that will never complete), releasing any valid frame behind it.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from drivers.codecs.framing import BAD, NEED_MORE, FrameScanner, ParseResult, checksum_by_name

log = logging.getLogger(__name__)

__all__ = [
    "BASE_INFO_SIZE",
    "DEFAULT_COMMANDS",
    "DEFAULT_FRAMING",
    "NATIONS",
    "PHOTO_SIZE",
    "PREAMBLE",
    "SEXES",
    "SW3_FOUND",
    "SW3_NO_CARD",
    "SW3_OK",
    "SW3_READ_FAILED",
    "SW3_SELECT_FAILED",
    "SW3_TEXT",
    "TEXT_SIZE",
    "BaseInfo",
    "Gat467Framing",
    "Request",
    "RequestDecoder",
    "Response",
    "ResponseDecoder",
    "decode_base_info",
    "decode_base_text",
    "encode_base_info",
    "encode_base_text",
    "encode_request",
    "encode_response",
    "gat467_framing",
    "nation_code",
]

PREAMBLE = bytes.fromhex("AA AA AA 96 69")

SW3_FOUND = 0x9F
SW3_OK = 0x90
SW3_NO_CARD = 0x80
SW3_SELECT_FAILED = 0x81
SW3_READ_FAILED = 0x41

#: Status byte SW3 → meaning (from the public GA/T 467 reader documentation), for logs and health.
SW3_TEXT: Mapping[int, str] = MappingProxyType({
    0x90: "操作成功",
    0x9F: "找卡成功",
    0x10: "接收业务终端数据的校验和错",
    0x11: "接收业务终端数据的长度错",
    0x21: "接收业务终端的命令错误",
    0x23: "越权操作",
    0x24: "无法识别的错误",
    0x31: "卡认证机具失败",
    0x32: "机具认证卡失败",
    0x33: "信息验证错误",
    0x40: "无法识别的卡类型",
    0x41: "读卡操作失败",
    0x47: "取随机数失败",
    0x60: "SAM 自检失败",
    0x66: "SAM 未经授权",
    0x80: "找卡不成功",
    0x81: "选卡不成功",
    0x91: "卡中此项无内容",
})

DEFAULT_COMMANDS: Mapping[str, bytes] = MappingProxyType({
    "find_card": b"\x20\x01",
    "select_card": b"\x20\x02",
    "read_base_info": b"\x30\x01",
    "sam_status": b"\x11\xff",
})

TEXT_SIZE = 256
PHOTO_SIZE = 1024
#: Data of a successful read-base-info reply: 4 length bytes + text + photo.
BASE_INFO_SIZE = 4 + TEXT_SIZE + PHOTO_SIZE

#: GB/T 2261.1 sex codes as printed on the card.
SEXES: Mapping[str, str] = MappingProxyType({"0": "未知", "1": "男", "2": "女", "9": "未说明"})

#: GB/T 3304 nationality codes → the name printed on the card after 民族.
NATIONS: Mapping[str, str] = MappingProxyType({
    f"{i:02d}": name for i, name in enumerate((
        "汉", "蒙古", "回", "藏", "维吾尔", "苗", "彝", "壮", "布依", "朝鲜",
        "满", "侗", "瑶", "白", "土家", "哈尼", "哈萨克", "傣", "黎", "傈僳",
        "佤", "畲", "高山", "拉祜", "水", "东乡", "纳西", "景颇", "柯尔克孜", "土",
        "达斡尔", "仫佬", "羌", "布朗", "撒拉", "毛南", "仡佬", "锡伯", "阿昌", "普米",
        "塔吉克", "怒", "乌孜别克", "俄罗斯", "鄂温克", "德昂", "保安", "裕固", "京", "塔塔尔",
        "独龙", "鄂伦春", "赫哲", "门巴", "珞巴", "基诺"), start=1)
} | {"97": "其他", "98": "外国血统中国籍人士"})

# (field, byte offset, byte length) of the base-info text block.
_LAYOUT = (
    ("name", 0, 30), ("sex", 30, 2), ("nation", 32, 4), ("birth", 36, 16), ("address", 52, 70),
    ("id_number", 122, 36), ("issuer", 158, 30), ("valid_from", 188, 16), ("valid_to", 204, 16),
)
_PAD = " "


# --------------------------------------------------------------------------------------- framing


@dataclass(frozen=True)
class Gat467Framing:
    """Wire parameters of a reader model (built from its profile by :func:`gat467_framing`)."""

    preamble: bytes = PREAMBLE
    checksum: str = "xor8"
    length_bytes: int = 2
    poll_ms: int = 300
    commands: Mapping[str, bytes] = field(default_factory=lambda: DEFAULT_COMMANDS, hash=False)
    max_len: int = 4096  # largest LEN accepted; a base-info reply has 1288

    def __post_init__(self) -> None:
        if not self.preamble:
            raise ValueError("GA/T 467 framing needs a non-empty preamble")
        checksum_by_name(self.checksum)  # ValueError now rather than at the first frame
        if self.length_bytes not in (1, 2):
            raise ValueError("length_bytes must be 1 or 2")
        if self.poll_ms < 1:
            raise ValueError("poll_ms must be positive")
        if not 4 <= self.max_len < 1 << (8 * self.length_bytes):
            raise ValueError(f"max_len must fit in {self.length_bytes} length byte(s)")
        missing = set(DEFAULT_COMMANDS) - set(self.commands)
        if missing:
            raise ValueError(f"commands missing: {', '.join(sorted(missing))}")
        for name, code in self.commands.items():
            if len(code) != 2:
                raise ValueError(f"command {name} must be two bytes (CMD PARA), got {bytes(code).hex(' ')}")

    def command(self, name: str) -> Request:
        """The request for a named command, e.g. ``framing.command("find_card")``."""
        code = self.commands[name]
        return Request(code[0], code[1])

    def command_name(self, request: Request) -> str | None:
        code = bytes((request.cmd, request.para))
        return next((name for name, c in self.commands.items() if bytes(c) == code), None)


DEFAULT_FRAMING = Gat467Framing()


def gat467_framing(profile: Any) -> Gat467Framing:
    """Codec parameters of a ``card_reader`` profile (``device_profiles.Profile``)."""
    from device_profiles import ProfileError

    if profile.kind != "card_reader":
        raise ProfileError(profile.source, "kind", f"需要 card_reader 类设备档案，实际为 {profile.kind}")
    f = profile.framing
    values: dict[str, Any] = {key: f[key] for key in ("checksum", "length_bytes", "poll_ms") if key in f}
    if "preamble" in f:
        values["preamble"] = bytes(f["preamble"])
    if "commands" in f:
        values["commands"] = MappingProxyType(
            {**DEFAULT_COMMANDS, **{name: bytes(code) for name, code in f["commands"].items()}})
    try:
        return Gat467Framing(**values)
    except ValueError as exc:
        raise ProfileError(profile.source, "framing", str(exc)) from exc


# ---------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Request:
    cmd: int
    para: int
    data: bytes = b""


@dataclass(frozen=True)
class Response:
    sw3: int
    data: bytes = b""
    sw1: int = 0
    sw2: int = 0

    @property
    def status_text(self) -> str:
        return SW3_TEXT.get(self.sw3, f"未知状态 {self.sw3:02X}")


def _frame(body: bytes, framing: Gat467Framing) -> bytes:
    size = len(body) + 1
    if size > framing.max_len:
        raise ValueError(f"frame too long: LEN {size} > {framing.max_len}")
    head = size.to_bytes(framing.length_bytes, "big")
    return framing.preamble + head + body + bytes((checksum_by_name(framing.checksum)(head + body),))


def encode_request(request: Request, framing: Gat467Framing = DEFAULT_FRAMING) -> bytes:
    """``AA AA AA 96 69 LEN CMD PARA data CHK``."""
    for name in ("cmd", "para"):
        if not 0 <= getattr(request, name) <= 0xFF:
            raise ValueError(f"{name} must be a byte")
    return _frame(bytes((request.cmd, request.para)) + bytes(request.data), framing)


def encode_response(response: Response, framing: Gat467Framing = DEFAULT_FRAMING) -> bytes:
    """``AA AA AA 96 69 LEN SW1 SW2 SW3 data CHK``."""
    for name in ("sw1", "sw2", "sw3"):
        if not 0 <= getattr(response, name) <= 0xFF:
            raise ValueError(f"{name} must be a byte")
    return _frame(bytes((response.sw1, response.sw2, response.sw3)) + bytes(response.data), framing)


# -------------------------------------------------------------------------------------- decoders

FrameT = TypeVar("FrameT", bound=Request | Response)


class _FrameDecoder(FrameScanner[FrameT], Generic[FrameT]):
    """Scanner for one direction; ``_head`` bytes (CMD PARA or SW1..SW3) precede the data."""

    _head: int
    _what: str

    def __init__(self, framing: Gat467Framing = DEFAULT_FRAMING) -> None:
        super().__init__(preamble=framing.preamble)
        self.framing = framing
        self._checksum = checksum_by_name(framing.checksum)
        self.rejected = 0
        self.last_error: str | None = None

    def _reject(self, reason: str, buf: bytearray, pos: int, size: int) -> tuple[ParseResult, None, int]:
        self.rejected += 1
        self.last_error = reason
        log.warning("GA/T 467 %s rejected: %s (%s)", self._what, reason,
                    bytes(buf[pos : pos + min(size, 24)]).hex(" "))
        return BAD

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, FrameT | None, int]:
        f = self.framing
        pre, nlen = len(f.preamble), f.length_bytes
        available = len(buf) - pos
        if available < pre + nlen:
            return NEED_MORE
        size = int.from_bytes(buf[pos + pre : pos + pre + nlen], "big")
        if not self._head + 1 <= size <= f.max_len:
            return self._reject(f"长度 {size} 无效", buf, pos, pre + nlen)
        total = pre + nlen + size
        if available < total:
            return NEED_MORE
        covered = bytes(buf[pos + pre : pos + total - 1])
        expected = self._checksum(covered)
        if buf[pos + total - 1] != expected:
            return self._reject(f"校验和错误（收到 {buf[pos + total - 1]:02X}，应为 {expected:02X}）",
                                buf, pos, total)
        return ParseResult.OK, self._make(covered[nlen:]), total

    @abstractmethod
    def _make(self, body: bytes) -> FrameT:
        """The frame of a checked body (LEN and CHK removed)."""

    def flush(self) -> list[FrameT]:
        if self.framing.preamble in self._buf:
            self.rejected += 1
            self.last_error = "帧不完整"
            log.warning("GA/T 467 %s rejected: truncated frame (%d bytes pending)", self._what, len(self._buf))
        return super().flush()


class RequestDecoder(_FrameDecoder[Request]):
    """Host → reader frames (used by the emulated reader)."""

    _head = 2
    _what = "request"

    def _make(self, body: bytes) -> Request:
        return Request(body[0], body[1], body[2:])


class ResponseDecoder(_FrameDecoder[Response]):
    """Reader → host frames (used by the driver)."""

    _head = 3
    _what = "response"

    def _make(self, body: bytes) -> Response:
        return Response(body[2], body[3:], body[0], body[1])


# ------------------------------------------------------------------------------------- base info


@dataclass(frozen=True)
class BaseInfo:
    """The card's base information as printed on it. ``sex`` and ``nation`` are names (男, 汉)."""

    name: str
    sex: str
    nation: str
    birth: str  # YYYYMMDD
    address: str
    id_number: str = field(repr=False)
    issuer: str
    valid_from: str  # YYYYMMDD
    valid_to: str  # YYYYMMDD or 长期
    photo: bytes = field(default=b"", repr=False)


def nation_code(nation: str) -> str:
    """``汉`` / ``汉族`` / ``1`` / ``01`` → ``01``; ValueError for anything else."""
    text = str(nation).strip()
    if text.isdigit() and f"{int(text):02d}" in NATIONS:
        return f"{int(text):02d}"
    name = text[:-1] if text.endswith("族") and text[:-1] in NATIONS.values() else text
    for code, known in NATIONS.items():
        if known == name:
            return code
    raise ValueError(f"未知民族 {nation!r}（填写民族名称如“汉”，或代码 01–56、97、98）")


def encode_base_text(info: BaseInfo) -> bytes:
    """The 256-byte UCS-2 LE text block; ValueError names a field that does not fit."""
    values = {f.name: getattr(info, f.name) for f in fields(info)}
    sex = next((code for code, text in SEXES.items() if text == info.sex), None)
    if sex is None:
        raise ValueError(f"性别须为 {'、'.join(SEXES.values())}，实际为 {info.sex!r}")
    values["sex"], values["nation"] = sex, nation_code(info.nation)
    out = bytearray(_PAD.encode("utf-16-le") * (TEXT_SIZE // 2))
    for name, offset, length in _LAYOUT:
        text = str(values[name])
        if any(ord(ch) > 0xFFFF or 0xD800 <= ord(ch) < 0xE000 for ch in text):
            raise ValueError(f"{name} 含 UCS-2 无法表示的字符")
        raw = text.encode("utf-16-le")
        if len(raw) > length:
            raise ValueError(f"{name} 过长：最多 {length // 2} 个字符，实际 {len(text)} 个")
        out[offset : offset + len(raw)] = raw
    return bytes(out)


def decode_base_text(text: bytes) -> dict[str, str]:
    """Fields of the 256-byte text block, padding stripped, codes kept as on the card."""
    if len(text) != TEXT_SIZE:
        raise ValueError(f"文字信息应为 {TEXT_SIZE} 字节，实际 {len(text)} 字节")
    out: dict[str, str] = {}
    for name, offset, length in _LAYOUT:
        try:
            value = text[offset : offset + length].decode("utf-16-le")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{name} 不是有效的 UCS-2 文字") from exc
        out[name] = value.rstrip(" \x00")
    return out


def encode_base_info(info: BaseInfo) -> bytes:
    """The data of a read-base-info reply: ``01 00 04 00`` + text + photo (padded to 1024 bytes)."""
    if len(info.photo) > PHOTO_SIZE:
        raise ValueError(f"照片最多 {PHOTO_SIZE} 字节，实际 {len(info.photo)} 字节")
    photo = bytes(info.photo).ljust(PHOTO_SIZE, b"\x00")
    return TEXT_SIZE.to_bytes(2, "big") + PHOTO_SIZE.to_bytes(2, "big") + encode_base_text(info) + photo


def decode_base_info(data: bytes) -> BaseInfo:
    """Parse a read-base-info reply's data; ValueError when the sizes do not add up."""
    if len(data) < 4:
        raise ValueError("基本信息数据过短")
    text_len, photo_len = int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")
    if text_len != TEXT_SIZE or len(data) != 4 + text_len + photo_len:
        raise ValueError(f"基本信息长度不符：文字 {text_len}、照片 {photo_len}，共收到 {len(data) - 4} 字节")
    values = decode_base_text(data[4 : 4 + text_len])
    values["sex"] = SEXES.get(values["sex"], values["sex"])
    values["nation"] = NATIONS.get(values["nation"], values["nation"])
    return BaseInfo(**values, photo=bytes(data[4 + text_len :]))
