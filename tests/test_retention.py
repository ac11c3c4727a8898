"""Retention of personal data (PIPL, issue 18 item 4) with the hall's clock moved forward.

A day of visits by ID-card holders (one checked in for a booking, one with a document scan, one
no-show), command replies stored, a booking never used; the management system receives the records
of all but one visit. Before `privacy.retention_days` have passed since delivery nothing is purged;
after, no masked name, masked ID, keyed hash or birth date of a delivered visit is left anywhere in
the database text, the undelivered visit keeps all of its own, the monthly report and the day's
tally give the same figures, and a second run changes nothing.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from hall_controller.config import ConfigError, parse_config, sample_config_text
from hall_controller.domain import Actor
from hall_controller.domain.today import TALLIED, DayTally
from hall_controller.identity import id_hash, mask_id_number, mask_name
from hall_controller.setup_hall import load_or_create_secret
from hall_controller.store import retention
from hall_controller.store.retention import MARK_KEY
from hall_controller.upstream.service import UpstreamService, build_month_report
from hw_emulators.mgmt import MgmtEmulator

from .harness import ADMIN, KIOSK, PIN, card, id_number, service_hall, tablet, window

TOKEN = "retention-token"
#: name, birth date, serial of each visitor's card
DELIVERED = {"李四": ("19450101", "201"), "王五": ("19800101", "202"), "赵六": ("19900101", "203")}
UNDELIVERED = {"钱七": ("19700101", "204")}
BOOKED_ONLY = ("孙八", "19850101", "205")      # a phone booking never checked in
COUNTS = ("visits", "events", "outbox", "appointments", "commands", "scans")


def _run(hall, actor: Actor, op: str, **args: Any) -> dict[str, Any]:
    """An op with a command id, so that its reply is stored as a client's would be."""
    return hall.service.execute(actor, op, args, command_id=f"{actor.client_id}-{uuid.uuid4().hex}")


def _with_card(hall, name: str, service: str = "consult") -> dict[str, Any]:
    birth, serial = (DELIVERED | UNDELIVERED)[name]
    hall.service.card_inserted("kiosk-1", card(name, birth, serial))
    return _run(hall, KIOSK, "issue_ticket", service=service, use_card=True)["ticket"]


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (20, 120, 40)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _serve(hall, ticket: dict[str, Any], *, scan: bool = False) -> None:
    assert _run(hall, window(3), "call_next")["ticket"]["id"] == ticket["id"]
    _run(hall, window(3), "start")
    if scan:
        _run(hall, window(3), "attach_scan", ticket=ticket["id"], image=_png())
    hall.clock.advance(minutes=4)
    _run(hall, window(3), "finish")
    _run(hall, tablet(3), "rate", ticket=ticket["id"], score=4)


