"""Printer driver against the emulated printer over real links (TCP 9100-style and a pty)."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from PIL import Image

from device_profiles import load_profile
from drivers.codecs.escpos import NoticeSlip, TicketPrint, notice_job, status_query, ticket_job
from drivers.printer import EscposPrinter, PrinterError, open_printer
from drivers.transport import TransportError, TransportTimeout
from hw_emulators.device import FaultError, Request
from hw_emulators.link import PtyLink, TcpLink
from hw_emulators.printer import IDLE_S, EmulatedPrinter
from tests.harness import wait_until

PROFILE = "dory-dl6009-printer"
TICKET = TicketPrint(hall="示范区公共法律服务中心", service="法律咨询", number="A007", ticket_id="9b1e4d2c",
                     time="2026-12-02 09:30", waiting_before=2, estimate="约5–10分钟")


@pytest.fixture(params=["tcp", "pty"])
def emulator(request):
    link = TcpLink("printer-1") if request.param == "tcp" else PtyLink("printer-1")
    emu = EmulatedPrinter("printer-1", PROFILE, load_profile(PROFILE), link, kiosk="kiosk-1")
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def printer(emulator):
    driver = open_printer(emulator.url, [load_profile(PROFILE)])
    yield driver
    driver.close()


def test_factory_returns_an_unopened_driver(emulator):
    driver = open_printer(emulator.url, [load_profile(PROFILE)])
    assert isinstance(driver, EscposPrinter) and driver.has_status
    with pytest.raises(TransportError):
        driver.print_job(b"x")  # not opened: no I/O happened in the constructor
    driver.close()
    driver.close()


def test_ticket_is_printed_decoded_and_rendered(emulator, printer):
    printer.open()
    printer.print_job(ticket_job(TICKET))
    # The post-job status query was answered after the job: it is decoded by now.
    view = emulator.api_tickets(Request({}, {}))
    assert view["printed"] == 1 and view["cuts"] == 1
    ticket = view["tickets"][0]
    assert {"示范区公共法律服务中心", "法律咨询", "A007", "前面还有2人，请稍候。", "预计等待约5–10分钟"} <= set(ticket["lines"])
    assert ticket["qr"] == ["9b1e4d2c"]
    assert ticket["cut"] == "partial"
    number = next(e for e in ticket["elements"] if e.get("text") == "A007")
    assert (number["width"], number["height"], number["bold"], number["align"]) == (4, 4, True, "center")

    png = emulator.api_tickets(Request({}, {}, ("1.png",)))
    assert png.content_type == "image/png"
    image = Image.open(io.BytesIO(png.data))
    assert image.width == 576 and image.height > 600
    assert image.convert("L").getextrema()[0] == 0  # something is printed black


def test_notice_slip_is_printed(emulator, printer):
    printer.open()
    printer.print_job(notice_job(NoticeSlip("示范区公共法律服务中心", "法律援助",
                                            ("办理法律援助请携带以下材料：", "1. 身份证", "2. 经济困难证明"),
                                            "2026-12-02 09:31")))
    lines = emulator.view()["tickets"][0]["lines"]
    assert "一次性告知单" in lines and "2. 经济困难证明" in lines


def test_status_reads_paper_and_cover(emulator, printer):
    printer.open()
    assert printer.status() == {"online": True, "paper_out": False, "paper_near_end": False, "cover_open": False}
    emulator.set_fault("paper_out")
    assert printer.status() == {"online": False, "paper_out": True, "paper_near_end": True, "cover_open": False}
    emulator.set_fault("cover_open")
    assert printer.status() == {"online": False, "paper_out": False, "paper_near_end": False, "cover_open": True}
    emulator.clear_fault()
    assert printer.status()["online"] is True


@pytest.mark.parametrize(("fault", "reason", "message"), [("paper_out", "paper_out", "打印机缺纸"),
                                                          ("cover_open", "cover_open", "打印机纸仓盖未关")])
def test_paper_out_or_cover_open_is_an_error_and_nothing_is_printed(emulator, printer, fault, reason, message):
    printer.open()
    emulator.set_fault(fault)
    with pytest.raises(PrinterError) as caught:
        printer.print_job(ticket_job(TICKET))
    assert caught.value.reason == reason and str(caught.value) == message
    assert isinstance(caught.value, TransportError)  # the daemon's link treats it as a device failure
    assert emulator.view()["printed"] == 0
    emulator.clear_fault()
    printer.print_job(ticket_job(TICKET))
    assert emulator.view()["printed"] == 1


def test_open_fails_while_the_printer_cannot_print(emulator):
    emulator.set_fault("paper_out")
    driver = open_printer(emulator.url, [load_profile(PROFILE)])
    with pytest.raises(PrinterError):
        driver.open()
    driver.close()


def test_a_silent_printer_times_out(emulator, printer):
    printer.open()
    emulator.set_fault("silent")
    with pytest.raises(TransportTimeout, match="打印机无应答"):
        printer.print_job(ticket_job(TICKET))
    assert emulator.view()["printed"] == 0


def test_a_garbled_status_reply_is_an_error(emulator, printer):
    printer.open()
    emulator.set_fault("corrupt")
    with pytest.raises(TransportError, match="状态应答无效"):
        printer.status()


@pytest.mark.parametrize(("fault", "error", "message"), [
    (None, None, None),
    ("paper_out", PrinterError, "打印机缺纸"),
    ("cover_open", PrinterError, "打印机纸仓盖未关"),
    ("silent", TransportTimeout, "打印机无应答"),
    ("corrupt", TransportError, "状态应答无效"),
    ("disconnect", TransportError, None),
])
def test_the_idle_check_asks_the_status_the_emulator_answers(emulator, printer, fault, error, message):
    """`check()` is the daemon's idle probe: DLE EOT 2 and 4, judged as before a job."""
    printer.open()
    asked = emulator.status_queries
    if fault:
        emulator.set_fault(fault)
    if error is None:
        printer.check()
        assert emulator.status_queries == asked + 2
    else:
        with pytest.raises(error, match=message):
            printer.check()
    assert emulator.view()["printed"] == 0


