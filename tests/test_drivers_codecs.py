"""Byte vectors for the window-bus codecs.

Every expected frame is written out literally with its checksum worked by hand in a comment, so a
bug shared by the encoder and the decoder (or by the driver and the emulator) cannot hide.
"""

from __future__ import annotations

import pytest

from drivers.codecs.window_bus import (
    DEFAULT_KEYPAD_FRAMING,
    KEY_CODES,
    KeypadDecoder,
    KeypadFrame,
    KeypadFraming,
    LedDecoder,
    LedFrame,
    LedFraming,
    decode_led_text,
    encode_keypad,
    encode_led,
    encode_led_text,
    fit_led_text,
    key_press_frame,
    keypad_display_frame,
    led_text_frame,
    parse_key_press,
    parse_keypad_display,
)

# ------------------------------------------------------------------------------ keypad vectors

# keypad 3 presses "next": body 03 01 0C, L = 3, CS = 03+01+0C = 0x10
NEXT_3 = bytes.fromhex("FF 68 03 03 68 03 01 0C 10 16")
# keypad 3 types 1 2 then "next": body 03 01 01 02 0C, L = 5, CS = 03+01+01+02+0C = 0x13
NEXT_3_DIGITS_12 = bytes.fromhex("FF 68 05 05 68 03 01 01 02 0C 13 16")
# keypad 0x7F types 5 then "transfer": body 7F 01 05 13, L = 4, CS = 7F+01+05+13 = 0x98
TRANSFER_127_5 = bytes.fromhex("FF 68 04 04 68 7F 01 05 13 98 16")
# keypad 0xFE types 9 9 then "pause": body FE 01 09 09 12, CS = FE+01+09+09+12 = 0x123 -> 0x23
PAUSE_254_99 = bytes.fromhex("FF 68 05 05 68 FE 01 09 09 12 23 16")
# host shows "A001" on keypad 2: body 02 02 41 30 30 31, L = 6,
# CS = 02+02+41+30+30+31 = 0xD6
DISPLAY_2_A001 = bytes.fromhex("FF 68 06 06 68 02 02 41 30 30 31 D6 16")


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (KeypadFrame(3, 0x01, b"\x0c"), NEXT_3),
        (KeypadFrame(3, 0x01, b"\x01\x02\x0c"), NEXT_3_DIGITS_12),
        (KeypadFrame(0x7F, 0x01, b"\x05\x13"), TRANSFER_127_5),
        (KeypadFrame(0xFE, 0x01, b"\x09\x09\x12"), PAUSE_254_99),
        (KeypadFrame(2, 0x02, b"A001"), DISPLAY_2_A001),
    ],
)
def test_keypad_vectors_both_directions(frame: KeypadFrame, wire: bytes) -> None:
    assert encode_keypad(frame) == wire
    decoder = KeypadDecoder()
    assert decoder.feed(wire) == [frame]
    assert decoder.discarded == 0
    assert decoder.pending == 0


def test_key_press_helpers_match_vectors() -> None:
    assert encode_keypad(key_press_frame(3, KEY_CODES["next"])) == NEXT_3
    assert encode_keypad(key_press_frame(3, "next", "12")) == NEXT_3_DIGITS_12
    assert encode_keypad(key_press_frame(0x7F, "transfer", "5")) == TRANSFER_127_5
    assert parse_key_press(KeypadDecoder().feed(PAUSE_254_99)[0]) == ("pause", "99")
    assert parse_key_press(KeypadDecoder().feed(NEXT_3)[0]) == ("next", "")


def test_every_key_name_round_trips() -> None:
    expected = {
        "next": 0x0C,
        "recall": 0x0D,
        "start": 0x0A,
        "evaluate": 0x0B,
        "cancel": 0x0E,
        "function": 0x0F,
        "pause": 0x12,
        "transfer": 0x13,
    }
    assert dict(KEY_CODES) == expected
    for name, code in expected.items():
        frame = key_press_frame(9, name, "0123456789")
        assert frame.data == bytes(range(10)) + bytes((code,))
        assert parse_key_press(frame) == (name, "0123456789")


