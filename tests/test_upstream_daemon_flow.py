"""The upstream link end to end on real parts: HallService on an SQLite file, UpstreamService with its
Forwarder, the management-system emulator over HTTP, and hallctl.

Simulated hall traffic runs on a ManualClock, so a week or a month takes seconds.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from hall_controller.cli import main as hallctl
from hall_controller.domain import DomainError
from hall_controller.service import Actor
from hall_controller.upstream.service import UpstreamService, build_month_report, month_records
from hw_emulators.mgmt import MgmtEmulator

from .harness import Hall, service_hall

TZ = ZoneInfo("Asia/Shanghai")
TOKEN = "hall-test-token"
# Arrivals per service, roughly as in a district hall: consultations dominate.
SERVICE_MIX = ["consult"] * 5 + ["legal_aid"] * 2 + ["mediation", "notary", "appraisal", "general"]
SCORE_WEIGHTS = [1, 1, 3, 10, 25]


# -- fixtures ----------------------------------------------------------------------------------

def upstream_hall(directory: Path, start: datetime) -> Hall:
    """A hall folder (config, secret, credentials, SQLite database) with a service on a manual clock
    from `start`, its config carrying the upstream token."""
    return service_hall(directory, start, mutate=lambda data: data["upstream"].update(token=TOKEN))


def upstream_of(hall: Hall, emu: MgmtEmulator) -> UpstreamService:
    return UpstreamService(hall.config, hall.service, hall.store, url=emu.url, token=TOKEN, clock=hall.clock)


def outbox_rows(hall: Hall) -> list[sa.Row]:
    with hall.store.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT id, record_key, kind, status, payload FROM outbox ORDER BY id")))


def closed_ticket_ids(hall: Hall) -> set[str]:
    with hall.store.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM tickets WHERE closed_at IS NOT NULL")).scalars())


@pytest.fixture
def emu():
    with MgmtEmulator(token=TOKEN) as emulator:
        yield emulator


# -- traffic -----------------------------------------------------------------------------------

class Traffic:
    """Kiosk, windows and tablets driving the service like a busy hall: issue, call, start, finish,
    skip, transfer and rate, with the service's clock tick between steps."""

    def __init__(self, hall: Hall, seed: int):
        self.hall, self.service, self.clock = hall, hall.service, hall.clock
        self.rng = random.Random(seed)
        self.kiosk = Actor("kiosk-1", "kiosk")
        numbers = [w.number for w in hall.config.windows]
        self.windows = {n: Actor(f"window-{n}", "window", n) for n in numbers}
        self.tablets = {n: Actor(f"tablet-{n}", "tablet", n) for n in numbers}
        self.busy_until: dict[int, datetime] = {}
        for n, actor in self.windows.items():
            self.service.execute(actor, "login", {"staff_id": f"S{n:03d}", "pin": "1234"})

    def day(self, day: date, *, opens: time, closes: time, arrival_p: float, step: int = 60,
            drain_minutes: int = 45, every_step=None) -> None:
        """One business day: arrivals until `closes`, then serve what is waiting for a while."""
        self.clock.set(datetime.combine(day, opens, TZ))
        self.service.tick()                     # the day change closes yesterday's leftovers
        end = datetime.combine(day, closes, TZ)
        drain_end = end + timedelta(minutes=drain_minutes)
        while self.clock.now() < drain_end:
            if self.clock.now() < end and self.rng.random() < arrival_p:
                self.service.execute(self.kiosk, "issue_ticket", {"service": self.rng.choice(SERVICE_MIX)})
            for number in self.windows:
                self._window(number)
            self.service.tick()
            if every_step is not None:
                every_step()
            self.clock.advance(seconds=step)

    def _window(self, number: int) -> None:
        actor, now, rng = self.windows[number], self.clock.now(), self.rng
        current = self.service.engine.window_view(number)["ticket"]
        if current is None:
            self.service.execute(actor, "call_next")
        elif current["status"] == "called":
            if rng.random() < 0.06:
                self.service.execute(actor, "skip")
            else:
                self.service.execute(actor, "start")
                self.busy_until[number] = now + timedelta(seconds=rng.randint(90, 540))
        elif now >= self.busy_until.get(number, now):
            if rng.random() < 0.05:
                other = rng.choice([s for s in set(SERVICE_MIX) if s != current["service"]])
                self.service.execute(actor, "transfer", {"service": other})
                return
            self.service.execute(actor, "finish")
            if rng.random() < 0.7:
                score = rng.choices(range(1, 6), SCORE_WEIGHTS)[0]
                self.service.execute(self.tablets[number], "rate", {"ticket": current["id"], "score": score})


