"""Visit tokens (issue 19, DESIGN §10): the key a visitor's phone holds to one ticket.

On the real service (HallService on the hall's SQLite file, manual clock): 128 random bits, only
their sha256 in the database (the database files are searched for the clear token), one ticket per
token and nothing personal in what it reads, the same `not_found` for every token that opens nothing
(10,000 random ones included), a reprint replacing the token, expiry 30 minutes after the visit
closes and at the day reset, and a restart keeping both the open and the recently closed visits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

from hall_controller.domain import DomainError
from hall_controller.domain.visit import NOT_FOUND_TEXT

from .harness import ADMIN, ELDER, KIOSK, MONDAY, PIN, WEB, Hall, card, refused, service_hall, window

PUBLIC_URL = "http://192.168.10.2:8080"


def with_web(data: dict) -> None:
    data["web"] = {"listen": "0.0.0.0:8080", "public_url": PUBLIC_URL}


@pytest.fixture
def hall(tmp_path):
    h = service_hall(tmp_path, mutate=with_web)
    yield h
    h.close()


def issue(hall: Hall, service: str = "consult", **args) -> dict:
    return hall.run(KIOSK, "issue_ticket", service=service, **args)


def status(hall: Hall, token: object) -> dict:
    return hall.run(WEB, "ticket_status", token=token)


def not_found(hall: Hall, op: str, token: object, **args) -> bool:
    """True when `op` with `token` is refused exactly as an unknown token is."""
    err = refused(hall, WEB, op, token=token, **args)
    return (err.code, err.message) == ("not_found", NOT_FOUND_TEXT)


def database_text(hall: Hall) -> bytes:
    """Every byte the hall's SQLite database holds: the files (WAL included) and a full SQL dump."""
    path = Path(hall.config.database.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump()).encode()
    return raw + dump


def test_a_token_is_128_random_bits_in_the_qr_url_and_only_its_hash_is_stored(hall):
    tokens = []
    for service in ("consult", "legal_aid", "consult"):
        reply = issue(hall, service)
        token = reply["visit_token"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token)
        assert len(base64.urlsafe_b64decode(token + "==")) == 16                  # 128 bits
        assert reply["visit_url"] == f"{PUBLIC_URL}/t/{token}"
        tokens.append(token)
    assert len(set(tokens)) == 3
    reprinted = hall.run(KIOSK, "reprint", ticket=issue(hall)["ticket"]["id"])
    tokens.append(reprinted["visit_token"])
    # a command with an id keeps its reply for redelivery: stored without the token
    tokens.append(hall.service.execute(KIOSK, "issue_ticket", {"service": "mediation"}, "cmd-1")["visit_token"])
    hall.service.store.close()               # checkpoint nothing away: the WAL is read too
    stored = database_text(hall)
    for token in tokens:
        assert token.encode() not in stored
        assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    published = json.dumps(hall.events, ensure_ascii=False)
    assert not any(token in published for token in tokens)
    assert "visit_token_hash" not in published                      # not even the hash leaves the daemon


def test_a_token_reads_its_own_ticket_and_nothing_personal(hall):
    hall.service.card_inserted("kiosk-1", card(**{k: ELDER[k] for k in ("name", "birth")}, serial="002"))
    mine = issue(hall, use_card=True)
    other = issue(hall)
    page = status(hall, mine["visit_token"])
    ticket = page["ticket"]
    assert (ticket["number"], ticket["service"], ticket["service_name"], ticket["status"]) == (
        mine["ticket"]["number"], "consult", "法律咨询", "waiting")
    assert ticket["ahead"] == 0 and page["hall"] == {"name": hall.config.name} and page["seq"] >= 2
    assert status(hall, other["visit_token"])["ticket"]["number"] == other["ticket"]["number"]
    text = json.dumps(page, ensure_ascii=False)
    holder = mine["ticket"]["holder"]
    for private in (holder["name_masked"], holder["id_masked"], mine["ticket"]["id"], other["ticket"]["id"],
                    other["ticket"]["number"], mine["visit_token"], "holder", "id_hash"):
        assert private not in text, private
    assert set(page) == {"ticket", "recent_calls", "windows", "hall", "seq"}


