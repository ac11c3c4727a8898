"""ESC/POS codec: byte vectors written from the ESC/POS command reference and the GB18030 tables.

The expected bytes below are spelled out by hand (command bytes from the Epson ESC/POS reference,
character bytes from the GB18030 code chart), never produced by the emulator or the decoder.
"""

from __future__ import annotations

import pytest

from device_profiles import ProfileError, load_profile
from drivers.codecs.escpos import (
    EscposDecoder,
    Feed,
    Job,
    NoticeSlip,
    PrinterFraming,
    PrinterStatus,
    QrCode,
    StatusQuery,
    TextLine,
    TicketPrint,
    decode_status,
    encode_status,
    merge_status,
    notice_job,
    printer_framing,
    status_query,
    text_line,
    ticket_job,
    wrap_columns,
)

H = bytes.fromhex

# 前 C7B0 面 C3E6 还 BBB9 有 D3D0 ３ A3B3 人 C8CB ， A3AC 请 C7EB 稍 C9D4 候 BAF2 。 A1A3
WAITING_LINE = "前面还有３人，请稍候。"
WAITING_BYTES = H("1C 26 C7B0 C3E6 BBB9 D3D0 A3B3 C8CB A3AC C7EB C9D4 BAF2 A1A3 0A")

TICKET = TicketPrint(hall="示范区公共法律服务中心", service="法律咨询", number="A001", ticket_id="t-123",
                     time="2026-12-02 09:30", waiting_before=3, estimate="约10–15分钟", priority="elderly")


def decode(data: bytes) -> list:
    decoder = EscposDecoder()
    return decoder.feed(data) + decoder.flush()


def only_job(data: bytes) -> Job:
    frames = decode(data)
    assert len(frames) == 1 and isinstance(frames[0], Job), frames
    return frames[0]


# ------------------------------------------------------------------------------------ encoding


def test_chinese_line_is_fs_ampersand_and_gb18030_with_full_width_punctuation():
    assert text_line(WAITING_LINE) == WAITING_BYTES


def test_ticket_holds_each_line_as_fs_ampersand_gb18030():
    data = ticket_job(TICKET)
    assert data.startswith(H("1B 40"))  # ESC @ initialise
    # 前面还有3人，请稍候。 with an ASCII 3
    assert H("1C 26 C7B0 C3E6 BBB9 D3D0 33 C8CB A3AC C7EB C9D4 BAF2 A1A3 0A") in data
    # 法律咨询 at double width and height: GS ! 0x11
    assert H("1D 21 11") + H("1B 45 01 1B 61 01") + H("1C 26 B7A8 C2C9 D7C9 D1AF 0A") in data
    # the number at 4x4: GS ! 0x33, bold, centred
    assert H("1D 21 33 1B 45 01 1B 61 01 1C 26 41 30 30 31 0A") in data
    # 约10–15分钟: – (U+2013) is A8 43 in GB18030
    assert H("1C 26 D4A4 BCC6 B5C8 B4FD D4BC 31 30 A843 31 35 B7D6 D6D3 0A") in data
    # 请留意叫号
    assert H("1C 26 C7EB C1F4 D2E2 BDD0 BAC5 0A") in data
    assert b"?" not in data


def test_ticket_qr_code_is_native_gs_paren_k_with_the_ticket_id():
    data = ticket_job(TICKET)
    qr = (H("1D 28 6B 04 00 31 41 32 00")  # fn 65: model 2
          + H("1D 28 6B 03 00 31 43 06")  # fn 67: 6 dots a module
          + H("1D 28 6B 03 00 31 45 31")  # fn 69: error correction M
          + H("1D 28 6B 08 00 31 50 30") + b"t-123"  # fn 80: store, pL = 3 + 5 bytes
          + H("1D 28 6B 03 00 31 51 30"))  # fn 81: print
    assert qr in data


def test_ticket_ends_with_feed_and_partial_cut():
    assert ticket_job(TICKET).endswith(H("1B 64 06 1D 56 01"))  # ESC d 6, GS V 1


@pytest.mark.parametrize(("cut", "tail"), [("full", H("1B 64 06 1D 56 00")), ("none", H("1B 64 05"))])
def test_cut_mode_follows_the_framing(cut, tail):
    assert ticket_job(TICKET, PrinterFraming(cut=cut)).endswith(tail)


def test_reprint_is_marked():
    lines = only_job(ticket_job(TicketPrint(**{**TICKET.__dict__, "reprint": True,
                                                "reprinted_at": "2026-12-02 10:05"}))).lines
    assert "【补打】" in lines
    assert "补打时间：2026-12-02 10:05" in lines


def test_ticket_without_estimate_or_count_leaves_the_lines_out():
    lines = only_job(ticket_job(TicketPrint(hall="厅", service="公证服务", number="D007", ticket_id="x",
                                            time="2026-12-02 09:30"))).lines
    assert not any(line.startswith(("前面还有", "预计等待")) for line in lines)
    assert "D007" in lines