# -- (a) a week of traffic during an outage, then delivery -------------------------------------------

@pytest.mark.slow
def test_week_outage_then_every_record_delivered_once_in_order(tmp_path, emu):
    hall = upstream_hall(tmp_path, datetime(2026, 11, 16, 8, 0, tzinfo=TZ))
    upstream = upstream_of(hall, emu)
    emu.set_fault("5xx")
    rounds = 0

    def forward_during_outage():
        nonlocal rounds
        if hall.clock.now().minute % 10 == 0:     # the forwarder keeps trying all week
            upstream.forwarder.run_once()
            rounds += 1

    traffic = Traffic(hall, seed=16)
    for offset in range(7):
        traffic.day(date(2026, 11, 16) + timedelta(days=offset), opens=time(8, 0), closes=time(18, 0),
                    arrival_p=0.5, every_step=forward_during_outage)
    hall.clock.set(datetime(2026, 11, 23, 7, 0, tzinfo=TZ))
    hall.service.tick()                           # Monday: last Sunday's leftovers close

    closed = closed_ticket_ids(hall)
    rows = outbox_rows(hall)
    assert len(closed) > 2000, "the week should close thousands of visits"
    assert {r.record_key for r in rows} == closed and all(r.status == "pending" for r in rows)
    assert sum(1 for e in hall.events if e["type"] == "visit_closed") == len(closed)
    assert emu.received_records() == []

    emu.clear_fault()
    for _ in range(500):
        hall.clock.advance(minutes=5)             # past the breaker's pause
        upstream.forwarder.run_once()
        if upstream.forwarder.outbox_summary()["pending"] == 0:
            break
    summary = upstream.forwarder.outbox_summary()
    assert (summary["pending"], summary["dead"], summary["delivered"]) == (0, 0, len(closed))

    received = emu.received_records()
    keys = [r["idempotency_key"] for r in received]
    assert len(keys) == len(set(keys)) == len(closed) and set(keys) == closed
    assert keys == [r.record_key for r in rows], "records arrive in the order the visits closed"
    payloads = {r.record_key: json.loads(r.payload) for r in rows}
    assert all(r["body"] == payloads[r["idempotency_key"]] for r in received)
    # The breaker: at most two requests per round during the outage, not one per waiting row.
    retried = sum(r["attempts"] - 1 for r in received)
    assert 0 < retried <= 2 * rounds, f"{retried} failed requests in {rounds} rounds"


# -- (c) the monthly report against the event log ------------------------------------------------

def _nearest_rank_p90(values: list[int]) -> int | None:
    return sorted(values)[math.ceil(0.9 * len(values)) - 1] if values else None