def _db_text(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def _traces(name: str, birth: str, serial: str, secret: bytes) -> list[str]:
    """How a holder can appear in the database: masked name, masked ID, keyed hash, birth date."""
    number = id_number(birth, serial)
    return [f'"{mask_name(name)}"', mask_id_number(number), id_hash(number, secret),
            f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"]


def _day_tally(db: Path, day: str) -> dict[str, Any]:
    """The hall day's figures as the daemon rebuilds them from the event log."""
    tally = DayTally()
    conn = sqlite3.connect(db)
    try:
        for (payload,) in conn.execute("SELECT payload FROM events ORDER BY seq"):
            event = json.loads(payload)
            if event["type"] in TALLIED and (event.get("ticket") or {}).get("day") == day:
                tally.observe(event)
    finally:
        conn.close()
    return {"counts": tally.count_view(), "window_3": tally.window_view(3)}


@pytest.fixture
def hall(tmp_path):
    def scans_kept_long(data: dict[str, Any]) -> None:
        data["scans"]["retention_days"] = 365          # the scan goes with its visit (the sooner rule)
    h = service_hall(tmp_path, mutate=scans_kept_long)
    yield h
    h.close()


def test_personal_data_is_purged_after_the_retention_once_delivered(hall, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 2)            # the delivered visits take two transactions
    config, clock = hall.config, hall.clock
    assert config.privacy_retention_days == 180
    secret = load_or_create_secret(config.secret_path)
    db = Path(config.database.removeprefix("sqlite:///"))
    day = hall.service.snapshot()["day"]

    _run(hall, window(3), "login", staff_id="S003", pin=PIN)
    _run(hall, ADMIN, "add_appointment", code="TEL-1", service="consult", source="phone", name="王五",
         id_number=id_number(*DELIVERED["王五"]), start_at=(clock.now() + timedelta(minutes=10)).isoformat())
    _run(hall, ADMIN, "add_appointment", code="TEL-2", service="consult", source="phone", name=BOOKED_ONLY[0],
         id_number=id_number(*BOOKED_ONLY[1:]), start_at=(clock.now() + timedelta(hours=2)).isoformat())
    elder = _with_card(hall, "李四")
    _serve(hall, elder, scan=True)
    booked = _with_card(hall, "王五")
    assert booked["priority"] == "appointment"
    _serve(hall, booked)
    walk_in = _run(hall, KIOSK, "issue_ticket", service="consult")["ticket"]
    _serve(hall, walk_in)
    no_show = _with_card(hall, "赵六")
    _run(hall, window(3), "call_next")
    _run(hall, window(3), "skip")
    clock.advance(minutes=config.rules.reinstate_minutes + 1)
    hall.service.tick()                                   # the no-show is closed and recorded

    with MgmtEmulator(token=TOKEN) as emu:
        upstream = UpstreamService(config, hall.service, hall.store, url=emu.url, token=TOKEN, clock=clock)
        assert upstream.forwarder.run_once() == 4
        delivered_at = clock.now()
        assert {r["idempotency_key"] for r in emu.received_records()} == {
            elder["id"], booked["id"], walk_in["id"], no_show["id"]}
    late = _with_card(hall, "钱七")                      # closed after the upstream went away: never delivered
    _serve(hall, late)
    assert hall.record(late["id"])["holder"]["name_masked"] == "钱*"

    month = delivered_at.astimezone(config.tz).strftime("%Y-%m")
    report_at = delivered_at + timedelta(days=400)
    report_before = build_month_report(hall.store.engine, config, month, now=report_at)
    tally_before = _day_tally(db, day)
    assert tally_before["counts"]["finished"] == 4 and report_before["totals"]["issued"] == 5
    text = _db_text(db)
    for name, (birth, serial) in (DELIVERED | UNDELIVERED).items():
        assert all(trace in text for trace in _traces(name, birth, serial, secret)), name
    assert '"孙*"' in text

    # one second before the cutoff: nothing personal goes
    clock.set(delivered_at + timedelta(days=180, seconds=-1))
    counts = upstream.purge_personal_data()
    assert counts == dict.fromkeys(COUNTS, 0)
    assert _without_mark(_db_text(db)) == _without_mark(text)

    # at the cutoff: every trace of the delivered visits (ticket, events, record, booking, replies, scan)
    clock.set(delivered_at + timedelta(days=180))
    counts = upstream.purge_personal_data()
    print("purged:", counts)
    assert counts["visits"] == 3 and counts["outbox"] == 3 and counts["scans"] == 1
    assert counts["events"] >= 3 * 4 and counts["commands"] >= 3 and counts["appointments"] == 1
    text = _db_text(db)
    for name, (birth, serial) in DELIVERED.items():
        for trace in _traces(name, birth, serial, secret):
            assert trace not in text, (name, trace)
    assert '"孙*"' in text                              # the unused booking goes a little later
    # the visit the upstream never got keeps its own: the ticket and its record
    assert hall.record(late["id"])["holder"]["name_masked"] == "钱*"
    birth, serial = UNDELIVERED["钱七"]
    assert all(trace in text for trace in _traces("钱七", birth, serial, secret)[1:])
    assert json.loads(_ticket_data(db, late["id"]))["holder"]["id_hash"] == id_hash(id_number(birth, serial), secret)
    assert _scan_data(db) == [None]                      # the only scan went with its visit
    assert all(_ticket_data(db, t["id"]) for t in (elder, booked, no_show))

    # reports give the same figures; a second run changes nothing
    assert build_month_report(hall.store.engine, config, month, now=report_at) == report_before
    assert _day_tally(db, day) == tally_before
    assert sum(upstream.purge_personal_data().values()) == 0
    assert _without_mark(_db_text(db)) == _without_mark(text)
    clock.advance(days=3)                               # its day ended more than two days before the cutoff
    assert upstream.purge_personal_data() == {**dict.fromkeys(COUNTS, 0), "appointments": 1, "commands": 1}
    text = _db_text(db)
    assert '"孙*"' not in text and id_hash(id_number(*BOOKED_ONLY[1:]), secret) not in text
    clock.advance(days=30)
    assert sum(upstream.purge_personal_data().values()) == 0
    mark = _mark(db)
    clock.advance(days=-10)                              # a clock stepped back: nothing, the mark stays
    assert sum(upstream.purge_personal_data().values()) == 0 and _mark(db) == mark
    assert _without_mark(_db_text(db)) == _without_mark(text)


def _without_mark(text: str) -> str:
    """A dump without the retention mark's row: it moves with every run."""
    return "\n".join(line for line in text.splitlines() if MARK_KEY not in line)


def _mark(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT value FROM hall_state WHERE key = ?", (MARK_KEY,)).fetchone()[0]
    finally:
        conn.close()


def _ticket_data(db: Path, ticket_id: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT data FROM tickets WHERE id = ?", (ticket_id,)).fetchone()[0]
    finally:
        conn.close()


def _scan_data(db: Path) -> list[Any]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT data FROM scans")]
    finally:
        conn.close()


def test_privacy_retention_is_checked_in_the_config():
    data = yaml.safe_load(sample_config_text())
    assert "retention_days: 180" in sample_config_text()
    data["privacy"] = {"retention_days": 0, "keep": True}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "privacy.retention_days" in str(err.value) and "privacy.keep" in str(err.value)
    data["privacy"] = {"retention_days": 30}
    assert parse_config(data).privacy_retention_days == 30
