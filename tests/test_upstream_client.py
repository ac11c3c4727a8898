"""UpstreamClient classification against the management-system emulator with injected faults."""

from __future__ import annotations

import hashlib
import socket
import time
from datetime import date

import pytest

from hall_controller.upstream.client import UpstreamClient, UpstreamError, classify_status


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "delivered"), (201, "delivered"), (204, "delivered"), (409, "delivered"),
     (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"), (408, "retry"), (429, "retry"),
     (401, "unauthorized"), (403, "unauthorized"), (407, "unauthorized"),
     (400, "dead"), (404, "dead"), (422, "dead"), (301, "dead")],
)
def test_classify_status(status, outcome):
    assert classify_status(status) == outcome


def test_post_then_repeat_are_both_delivered(emu, client):
    first = client.post_service_record("rec-1", {"ticket_number": "A001", "service": "法律咨询"})
    assert (first.outcome, first.status) == ("delivered", 201)
    again = client.post_service_record("rec-1", {"ticket_number": "A001"})
    assert (again.outcome, again.status) == ("delivered", 409)
    [received] = emu.received_records()
    assert received["body"] == {"ticket_number": "A001", "service": "法律咨询"}
    assert received["attempts"] == 2


def test_5xx_is_retry(emu, client):
    emu.set_fault("5xx")
    result = client.post_service_record("rec-1", {})
    assert (result.outcome, result.status) == ("retry", 503)
    assert "unavailable" in result.message


def test_422_is_dead(emu, client):
    emu.set_fault("4xx")
    result = client.post_service_record("rec-1", {})
    assert (result.outcome, result.status) == ("dead", 422)


def test_wrong_token_is_a_credential_problem_not_a_dead_record(emu):
    result = UpstreamClient(emu.url, "wrong").post_service_record("rec-1", {})
    assert (result.outcome, result.status) == ("unauthorized", 401)


def test_unsendable_request_is_dead(emu, client):
    result = client.post_service_record("bad\r\nkey", {})
    assert result.outcome == "dead" and result.status is None and "invalid request" in result.message
    assert emu.received_records() == []


def test_reset_is_retry(emu, client):
    emu.set_fault("reset")
    result = client.post_service_record("rec-1", {"x": 1})
    assert result.outcome == "retry" and result.status is None
    assert result.message


def test_hang_with_short_timeout_is_retry(emu):
    emu.set_fault("hang")
    client = UpstreamClient(emu.url, "tok", timeout=0.3)
    started = time.monotonic()
    result = client.post_service_record("rec-1", {})
    assert result.outcome == "retry" and result.status is None
    assert "timed out" in result.message or "Timeout" in result.message
    assert time.monotonic() - started < 2
    emu.clear_fault()


def test_slow_within_timeout_is_delivered(emu):
    emu.set_fault("slow", ms=100)
    assert UpstreamClient(emu.url, "tok", timeout=2.0).post_service_record("rec-1", {}).outcome == "delivered"


def test_connection_refused_is_retry():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = UpstreamClient(f"http://127.0.0.1:{port}", "tok", timeout=1.0).post_service_record("k", {})
    assert result.outcome == "retry" and "ConnectionRefused" in result.message


def test_put_scan(emu, client):
    data = b"\xff\xd8\xff jpeg bytes"
    sha = hashlib.sha256(data).hexdigest()
    assert client.put_scan(sha, data, "image/jpeg").status == 201
    assert client.put_scan(sha, data, "image/jpeg").status == 200
    bad = client.put_scan(sha, b"other", "image/jpeg")
    assert (bad.outcome, bad.status) == ("dead", 400)
    assert [s["content_type"] for s in emu.received_scans()] == ["image/jpeg"]


def test_monthly_report(emu, client):
    body = {"hall": {"code": "demo"}, "month": "2024-05", "title": "示范区公共法律服务统计月报表"}
    assert client.post_monthly_report(body).status == 201
    assert client.post_monthly_report(body).outcome == "delivered"
    assert emu.received_reports()[0]["body"]["title"] == "示范区公共法律服务统计月报表"


def test_get_appointments(emu, client):
    emu.set_appointments([
        {"code": "Y1", "hall": "demo", "date": "2024-05-06", "service": "consult"},
        {"code": "Y2", "hall": "demo", "date": "2024-05-07", "service": "consult"},
    ])
    assert [a["code"] for a in client.get_appointments("demo", date(2024, 5, 6))] == ["Y1"]
    assert client.get_appointments("demo", "2024-05-08") == []
    emu.set_fault("5xx", count=1)
    with pytest.raises(UpstreamError) as info:
        client.get_appointments("demo", "2024-05-06")
    assert info.value.result.outcome == "retry"


def test_base_url_with_path_prefix_and_validation(emu):
    with pytest.raises(ValueError):
        UpstreamClient("ftp://example", "tok")
    with pytest.raises(ValueError):
        UpstreamClient(emu.url, "tok", timeout=0)
    result = UpstreamClient(emu.url + "/prefix/", "tok").post_service_record("k", {})
    assert (result.outcome, result.status) == ("dead", 404)
