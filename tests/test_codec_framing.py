"""The one frame scanner (drivers/codecs/framing.py) against hand-written byte vectors.

A toy protocol keeps the vectors short enough to check by eye: ``02 LEN DATA... CS`` with LEN at
most 8 and CS = sum8(LEN DATA); ``FF`` is line filler between frames. Then the same checks for a
preamble protocol and for alternative start bytes, and every codec's decoders are shown to be this
scanner.
"""

from __future__ import annotations

import pytest

from drivers.codecs import audio_frames, camera, gat467, window_bus
from drivers.codecs.framing import BAD, NEED_MORE, FrameScanner, ParseResult, checksum_by_name, sum8, xor8

STX = 0x02


class Toy(FrameScanner[bytes]):
    def __init__(self) -> None:
        super().__init__(STX, idle=b"\xff")

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, bytes | None, int]:
        if len(buf) - pos < 2:
            return NEED_MORE
        size = buf[pos + 1]
        if size > 8:
            return BAD
        total = 2 + size + 1
        if len(buf) - pos < total:
            return NEED_MORE
        body = bytes(buf[pos + 1 : pos + total - 1])
        if buf[pos + total - 1] != sum8(body):
            return BAD
        return ParseResult.OK, body[1:], total


# "AB": LEN 02, CS = 02+41+42 = 0x85
AB = bytes.fromhex("02 02 41 42 85")
# "C": LEN 01, CS = 01+43 = 0x44
C = bytes.fromhex("02 01 43 44")


def test_frames_and_filler() -> None:
    scanner = Toy()
    assert scanner.feed(b"\xff\xff" + AB + b"\xff" + C) == [b"AB", b"C"]
    assert scanner.discarded == 0 and scanner.pending == 0


def test_garbage_is_skipped_and_counted() -> None:
    scanner = Toy()
    assert scanner.feed(b"\x00\x13\xff\x41" + AB + b"\x99" + C + b"\x7e") == [b"AB", b"C"]
    assert scanner.discarded == 5           # 00 13 41 99 7E; the FF filler does not count
    assert scanner.pending == 0


def test_a_bad_checksum_drops_one_byte_and_resynchronises_inside_the_candidate() -> None:
    """02 02 41 02 01 43 44: the first candidate (LEN 2, CS 01 ≠ 02+41+02) is refused; scanning goes on
    one byte later, refuses 02 41 (LEN 0x41 > 8) and finds C starting inside the refused candidate."""
    scanner = Toy()
    assert scanner.feed(AB[:3] + C) == [b"C"]
    assert scanner.discarded == 3


def test_a_truncated_frame_holds_until_flush_which_releases_the_frame_behind_it() -> None:
    truncated = bytes.fromhex("02 08 41 42")        # LEN 8 announces 11 bytes; 8 arrive in all
    scanner = Toy()
    assert scanner.feed(truncated + C) == []
    assert scanner.pending == len(truncated + C)
    assert scanner.flush() == [b"C"]
    assert scanner.discarded == 4 and scanner.pending == 0
    assert scanner.flush() == []


def test_split_across_feeds_anywhere() -> None:
    stream = b"\x00\xff" + AB + b"\x13" + C
    for cut in range(len(stream) + 1):
        scanner = Toy()
        assert scanner.feed(stream[:cut]) + scanner.feed(stream[cut:]) == [b"AB", b"C"], cut
        assert scanner.discarded == 2 and scanner.pending == 0


def test_one_byte_at_a_time() -> None:
    scanner = Toy()
    frames: list[bytes] = []
    for byte in AB + b"\x55" + C:
        frames += scanner.feed(bytes((byte,)))
    assert frames == [b"AB", b"C"] and scanner.discarded == 1


def test_reset_forgets_a_partial_frame_without_counting_it() -> None:
    scanner = Toy()
    assert scanner.feed(AB[:3]) == [] and scanner.pending == 3
    scanner.reset()
    assert scanner.pending == 0 and scanner.discarded == 0
    assert scanner.feed(C) == [b"C"]


class Preambled(FrameScanner[bytes]):
    """``AA 55 D1 D2 XOR``: two data bytes behind a two-byte preamble, XOR over the data."""

    def __init__(self) -> None:
        super().__init__(preamble=b"\xaa\x55")

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, bytes | None, int]:
        frame = bytes(buf[pos : pos + 5])
        if len(frame) < 5:
            return NEED_MORE
        return (ParseResult.OK, frame[2:4], 5) if frame[4] == xor8(frame[2:4]) else BAD


# "hi": XOR = 68^69 = 0x01
HI = bytes.fromhex("AA 55 68 69 01")


def test_a_false_preamble_start_is_one_garbage_byte() -> None:
    scanner = Preambled()
    assert scanner.feed(b"\xaa\xaa" + HI + b"\xaa\x00" + HI) == [b"hi", b"hi"]
    assert scanner.discarded == 4           # AA AA before the real AA 55, then AA 00


def test_a_preamble_split_across_feeds_is_kept() -> None:
    scanner = Preambled()
    assert scanner.feed(b"\x00\xaa") == [] and scanner.pending == 1
    assert scanner.feed(HI[1:]) == [b"hi"] and scanner.discarded == 1


class Typed(FrameScanner[tuple[int, int]]):
    """One of the type bytes 'I', 'S' or '-' followed by one value byte."""

    def __init__(self) -> None:
        super().__init__(b"IS-")

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, tuple[int, int] | None, int]:
        if len(buf) - pos < 2:
            return NEED_MORE
        return ParseResult.OK, (buf[pos], buf[pos + 1]), 2


def test_alternative_start_bytes() -> None:
    scanner = Typed()
    assert scanner.feed(b"xxI\x01yS\x02-") == [(ord("I"), 1), (ord("S"), 2)]
    assert scanner.discarded == 3 and scanner.pending == 1
    assert scanner.feed(b"\x03") == [(ord("-"), 3)]


class Bare(FrameScanner[bytes]):
    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, bytes | None, int]:
        return BAD


def test_a_scanner_needs_start_bytes_or_a_preamble() -> None:
    with pytest.raises(ValueError):
        Bare()
    with pytest.raises(ValueError):
        Bare(b"I", preamble=b"\xaa\x55")
    assert Bare(b"I").feed(b"IxI") == [] and Bare(b"I").feed(b"abc") == []


def test_checksums_by_name() -> None:
    assert checksum_by_name("sum8")(bytes.fromhex("03 01 0C")) == 0x10
    assert checksum_by_name("xor8")(bytes.fromhex("01 A5 00 02")) == 0xA6
    with pytest.raises(ValueError, match="crc7"):
        checksum_by_name("crc7")


@pytest.mark.parametrize("decoder", [
    window_bus.KeypadDecoder(), window_bus.LedDecoder(), gat467.RequestDecoder(), gat467.ResponseDecoder(),
    camera.FrameDecoder(), camera.RequestDecoder(), audio_frames.AudioFrameDecoder(),
], ids=lambda d: type(d).__qualname__)
def test_every_codec_decodes_with_the_one_scanner(decoder: object) -> None:
    assert isinstance(decoder, FrameScanner)
    # none keeps its own copy of the scan loop
    assert "_scan" not in vars(type(decoder)) and "feed" not in vars(type(decoder))