def figures_from_events(events, month: str, tz) -> dict:
    """The month's figures straight from the event log, without service records."""
    issued_at, service, first_call, started, finished = {}, {}, {}, {}, {}
    skipped, transfers, scores = set(), Counter(), {}
    for ev in events:
        ticket = ev.get("ticket")
        if ticket is None:
            continue
        tid, ts = ticket["id"], datetime.fromisoformat(ev["ts"])
        service[tid] = ticket["service"]       # the last service wins, as after a transfer
        kind = ev["type"]
        if kind == "ticket_issued":
            issued_at[tid] = ts
        elif kind == "ticket_called":
            first_call.setdefault(tid, ts)
        elif kind == "service_started":
            started.setdefault(tid, ts)
        elif kind == "service_finished":
            finished[tid] = ts
        elif kind == "ticket_skipped":
            skipped.add(tid)
        elif kind == "ticket_transferred":
            transfers[tid] += 1
        elif kind == "rating_received":
            scores[tid] = ticket["rating"]["score"]
    mine = {t for t, ts in issued_at.items() if f"{ts.astimezone(tz):%Y-%m}" == month}
    waits = [round((first_call[t] - issued_at[t]).total_seconds()) for t in mine if t in first_call]
    handlings = [round((finished[t] - started[t]).total_seconds()) for t in mine if t in finished]
    rated = [scores[t] for t in mine if t in scores]
    return {
        "issued": len(mine),
        "served": sum(1 for t in mine if t in finished),
        "no_show": sum(1 for t in mine if t in skipped),
        "transfers": sum(transfers[t] for t in mine),
        "wait_avg": round(sum(waits) / len(waits), 1),
        "wait_p90": _nearest_rank_p90(waits),
        "handling_avg": round(sum(handlings) / len(handlings), 1),
        "handling_p90": _nearest_rank_p90(handlings),
        "rated": len(rated),
        **{f"score_{s}": rated.count(s) for s in range(1, 6)},
        "satisfaction_rate": round(sum(1 for s in rated if s >= 4) / len(rated), 4),
        "by_service": {code: {"issued": sum(1 for t in mine if service[t] == code),
                              "served": sum(1 for t in mine if service[t] == code and t in finished)}
                       for code in set(service.values())},
    }


