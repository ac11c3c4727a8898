"""Byte vectors for the GA/T 467 ID card reader frames (DESIGN §6).

Every frame is written out literally, its checksum worked by hand in a comment: CHK is the XOR of
LEN_H LEN_L and the body. The full read-base-info reply is assembled here byte by byte from the
layout of the standard, never from the codec's own encoder, so one bug cannot hide in both.
"""

from __future__ import annotations

import logging

import pytest

from device_profiles import ProfileError, load_profile
from drivers.codecs.gat467 import (
    DEFAULT_FRAMING,
    NATIONS,
    BaseInfo,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    decode_base_info,
    encode_base_info,
    encode_request,
    encode_response,
    gat467_framing,
    nation_code,
)

PRE = "AA AA AA 96 69"

# ------------------------------------------------------------------------------------ requests
# LEN = 00 03 (CMD PARA CHK)
FIND = bytes.fromhex(f"{PRE} 00 03 20 01 22")       # 00^03^20^01 = 22
SELECT = bytes.fromhex(f"{PRE} 00 03 20 02 21")     # 00^03^20^02 = 21
READ = bytes.fromhex(f"{PRE} 00 03 30 01 32")       # 00^03^30^01 = 32
SAM = bytes.fromhex(f"{PRE} 00 03 11 FF ED")        # 00^03^11^FF = 12^FF = ED

# ------------------------------------------------------------------------------------- replies
# find: card found, SW3 9F + 4 data bytes 00: LEN 00 08, CHK = 08^9F = 97
FOUND = bytes.fromhex(f"{PRE} 00 08 00 00 9F 00 00 00 00 97")
# find: no card, SW3 80, LEN 00 04, CHK = 04^80 = 84
NO_CARD = bytes.fromhex(f"{PRE} 00 04 00 00 80 84")
# select ok, SW3 90 + 8 data bytes 00, LEN 00 0C, CHK = 0C^90 = 9C
SELECTED = bytes.fromhex(f"{PRE} 00 0C 00 00 90 00 00 00 00 00 00 00 00 9C")
# select failed, SW3 81, CHK = 04^81 = 85
SELECT_FAILED = bytes.fromhex(f"{PRE} 00 04 00 00 81 85")
# read failed, SW3 41, CHK = 04^41 = 45
READ_FAILED = bytes.fromhex(f"{PRE} 00 04 00 00 41 45")
# SAM ok, SW3 90, CHK = 04^90 = 94
SAM_OK = bytes.fromhex(f"{PRE} 00 04 00 00 90 94")


@pytest.mark.parametrize(("request_", "wire"), [
    (Request(0x20, 0x01), FIND),
    (Request(0x20, 0x02), SELECT),
    (Request(0x30, 0x01), READ),
    (Request(0x11, 0xFF), SAM),
])
def test_command_vectors_both_ways(request_: Request, wire: bytes) -> None:
    assert encode_request(request_) == wire
    assert RequestDecoder().feed(wire) == [request_]


def test_named_commands_of_the_default_framing() -> None:
    assert [encode_request(DEFAULT_FRAMING.command(n)) for n in
            ("find_card", "select_card", "read_base_info", "sam_status")] == [FIND, SELECT, READ, SAM]
    assert DEFAULT_FRAMING.command_name(Request(0x30, 0x01)) == "read_base_info"
    assert DEFAULT_FRAMING.command_name(Request(0x30, 0x02)) is None


@pytest.mark.parametrize(("response", "wire"), [
    (Response(0x9F, bytes(4)), FOUND),
    (Response(0x80), NO_CARD),
    (Response(0x90, bytes(8)), SELECTED),
    (Response(0x81), SELECT_FAILED),
    (Response(0x41), READ_FAILED),
    (Response(0x90), SAM_OK),
])
def test_reply_vectors_both_ways(response: Response, wire: bytes) -> None:
    assert encode_response(response) == wire
    assert ResponseDecoder().feed(wire) == [response]