def test_notice_slip_wraps_long_materials_under_their_number():
    materials = "1. 身份证原件及复印件，以及与咨询事项有关的全部书面材料（合同、票据、判决书等）"
    job = only_job(notice_job(NoticeSlip("示范区公共法律服务中心", "法律咨询",
                                         ("办理法律咨询请携带以下材料：", materials), "2026-12-02 09:30")))
    assert "一次性告知单" in job.lines and "业务：法律咨询" in job.lines
    i = job.lines.index("1. 身份证原件及复印件，以及与咨询事项有关的全部")
    assert job.lines[i + 1] == "   书面材料（合同、票据、判决书等）"
    assert job.cut == "partial"


def test_wrap_counts_chinese_as_two_columns():
    assert wrap_columns("一二三四五", 4) == ["一二", "三四", "五"]
    assert wrap_columns("ab一二", 4) == ["ab一", "二"]
    assert wrap_columns("", 4) == [""]


def test_framing_from_profile():
    framing = printer_framing(load_profile("dory-dl6009-printer"))
    assert framing.chinese_prefix == H("1C 26")
    assert (framing.encoding, framing.dots_per_line, framing.chars_per_line, framing.cut) == (
        "gb18030", 576, 48, "partial")
    with pytest.raises(ProfileError):
        printer_framing(load_profile("dory-led-375-4"))


def test_framing_refuses_bad_values():
    with pytest.raises(LookupError):
        PrinterFraming(encoding="no-such-codec")
    with pytest.raises(ValueError):
        PrinterFraming(cut="sideways")


# ------------------------------------------------------------------------------------ decoding


def test_decoder_reads_sizes_bold_alignment_and_gb18030():
    data = (H("1B 40")
            + H("1B 61 01 1D 21 11 1B 45 01") + H("1C 26 B7A8 C2C9 D7C9 D1AF 0A")  # centred 2x2 bold
            + H("1D 21 33") + b"A001\n"  # 4x4, still bold
            + H("1B 61 02 1D 21 00 1B 45 00") + WAITING_BYTES  # right, normal
            + H("1B 21 38") + b"X\n"  # ESC ! : emphasised, double height and width
            + H("1D 56 00"))
    job = only_job(data)
    assert job.elements == (
        TextLine("法律咨询", 2, 2, True, "center"),
        TextLine("A001", 4, 4, True, "center"),
        TextLine(WAITING_LINE, 1, 1, False, "right"),
        TextLine("X", 2, 2, True, "right"),
    )
    assert job.cut == "full"


def test_decoder_reads_qr_store_and_print():
    data = (H("1D 28 6B 03 00 31 43 05") + H("1D 28 6B 03 00 31 45 33")
            + H("1D 28 6B 07 00 31 50 30 61 62 63 64") + H("1D 28 6B 03 00 31 51 30") + H("1D 56 41 03"))
    job = only_job(data)
    assert job.elements == (QrCode("abcd", 5, "H", "left"),)
    assert job.qr_payloads == ["abcd"]
    assert job.cut == "full"  # GS V 65 n: feed n, then full cut


@pytest.mark.parametrize(("cut", "kind"), [(H("1D 56 00"), "full"), (H("1D 56 30"), "full"),
                                           (H("1D 56 01"), "partial"), (H("1D 56 31"), "partial"),
                                           (H("1D 56 42 00"), "partial"), (H("1D 56 41 00"), "full")])
def test_decoder_cut_commands(cut, kind):
    frames = decode(b"a\n" + cut + b"b\n" + cut)
    assert [(f.lines, f.cut) for f in frames] == [(["a"], kind), (["b"], kind)]


def test_decoder_works_byte_by_byte_across_multibyte_characters():
    # 㐀 (U+3400) is the four-byte GB18030 sequence 81 39 EE 39
    data = H("1C 26 81 39 EE 39 C7B0 0A") + H("1D 28 6B 06 00 31 50 30 71 72 73") + H("1D 28 6B 03 00 31 51 30") \
        + H("1B 64 02 1D 56 01")
    decoder = EscposDecoder()
    frames = [f for b in data for f in decoder.feed(bytes([b]))]
    assert frames == [Job((TextLine("㐀前"), QrCode("qrs"), Feed(2)), "partial")]


def test_decoder_answers_status_queries_between_jobs():
    frames = decode(b"a\n" + H("10 04 01") + b"b\n" + H("10 04 04") + H("1D 56 01"))
    assert frames == [StatusQuery(1), StatusQuery(4), Job((TextLine("a"), TextLine("b")), "partial")]


def test_decoder_without_fs_ampersand_uses_code_page_437():
    assert only_job(H("81 0A")).lines == ["ü"]
    assert only_job(H("1C 26 C7B0 0A 1C 2E 81 0A")).lines == ["前", "ü"]