def test_display_helpers_match_vector() -> None:
    frame = keypad_display_frame(2, "A001")
    assert encode_keypad(frame) == DISPLAY_2_A001
    assert parse_keypad_display(frame) == "A001"
    with pytest.raises(ValueError):
        keypad_display_frame(2, "叫号")
    with pytest.raises(ValueError):
        parse_keypad_display(KeypadFrame(2, 0x01, b"\x0c"))
    with pytest.raises(ValueError):
        parse_keypad_display(KeypadFrame(2, 0x02, b"\xff"))


@pytest.mark.parametrize(
    "frame",
    [
        KeypadFrame(3, 0x02, b"\x0c"),  # not a key event
        KeypadFrame(3, 0x01, b""),  # no key code
        KeypadFrame(3, 0x01, b"\x01\x02"),  # digits only
        KeypadFrame(3, 0x01, b"\x20"),  # unknown key code
        KeypadFrame(3, 0x01, b"\x0c\x0c"),  # a key code where a digit belongs
    ],
)
def test_parse_key_press_rejects_invalid_events(frame: KeypadFrame) -> None:
    with pytest.raises(ValueError):
        parse_key_press(frame)


def test_key_press_frame_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        key_press_frame(1, 0x05)  # a digit is not a key
    with pytest.raises(ValueError):
        key_press_frame(1, "next", "1a")
    with pytest.raises(KeyError):
        key_press_frame(1, "explode")


def test_keypad_encode_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        encode_keypad(KeypadFrame(256, 1, b""))
    with pytest.raises(ValueError):
        encode_keypad(KeypadFrame(1, 1, bytes(33)))


def test_keypad_decoder_accepts_frames_without_preamble_and_split_arbitrarily() -> None:
    stream = NEXT_3[1:] + NEXT_3_DIGITS_12 + DISPLAY_2_A001
    decoder = KeypadDecoder()
    frames = []
    for byte in stream:
        frames += decoder.feed(bytes((byte,)))
    assert frames == [
        KeypadFrame(3, 1, b"\x0c"),
        KeypadFrame(3, 1, b"\x01\x02\x0c"),
        KeypadFrame(2, 2, b"A001"),
    ]
    assert decoder.discarded == 0


def test_keypad_decoder_resyncs_after_garbage() -> None:
    garbage = bytes.fromhex("00 12 68 99 68 16 AB")  # 7 bytes, two false starts (68)
    decoder = KeypadDecoder()
    assert decoder.feed(garbage + NEXT_3 + b"\x55" + PAUSE_254_99) == [
        KeypadFrame(3, 1, b"\x0c"),
        KeypadFrame(0xFE, 1, b"\x09\x09\x12"),
    ]
    assert decoder.discarded == 8  # 7 garbage bytes + 0x55; the FF preambles do not count


def test_keypad_decoder_resyncs_after_truncated_frame() -> None:
    truncated = NEXT_3_DIGITS_12[:7]  # FF 68 05 05 68 03 01 — the rest never came
    decoder = KeypadDecoder()
    assert decoder.feed(truncated + NEXT_3) == [KeypadFrame(3, 1, b"\x0c")]
    assert decoder.discarded == 6  # 68 05 05 68 03 01 (FF is a preamble byte)


def test_keypad_decoder_rejects_bad_checksum_and_end_byte() -> None:
    bad_cs = bytearray(NEXT_3)
    bad_cs[-2] ^= 0x01
    bad_end = bytearray(NEXT_3)
    bad_end[-1] = 0x17
    decoder = KeypadDecoder()
    assert decoder.feed(bytes(bad_cs) + bytes(bad_end) + NEXT_3) == [KeypadFrame(3, 1, b"\x0c")]
    assert decoder.discarded == 18  # two 9-byte frames without their FF


def test_flush_releases_a_frame_stuck_behind_a_dead_partial_frame() -> None:
    # A false start claiming L = 0x20 swallows the following real frame while it waits for 38 bytes.
    decoder = KeypadDecoder()
    assert decoder.feed(bytes.fromhex("68 20 20 68 01") + NEXT_3) == []
    assert decoder.pending > 0
    assert decoder.flush() == [KeypadFrame(3, 1, b"\x0c")]
    assert decoder.pending == 0
    assert decoder.discarded == 5


