"""End to end over MQTT: a kiosk's ticket comes out of its emulated printer; a printer out of paper
leaves the ticket issued, says so in the reply, goes offline and comes back when it can print; an
idle printer's status probe finds it unplugged, silent, garbled, empty or open without a ticket, and
never runs inside a print job."""

from __future__ import annotations

import time
from typing import Any

import pytest

from drivers.codecs.escpos import PRIVACY_LINE
from drivers.printer import EscposPrinter
from hall_controller.faults import DEVICE_FAULT_TEXTS
from hall_controller.service import Actor, HallService
from hall_controller.store import Store

from .harness import Hall, device_hall, wait_until


@pytest.fixture
def hall(tmp_path):
    hall = device_hall(tmp_path)
    yield hall
    hall.close()


def printer_online(hall: Hall, device: str = "printer-1") -> bool:
    return bool(hall.service.snapshot()["devices"].get(device, {}).get("online"))


def tickets(hall: Hall, device: str = "printer-1") -> list[dict]:
    return hall.emu.device(device).view()["tickets"]


def test_ticket_issued_at_kiosk_1_is_printed_on_its_printer(hall):
    wait_until(lambda: printer_online(hall), 10, "printer-1 online")
    kiosk = hall.client("kiosk-1", "kiosk")
    reply = kiosk.request("issue_ticket", service="consult")
    assert reply["printed"] is True and "print_error" not in reply
    number, ticket_id = reply["ticket"]["number"], reply["ticket"]["id"]
    printed = tickets(hall)
    assert len(printed) == 1
    lines = printed[0]["lines"]
    assert {"示范区公共法律服务中心", "法律咨询", number, "请留意叫号", PRIVACY_LINE} <= set(lines)
    assert f"前面还有{reply['ahead']}人，请稍候。" in lines
    assert printed[0]["qr"] == [reply["visit_url"]]   # the phone page (issue 19); no web.wifi: no Wi-Fi QR
    assert tickets(hall, "printer-2") == []  # kiosk-2's printer printed nothing

    again = kiosk.request("reprint", ticket=ticket_id)
    assert again["printed"] is True
    assert "【补打】" in tickets(hall)[1]["lines"]

    notice = kiosk.request("print_notice", service="legal_aid")
    assert notice["printed"] is True
    slip = tickets(hall)[2]["lines"]
    assert "一次性告知单" in slip and "业务：法律援助" in slip

    # A window client's notice is not printed at a kiosk.
    window = hall.client("window-3", "window")
    assert "printed" not in window.request("print_notice", service="consult")
    assert len(tickets(hall)) == 3


def test_paper_out_mid_day(hall):
    wait_until(lambda: printer_online(hall), 10, "printer-1 online")
    kiosk = hall.client("kiosk-1", "kiosk")
    assert kiosk.request("issue_ticket", service="consult")["printed"] is True

    hall.emu.device("printer-1").set_fault("paper_out")
    reply = kiosk.request("issue_ticket", service="consult")
    assert reply["printed"] is False and reply["print_reason"] == "paper_out"
    assert reply["print_error"] == "打印机暂时无法出票，请记住您的号码"      # the visitor's sentence
    number = reply["ticket"]["number"]
    wait_until(lambda: any(e["type"] == "ticket_issued" and e["ticket"]["number"] == number for e in hall.events),
               3, f"{number} issued")
    wait_until(lambda: hall.device_events("device_offline", "printer-1"), 5, "printer-1 offline")
    assert not printer_online(hall)

    # While it stays offline the kiosk is told at once, and the queue goes on.
    offline = kiosk.request("issue_ticket", service="mediation")
    assert offline["printed"] is False and offline["print_reason"] == "offline"
    assert offline["print_error"] == "打印机暂时无法出票，请记住您的号码"
    assert len(tickets(hall)) == 1
    assert hall.emu.device("printer-1").view()["refused"] == 0  # never sent: the status said no paper

    hall.emu.device("printer-1").clear_fault()
    wait_until(lambda: printer_online(hall), 10, "printer-1 back online")
    assert kiosk.request("issue_ticket", service="consult")["printed"] is True
    assert len(tickets(hall)) == 2


# ------------------------------------------------------------------------------ the idle status probe

PROBE_S = 1.0      # the profile's is 10 s; a test need not wait that long


def probing(data: dict[str, Any]) -> None:
    for device in data["devices"]:
        if device["kind"] == "printer":
            device.setdefault("options", {})["status_probe_s"] = PROBE_S


@pytest.fixture
def probed(tmp_path):
    hall = device_hall(tmp_path, mutate=probing)
    yield hall
    hall.close()