def test_status_texts() -> None:
    assert Response(0x80).status_text == "找卡不成功"
    assert Response(0x60).status_text == "SAM 自检失败"
    assert Response(0x77).status_text == "未知状态 77"


# ---------------------------------------------------------------------------- full base info

def _field(text: str, size: int) -> bytes:
    """UCS-2 LE padded with spaces (20 00), as the card stores it."""
    raw = text.encode("utf-16-le")
    assert len(raw) <= size
    return raw + b"\x20\x00" * ((size - len(raw)) // 2)


NAME, ADDRESS, ID_NUMBER = "欧阳娜娜", "上海市黄浦区福州路一百号", "11010519491231002X"
ISSUER = "上海市公安局黄浦分局"
PHOTO = bytes(range(256)) * 4     # WLT bytes are opaque to us: any 1024 bytes


def _hand_built_text() -> bytes:
    text = (
        _field(NAME, 30)            # 0   name
        + "2".encode("utf-16-le")   # 30  sex: 2 = 女
        + "03".encode("utf-16-le")  # 32  nation: 03 = 回
        + _field("19491231", 16)    # 36  birth
        + _field(ADDRESS, 70)       # 52  address
        + _field(ID_NUMBER, 36)     # 122 ID number
        + _field(ISSUER, 30)        # 158 issuer
        + _field("20100101", 16)    # 188 valid from
        + _field("长期", 16)         # 204 valid to
        + b"\x20\x00" * 18          # 220 reserved (36 bytes)
    )
    assert len(text) == 256
    return text


def _hand_built_reply() -> bytes:
    data = bytes.fromhex("01 00 04 00") + _hand_built_text() + PHOTO     # 4 + 256 + 1024 = 1284
    length = bytes.fromhex("05 08")                                     # SW1..CHK = 3 + 1284 + 1 = 1288
    body = length + bytes.fromhex("00 00 90") + data
    chk = 0
    for byte in body:
        chk ^= byte
    return bytes.fromhex(PRE) + body + bytes([chk])


EXPECTED = BaseInfo(name=NAME, sex="女", nation="回", birth="19491231", address=ADDRESS, id_number=ID_NUMBER,
                    issuer=ISSUER, valid_from="20100101", valid_to="长期", photo=PHOTO)


def test_full_read_base_info_reply_decodes() -> None:
    wire = _hand_built_reply()
    assert len(wire) == 1295
    frames = ResponseDecoder().feed(wire)
    assert len(frames) == 1 and frames[0].sw3 == 0x90
    info = decode_base_info(frames[0].data)
    assert info == EXPECTED
    assert ID_NUMBER not in repr(info)          # a logged card never shows the number


def test_full_reply_encodes_to_the_same_bytes() -> None:
    assert encode_response(Response(0x90, encode_base_info(EXPECTED))) == _hand_built_reply()


def test_full_reply_in_small_chunks() -> None:
    wire = _hand_built_reply()
    decoder = ResponseDecoder()
    frames = []
    for i in range(0, len(wire), 7):
        frames += decoder.feed(wire[i : i + 7])
    assert [decode_base_info(f.data) for f in frames] == [EXPECTED]


def test_base_info_with_a_bad_size_is_refused() -> None:
    data = _hand_built_reply()[10:-1]
    with pytest.raises(ValueError, match="长度不符"):
        decode_base_info(data[:-1])
    with pytest.raises(ValueError, match="长度不符"):
        decode_base_info(bytes.fromhex("00 80 04 00") + data[4:])


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "张" * 16}, "name 过长"),
    ({"address": "路" * 36}, "address 过长"),
    ({"sex": "M"}, "性别"),
    ({"nation": "火星"}, "未知民族"),
    ({"name": "𠀀"}, "UCS-2"),
    ({"photo": bytes(1025)}, "照片"),
])
def test_encoding_refuses_what_does_not_fit(change: dict, message: str) -> None:
    fields = {**EXPECTED.__dict__, **change}
    with pytest.raises(ValueError, match=message):
        encode_base_info(BaseInfo(**fields))