def test_keypad_framing_from_another_model() -> None:
    # no preamble, XOR checksum, other start/end bytes: body 03 01 0C, XOR = 03^01^0C = 0x0E
    framing = KeypadFraming(preamble=b"", start=0x7E, end=0x0D, checksum="xor8")
    wire = bytes.fromhex("7E 03 03 7E 03 01 0C 0E 0D")
    assert encode_keypad(KeypadFrame(3, 1, b"\x0c"), framing) == wire
    assert KeypadDecoder(framing).feed(b"\xff" + wire) == [KeypadFrame(3, 1, b"\x0c")]


def test_keypad_framing_validation() -> None:
    with pytest.raises(ValueError):
        KeypadFraming(checksum="crc16")
    with pytest.raises(ValueError):
        KeypadFraming(key_codes={"next": 0x05})  # collides with digit 5
    with pytest.raises(ValueError):
        KeypadFraming(max_data=0)
    assert DEFAULT_KEYPAD_FRAMING.start == 0x68


# --------------------------------------------------------------------------------- LED vectors

# screen 1 shows "A001" in colour 01: DATA 41 01 30 01 30 01 31 01 (LEN 0x0008)
# XOR = 01^A5^00^08^41^01^30^01^30^01^31^01:
#   01^A5=A4, ^00=A4, ^08=AC, ^41=ED, ^01=EC, ^30=DC, ^01=DD, ^30=ED, ^01=EC, ^31=DD, ^01=DC
A001_TO_1 = bytes.fromhex("A0 90 01 A5 00 08 41 01 30 01 30 01 31 01 DC")
# broadcast (FF) "暂停服务" in colour 01; GBK 暂 D4DD 停 CDA3 服 B7FE 务 CEF1, LEN 0x000C
# XOR = FF^A5=5A, ^00=5A, ^0C=56, ^D4=82, ^DD=5F, ^01=5E, ^CD=93, ^A3=30, ^01=31,
#       ^B7=86, ^FE=78, ^01=79, ^CE=B7, ^F1=46, ^01=47
PAUSED_BROADCAST = bytes.fromhex("A0 90 FF A5 00 0C D4 DD 01 CD A3 01 B7 FE 01 CE F1 01 47")
# generic-led-8 style (colour 02): screen 5 shows "请到3号"; GBK 请 C7EB 到 B5BD 号 BAC5, LEN 0x000B
# XOR = 05^A5=A0, ^00=A0, ^0B=AB, ^C7=6C, ^EB=87, ^02=85, ^B5=30, ^BD=8D, ^02=8F, ^33=BC,
#       ^02=BE, ^BA=04, ^C5=C1, ^02=C3
MIXED_TO_5 = bytes.fromhex("A0 90 05 A5 00 0B C7 EB 02 B5 BD 02 33 02 BA C5 02 C3")


def test_led_vector_ascii() -> None:
    frame = led_text_frame(1, "A001")
    assert frame == LedFrame(1, 0xA5, bytes.fromhex("41 01 30 01 30 01 31 01"))
    assert encode_led(frame) == A001_TO_1
    assert LedDecoder().feed(A001_TO_1) == [frame]
    assert decode_led_text(frame.data) == ("A001", [1, 1, 1, 1])


def test_led_vector_gbk_broadcast() -> None:
    frame = led_text_frame(0xFF, "暂停服务")
    assert encode_led(frame) == PAUSED_BROADCAST
    decoded = LedDecoder().feed(PAUSED_BROADCAST)
    assert decoded == [frame]
    assert decode_led_text(decoded[0].data) == ("暂停服务", [1, 1, 1, 1])


def test_led_vector_other_model_colour() -> None:
    framing = LedFraming(colour=0x02, max_chars=8, broadcast=0x00)
    frame = led_text_frame(5, "请到3号", framing=framing)
    assert encode_led(frame, framing) == MIXED_TO_5
    assert decode_led_text(LedDecoder(framing).feed(MIXED_TO_5)[0].data) == ("请到3号", [2, 2, 2, 2])
    assert led_text_frame(framing.broadcast, "A", framing=framing).addr == 0x00


