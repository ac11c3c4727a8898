"""audio_frames codec: byte vectors written from the frame layout in its docstring."""

from __future__ import annotations

import pytest

from drivers.codecs.audio_frames import (
    DONE,
    PLAY,
    AudioFrame,
    AudioFrameDecoder,
    WavError,
    encode,
    read_wav,
    write_wav,
)

# 'A' 'F' | type 01 | seq 0001 | meta_len 0002 | data_len 00000000 | HCRC (CRC-16/CCITT-FALSE of 01..00)
# | "{}" | CRC-32 of 01..7D
PLAY_EMPTY = bytes.fromhex("41 46 01 0001 0002 00000000 0fb3 7b7d 409e95e2")
# DONE seq 0x0102, meta {"duration":1.5} (16 bytes), no data
DONE_15 = bytes.fromhex("41 46 03 0102 0010 00000000 165c") + b'{"duration":1.5}' + bytes.fromhex("645c2b9f")


def test_header_check_is_crc16_ccitt_false() -> None:
    import binascii

    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1  # the catalogue check value
    assert binascii.crc_hqx(bytes.fromhex("01 0001 0002 00000000"), 0xFFFF) == 0x0FB3


def test_encode_matches_hand_built_vectors() -> None:
    assert encode(PLAY, 1) == PLAY_EMPTY
    assert encode(DONE, 0x0102, {"duration": 1.5}) == DONE_15


def test_decoder_reads_vectors_split_anywhere() -> None:
    stream = PLAY_EMPTY + DONE_15
    for cut in range(len(stream) + 1):
        dec = AudioFrameDecoder()
        frames = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert frames == [AudioFrame(PLAY, 1, {}, b""), AudioFrame(DONE, 0x0102, {"duration": 1.5}, b"")]
        assert dec.discarded == 0


def test_play_frame_carries_meta_and_wav_bytes() -> None:
    wav = write_wav(bytes(range(256)) * 4, 22050)
    frame = encode(PLAY, 7, {"text": "请A001号到3号窗口办理", "tokens": ["请", "A"]}, wav)
    (got,) = AudioFrameDecoder().feed(frame)
    assert got.meta["text"] == "请A001号到3号窗口办理" and got.data == wav
    assert read_wav(got.data).frames == bytes(range(256)) * 4


@pytest.mark.parametrize("index", [10, 16])  # 10: a length byte (HCRC catches it), 16: in the meta (CRC)
def test_decoder_resyncs_after_noise_and_bad_crc(index: int) -> None:
    corrupt = bytearray(DONE_15)
    corrupt[index] ^= 0xFF
    dec = AudioFrameDecoder()
    frames = dec.feed(b"\x00\x41\xff" + bytes(corrupt) + b"garbage" + PLAY_EMPTY)
    assert frames == [AudioFrame(PLAY, 1, {}, b"")]
    assert dec.discarded >= 2


def test_decoder_refuses_unknown_type_and_oversize_length() -> None:
    dec = AudioFrameDecoder(max_data=100)
    bad_type = bytes.fromhex("41 46 09 0001 0000 00000000 62cf 5ba14d2e")  # checks right, type unknown
    too_long = bytes.fromhex("41 46 01 0001 0000 00000200 2d52")
    assert dec.feed(bad_type + too_long + PLAY_EMPTY) == [AudioFrame(PLAY, 1, {}, b"")]
    assert dec.discarded >= 2


def test_meta_that_is_not_a_json_object_is_dropped() -> None:
    import binascii

    body = bytes.fromhex("01 0001 0002 00000000 0fb3") + b"[]"
    frame = b"AF" + body + binascii.crc32(body).to_bytes(4, "big")
    dec = AudioFrameDecoder()
    assert dec.feed(frame + PLAY_EMPTY) == [AudioFrame(PLAY, 1, {}, b"")]
    assert dec.discarded >= 1


def test_flush_drops_a_partial_frame_and_releases_the_frame_behind_it() -> None:
    dec = AudioFrameDecoder()
    assert dec.feed(PLAY_EMPTY[:9]) == [] and dec.pending == 9
    assert dec.flush() == [] and dec.pending == 0 and dec.discarded == 9
    assert dec.feed(PLAY_EMPTY) == [AudioFrame(PLAY, 1, {}, b"")]
    # a frame cut short (the player was pulled mid-frame) hides the next one until the line goes idle
    assert dec.feed(DONE_15[:13] + PLAY_EMPTY) == []  # 13 + 19 bytes: the DONE frame needs 33
    assert dec.flush() == [AudioFrame(PLAY, 1, {}, b"")]


@pytest.mark.parametrize("args", [(0x09, 1), (PLAY, -1), (PLAY, 0x10000)])
def test_encode_refuses_bad_arguments(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        encode(*args)


@pytest.mark.parametrize("data", [b"", b"RIFF", b"not a wav at all" * 10])
def test_read_wav_rejects_non_wav(data: bytes) -> None:
    with pytest.raises(WavError, match="WAV"):
        read_wav(data)