def test_nation_codes() -> None:
    assert len(NATIONS) == 58
    assert NATIONS["01"] == "汉" and NATIONS["56"] == "基诺" and NATIONS["98"] == "外国血统中国籍人士"
    assert [nation_code(x) for x in ("汉", "汉族", "1", "01", "基诺", "97")] == ["01", "01", "01", "01", "56", "97"]
    with pytest.raises(ValueError):
        nation_code("57")


# ------------------------------------------------------------------------ garbage and errors

def test_garbage_before_a_preamble_is_skipped() -> None:
    decoder = ResponseDecoder()
    assert decoder.feed(b"\x00\xff\xaa\xaa\x13" + NO_CARD) == [Response(0x80)]
    assert decoder.discarded == 5 and decoder.rejected == 0


def test_a_split_preamble_is_kept_for_the_next_chunk() -> None:
    decoder = ResponseDecoder()
    assert decoder.feed(b"\x55" + FOUND[:3]) == []
    assert decoder.feed(FOUND[3:]) == [Response(0x9F, bytes(4))]


def test_bad_checksum_is_rejected_with_a_reason_and_the_next_frame_found(caplog) -> None:
    bad = NO_CARD[:-1] + b"\x85"
    decoder = ResponseDecoder()
    with caplog.at_level(logging.WARNING, "drivers.codecs.gat467"):
        assert decoder.feed(bad + SAM_OK) == [Response(0x90)]
    assert decoder.rejected == 1 and "校验和错误" in decoder.last_error
    assert "校验和错误（收到 85，应为 84）" in caplog.text


def test_impossible_length_is_rejected() -> None:
    decoder = RequestDecoder()
    # LEN 00 02 cannot hold CMD PARA CHK
    assert decoder.feed(bytes.fromhex(f"{PRE} 00 02 20 01") + FIND) == [Request(0x20, 0x01)]
    assert decoder.rejected == 1 and "长度 2 无效" in decoder.last_error
    # LEN FF FF is beyond any reply
    decoder = ResponseDecoder()
    assert decoder.feed(bytes.fromhex(f"{PRE} FF FF 00") + NO_CARD) == [Response(0x80)]
    assert "长度 65535 无效" in decoder.last_error


def test_truncated_frame_is_dropped_on_flush_releasing_the_frame_behind_it(caplog) -> None:
    decoder = ResponseDecoder()
    # a base-info reply cut off after 40 bytes, then a complete no-card reply
    assert decoder.feed(_hand_built_reply()[:40] + NO_CARD) == []
    with caplog.at_level(logging.WARNING, "drivers.codecs.gat467"):
        assert decoder.flush() == [Response(0x80)]
    assert decoder.last_error == "帧不完整" and "truncated" in caplog.text
    assert decoder.pending == 0


def test_corrupted_byte_in_the_middle_breaks_the_checksum() -> None:
    wire = bytearray(_hand_built_reply())
    wire[700] ^= 0x5A
    decoder = ResponseDecoder()
    assert decoder.feed(bytes(wire)) == []
    assert decoder.rejected == 1


def test_requests_and_replies_are_not_confused() -> None:
    # a request has LEN 3; a reply needs at least SW1 SW2 SW3 CHK
    assert ResponseDecoder().feed(FIND) == []


# ---------------------------------------------------------------------------------- profiles

def test_framing_from_the_profiles() -> None:
    for name in ("dory-dl6009-card-reader", "generic-gat467-usb"):
        framing = gat467_framing(load_profile(name))
        assert framing.preamble == bytes.fromhex(PRE)
        assert framing.poll_ms >= 300
        assert encode_request(framing.command("find_card"), framing) == FIND


def test_framing_refuses_another_kind() -> None:
    with pytest.raises(ProfileError, match="card_reader"):
        gat467_framing(load_profile("dory-dl6009-printer"))
