"""The one frame scanner every sans-IO codec decodes with (and so every emulator, which uses the codecs).

A serial line or a socket hands over bytes in arbitrary chunks, with line noise, frames cut short by a
pulled cable and frames split across reads. Every wire protocol of the hall recovers the same way, so
that way is written once, here: look for a byte that may start a frame, let the protocol judge the
candidate there — a whole frame, not a frame, or not enough bytes yet — and after a bad candidate drop
ONE byte only, since a real frame may start inside the rejected one (a false preamble, a truncated
frame followed by a good one). ``flush()`` is the line's idle signal: a partial frame left then will
never complete, and dropping it releases any frame behind it.

A codec (in the manner of pymodbus' framers under its transports) states only its protocol: which bytes
may start a frame (or the preamble every frame opens with), which bytes are line filler rather than
garbage, and :meth:`FrameScanner._parse`. It never touches the buffer or counts garbage itself. No I/O,
no clock, no threads: drivers and emulators feed whatever their transport read.

Also here: the checksum functions the framings name in device profiles (``sum8``, ``xor8``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

__all__ = [
    "BAD",
    "CHECKSUMS",
    "NEED_MORE",
    "Decoder",
    "FrameScanner",
    "ParseResult",
    "checksum_by_name",
    "sum8",
    "xor8",
]


def sum8(data: bytes) -> int:
    """Sum of the bytes modulo 256."""
    return sum(data) & 0xFF


def xor8(data: bytes) -> int:
    """XOR of the bytes."""
    value = 0
    for byte in data:
        value ^= byte
    return value


CHECKSUMS: Mapping[str, Callable[[bytes], int]] = MappingProxyType({"sum8": sum8, "xor8": xor8})


def checksum_by_name(kind: str) -> Callable[[bytes], int]:
    """The checksum a framing names; ``ValueError`` for a name no codec knows."""
    try:
        return CHECKSUMS[kind]
    except KeyError:
        raise ValueError(f"unknown checksum kind {kind!r}; known: {', '.join(CHECKSUMS)}") from None


class ParseResult(Enum):
    OK = 1
    BAD = 2
    NEED_MORE = 3


FrameT = TypeVar("FrameT")

#: What ``_parse`` returns for a candidate that is no frame / that needs more bytes.
BAD: tuple[ParseResult, None, int] = (ParseResult.BAD, None, 0)
NEED_MORE: tuple[ParseResult, None, int] = (ParseResult.NEED_MORE, None, 0)


class Decoder(Protocol[FrameT]):
    """What drivers and emulators use of a decoder: bytes in, complete frames out."""

    def feed(self, data: bytes) -> list[FrameT]: ...

    def flush(self) -> list[FrameT]: ...

    @property
    def pending(self) -> int: ...


class FrameScanner(ABC, Generic[FrameT]):
    """Buffers received bytes and finds the frames in them, resynchronising after anything else.

    Where a frame may begin: ``starts``, one byte or several alternatives (a frame type byte), or
    ``preamble``, a fixed byte sequence every frame opens with, which the scanner checks before
    ``_parse`` sees the candidate. ``idle``: bytes a line may carry between frames (a wake-up
    preamble) that are skipped without counting as garbage. ``discarded`` counts every other byte
    skipped.
    """

    def __init__(self, starts: bytes | int = b"", *, preamble: bytes = b"", idle: bytes = b"") -> None:
        starts = bytes((starts,)) if isinstance(starts, int) else bytes(starts)
        if bool(starts) == bool(preamble):
            raise ValueError("a frame scanner needs either start bytes or a preamble")
        self._preamble = bytes(preamble)
        self._starts = starts or self._preamble[:1]
        # Several alternatives: one pass over the buffer (a find per alternative could rescan it each time).
        self._start_re = (re.compile(b"[" + b"".join(re.escape(bytes((b,))) for b in self._starts) + b"]")
                          if len(self._starts) > 1 else None)
        self._idle = frozenset(idle)
        self._buf = bytearray()
        self.discarded = 0

    def feed(self, data: bytes) -> list[FrameT]:
        """Add received bytes; return the frames they complete, oldest first."""
        self._buf += data
        return self._scan(final=False)

    def flush(self) -> list[FrameT]:
        """The line went idle: give up on any partial frame and return the frames found behind it."""
        return self._scan(final=True)

    def reset(self) -> None:
        """Forget buffered bytes without counting them (a new exchange on a fresh link)."""
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    @abstractmethod
    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, FrameT | None, int]:
        """Judge the candidate frame at ``pos`` (its start byte, or its whole preamble): ``(OK, frame,
        size)``, :data:`BAD` or :data:`NEED_MORE`. Reject as early as the bytes at hand allow, so that
        garbage is not held back waiting for a length it merely appears to announce."""

    def _find_start(self, buf: bytearray, pos: int) -> int:
        if self._start_re is None:
            start = buf.find(self._starts, pos)
        else:
            match = self._start_re.search(buf, pos)
            start = match.start() if match else -1
        return len(buf) if start < 0 else start

    def _check_preamble(self, buf: bytearray, pos: int) -> tuple[ParseResult, None, int] | None:
        """BAD when the bytes at ``pos`` are not the preamble, NEED_MORE while it is incomplete."""
        preamble = self._preamble
        if len(preamble) <= 1:
            return None
        got = buf[pos : pos + len(preamble)]
        if got != preamble[: len(got)]:
            return BAD
        return NEED_MORE if len(got) < len(preamble) else None

    def _skip(self, skipped: bytes | bytearray) -> None:
        self.discarded += sum(1 for byte in skipped if byte not in self._idle) if self._idle else len(skipped)

    def _scan(self, *, final: bool) -> list[FrameT]:
        buf = self._buf
        frames: list[FrameT] = []
        pos = 0
        while True:
            start = self._find_start(buf, pos)
            self._skip(buf[pos:start])
            pos = start
            if pos >= len(buf):
                break
            status, frame, size = self._check_preamble(buf, pos) or self._parse(buf, pos)
            if status is ParseResult.OK:
                assert frame is not None, "a parser that found a frame returns it"
                frames.append(frame)
                pos += size
            elif status is ParseResult.NEED_MORE and not final:
                break
            else:
                # Skip one byte only: a real frame may start inside the rejected candidate.
                self._skip(buf[pos : pos + 1])
                pos += 1
        del buf[:pos]
        return frames