def test_a_disconnected_printer_fails_to_open_and_to_print(emulator, printer):
    printer.open()
    emulator.set_fault("disconnect")
    with pytest.raises(TransportError):
        printer.print_job(ticket_job(TICKET))
    printer.close()
    with pytest.raises(TransportError):
        printer.open()
    emulator.clear_fault()
    wait_until(lambda: _opens(printer), what="the printer to accept the host again")
    printer.print_job(ticket_job(TICKET))
    assert emulator.view()["printed"] == 1


def _opens(printer: EscposPrinter) -> bool:
    printer.close()
    try:
        printer.open()
    except TransportError:
        return False
    return True


def test_a_printer_without_status_only_writes(emulator, tmp_path: Path):
    (tmp_path / "plain-printer.yaml").write_text(
        f"extends: {PROFILE}\nvendor: 通用\nmodel: 无状态回读\nfeatures: [escpos, gb18030, qrcode, cut]\n",
        encoding="utf-8")
    driver = open_printer(emulator.url, [load_profile("plain-printer", tmp_path)])
    driver.open()
    try:
        assert driver.status() == {"online": True, "paper_out": None, "paper_near_end": None, "cover_open": None}
        driver.print_job(ticket_job(TICKET))
        wait_until(lambda: emulator.view()["printed"] == 1, what="the ticket")
        assert emulator.status_queries == 0
    finally:
        driver.close()


def test_the_probe_interval_comes_from_the_device_the_profile_or_the_default(tmp_path: Path):
    from device_profiles import device_errors
    from hall_controller.config import DeviceConfig
    from hall_controller.devices.printer import PROBE_S, probe_interval

    framing = load_profile(PROFILE).framing
    assert framing["status_probe_s"] == 10 == PROBE_S
    device = DeviceConfig("printer-1", "printer", PROFILE, "emulated", kiosk="kiosk-1")
    assert probe_interval(device, framing, True) == 10
    assert probe_interval(device, {}, True) == PROBE_S
    tuned = DeviceConfig("printer-1", "printer", PROFILE, "emulated", kiosk="kiosk-1", options={"status_probe_s": 2.5})
    assert probe_interval(tuned, framing, True) == 2.5
    assert probe_interval(tuned, framing, False) == 0      # a printer that cannot say: nothing to ask
    off = DeviceConfig("printer-1", "printer", PROFILE, "emulated", kiosk="kiosk-1", options={"status_probe_s": 0})
    assert probe_interval(off, framing, True) == 0
    assert device_errors(PROFILE, "printer", None, {"status_probe_s": 5}) == []
    for bad in ("ten", -1, 7200, True):
        assert [f for f, _ in device_errors(PROFILE, "printer", None, {"status_probe_s": bad})] == [
            "options.status_probe_s"], bad


def test_usb_printer_that_is_not_plugged_in():
    driver = EscposPrinter("usb://04b8:0e15", load_profile(PROFILE))
    with pytest.raises(TransportError):
        driver.open()
    driver.close()


def test_emulator_answers_status_and_refuses_jobs_while_out_of_paper():
    emu = EmulatedPrinter("p", PROFILE, load_profile(PROFILE), TcpLink("p"))
    emu.start()
    try:
        host, port = emu.url.removeprefix("socket://").split(":")
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            emu.set_fault("paper_out")
            sock.sendall(ticket_job(TICKET) + status_query(4))
            assert sock.recv(1) == b"\x7e"  # 0x12 | near end 0x0C | paper end 0x60
            wait_until(lambda: emu.view()["refused"] == 1, what="the refused job")
            assert emu.view()["printed"] == 0
            emu.clear_fault()
            sock.sendall(b"\x1b@" + "无切纸的票\n".encode("gb18030"))  # never cut: printed after idle
            sock.sendall(status_query(1))
            assert sock.recv(1) == b"\x12"
            wait_until(lambda: emu.view()["printed"] == 1, timeout=IDLE_S + 3, what="the uncut job")
            ticket = emu.view()["tickets"][0]
            assert ticket["cut"] is None and emu.view()["cuts"] == 0
    finally:
        emu.stop()


def test_emulator_api_refuses_bad_requests():
    emu = EmulatedPrinter("p", PROFILE, load_profile(PROFILE), TcpLink("p"))
    for rest in (("x.png",), ("1.jpg",), ("1.png", "more")):
        with pytest.raises(ValueError, match="tickets/<序号>.png"):
            emu.api_tickets(Request({}, {}, rest))
    with pytest.raises(ValueError, match="没有第 5 张票"):
        emu.api_tickets(Request({}, {}, ("5.png",)))
    with pytest.raises(FaultError, match="paper_out"):
        emu.set_fault("on_fire")
    with pytest.raises(FaultError):
        emu.set_fault("paper_out", 100)
    assert emu.describe() == {"id": "p", "kind": "printer"}
