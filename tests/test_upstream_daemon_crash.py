"""kill -9 the daemon while it forwards to a slow management system; every closed visit must still be
accepted upstream exactly once (resending is fine, the upstream dedupes by idempotency key)."""

from __future__ import annotations

import json
import random
import threading
import time
from contextlib import redirect_stdout
from io import StringIO

import pytest
import sqlalchemy as sa

from hall_controller.bus.client import BusError
from hall_controller.cli import main as hallctl
from hall_controller.config import load_config
from hw_emulators.mgmt import MgmtEmulator

from .harness import DaemonProcess, free_port, init_hall, wait_until

pytestmark = pytest.mark.slow

TOKEN = "crash-test-token"


def _visits(daemon: DaemonProcess, closed: list[str], stop: threading.Event) -> None:
    """Issue, call, finish and rate one visit after another; `closed` gets each acknowledged close."""
    clients = []
    try:
        kiosk = daemon.client("kiosk-1", role="kiosk")
        window = daemon.client("window-2", role="window", window=2)
        tablet = daemon.client("tablet-2", role="tablet", window=2)
        clients = [kiosk, window, tablet]
        try:
            window.request("login", staff_id="S002", pin="1234")
        except BusError as exc:
            if "已" not in str(exc):        # still logged in from before the crash
                raise
        while not stop.is_set():
            kiosk.request("issue_ticket", timeout=2, service="legal_aid")
            ticket = window.request("call_next", timeout=2, finish_current=True)["ticket"]
            window.request("finish", timeout=2)
            tablet.request("rate", timeout=2, ticket=ticket["id"], score=5)
            closed.append(ticket["id"])
    except BusError:
        pass                                  # the daemon was killed under us
    finally:
        for client in clients:
            client.close()


def _outbox(config_path) -> dict:
    """`hallctl outbox --json` of the hall."""
    buffer = StringIO()
    with redirect_stdout(buffer):
        assert hallctl(["--log-level", "WARNING", "outbox", "--config", str(config_path), "--json"]) == 0
    return json.loads(buffer.getvalue())


def test_sigkill_while_forwarding_delivers_every_closed_visit_once(tmp_path):
    port = free_port()

    def mutate(data):
        data["mqtt"]["listen"] = f"127.0.0.1:{port}"
        data["upstream"]["token"] = TOKEN
    config_path = init_hall(tmp_path, mutate)
    rng = random.Random(20261123)
    acked: list[str] = []
    with MgmtEmulator(token=TOKEN) as emu:
        emu.set_fault("slow", ms=400)         # requests in flight when the kill comes
        for _round in range(4):
            daemon = DaemonProcess(config_path, port, "--upstream", emu.url)
            daemon.start()
            stop = threading.Event()
            worker = threading.Thread(target=_visits, args=(daemon, acked, stop))
            worker.start()
            time.sleep(rng.uniform(1.5, 3.0))
            daemon.kill()
            stop.set()
            worker.join(15)
        assert len(acked) > 12, "the rounds closed too few visits"
        assert _outbox(config_path)["pending"] > 0, "the kills should leave records unsent"

        emu.clear_fault()
        daemon = DaemonProcess(config_path, port, "--upstream", emu.url)
        daemon.start()
        try:
            wait_until(lambda: not _outbox(config_path)["pending"], 30, "the outbox to drain", interval=0.2)
            summary = _outbox(config_path)
            assert (summary["pending"], summary["dead"]) == (0, 0), summary

            # hallctl appointment add goes through the running daemon (an admin op over MQTT).
            args = ["appointment", "add", "--config", str(config_path), "--code", "TEL-1", "--service", "consult",
                    "--start", "2030-01-02T10:00", "--source", "phone"]
            assert hallctl(args) == 0
            assert hallctl(args) == 1          # the daemon refuses a second booking with the code
            assert not any("daemon not reachable" in line for line in daemon.log)
        finally:
            assert daemon.terminate() == 0
        received = emu.received_records()

    engine = sa.create_engine(load_config(config_path).database)
    with engine.connect() as conn:
        closed = set(conn.execute(sa.text("SELECT id FROM tickets WHERE closed_at IS NOT NULL")).scalars())
        payloads = dict(conn.execute(sa.text("SELECT record_key, payload FROM outbox")).all())
        booked = conn.execute(sa.text("SELECT count(*) FROM appointments WHERE code = 'TEL-1'")).scalar_one()
    engine.dispose()

    keys = [r["idempotency_key"] for r in received]
    assert len(keys) == len(set(keys)), "a record was accepted twice"
    assert set(acked) <= closed, "an acknowledged close was lost"
    assert set(keys) == closed, "every closed visit reaches the upstream, and nothing else"
    assert all(r["body"] == json.loads(payloads[r["idempotency_key"]]) for r in received)
    assert booked == 1
