"""Management-system emulator: dedupe, attempts, faults, malformed input, control API, CLI."""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from hall_controller.clock import ManualClock
from hw_emulators.mgmt import MgmtEmulator, main_mgmt

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": "Bearer test-token"}


def call(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    try:
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None
    finally:
        conn.close()


def post_record(url: str, key: str, body: Any | None = None, **kw: Any) -> tuple[int, Any]:
    headers = {**AUTH, "Idempotency-Key": key, "Content-Type": "application/json"}
    return call(url, "POST", "/api/v1/service-records", body if body is not None else {"n": key}, headers, **kw)


@pytest.fixture
def emu():
    with MgmtEmulator() as emulator:
        yield emulator


def test_first_post_is_stored_and_repeat_is_409_with_attempts_counted(emu):
    assert post_record(emu.url, "k1", {"ticket_number": "A001"})[0] == 201
    status, body = post_record(emu.url, "k1", {"ticket_number": "A001"})
    assert status == 409 and body["error"] == "duplicate"
    assert post_record(emu.url, "k2")[0] == 201

    records = emu.received_records()
    assert [(r["idempotency_key"], r["body"], r["attempts"]) for r in records] == [
        ("k1", {"ticket_number": "A001"}, 2),
        ("k2", {"n": "k2"}, 1),
    ]
    status, listed = call(emu.url, "GET", "/_received/service-records")
    assert status == 200
    assert [(r["idempotency_key"], r["attempts"]) for r in listed] == [("k1", 2), ("k2", 1)]


def test_attempts_include_requests_that_hit_a_fault(emu):
    emu.set_fault("5xx", count=2)
    assert post_record(emu.url, "k")[0] == 503
    assert post_record(emu.url, "k")[0] == 503
    assert post_record(emu.url, "k")[0] == 201  # the fault was used up
    assert post_record(emu.url, "k")[0] == 409
    [record] = emu.received_records()
    assert record["attempts"] == 4


def test_data_survives_restart_with_a_db_file(tmp_path):
    db = str(tmp_path / "mgmt.db")
    with MgmtEmulator(db_path=db) as first:
        assert post_record(first.url, "k1")[0] == 201
    with MgmtEmulator(db_path=db) as second:
        assert post_record(second.url, "k1")[0] == 409
        assert [r["attempts"] for r in second.received_records()] == [2]


def test_fault_4xx_answers_422(emu):
    assert call(emu.url, "POST", "/_fault", {"mode": "4xx"})[0] == 200
    status, body = post_record(emu.url, "k")
    assert status == 422 and body["error"] == "rejected"
    assert call(emu.url, "DELETE", "/_fault")[0] == 200
    assert post_record(emu.url, "k")[0] == 201
    assert emu.received_records()[0]["attempts"] == 2


@pytest.mark.parametrize("mode", ["401", "403"])
def test_fault_401_and_403_refuse_the_credentials_until_cleared(emu, mode):
    assert call(emu.url, "POST", "/_fault", {"mode": mode})[0] == 200
    status, body = post_record(emu.url, "k")
    assert status == int(mode) and body["error"] == ("unauthorized" if mode == "401" else "forbidden")
    assert post_record(emu.url, "k")[0] == int(mode)       # every request, until cleared
    assert call(emu.url, "DELETE", "/_fault")[0] == 200
    assert post_record(emu.url, "k")[0] == 201
    assert emu.received_records()[0]["attempts"] == 3


def test_received_at_comes_from_the_emulator_clock():
    clock = ManualClock(datetime(2026, 11, 23, 1, 2, 3, tzinfo=UTC))
    with MgmtEmulator(clock=clock) as emu:
        assert post_record(emu.url, "k")[0] == 201
        assert emu.received_records()[0]["received_at"] == "2026-11-23T01:02:03.000000+00:00"


def test_fault_5xx_applies_to_every_api_call_but_not_to_control(emu):
    emu.set_fault("5xx")
    assert call(emu.url, "PUT", "/api/v1/scans/" + "0" * 64, raw=b"x", headers=AUTH)[0] == 503
    assert call(emu.url, "GET", "/api/v1/appointments?hall=demo&date=2024-05-06", headers=AUTH)[0] == 503
    assert call(emu.url, "GET", "/_fault")[1]["mode"] == "5xx"
    assert call(emu.url, "GET", "/_received/service-records") == (200, [])


def test_fault_slow_delays_then_handles(emu):
    emu.set_fault("slow", ms=300)
    started = time.monotonic()
    assert post_record(emu.url, "k")[0] == 201
    assert time.monotonic() - started >= 0.3


def test_fault_hang_holds_until_cleared(emu):
    emu.set_fault("hang")
    with pytest.raises(TimeoutError):
        post_record(emu.url, "k", timeout=0.3)
    emu.clear_fault()
    assert post_record(emu.url, "k")[0] == 201
    assert emu.received_records()[0]["attempts"] == 2


def test_fault_hang_with_ms_closes_without_answer(emu):
    emu.set_fault("hang", ms=200, count=1)
    started = time.monotonic()
    with pytest.raises(http.client.RemoteDisconnected):
        post_record(emu.url, "k", timeout=5)
    assert 0.2 <= time.monotonic() - started < 4
    assert emu.received_records() == []


def test_fault_reset_sends_rst(emu):
    emu.set_fault("reset", count=1)
    host, port = emu.address
    with socket.create_connection((host, port), timeout=5) as sock:
        body = b"{}"
        sock.sendall(
            b"POST /api/v1/service-records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
            b"Idempotency-Key: k\r\nContent-Length: 2\r\n\r\n" + body
        )
        with pytest.raises(ConnectionResetError):
            while sock.recv(1024):
                pass
    assert post_record(emu.url, "k")[0] == 201
    assert emu.received_records()[0]["attempts"] == 2


def test_stop_releases_a_hanging_request(emu):
    emu.set_fault("hang")
    parts = urlsplit(emu.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("POST", "/api/v1/service-records", body=b"{}", headers={**AUTH, "Idempotency-Key": "k"})
    time.sleep(0.1)
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 2
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        conn.getresponse()
    conn.close()


@pytest.mark.parametrize(
    "spec",
    [{"mode": "explode"}, {"mode": "slow", "ms": -1}, {"mode": "5xx", "count": 0}, [1, 2]],
)
def test_invalid_fault_is_400(emu, spec):
    status, body = call(emu.url, "POST", "/_fault", spec)
    assert status == 400 and body["error"] == "bad_request"


def test_malformed_json_is_400_with_chinese_and_english_message(emu):
    status, body = post_record(emu.url, "k", raw=b"{not json")
    assert status == 400
    assert "有效的 JSON" in body["message"] and "not valid JSON" in body["message"]
    status, body = post_record(emu.url, "k2", raw=b"[1, 2]")
    assert status == 400 and "JSON 对象" in body["message"]
    status, body = post_record(emu.url, "k3", raw=b"\xff\xfe")
    assert status == 400
    status, _ = call(emu.url, "POST", "/_fault", raw=b"nope")
    assert status == 400
    status, _ = call(emu.url, "POST", "/api/v1/service-records", raw=b"{}",
                     headers={**AUTH, "Content-Length": "abc"})
    assert status == 400
    # still serving
    assert post_record(emu.url, "k4")[0] == 201


def test_missing_idempotency_key_unknown_path_and_wrong_method(emu):
    status, body = call(emu.url, "POST", "/api/v1/service-records", {"a": 1}, AUTH)
    assert status == 400 and "Idempotency-Key" in body["message"]
    assert call(emu.url, "GET", "/api/v1/nothing", headers=AUTH)[0] == 404
    assert call(emu.url, "GET", "/elsewhere")[0] == 404
    assert call(emu.url, "GET", "/api/v1/service-records", headers=AUTH)[0] == 405


def test_token_checks():
    with MgmtEmulator(token="s3cret") as emu:
        headers = {"Idempotency-Key": "k"}
        assert call(emu.url, "POST", "/api/v1/service-records", {}, headers)[0] == 401
        assert call(emu.url, "POST", "/api/v1/service-records", {},
                    {**headers, "Authorization": "Bearer wrong"})[0] == 401
        assert call(emu.url, "POST", "/api/v1/service-records", {},
                    {**headers, "Authorization": "Bearer s3cret"})[0] == 201
    with MgmtEmulator() as emu:
        assert call(emu.url, "POST", "/api/v1/service-records", {},
                    {"Idempotency-Key": "k", "Authorization": "Bearer "})[0] == 401
        assert call(emu.url, "POST", "/api/v1/service-records", {},
                    {"Idempotency-Key": "k", "Authorization": "Bearer anything"})[0] == 201


def test_scans_verify_sha256(emu):
    data = b"\x89PNG fake image"
    sha = hashlib.sha256(data).hexdigest()
    headers = {**AUTH, "Content-Type": "image/png"}
    assert call(emu.url, "PUT", f"/api/v1/scans/{sha}", raw=data, headers=headers)[0] == 201
    assert call(emu.url, "PUT", f"/api/v1/scans/{sha}", raw=data, headers=headers)[0] == 200
    status, body = call(emu.url, "PUT", f"/api/v1/scans/{sha}", raw=data + b"x", headers=headers)
    assert status == 400 and body["error"] == "checksum_mismatch"
    assert call(emu.url, "PUT", "/api/v1/scans/not-a-hash", raw=data, headers=headers)[0] == 400
    status, scans = call(emu.url, "GET", "/_received/scans")
    assert status == 200
    assert [(s["sha256"], s["content_type"], s["size"]) for s in scans] == [(sha, "image/png", len(data))]
    assert emu.store.scan_data(sha) == data


def test_appointments_from_control_api(emu):
    bookings = [
        {"code": "Y1", "hall": "demo", "date": "2024-05-06", "time": "09:30", "service": "consult"},
        {"code": "Y2", "hall": "other", "date": "2024-05-06", "time": "10:00", "service": "consult"},
        {"code": "Y3", "date": "2024-05-07", "time": "10:00", "service": "notary"},
        {"code": "Y4", "date": "2024-05-06", "time": "11:00", "service": "notary"},
    ]
    assert call(emu.url, "POST", "/_appointments", bookings)[0] == 200
    status, body = call(emu.url, "GET", "/api/v1/appointments?hall=demo&date=2024-05-06", headers=AUTH)
    assert status == 200
    assert body["hall"] == "demo" and [a["code"] for a in body["appointments"]] == ["Y1", "Y4"]
    assert call(emu.url, "GET", "/api/v1/appointments?hall=demo&date=May", headers=AUTH)[0] == 400
    assert call(emu.url, "GET", "/api/v1/appointments?date=2024-05-06", headers=AUTH)[0] == 400
    assert call(emu.url, "POST", "/_appointments", [{"code": "no date"}])[0] == 400
    assert call(emu.url, "POST", "/_appointments", {"not": "a list"})[0] == 400


def test_monthly_reports_dedupe_by_hall_and_month(emu):
    report = {"hall": {"code": "demo", "name": "示范区公共法律服务中心"}, "month": "2024-05", "totals": {}}
    path = "/api/v1/monthly-reports"
    assert call(emu.url, "POST", path, report, AUTH)[0] == 201
    assert call(emu.url, "POST", path, report, AUTH)[0] == 409
    assert call(emu.url, "POST", path, {**report, "month": "2024-06"}, AUTH)[0] == 201
    assert call(emu.url, "POST", path, {"hall": "demo"}, AUTH)[0] == 422
    status, reports = call(emu.url, "GET", "/_received/monthly-reports")
    assert status == 200 and [(r["hall"], r["month"]) for r in reports] == [("demo", "2024-05"), ("demo", "2024-06")]


def test_main_mgmt_serves_until_sigterm(tmp_path):
    appointments = tmp_path / "appointments.yaml"
    appointments.write_text("- {code: Y1, hall: demo, date: '2024-05-06', service: consult}\n", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hw_emulators.mgmt", "--listen", "127.0.0.1:0", "--appointments", str(appointments)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("ready http://127.0.0.1:"), line
        url = line.split(" ", 1)[1]
        assert urlsplit(url).port != 0
        status, body = call(url, "GET", "/api/v1/appointments?hall=demo&date=2024-05-06", headers=AUTH)
        assert status == 200 and [a["code"] for a in body["appointments"]] == ["Y1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "ready http://127.0.0.1:" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_main_mgmt_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main_mgmt(["--listen", "nonsense"])
    bad = tmp_path / "bad.json"
    bad.write_text("{oops", encoding="utf-8")
    assert main_mgmt(["--listen", "127.0.0.1:0", "--appointments", str(bad)]) == 2
    assert "cannot load appointments" in capsys.readouterr().err