def test_decoder_skips_unknown_and_stray_bytes_and_keeps_going():
    decoder = EscposDecoder()
    data = (H("1B 7E 05")  # ESC ~: no such command -> skipped as ESC ~, then "\x05"... a stray control
            + H("10 07") + b"ok\n"  # a stray DLE, then BEL (no meaning here)
            + H("1B 2A 00 02 00 FF FF")  # ESC * bit image, 2 columns: skipped whole
            + H("1D 76 30 00 01 00 02 00 AA BB") + b"fine\n"  # GS v 0 raster, 1x2 bytes
            + H("1D 56 01"))
    frames = decoder.feed(data)
    assert [f.lines for f in frames] == [["ok", "fine"]]
    assert decoder.unknown == 1
    assert decoder.discarded == 3  # 05, the stray DLE and 07


def test_decoder_waits_for_a_truncated_command_and_flush_drops_it():
    decoder = EscposDecoder()
    assert decoder.feed(b"half\n" + H("1D 28 6B 08 00 31 50 30 74")) == []
    frames = decoder.flush()
    assert frames == [Job((TextLine("half"),), None)]  # printed, never cut
    assert decoder.discarded == 9
    assert decoder.flush() == []


def test_esc_at_clears_the_unprinted_line():
    assert only_job(b"lost" + H("1B 40") + b"kept\n" + H("1D 56 01")).lines == ["kept"]


def test_decoder_round_trips_a_whole_ticket():
    job = only_job(ticket_job(TICKET))
    assert job.lines[:4] == ["示范区公共法律服务中心", "-" * 48, "法律咨询", "A001"]
    assert {"老年人优先", "前面还有3人，请稍候。", "预计等待约10–15分钟", "取号时间：2026-12-02 09:30",
            "请留意叫号", "本票不含您的个人身份信息，请妥善保管。"} <= set(job.lines)
    assert job.qr_payloads == ["t-123"]
    assert job.cut == "partial"


# ------------------------------------------------------------------------------------ status


def test_status_queries_are_dle_eot_n():
    assert [status_query(n) for n in (1, 2, 3, 4)] == [H("10 04 01"), H("10 04 02"), H("10 04 03"), H("10 04 04")]
    with pytest.raises(ValueError):
        status_query(5)


@pytest.mark.parametrize(("status", "replies"), [
    (PrinterStatus(), {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12}),
    (PrinterStatus(paper_out=True, paper_near_end=True), {1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x7E}),
    (PrinterStatus(paper_near_end=True), {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x1E}),
    (PrinterStatus(cover_open=True), {1: 0x1A, 2: 0x16, 3: 0x12, 4: 0x12}),
    (PrinterStatus(error=True), {1: 0x1A, 2: 0x52, 3: 0x32, 4: 0x12}),
])
def test_status_bytes(status, replies):
    for n, byte in replies.items():
        assert encode_status(n, status) == bytes([byte])
    assert merge_status([decode_status(n, b) for n, b in replies.items()]) == status


def test_decode_status_flags():
    assert decode_status(1, 0x12) == {"online": True}
    assert decode_status(1, 0x1A) == {"online": False}
    assert decode_status(2, 0x16) == {"cover_open": True, "paper_out": False, "error": False}
    assert decode_status(4, 0x7E) == {"paper_near_end": True, "paper_out": True}


@pytest.mark.parametrize("byte", [0x00, 0xFF, 0x13, 0x92, 0x10])
def test_decode_status_refuses_what_cannot_be_a_status_byte(byte):
    with pytest.raises(ValueError):
        decode_status(2, byte)


@pytest.mark.parametrize(("n", "byte", "flags"), [
    (1, 0x12, {"online": True}),
    (1, 0x1A, {"online": False}),                                           # offline
    (2, 0x12, {"cover_open": False, "paper_out": False, "error": False}),
    (2, 0x16, {"cover_open": True, "paper_out": False, "error": False}),    # cover open
    (2, 0x32, {"cover_open": False, "paper_out": True, "error": False}),    # stopped at paper end
    (2, 0x36, {"cover_open": True, "paper_out": True, "error": False}),
    (4, 0x1E, {"paper_near_end": True, "paper_out": False}),
    (4, 0x72, {"paper_near_end": False, "paper_out": True}),                # paper end sensor alone
    (4, 0x7E, {"paper_near_end": True, "paper_out": True}),
])
def test_status_byte_vectors(n, byte, flags):
    assert decode_status(n, byte) == flags


def test_a_garbled_status_byte_is_never_taken_for_a_status():
    """Line noise as the emulator's `corrupt` fault makes it (the byte + 0x5A) breaks the fixed bits of
    every status byte there is, so a garbled answer to an idle probe is an error, not a state."""
    from hw_emulators.device import corrupt_bytes

    valid = [b for b in range(256) if b & 0x93 == 0x12]
    assert len(valid) == 16
    for byte in valid:
        for n in (1, 2, 4):
            with pytest.raises(ValueError, match="不是打印机状态字节"):
                decode_status(n, corrupt_bytes(bytes([byte]))[0])