def test_led_text_explicit_colours_and_errors() -> None:
    assert encode_led_text("A号", colour=0x03) == bytes.fromhex("41 03 BA C5 03")
    assert decode_led_text(bytes.fromhex("41 03 BA C5 01")) == ("A号", [3, 1])
    with pytest.raises(ValueError):
        encode_led_text("😀")  # not in GBK
    with pytest.raises(ValueError):
        encode_led_text("A", colour=256)
    with pytest.raises(ValueError):
        decode_led_text(bytes.fromhex("41"))  # colour byte missing
    with pytest.raises(ValueError):
        decode_led_text(bytes.fromhex("BA C5"))  # colour byte missing after a GBK character
    with pytest.raises(ValueError):
        decode_led_text(bytes.fromhex("FF FF 01"))  # not GBK


def test_fit_led_text() -> None:
    four = LedFraming()
    assert fit_led_text("A001", four) == "A001"
    assert fit_led_text("暂停服务", four) == "暂停服务"
    assert fit_led_text("请A001号到3号窗口", four) == "请A001号"  # 2+1+1+1+1+2 = 8 cells
    assert fit_led_text("A0001号码", four) == "A0001号"  # 5 + 2 = 7; the next 2-cell char overflows
    assert fit_led_text("😀A", four) == "?A"
    # 2+2+1+2+2+2+2+2 = 15 cells fit in 16; the next 2-cell character does not
    assert fit_led_text("请到3号窗口办理手续", LedFraming(max_chars=8)) == "请到3号窗口办理"


def test_led_decoder_resyncs_after_garbage_and_truncation() -> None:
    garbage = bytes.fromhex("A0 00 90 A0 A0 91")  # three false starts (A0)
    decoder = LedDecoder()
    truncated = A001_TO_1[:9]
    frames = decoder.feed(garbage + truncated + PAUSED_BROADCAST + b"\x00" + A001_TO_1)
    assert [f.addr for f in frames] == [0xFF, 1]
    assert decoder.discarded == len(garbage) + len(truncated) + 1


def test_led_decoder_flush_gives_up_on_a_plausible_header() -> None:
    # A header announcing 64 data bytes swallows the next frame: the decoder must wait for bytes
    # that never come, until the line goes idle.
    header = bytes.fromhex("A0 90 01 A5 00 40")
    decoder = LedDecoder()
    assert decoder.feed(header + A001_TO_1) == []
    assert decoder.flush() == [led_text_frame(1, "A001")]
    assert decoder.discarded == len(header)


def test_led_decoder_rejects_bad_xor_and_oversized_length() -> None:
    bad = bytearray(A001_TO_1)
    bad[-1] ^= 0xFF
    oversized = bytes.fromhex("A0 90 01 A5 FF FF")  # LEN 65535 > max_data: rejected at once
    decoder = LedDecoder()
    assert decoder.feed(bytes(bad) + oversized + A001_TO_1) == [led_text_frame(1, "A001")]
    assert decoder.discarded == len(bad) + len(oversized)


def test_led_decoder_split_feed_and_flush() -> None:
    decoder = LedDecoder()
    frames = []
    for byte in PAUSED_BROADCAST + A001_TO_1[:5]:
        frames += decoder.feed(bytes((byte,)))
    assert frames == [led_text_frame(0xFF, "暂停服务")]
    assert decoder.pending == 5
    assert decoder.flush() == []
    assert decoder.pending == 0
    assert decoder.discarded == 5


def test_led_framing_validation() -> None:
    with pytest.raises(ValueError):
        LedFraming(preamble=b"")
    with pytest.raises(LookupError):
        LedFraming(encoding="no-such-codec")
    with pytest.raises(ValueError):
        LedFraming(colour=300)
    with pytest.raises(ValueError):
        encode_led(LedFrame(1, 0xA5, bytes(2000)))
    assert LedFraming(max_chars=8).width == 16
