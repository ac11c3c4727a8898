"""Sans-IO codec for WAV files over a byte link (the emulated speaker, a networked PA player).

A PC speaker has no wire protocol: the daemon plays WAVs on the sound card. To reach a speaker
that is *not* the local sound card — the emulated speaker of ``hall-emu``, or an audio box on the
LAN — WAV files travel as frames over any ``drivers.transport`` link::

    MAGIC 'A' 'F' | TYPE (1) | SEQ (2, big-endian) | META_LEN (2, BE) | DATA_LEN (4, BE) | HCRC (2, BE)
    | META (META_LEN bytes, UTF-8 JSON object) | DATA (DATA_LEN bytes) | CRC (4, BE)

HCRC is CRC-16/CCITT-FALSE (``binascii.crc_hqx``, initial 0xFFFF) over TYPE..DATA_LEN, so a length
garbled on the line is caught before the decoder waits for bytes that never come; CRC is CRC-32
(zlib) over TYPE..DATA (HCRC included). Types:

* ``PLAY`` (0x01, host → speaker): DATA is a whole WAV file, META what it says
  (``{"text", "tokens", "zone", ...}``); the speaker plays it after whatever it is playing.
* ``STARTED`` (0x02, speaker → host): playback of ``SEQ`` began (its first sample went out).
* ``DONE`` (0x03, speaker → host): playback of ``SEQ`` ended; META ``{"duration": s}``.
* ``ERROR`` (0x04, speaker → host): ``SEQ`` was refused; META ``{"error": "..."}``.

The decoder is a :class:`drivers.codecs.framing.FrameScanner`: it resynchronises after line noise (a
frame with a bad HCRC or CRC, an unknown type or a length over the limit is dropped, its bytes counted
in ``discarded``, and the search for the next magic goes on one byte later).
"""

from __future__ import annotations

import binascii
import io
import json
import struct
import wave
import zlib
from dataclasses import dataclass, field
from typing import Any

from drivers.codecs.framing import BAD, NEED_MORE, FrameScanner, ParseResult

__all__ = [
    "DONE",
    "ERROR",
    "MAGIC",
    "MAX_DATA",
    "PLAY",
    "STARTED",
    "AudioFrame",
    "AudioFrameDecoder",
    "WavError",
    "WavInfo",
    "encode",
    "read_wav",
    "write_wav",
]

MAGIC = b"AF"
PLAY, STARTED, DONE, ERROR = 0x01, 0x02, 0x03, 0x04
TYPES = frozenset({PLAY, STARTED, DONE, ERROR})
_HEADER = struct.Struct(">2sBHHIH")  # magic, type, seq, meta_len, data_len, hcrc
_CRC = struct.Struct(">I")
MAX_META = 0xFFFF
MAX_DATA = 32 * 1024 * 1024  # a 6-minute 44.1 kHz stereo WAV; announcements are a few hundred kB


@dataclass(frozen=True)
class AudioFrame:
    type: int
    seq: int
    meta: dict[str, Any] = field(default_factory=dict)
    data: bytes = b""


def encode(type_: int, seq: int, meta: dict[str, Any] | None = None, data: bytes = b"") -> bytes:
    """One frame; ``ValueError`` for an unknown type, a seq out of 0..65535 or oversize parts."""
    if type_ not in TYPES:
        raise ValueError(f"unknown audio frame type {type_:#x}")
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"seq {seq} out of range 0..65535")
    meta_bytes = json.dumps(meta or {}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(meta_bytes) > MAX_META:
        raise ValueError(f"meta of {len(meta_bytes)} bytes exceeds {MAX_META}")
    if len(data) > MAX_DATA:
        raise ValueError(f"data of {len(data)} bytes exceeds {MAX_DATA}")
    fields = struct.pack(">BHHI", type_, seq, len(meta_bytes), len(data))
    body = fields + binascii.crc_hqx(fields, 0xFFFF).to_bytes(2, "big") + meta_bytes + data
    return MAGIC + body + _CRC.pack(zlib.crc32(body))


class AudioFrameDecoder(FrameScanner[AudioFrame]):
    """``feed(bytes) -> [AudioFrame]``; keeps partial frames between calls."""

    def __init__(self, max_data: int = MAX_DATA) -> None:
        super().__init__(preamble=MAGIC)
        self.max_data = max_data

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, AudioFrame | None, int]:
        if len(buf) - pos < _HEADER.size:
            return NEED_MORE
        _, type_, seq, meta_len, data_len, hcrc = _HEADER.unpack_from(buf, pos)
        fields = bytes(buf[pos + len(MAGIC) : pos + _HEADER.size - 2])
        if hcrc != binascii.crc_hqx(fields, 0xFFFF) or type_ not in TYPES or data_len > self.max_data:
            return BAD
        end = pos + _HEADER.size + meta_len + data_len
        if len(buf) < end + _CRC.size:
            return NEED_MORE
        body = bytes(buf[pos + len(MAGIC) : end])
        (crc,) = _CRC.unpack_from(buf, end)
        if crc != zlib.crc32(body):
            return BAD
        meta_raw = body[_HEADER.size - 2 : _HEADER.size - 2 + meta_len]
        try:
            meta = json.loads(meta_raw.decode("utf-8")) if meta_raw else {}
        except (UnicodeDecodeError, ValueError):
            meta = None
        if not isinstance(meta, dict):
            return BAD
        frame = AudioFrame(type_, seq, meta, body[_HEADER.size - 2 + meta_len :])
        return ParseResult.OK, frame, end + _CRC.size - pos


# --- WAV helpers (stdlib ``wave``): what a PLAY frame carries -------------------------------------


class WavError(ValueError):
    """Bytes that are not a PCM WAV file this code can play."""


@dataclass(frozen=True)
class WavInfo:
    sample_rate: int
    channels: int
    sample_width: int  # bytes per sample
    frames: bytes  # raw little-endian PCM

    @property
    def frame_count(self) -> int:
        return len(self.frames) // (self.channels * self.sample_width)

    @property
    def duration(self) -> float:
        return self.frame_count / self.sample_rate


def read_wav(data: bytes) -> WavInfo:
    """Parse a PCM WAV file; :class:`WavError` (with the reason) for anything else."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            info = WavInfo(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.readframes(w.getnframes()))
    except (wave.Error, EOFError, struct.error) as exc:
        raise WavError(f"不是可播放的 PCM WAV 文件：{exc}") from exc
    if info.sample_rate <= 0 or info.channels <= 0:
        raise WavError("WAV 文件的采样率或声道数无效")
    return info


def write_wav(frames: bytes, sample_rate: int, channels: int = 1, sample_width: int = 2) -> bytes:
    """A WAV file of raw PCM ``frames``."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sample_width)
        w.setframerate(sample_rate)
        w.writeframes(frames)
    return out.getvalue()
