"""A Qt app killed with -9 mid-visit comes back showing the hall: the demo's supervisor restarts it, the
display rebuilds the board from the broker's retained state, the kiosk returns to its start screen
(the ticket it was issuing is in the daemon and on paper), the window terminal shows the visit under
way, and the tablet asks again for the rating it was asking for when it died.

The real demo (`DemoHall`: daemon, embedded broker, device emulator child, the four apps as child
processes, offscreen); each app runs through tests/appprobe.py, which reports what its window shows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hall_controller.service import Actor
from hall_demo.hall import DemoHall

from . import appprobe
from .harness import ELDER, wait_until

SHOTS = os.environ.get("HALL_TEST_SHOTS")      # a folder to keep the screenshots in (to look at them)
START_SCREEN = "请选择办理业务，点击即可取号"


def _http(method: str, url: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


class Hall:
    def __init__(self, tmp_path: Path) -> None:
        self.probes = tmp_path / "probe"
        self.said: list[str] = []
        self.demo = DemoHall(tmp_path / "hall", ui=True, say=self.said.append, ports={"mqtt": 0, "emulator": 0, "mgmt": 0},
                             app_bootstrap=appprobe.PROBE_BOOTSTRAP, app_env=appprobe.probe_env(self.probes))
        self.events: list[dict[str, Any]] = []
        self.summary = self.demo.start()
        assert self.demo.daemon is not None
        self.demo.daemon.service.subscribe(self.events.append)
        self.control = self.summary["emulator_control"].rstrip("/")

    def report(self, client: str) -> dict[str, Any] | None:
        return appprobe.read(self.probes, client)

    def shown(self, client: str, app: str) -> str:
        """What `client`'s window shows now, from the app process the supervisor runs now."""
        report = self.report(client)
        return appprobe.shown(report) if report and report["pid"] == self.demo.supervisor.pid(app) else ""

    def grab(self, client: str, name: str) -> None:
        if SHOTS:
            path = Path(SHOTS) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            appprobe.ask(self.probes, client, "grab", str(path))
            wait_until(path.exists, 10, f"screenshot {name}")

    def kill(self, app: str) -> int:
        pid = self.demo.supervisor.pid(app)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: self.demo.supervisor.pid(app) not in (None, pid), 30, f"{app} restarted")
        return pid

    def keypad(self, window: int, key: str, digits: str | None = None) -> None:
        body = {"key": key, **({"digits": digits} if digits else {})}
        assert _http("POST", f"{self.control}/keypad/{window}/press", body)["acked"]

    def status(self) -> dict[str, Any]:
        assert self.demo.daemon is not None
        return self.demo.daemon.service.execute(Actor("admin", "admin", None), "status", {})

    def issue(self, service: str) -> str:
        """A ticket taken at kiosk-2 (no app there)."""
        assert self.demo.daemon is not None
        reply = self.demo.daemon.service.execute(Actor("kiosk-2", "kiosk", None), "issue_ticket", {"service": service})
        return reply["ticket"]["number"]

    def ticket(self, number: str) -> Any:
        assert self.demo.daemon is not None
        return next(t for t in self.demo.daemon.service.engine.state.tickets.values() if t.number == number)


@pytest.fixture
def hall(tmp_path: Path):
    hall = Hall(tmp_path)
    try:
        yield hall
    finally:
        hall.demo.stop()
        if SHOTS and (tmp_path / "hall" / "logs").exists():
            shutil.copytree(tmp_path / "hall" / "logs", Path(SHOTS) / "logs", dirs_exist_ok=True)


