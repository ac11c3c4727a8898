"""Hypothesis fuzzing of the window-bus parsers: nothing but ValueError escapes, and resync works.

A brute-force reference scanner (written independently of the decoders) lists every checksum-valid
frame span in a stream. A real frame can only be lost if a false frame overlapping it is itself
checksum-valid — an ambiguity of the protocol, not a decoder bug — so such streams are excluded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivers.codecs.window_bus import (
    KEY_CODES,
    KeypadDecoder,
    KeypadFrame,
    LedDecoder,
    LedFrame,
    decode_led_text,
    encode_keypad,
    encode_led,
    encode_led_text,
    key_press_frame,
    parse_key_press,
    parse_keypad_display,
)

FUZZ = settings(max_examples=150, deadline=None)

keypad_frames = st.builds(KeypadFrame, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=32))
led_frames = st.builds(LedFrame, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40))


def keypad_spans(stream: bytes) -> Iterator[tuple[int, int]]:
    """Reference: every (start, end) of a valid keypad frame, 68 L L 68 ... CS 16, sum checksum."""
    for i in range(len(stream) - 5):
        size = stream[i + 1]
        end = i + 4 + size + 2
        if stream[i] == 0x68 and stream[i + 2] == size and stream[i + 3] == 0x68 and 2 <= size <= 34:
            if end <= len(stream) and stream[end - 1] == 0x16:
                if stream[end - 2] == sum(stream[i + 4 : end - 2]) % 256:
                    yield i, end


def led_spans(stream: bytes) -> Iterator[tuple[int, int]]:
    """Reference: every (start, end) of a valid LED frame, A0 90 ADDR CMD LEN(2) DATA XOR."""
    for i in range(len(stream) - 6):
        if stream[i : i + 2] != b"\xa0\x90":
            continue
        size = stream[i + 4] * 256 + stream[i + 5]
        end = i + 6 + size + 1
        if size <= 256 and end <= len(stream):
            xor = 0
            for byte in stream[i + 2 : end - 1]:
                xor ^= byte
            if xor == stream[end - 1]:
                yield i, end


def chunked(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(points, points[1:], strict=False):
        yield data[a:b]


def decode_all(
    decoder_factory: Callable[[], KeypadDecoder | LedDecoder], data: bytes, cuts: list[int]
) -> list:
    decoder = decoder_factory()
    frames = []
    for chunk in chunked(data, cuts):
        frames += decoder.feed(chunk)
    frames += decoder.flush()
    assert decoder.pending == 0
    return frames


def is_subsequence(needles: list, haystack: list) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needles)


# ------------------------------------------------------------------------------------ random bytes


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=20))
def test_keypad_decoder_survives_random_bytes(data: bytes, cuts: list[int]) -> None:
    decoder = KeypadDecoder()
    frames = []
    for chunk in chunked(data, cuts):
        frames += decoder.feed(chunk)
    frames += decoder.flush()
    framed = sum(len(encode_keypad(f)) - 1 for f in frames)  # without the FF preamble
    assert data.count(0xFF) >= len(data) - decoder.discarded - framed >= 0
    # Soundness: whatever is decoded really is in the stream, with a valid checksum.
    spans = {data[a:b] for a, b in keypad_spans(data)}
    assert all(encode_keypad(f)[1:] in spans for f in frames)


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=20))
def test_led_decoder_survives_random_bytes(data: bytes, cuts: list[int]) -> None:
    decoder = LedDecoder()
    frames = []
    for chunk in chunked(data, cuts):
        frames += decoder.feed(chunk)
    frames += decoder.flush()
    assert decoder.discarded + sum(len(encode_led(f)) for f in frames) == len(data)
    spans = {data[a:b] for a, b in led_spans(data)}
    assert all(encode_led(f) in spans for f in frames)


@FUZZ
@given(st.binary(max_size=64))
def test_text_and_key_parsers_only_raise_value_error(data: bytes) -> None:
    for parse in (
        lambda: decode_led_text(data),
        lambda: parse_key_press(KeypadFrame(1, 1, data)),
        lambda: parse_keypad_display(KeypadFrame(1, 2, data)),
    ):
        try:
            parse()
        except ValueError:
            pass


# ----------------------------------------------------------------------------------- round trips


@FUZZ
@given(keypad_frames)
def test_keypad_round_trip(frame: KeypadFrame) -> None:
    assert KeypadDecoder().feed(encode_keypad(frame)) == [frame]


@FUZZ
@given(led_frames)
def test_led_round_trip(frame: LedFrame) -> None:
    assert LedDecoder().feed(encode_led(frame)) == [frame]


@FUZZ
@given(
    st.text(alphabet=st.sampled_from("A0123456789BCDF请到号窗口暂停服务法律咨询援助调解"), max_size=16),
    st.integers(0, 255),
)
def test_led_text_round_trip(text: str, colour: int) -> None:
    assert decode_led_text(encode_led_text(text, colour)) == (text, [colour] * len(text))


@FUZZ
@given(st.integers(0, 255), st.sampled_from(sorted(KEY_CODES)), st.text(alphabet="0123456789", max_size=8))
def test_key_press_round_trip(addr: int, key: str, digits: str) -> None:
    (frame,) = KeypadDecoder().feed(encode_keypad(key_press_frame(addr, key, digits)))
    assert parse_key_press(frame) == (key, digits)


# ------------------------------------------------------------------ frames interleaved with noise


def noise(frame_bytes: st.SearchStrategy[bytes], sync: int) -> st.SearchStrategy[bytes]:
    """Garbage, or a truncated real frame, or garbage free of the sync byte."""
    truncated = frame_bytes.flatmap(lambda b: st.integers(1, max(1, len(b) - 1)).map(lambda n: b[:n]))
    clean = st.binary(max_size=20).map(lambda b: b.replace(bytes((sync,)), b""))
    return st.one_of(st.binary(max_size=20), truncated, clean)


def interleave(frames_and_noise: list[tuple[bytes, bytes]]) -> tuple[bytes, list[tuple[int, int]]]:
    stream = bytearray()
    spans = []
    for junk, wire in frames_and_noise:
        stream += junk
        spans.append((len(stream), len(stream) + len(wire)))
        stream += wire
    return bytes(stream), spans


def overlaps_a_real_frame(found: Iterator[tuple[int, int]], real: list[tuple[int, int]]) -> bool:
    real_set = set(real)
    return any((a, b) not in real_set and a < rb and ra < b for a, b in found for ra, rb in real)


@FUZZ
@given(
    st.lists(st.tuples(noise(keypad_frames.map(encode_keypad), 0x68), keypad_frames), max_size=6),
    st.lists(st.integers(0, 600), max_size=20),
)
def test_keypad_frames_survive_interleaved_noise(
    items: list[tuple[bytes, KeypadFrame]], cuts: list[int]
) -> None:
    # Real frame spans are measured without the FF preamble, which the reference scanner ignores.
    stream, spans = interleave([(junk + b"\xff", encode_keypad(f)[1:]) for junk, f in items])
    assume(not overlaps_a_real_frame(keypad_spans(stream), spans))
    frames = decode_all(KeypadDecoder, stream, cuts)
    assert is_subsequence([f for _, f in items], frames)
    assert frames == decode_all(KeypadDecoder, stream, [])


@FUZZ
@given(
    st.lists(st.tuples(noise(led_frames.map(encode_led), 0xA0), led_frames), max_size=6),
    st.lists(st.integers(0, 600), max_size=20),
)
def test_led_frames_survive_interleaved_noise(items: list[tuple[bytes, LedFrame]], cuts: list[int]) -> None:
    stream, spans = interleave([(junk, encode_led(f)) for junk, f in items])
    assume(not overlaps_a_real_frame(led_spans(stream), spans))
    frames = decode_all(LedDecoder, stream, cuts)
    assert is_subsequence([f for _, f in items], frames)
    assert frames == decode_all(LedDecoder, stream, [])


@FUZZ
@given(st.lists(st.tuples(st.binary(max_size=20), keypad_frames), max_size=6))
def test_keypad_frames_behind_sync_free_garbage_are_all_found(items: list[tuple[bytes, KeypadFrame]]) -> None:
    items = [(junk.replace(b"\x68", b""), f) for junk, f in items]
    stream = b"".join(junk + encode_keypad(f) for junk, f in items)
    decoder = KeypadDecoder()
    assert decoder.feed(stream) == [f for _, f in items]
    assert decoder.discarded == sum(len(junk) - junk.count(0xFF) for junk, _ in items)


@FUZZ
@given(st.lists(st.tuples(st.binary(max_size=20), led_frames), max_size=6))
def test_led_frames_behind_sync_free_garbage_are_all_found(items: list[tuple[bytes, LedFrame]]) -> None:
    items = [(junk.replace(b"\xa0", b""), f) for junk, f in items]
    stream = b"".join(junk + encode_led(f) for junk, f in items)
    decoder = LedDecoder()
    assert decoder.feed(stream) == [f for _, f in items]
    assert decoder.discarded == sum(len(junk) for junk, _ in items)


@FUZZ
@given(st.binary(max_size=200), st.lists(keypad_frames, max_size=4), st.lists(led_frames, max_size=4))
def test_any_garbage_then_idle_then_frames(
    garbage: bytes, keys: list[KeypadFrame], leds: list[LedFrame]
) -> None:
    """After the line has gone idle (flush), the decoders recover completely from anything."""
    keypad, led = KeypadDecoder(), LedDecoder()
    keypad.feed(garbage)
    keypad.flush()
    led.feed(garbage)
    led.flush()
    assert keypad.feed(b"".join(encode_keypad(f) for f in keys)) == keys
    assert led.feed(b"".join(encode_led(f) for f in leds)) == leds