def test_the_page_follows_the_ticket_through_its_visit(hall):
    first, mine = issue(hall), issue(hall)
    token = mine["visit_token"]
    assert status(hall, token)["ticket"]["ahead"] == 1
    hall.run(window(3), "login", staff_id="S003", pin=PIN)
    hall.run(window(3), "call_next")                                    # calls the first
    page = status(hall, token)
    assert page["ticket"]["ahead"] == 0 and page["windows"] == [3]
    assert page["recent_calls"] == [{"number": first["ticket"]["number"], "window": 3, "at": page["recent_calls"][0]["at"]}]
    hall.run(window(3), "call_next", finish_current=True)
    ticket = status(hall, token)["ticket"]
    assert (ticket["status"], ticket["window"], ticket["ahead"]) == ("called", 3, None)
    hall.run(window(3), "start")
    assert status(hall, token)["ticket"]["rating"]["allowed"] is True    # the tablet's rule: while served
    hall.clock.advance(minutes=5)
    hall.run(window(3), "finish")
    ticket = status(hall, token)["ticket"]
    assert ticket["status"] == "finished" and ticket["rating"]["allowed"] and ticket["rating"]["until"]


BAD_TOKENS = [None, 12345, "", "abc", "x" * 22, "A" * 21 + "B", "A" * 23, "../../etc/passwd", "é" * 22,
              {"token": "x"}, ["A" * 22], "A" * 10_000]


def test_wrong_malformed_replaced_and_expired_tokens_get_one_answer(hall):
    """No oracle: a guessed, malformed, replaced or expired token and a token for a ticket closed
    too long ago are answered alike, by every token op."""
    replaced = issue(hall)
    hall.run(KIOSK, "reprint", ticket=replaced["ticket"]["id"])
    hall.run(window(3), "login", staff_id="S003", pin=PIN)
    served = issue(hall, "consult")
    while hall.run(window(3), "call_next", finish_current=True)["ticket"]["id"] != served["ticket"]["id"]:
        pass
    hall.run(window(3), "finish")
    hall.clock.advance(minutes=3)
    hall.service.tick()                                                   # closed unrated (未评价) …
    hall.clock.advance(minutes=31)                                        # … and closed too long ago
    live = issue(hall)["visit_token"]
    flipped = live[:5] + ("B" if live[5] != "B" else "C") + live[6:]
    for token in (*BAD_TOKENS, secrets.token_urlsafe(16), flipped, replaced["visit_token"], served["visit_token"]):
        for op, args in (("ticket_status", {}), ("leave", {}), ("rate_by_token", {"score": 5})):
            assert not_found(hall, op, token, **args), (op, token)
    assert status(hall, live)["ticket"]["status"] == "waiting"            # the live one still works


def test_ten_thousand_random_tokens_find_no_ticket(hall):
    hall.run(window(3), "login", staff_id="S003", pin=PIN)
    for _ in range(40):
        issue(hall)
    hall.run(window(3), "call_next")
    answers = set()
    started = time.perf_counter()
    for _ in range(10_000):
        try:
            status(hall, secrets.token_urlsafe(16))
        except DomainError as exc:
            answers.add((exc.code, exc.message))
        else:
            answers.add(("found", ""))
    elapsed = time.perf_counter() - started
    assert answers == {("not_found", NOT_FOUND_TEXT)}
    assert elapsed < 5, f"10,000 lookups took {elapsed:.2f} s"
    print(f"10,000 random tokens: {elapsed * 1000 / 10_000:.3f} ms a lookup")


def test_a_reprint_replaces_the_token(hall):
    ticket = issue(hall)
    old = ticket["visit_token"]
    new = hall.run(KIOSK, "reprint", ticket=ticket["ticket"]["id"])["visit_token"]
    assert new != old
    assert not_found(hall, "ticket_status", old) and not_found(hall, "leave", old)
    assert status(hall, new)["ticket"]["number"] == ticket["ticket"]["number"]
    # the card holder asking again is a reprint too (one active ticket per person and service)
    hall.service.card_inserted("kiosk-1", card(serial="007"))
    first = issue(hall, use_card=True)
    hall.service.card_inserted("kiosk-1", card(serial="007"))
    again = issue(hall, use_card=True)
    assert again["reprinted"] and again["ticket"]["id"] == first["ticket"]["id"]
    assert not_found(hall, "ticket_status", first["visit_token"])
    assert status(hall, again["visit_token"])["ticket"]["number"] == first["ticket"]["number"]


def test_a_token_expires_30_minutes_after_the_visit_closes(hall):
    ticket = issue(hall)
    token = ticket["visit_token"]
    hall.clock.advance(hours=3)                            # an open visit's token does not age
    left = hall.run(WEB, "leave", token=token)["ticket"]
    assert left["status"] == "left" and left["closed_at"]
    hall.clock.advance(minutes=29, seconds=59)
    assert status(hall, token)["ticket"]["status"] == "left"
    hall.clock.advance(seconds=1)
    assert not_found(hall, "ticket_status", token)          # without a tick: the answer is the clock's
    hall.service.tick()
    assert not_found(hall, "ticket_status", token)
    assert not hall.service.engine.state.recent_closed       # and the closed visit left memory