@pytest.mark.slow
def test_month_report_matches_the_event_log_and_hallctl_writes_it(tmp_path, emu, capsys):
    hall = upstream_hall(tmp_path, datetime(2026, 10, 31, 7, 30, tzinfo=TZ))
    traffic = Traffic(hall, seed=11)
    day = date(2026, 10, 31)
    while day <= date(2026, 12, 1):
        # From 06:00 hall time: visits before 08:00 are on the previous day in UTC, so the report must
        # count them by the hall's own calendar (1 Nov 07:40 is 31 Oct in UTC).
        traffic.day(day, opens=time(6, 0), closes=time(10, 0), arrival_p=0.14, step=120, drain_minutes=20)
        # A late visitor nobody calls: cancelled at the day change, neither served nor a no-show.
        hall.service.execute(traffic.kiosk, "issue_ticket", {"service": "mediation"})
        day += timedelta(days=1)

    report = build_month_report(hall.store.engine, hall.config, "2026-11")
    expected = figures_from_events(hall.store.iter_events(), "2026-11", TZ)
    totals = report["totals"]
    assert totals["issued"] > 400
    for key, value in expected.items():
        if key != "by_service":
            assert totals[key] == value, key
    assert totals["served"] + totals["no_show"] < totals["issued"], "some tickets were cancelled at day end"
    by_service = {row["service"]: row for row in report["by_service"]}
    for code, figures in expected["by_service"].items():
        assert (by_service[code]["issued"], by_service[code]["served"]) == (figures["issued"], figures["served"])
    assert sum(d["issued"] for d in report["by_day"]) == totals["issued"]
    # Visits of 1 Nov before 08:00 carry 31 Oct UTC times and still count on 1 Nov.
    early = [r for r in month_records(hall.store.engine, hall.config, "2026-11")
             if datetime.fromisoformat(r["issued_at"]).astimezone(TZ).date() == date(2026, 11, 1)
             and datetime.fromisoformat(r["issued_at"]).date() == date(2026, 10, 31)]
    assert early and report["by_day"][0]["issued"] >= len(early)

    # The daemon's part: once December runs the report is queued and delivered once.
    upstream = upstream_of(hall, emu)
    assert upstream.ensure_monthly_report() == "report-310101-demo-2026-11"
    assert upstream.ensure_monthly_report() is None
    while upstream.forwarder.run_once():      # the month's service records go first, in id order
        pass
    [received] = emu.received_reports()
    assert (received["hall"], received["month"]) == ("310101-demo", "2026-11")
    assert received["body"]["totals"] == totals

    # hallctl report month: JSON + XLSX + HTML.
    out = tmp_path / "reports"
    assert hallctl(["report", "month", "2026-11", "--config", str(hall.config_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "《示范区公共法律服务统计月报表》2026-11" in printed
    stem = out / "report-310101-demo-2026-11"
    assert json.loads(stem.with_name(stem.name + ".json").read_text(encoding="utf-8"))["totals"] == totals
    workbook = load_workbook(stem.with_name(stem.name + ".xlsx"))
    assert workbook.sheetnames == ["汇总", "按服务", "按窗口", "按人员", "按日"]
    summary = {row[0]: row[1] for row in workbook["汇总"].iter_rows(min_row=5, max_col=2, values_only=True) if row[0]}
    assert summary["取号数"] == expected["issued"] and summary["办结数"] == expected["served"]
    assert summary["评价数"] == expected["rated"] and summary["满意率"] == expected["satisfaction_rate"]
    service_rows = list(workbook["按服务"].iter_rows(min_row=4, values_only=True))
    assert service_rows[-1][0] == "合计" and service_rows[-1][1] == expected["issued"]
    assert sum(r[1] for r in service_rows[:-1]) == expected["issued"]
    assert len(list(workbook["按日"].iter_rows(min_row=4))) == 31           # 30 days + 合计
    html = stem.with_name(stem.name + ".html").read_text(encoding="utf-8")
    assert "<h1>示范区公共法律服务统计月报表</h1>" in html


def test_month_report_waits_for_open_visits_until_the_due_day(tmp_path, emu):
    hall = upstream_hall(tmp_path, datetime(2026, 11, 30, 23, 40, tzinfo=TZ))
    upstream = upstream_of(hall, emu)
    window = Actor("window-1", "window", 1)
    hall.service.execute(window, "login", {"staff_id": "S001", "pin": "1234"})
    hall.service.execute(Actor("kiosk-1", "kiosk"), "issue_ticket", {"service": "consult"})
    hall.service.execute(window, "call_next")
    hall.service.execute(window, "start")                # served across midnight: still open on 1 Dec
    assert upstream.ensure_monthly_report() is None      # still November
    hall.clock.set(datetime(2026, 12, 1, 0, 5, tzinfo=TZ))
    hall.service.tick()
    assert upstream.ensure_monthly_report() is None      # December, but a November visit is open
    hall.clock.set(datetime(2026, 12, 25, 9, 0, tzinfo=TZ))
    hall.service.tick()
    assert upstream.ensure_monthly_report() == "report-310101-demo-2026-11"   # due day: send anyway
    upstream.forwarder.run_once()
    assert [r["month"] for r in emu.received_reports()] == ["2026-11"]


# -- (d) appointments: synced while up, checked in while down ------------------------------------

def test_appointment_check_in_works_while_the_upstream_is_down(tmp_path, emu):
    hall = upstream_hall(tmp_path, datetime(2026, 11, 23, 8, 0, tzinfo=TZ))
    upstream = upstream_of(hall, emu)
    code = hall.config.hall_code
    emu.set_appointments([
        {"code": "Y100", "hall": code, "date": "2026-11-23", "time": "10:00", "service": "consult",
         "name": "王小明"},
        {"code": "Y101", "hall": code, "date": "2026-11-23", "start_at": "2026-11-23T11:00:00+08:00",
         "service": "legal_aid"},
        {"code": "Y200", "hall": code, "date": "2026-11-24", "time": "09:00", "service": "mediation"},
        {"code": "Y999", "hall": code, "date": "2026-11-23", "time": "09:00", "service": "no-such-service"},
        {"code": "OTHER", "hall": "another-hall", "date": "2026-11-23", "time": "09:00", "service": "consult"},
    ])
    assert upstream.sync_appointments() == {"added": 3, "invalid": 1}
    assert upstream.sync_appointments() == {"unchanged": 3, "invalid": 1}     # idempotent

    # The booking Y101 is cancelled upstream: the next sync withdraws it.
    bookings = emu.appointments()
    bookings[1]["status"] = "cancelled"
    emu.set_appointments(bookings)
    assert upstream.sync_appointments()["cancelled"] == 1
    assert sum(1 for e in hall.events if e["type"] == "appointment_cancelled") == 1

    emu.set_fault("reset")
    assert upstream.sync_appointments() == {}
    emu.stop()
    assert upstream.sync_appointments() == {}

    hall.clock.set(datetime(2026, 11, 23, 9, 45, tzinfo=TZ))
    kiosk = Actor("kiosk-1", "kiosk")
    ticket = hall.service.execute(kiosk, "issue_ticket", {"service": "consult", "appointment_code": "Y100"})["ticket"]
    assert ticket["priority"] == "appointment" and ticket["number"] == "A001"
    with pytest.raises(DomainError) as refused:
        hall.service.execute(kiosk, "issue_ticket", {"service": "legal_aid", "appointment_code": "Y101"})
    assert refused.value.code == "not_found"

    # hallctl appointment add works on the database while no daemon runs, on the hall's clock: with the
    # wall clock its stand-in service would roll the business day under the running one.
    assert hallctl(["appointment", "add", "--config", str(hall.config_path), "--code", "P1", "--service",
                    "notary", "--start", "2026-11-23T15:00", "--source", "phone", "--name", "李四"],
                   clock=hall.clock) == 0
    with hall.store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events WHERE type = 'day_reset'")).scalar_one() == 0
    with hall.store.engine.connect() as conn:
        stored = json.loads(conn.execute(sa.text("SELECT data FROM appointments WHERE code = 'P1'")).scalar_one())
    assert (stored["start_at"], stored["source"], stored["name_masked"]) == ("2026-11-23T15:00:00.000+08:00",
                                                                             "phone", "李*")


def test_hallctl_appointment_list(tmp_path, emu, capsys):
    hall = upstream_hall(tmp_path, datetime(2026, 11, 23, 8, 0, tzinfo=TZ))
    emu.set_appointments([{"code": "Y100", "hall": hall.config.hall_code, "date": "2026-11-23", "time": "10:00",
                           "service": "consult", "name": "王小明"}])
    upstream_of(hall, emu).sync_appointments()
    capsys.readouterr()
    assert hallctl(["appointment", "list", "--config", str(hall.config_path), "--from", "2026-11-23"]) == 0
    out = capsys.readouterr().out
    assert "Y100  2026-11-23 10:00:00  法律咨询  网上(12348)  王*" in out and "已预约" in out
    # Without --from the list starts "today" by the clock hallctl is given, not by the wall clock.
    assert hallctl(["appointment", "list", "--config", str(hall.config_path)], clock=hall.clock) == 0
    assert "2026-11-23 起的预约" in capsys.readouterr().out


# -- (e) a dead letter: alert, hallctl outbox, --retry -----------------------------------------------

def test_dead_letter_alerts_and_hallctl_outbox_retries_it(tmp_path, emu, capsys):
    hall = upstream_hall(tmp_path, datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    upstream = upstream_of(hall, emu)
    window, kiosk = Actor("window-3", "window", 3), Actor("kiosk-1", "kiosk")
    hall.service.execute(window, "login", {"staff_id": "S003", "pin": "1234"})
    ids = []
    for _ in range(2):
        ids.append(hall.service.execute(kiosk, "issue_ticket", {"service": "consult"})["ticket"]["id"])
        hall.service.execute(window, "call_next")
        hall.service.execute(window, "finish")
        hall.service.execute(Actor("tablet-3", "tablet", 3), "rate", {"ticket": ids[-1], "score": 5})

    emu.set_fault("4xx", count=1)            # the first record is refused for good
    upstream.forwarder.run_once()
    alerts = [e for e in hall.events if e["type"] == "upstream_dead_letter"]
    assert len(alerts) == 1 and alerts[0]["supervisor"] is True
    assert alerts[0]["detail"]["record_key"] == ids[0] and "HTTP 422" in alerts[0]["detail"]["error"]
    assert [r["idempotency_key"] for r in emu.received_records()] == [ids[1]]

    capsys.readouterr()
    assert hallctl(["outbox", "--config", str(hall.config_path)]) == 0
    out = capsys.readouterr().out
    assert "待发送 pending: 0" in out and "已送达 delivered: 1" in out and "上报失败（需处理） dead: 1" in out
    assert ids[0] in out and "HTTP 422" in out
    assert hallctl(["outbox", "--config", str(hall.config_path), "--retry", "nope"]) == 1
    assert hallctl(["outbox", "--config", str(hall.config_path), "--retry", ids[0]]) == 0
    assert "已重新排队 1 条" in capsys.readouterr().out
    assert hallctl(["outbox", "--config", str(hall.config_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["pending"], summary["dead"], summary["dead_records"]) == (1, 0, [])

    upstream.forwarder.run_once()
    assert [r["idempotency_key"] for r in emu.received_records()] == [ids[1], ids[0]]
    assert upstream.forwarder.outbox_summary()["delivered"] == 2


# -- (f) refused credentials: a pause and one alert, never a dead letter -----------------------------

def test_401_for_a_while_pauses_alerts_once_and_then_delivers_every_record_once(tmp_path, emu):
    hall = upstream_hall(tmp_path, datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    upstream = upstream_of(hall, emu)
    forwarder = upstream.forwarder
    window, kiosk = Actor("window-3", "window", 3), Actor("kiosk-1", "kiosk")
    hall.service.execute(window, "login", {"staff_id": "S003", "pin": "1234"})

    def visit() -> str:
        ticket_id = hall.service.execute(kiosk, "issue_ticket", {"service": "consult"})["ticket"]["id"]
        hall.service.execute(window, "call_next")
        hall.service.execute(window, "finish")
        hall.service.execute(Actor("tablet-3", "tablet", 3), "rate", {"ticket": ticket_id, "score": 5})  # closes it
        return ticket_id

    def alerts() -> list[dict]:
        return [e for e in hall.events if e["type"] == "upstream_unauthorized"]

    ids = [visit() for _ in range(3)]
    emu.set_fault("401")                      # the token was revoked upstream
    for round_no in range(6):                 # the forwarder keeps trying, further and further apart
        if round_no == 3:
            ids.append(visit())               # visits go on closing during the episode
        wakeup = forwarder.next_wakeup()
        assert wakeup is not None and (wakeup > hall.clock.now() or round_no == 0)
        hall.clock.set(max(wakeup, hall.clock.now()))
        assert forwarder.run_once() == 1      # one request per round, not one per record
    summary = forwarder.outbox_summary()
    assert (summary["pending"], summary["dead"], summary["delivered"]) == (4, 0, 0)
    assert summary["credentials_refused"].startswith("HTTP 401")
    assert len(alerts()) == 1 and alerts()[0]["supervisor"] is True
    assert "upstream.token" in alerts()[0]["detail"]["message"]
    assert not [e for e in hall.events if e["type"] == "upstream_dead_letter"]
    assert emu.received_records() == []

    emu.clear_fault()                          # the operator fixed the credentials
    hall.clock.set(forwarder.next_wakeup())
    assert forwarder.run_once() == 4
    received = emu.received_records()
    assert [r["idempotency_key"] for r in received] == ids, "each record once, in order"
    summary = forwarder.outbox_summary()
    assert (summary["pending"], summary["dead"], summary["delivered"], summary["credentials_refused"]) == \
        (0, 0, 4, None)
    assert len(alerts()) == 1

    # A later episode (403 this time) is a new alert, again without a dead letter.
    emu.set_fault("403")
    ids.append(visit())
    forwarder.run_once()
    assert len(alerts()) == 2 and "HTTP 403" in alerts()[1]["detail"]["error"]
    emu.clear_fault()
    hall.clock.set(forwarder.next_wakeup())
    forwarder.run_once()
    assert [r["idempotency_key"] for r in emu.received_records()] == ids
    assert forwarder.outbox_summary()["dead"] == 0