@pytest.mark.slow
def test_killed_kiosk_and_display_come_back_showing_the_hall(hall: Hall) -> None:
    wait_until(lambda: START_SCREEN in hall.shown("kiosk-1", "hall-kiosk"), 60, "kiosk start screen")
    wait_until(lambda: "3号窗口" in hall.shown("display-1", "hall-display"), 60, "display board")

    # A visitor puts an elderly card on kiosk-1's reader and taps 法律咨询; the kiosk dies right after the
    # daemon issued the ticket (before the visitor has read the result screen).
    _http("POST", f"{hall.control}/card-reader/card-reader-1/insert", ELDER)
    wait_until(lambda: "李" in hall.shown("kiosk-1", "hall-kiosk"), 30, "card greeting")
    hall.grab("kiosk-1", "kiosk-greeting.png")
    appprobe.ask(hall.probes, "kiosk-1", "click", "法律咨询")
    issued = wait_until(lambda: [e for e in hall.events if e["type"] == "ticket_issued"], 30, "ticket issued")
    old_kiosk = hall.kill("hall-kiosk")
    _http("POST", f"{hall.control}/card-reader/card-reader-1/remove", {})
    ticket = issued[0]["ticket"]
    assert ticket["priority"] == "elderly"
    number = ticket["number"]

    wait_until(lambda: any(line.startswith("hall-kiosk 已重启") for line in hall.said), 10, "restart said")
    assert "hall-kiosk 已退出（代码 -9），3 秒后重启" in hall.said
    wait_until(lambda: START_SCREEN in hall.shown("kiosk-1", "hall-kiosk"), 60, "restarted kiosk's start screen")
    kiosk_now = hall.shown("kiosk-1", "hall-kiosk")
    assert "李" not in kiosk_now and number not in kiosk_now         # no one else's visit on the screen
    assert hall.report("kiosk-1")["pid"] != old_kiosk
    hall.grab("kiosk-1", "kiosk-restarted.png")

    # Nothing lost: the ticket waits in the daemon (elderly priority) and was printed at kiosk-1.
    assert hall.ticket(number).status == "waiting" and hall.ticket(number).priority == "elderly"
    assert hall.status()["queues"]["consult"]["waiting"] >= 1
    wait_until(lambda: any(number in "\n".join(p["lines"])
                           for p in _http("GET", f"{hall.control}/printer/printer-1/tickets")["tickets"]),
               15, f"{number} printed at kiosk-1")

    # Window 3's clerk calls it from the keypad; the display shows it, is killed, and comes back with it.
    assert number not in hall.shown("display-1", "hall-display")            # the control: not on the board yet
    hall.keypad(3, "function", "1003")
    hall.keypad(3, "next")
    wait_until(lambda: number in hall.shown("display-1", "hall-display"), 30, f"{number} on the board")
    old_display = hall.kill("hall-display")
    wait_until(lambda: any(line.startswith("hall-display 已重启") for line in hall.said), 10, "restart said")
    assert "hall-display 已退出（代码 -9），3 秒后重启" in hall.said
    wait_until(lambda: number in hall.shown("display-1", "hall-display"), 60, f"{number} on the restarted board")
    report = hall.report("display-1")
    assert report["pid"] != old_display
    assert number in report["texts"] and "请到 3号窗口 办理" in report["texts"]       # the latest call, large
    assert any(number in cell for table in report["tables"] for row in table for cell in row)  # window 3's row
    assert not any(text.startswith("⚠ 离线") for text in report["texts"])
    hall.grab("display-1", "display-restarted.png")

    # Window 1: the clerk logs in on the keypad, calls and starts the next visit; the terminal dies while
    # the visitor is served and comes back showing that visit. Then the visit ends, the tablet asks for a
    # rating, dies before the visitor taps, and comes back asking again: the rating reaches the daemon.
    second = hall.issue("consult")
    hall.keypad(1, "function", "1001")
    hall.keypad(1, "next")
    wait_until(lambda: hall.ticket(second).status == "called", 15, f"{second} called at window 1")
    hall.keypad(1, "start")
    wait_until(lambda: "办理中" in hall.shown("window-1", "hall-window")
               and second in hall.shown("window-1", "hall-window"), 30, "terminal serving")
    old_terminal = hall.kill("hall-window")
    wait_until(lambda: "办理中" in hall.shown("window-1", "hall-window")
               and second in hall.shown("window-1", "hall-window"), 60, "restarted terminal shows the visit")
    assert hall.report("window-1")["pid"] != old_terminal and hall.ticket(second).status == "serving"
    hall.grab("window-1", "window-restarted.png")

    hall.keypad(1, "next")              # finishes the visit (nobody else waits for window 1)
    wait_until(lambda: "请您对本次服务作出评价" in hall.shown("tablet-1", "hall-tablet"), 30, "tablet asks")
    old_tablet = hall.kill("hall-tablet")
    wait_until(lambda: "请您对本次服务作出评价" in hall.shown("tablet-1", "hall-tablet")
               and f"{second}号" in hall.shown("tablet-1", "hall-tablet"), 60, "restarted tablet asks again")
    assert hall.report("tablet-1")["pid"] != old_tablet
    hall.grab("tablet-1", "tablet-restarted.png")
    appprobe.ask(hall.probes, "tablet-1", "click", "非常满意")
    wait_until(lambda: "跳过，直接提交" in hall.shown("tablet-1", "hall-tablet"), 15, "dimensions page")
    appprobe.ask(hall.probes, "tablet-1", "click", "跳过，直接提交")
    rated = wait_until(lambda: [e for e in hall.events if e["type"] == "rating_received"
                                and e["ticket"]["number"] == second], 15, "rating received")
    assert rated[0]["ticket"]["rating"]["score"] == 5
    assert {line.split(" ", 1)[0] for line in hall.said if "已退出（代码 -9）" in line} == {
        "hall-kiosk", "hall-display", "hall-window", "hall-tablet"}