def test_a_served_visit_closes_after_its_rating_time_and_reads_30_minutes_more(hall):
    hall.run(window(3), "login", staff_id="S003", pin=PIN)
    ticket = issue(hall)
    token = ticket["visit_token"]
    hall.run(window(3), "call_next")
    hall.run(window(3), "start")
    hall.clock.advance(minutes=10)
    hall.run(window(3), "finish")
    hall.clock.advance(minutes=3)
    hall.service.tick()                                      # 未评价: closed now
    page = status(hall, token)["ticket"]
    assert page["status"] == "finished" and page["closed_at"] and page["rating"] == {
        "allowed": False, "done": False, "by": None, "score": None, "until": page["rating"]["until"]}
    hall.restart()                                            # the closed visit is read from the database
    assert status(hall, token)["ticket"]["closed_at"] == page["closed_at"]
    hall.clock.advance(minutes=30)
    assert not_found(hall, "ticket_status", token)


def test_tokens_expire_at_the_day_reset(hall):
    waiting = issue(hall)["visit_token"]
    hall.run(window(3), "login", staff_id="S003", pin=PIN)
    called = issue(hall)["visit_token"]
    hall.run(window(3), "call_next")
    left = issue(hall)["visit_token"]
    hall.run(WEB, "leave", token=left)
    hall.run(ADMIN, "reset_day")                               # a manual reset: a new epoch
    for token in (waiting, called, left):
        assert not_found(hall, "ticket_status", token)
    fresh = issue(hall)["visit_token"]
    midnight = MONDAY.replace(hour=0) + timedelta(days=1)
    hall.clock.advance(seconds=(midnight - hall.clock.now()).total_seconds() - 1)
    assert status(hall, fresh)["ticket"]["status"] == "waiting"
    hall.clock.advance(seconds=1)                             # the day rolls at 00:00 (rules.day_reset)
    assert not_found(hall, "ticket_status", fresh)             # before any tick rolls the day
    hall.service.tick()
    assert not_found(hall, "ticket_status", fresh)


def test_a_restart_keeps_open_tickets_tokens(hall):
    token = issue(hall)["visit_token"]
    hall.restart()
    assert status(hall, token)["ticket"]["status"] == "waiting"


def test_without_a_public_url_the_ticket_has_a_token_but_no_url(tmp_path):
    def no_web(data: dict) -> None:
        data.pop("web", None)

    h = service_hall(tmp_path, mutate=no_web)
    try:
        reply = issue(h)
        assert reply["visit_url"] is None and reply["visit_token"]
        assert status(h, reply["visit_token"])["ticket"]["status"] == "waiting"
    finally:
        h.close()


def test_the_printed_ticket_carries_the_visit_url_and_the_wifi_qr(tmp_path):
    """Over MQTT to the emulated printer: the QR codes decoded from the ticket's ESC/POS bytes and,
    by a real QR reader, from the picture of the paper, are the Wi-Fi join code and the visit URL."""
    import io

    import zxingcpp
    from PIL import Image

    from drivers.codecs.escpos import VISIT_LINE, WIFI_LINE
    from hall_controller.config import wifi_qr_payload

    from .harness import device_hall, wait_until

    def web_with_wifi(data: dict) -> None:
        data["web"] = {"listen": "0.0.0.0:8080", "public_url": PUBLIC_URL,
                       "wifi": {"ssid": "法律服务中心-访客", "password": "guest;2026:ok"}}

    h = device_hall(tmp_path, mutate=web_with_wifi)
    try:
        wait_until(lambda: h.service.snapshot()["devices"].get("printer-1", {}).get("online"), 10, "printer-1")
        reply = h.client("kiosk-1").request("issue_ticket", service="consult")
        assert reply["printed"] is True
        printer = h.emu.device("printer-1")
        [ticket] = printer.view()["tickets"]
        wifi = wifi_qr_payload("法律服务中心-访客", "guest;2026:ok")
        assert wifi == "WIFI:T:WPA;S:法律服务中心-访客;P:guest\\;2026\\:ok;;"
        assert ticket["qr"] == [wifi, reply["visit_url"]]
        assert ticket["lines"].index(WIFI_LINE) < ticket["lines"].index(VISIT_LINE)
        png = printer.png(ticket["n"])
        shots = Path(os.environ.get("HALL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "hall-screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        (shots / "ticket_visit_qr.png").write_bytes(png)           # HALL_SCREENSHOTS keeps it to look at
        picture = Image.open(io.BytesIO(png))
        decoded = [r.text for r in sorted(zxingcpp.read_barcodes(picture), key=lambda r: r.position.top_left.y)]
        assert decoded == [wifi, f"{PUBLIC_URL}/t/{reply['visit_token']}"]
    finally:
        h.close()