@pytest.mark.slow
def test_an_idle_printer_is_found_offline_by_its_status_probe_without_a_ticket(probed):
    hall = probed
    wait_until(lambda: printer_online(hall), 10, "printer-1 online")
    handler = hall.daemon.devices.handler("printer-1")
    assert handler.probe_s == PROBE_S
    emu = hall.emu.device("printer-1")
    limit = PROBE_S + handler.timeout       # the probe interval plus the longest the printer is waited for
    for mode, reason in (("disconnect", "disconnected"), ("silent", "no_answer"), ("corrupt", "disconnected"),
                         ("paper_out", "paper_out"), ("cover_open", "cover_open")):
        before = len(hall.device_events("device_offline", "printer-1"))
        started = time.monotonic()
        emu.set_fault(mode)
        offline = wait_until(lambda before=before: hall.device_events("device_offline", "printer-1")[before:], limit + 2,
                             f"printer-1 offline under {mode}")
        elapsed = time.monotonic() - started
        assert elapsed <= limit, (mode, elapsed)
        assert offline[0]["error"] == DEVICE_FAULT_TEXTS[reason], mode     # the staff's sentence, in Chinese
        assert hall.service.snapshot()["devices"]["printer-1"]["error"] == DEVICE_FAULT_TEXTS[reason]
        emu.clear_fault()
        wait_until(lambda: printer_online(hall), 10, f"printer-1 back online after {mode}")
    assert not hall.of_type("ticket_issued")                                # no visitor found it for us
    assert emu.view()["printed"] == 0 and emu.view()["refused"] == 0
    assert emu.status_queries > 0


def test_print_jobs_and_idle_probes_never_overlap(probed, monkeypatch):
    hall = probed
    wait_until(lambda: printer_online(hall), 10, "printer-1 online")
    calls: list[tuple[str, float, float]] = []      # printer-1's jobs and probes: (what, start, end)
    url = hall.emu.device_urls()["printer-1"]

    def recorded(name: str, method: Any) -> Any:
        def call(self: EscposPrinter, *args: Any) -> Any:
            started = time.monotonic()
            try:
                return method(self, *args)
            finally:
                if self.url == url:
                    calls.append((name, started, time.monotonic()))
        return call

    monkeypatch.setattr(EscposPrinter, "print_job", recorded("job", EscposPrinter.print_job))
    monkeypatch.setattr(EscposPrinter, "check", recorded("probe", EscposPrinter.check))
    emu = hall.emu.device("printer-1")
    emu.set_fault("delay", 150)            # every status reply 150 ms late (in time): a job takes ≥ 0.6 s
    kiosk = hall.client("kiosk-1", "kiosk")
    for n in range(3):
        assert kiosk.request("issue_ticket", service="consult")["printed"] is True
        job_end = max(end for name, _, end in calls if name == "job")
        wait_until(lambda job_end=job_end: any(name == "probe" and start > job_end for name, start, _ in calls),
                   PROBE_S + 3,
                   f"a probe after job {n + 1}")
    jobs = [(start, end) for name, start, end in calls if name == "job"]
    probes = [(start, end) for name, start, end in calls if name == "probe"]
    assert len(jobs) == 3 and probes
    for p_start, p_end in probes:
        assert all(p_end <= j_start or p_start >= j_end for j_start, j_end in jobs), "a probe inside a job"
        ended = [j_end for _, j_end in jobs if j_end <= p_start]
        assert not ended or p_start - max(ended) >= PROBE_S * 0.95, "a probe right after a job"
    assert len(tickets(hall)) == 3
    assert not hall.device_events("device_offline", "printer-1")


# ------------------------------------------------------------------------------ the service's print hook


@pytest.fixture
def service(sample_config, clock, tmp_path):
    return HallService(sample_config, Store(f"sqlite:///{tmp_path / 'hall.db'}"), clock, secret=b"k")


def test_print_hook_runs_once_per_command_and_only_for_its_kiosk(service):
    calls: list[tuple[str, str]] = []
    service.set_printer("kiosk-1", lambda op, result: calls.append((op, result["ticket"]["number"])) or
                        {"printed": True})
    first = service.execute(Actor("kiosk-1", "kiosk"), "issue_ticket", {"service": "consult"}, command_id="c1")
    assert first["printed"] is True
    again = service.execute(Actor("kiosk-1", "kiosk"), "issue_ticket", {"service": "consult"}, command_id="c1")
    assert again == first  # a redelivered command is answered, not printed twice
    other = service.execute(Actor("kiosk-2", "kiosk"), "issue_ticket", {"service": "consult"})
    assert "printed" not in other
    assert calls == [("issue_ticket", first["ticket"]["number"])]
    service.set_printer("kiosk-1", None)
    assert "printed" not in service.execute(Actor("kiosk-1", "kiosk"), "issue_ticket", {"service": "consult"})


def test_a_failing_print_hook_never_loses_the_ticket(service):
    def broken(op, result):
        raise RuntimeError("driver bug")

    service.set_printer("kiosk-1", broken)
    reply = service.execute(Actor("kiosk-1", "kiosk"), "issue_ticket", {"service": "consult"})
    assert reply["printed"] is False and reply["print_error"] == "打印机暂时无法出票，请记住您的号码"
    assert "driver bug" not in str(reply)                       # the raw error stays in the log
    assert service.engine.state.tickets[reply["ticket"]["id"]].status == "waiting"
    assert service.snapshot()["counters"] == {"A": 1}
