"""No clear ID number (nor the holder's full name) anywhere the daemon writes (DESIGN §8, PIPL).

A card goes the whole way — read at kiosk-1, ticket issued with it, called, served, finished (so the
service record waits in the upstream outbox), plus an appointment booked with an ID number — and
then every file in the hall folder (SQLite database, its WAL and shared-memory files, the log file)
is scanned for the number and the name, encoded as UTF-8 and as UTF-16-LE (the card's own text
encoding), while the daemon runs and after it stopped. The masked forms must be there: that proves
the scan reads the data it is meant to.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from hall_controller.service import Actor

from .harness import ELDER, NOW, card_hall, wait_until

APPOINTMENT_ID = "440304199001010011"
SECRETS = (ELDER["id_number"], APPOINTMENT_ID, ELDER["name"], "王五")


def scan(folder: Path) -> dict[str, list[str]]:
    """For each file: which secrets it holds, in which encoding."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for secret in SECRETS:
            for encoding in ("utf-8", "utf-16-le"):
                raw = secret.encode(encoding)
                # as bytes, and as the hex a DEBUG traffic log would write them
                for form, needle in (("", raw), (" hex", raw.hex(" ").upper().encode())):
                    if needle in data:
                        found.setdefault(path.name, []).append(f"{secret} ({encoding}{form})")
    return found


def test_no_clear_id_number_in_database_files_or_logs(tmp_path: Path) -> None:
    log_file = tmp_path / "hall.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    watched = [logging.getLogger(name) for name in ("hall_controller", "drivers")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
    # everything at DEBUG, including the transport's hex traffic dump of the reader's replies
    logging.getLogger("hall_controller").setLevel(logging.DEBUG)
    logging.getLogger("drivers").setLevel(logging.DEBUG)
    hall = card_hall(tmp_path, "pty")
    try:
        hall.service.execute(Actor("admin", "admin"), "add_appointment", {
            "code": "Y0002", "service": "legal_aid", "start_at": (NOW + timedelta(hours=2)).isoformat(),
            "source": "phone", "name": "王五", "id_number": APPOINTMENT_ID})
        card = hall.put_card(ELDER)
        assert card["usable"]
        number = hall.kiosk.request("issue_ticket", service="consult", use_card=True)["ticket"]["number"]
        window = hall.client("window-1", "window", 1)
        window.request("login", staff_id="S001", pin="1234")
        assert window.request("call_next")["ticket"]["number"] == number
        window.request("start")
        hall.clock.advance(minutes=5)
        window.request("finish")
        wait_until(lambda: (tmp_path / "hall.db-wal").exists(), what="the WAL file")
        handler.flush()

        running = scan(tmp_path)
        assert running == {}, running
        database = b"".join(p.read_bytes() for p in tmp_path.glob("hall.db*"))
        assert b"310101********0022" in database        # the masked form is stored ...
        assert "李**".encode() in database               # ... and the masked name
        log_text = log_file.read_text(encoding="utf-8")
        assert "card at kiosk-1: usable" in log_text
        assert "AA AA AA 96 69" in log_text and "the rest not logged" in log_text  # traffic is logged, cut short
    finally:
        hall.close()
        for logger, level in zip(watched, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()
    stopped = scan(tmp_path)
    assert stopped == {}, stopped
