"""kill -9 the daemon at random points under load; nothing acknowledged may be lost or doubled."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from hall_controller.bus.client import BusError
from hall_controller.config import load_config

from .harness import DaemonProcess, free_port, init_hall

pytestmark = pytest.mark.slow


def _kiosk_burst(daemon, acked, stop):
    client = daemon.client("kiosk-1", role="kiosk")
    services = ["consult", "legal_aid", "consult", "mediation"]
    try:
        i = 0
        while not stop.is_set():
            result = client.request("issue_ticket", timeout=2, service=services[i % 4])
            acked["issued"].append(result["ticket"])
            i += 1
    except BusError:
        pass
    finally:
        client.close()


def _window_burst(daemon, window, staff, acked, stop):
    client = daemon.client(f"window-{window}", role="window", window=window)
    try:
        try:
            client.request("login", staff_id=staff, pin="1234")
        except BusError as exc:
            if "已" not in str(exc):       # already logged in before the crash
                raise
        while not stop.is_set():
            result = client.request("call_next", timeout=2, finish_current=True)
            if result["ticket"] is not None:
                acked["called"].append((window, result["ticket"]))
            else:
                time.sleep(0.005)
    except BusError:
        pass
    finally:
        client.close()


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path):
    config_path = init_hall(tmp_path)
    port = free_port()
    rng = random.Random(20261121)
    acked: dict[str, list] = {"issued": [], "called": []}
    for _round in range(4):
        daemon = DaemonProcess(config_path, port)
        daemon.start()
        stop = threading.Event()
        threads = [threading.Thread(target=_kiosk_burst, args=(daemon, acked, stop)),
                   threading.Thread(target=_window_burst, args=(daemon, 3, "S003", acked, stop)),
                   threading.Thread(target=_window_burst, args=(daemon, 4, "S004", acked, stop))]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.4, 1.5))
        daemon.kill()                 # SIGKILL in the middle of the burst
        stop.set()
        for t in threads:
            t.join(15)
    assert len(acked["issued"]) > 20 and len(acked["called"]) > 5, "the burst did not do enough work"

    # One more clean start: the state is rebuilt and the daemon serves.
    daemon = DaemonProcess(config_path, port)
    daemon.start()
    kiosk = daemon.client("kiosk-1", role="kiosk")
    after = kiosk.request("issue_ticket", service="consult")["ticket"]
    kiosk.close()
    assert daemon.terminate() == 0

    engine = sa.create_engine(load_config(config_path).database)
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.text("SELECT id, number, status, day, epoch, data FROM tickets"))}
        seqs = [s for (s,) in conn.execute(sa.text("SELECT seq FROM events ORDER BY seq"))]
    engine.dispose()

    # Every acknowledged ticket is there with the number the kiosk printed.
    for t in acked["issued"]:
        assert t["id"] in rows, f"acknowledged ticket {t['number']} lost"
        assert rows[t["id"]].number == t["number"]
    # No number issued twice (per day, round and prefix), including the one after the last restart.
    numbers = Counter((r.day, r.epoch, r.number) for r in rows.values())
    assert max(numbers.values()) == 1
    assert after["number"] not in {t["number"] for t in acked["issued"]}
    # Every acknowledged call is durable: that ticket left the waiting state.
    for _window, t in acked["called"]:
        assert rows[t["id"]].status in ("called", "serving", "finished"), (t["number"], rows[t["id"]].status)
    # Each ticket is in exactly one state and each window holds at most one open ticket.
    open_per_window = Counter(json.loads(r.data)["window"] for r in rows.values() if r.status in ("called", "serving"))
    assert all(n <= 1 for n in open_per_window.values()), open_per_window
    # The event log has no gap and no duplicate.
    assert seqs == list(range(1, len(seqs) + 1))
