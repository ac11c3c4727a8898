"""The restart rule of `hallctl demo` on a manual clock, and the supervisor on real child processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hall_controller.clock import ManualClock, SystemClock
from hall_demo.supervise import ChildSpec, RestartPolicy, Supervisor

from .harness import wait_until


def _policy(**kwargs) -> tuple[RestartPolicy, ManualClock]:
    clock = ManualClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    return RestartPolicy(clock, **kwargs), clock


def test_an_exit_is_said_and_restarted_after_the_delay() -> None:
    policy, _ = _policy()
    decision = policy.exited("hall-display", -6)
    assert decision.restart and decision.delay == 3.0
    assert decision.message == "hall-display 已退出（代码 -6），3 秒后重启"


def test_at_most_five_restarts_a_minute_then_it_stays_down() -> None:
    policy, clock = _policy()
    for _ in range(5):
        assert policy.exited("hall-display", -6).restart
        clock.advance(seconds=10)
    sixth = policy.exited("hall-display", -6)                     # 50 s after the first: over the cap
    assert not sixth.restart
    assert sixth.message == "hall-display 已退出（代码 -6），一分钟内已重启 5 次，不再自动重启"
    assert "hall-display" in policy.given_up
    assert policy.exited("hall-kiosk", 1).restart                # the cap is per app


def test_restarts_older_than_a_minute_no_longer_count() -> None:
    policy, clock = _policy()
    for _ in range(5):
        assert policy.exited("hall-tablet", -9).restart
        clock.advance(seconds=12)                                  # 5 restarts spread over 60 s
    assert policy.restarts("hall-tablet") == 4                     # the first is 60 s old now
    assert policy.exited("hall-tablet", -9).restart
    clock.advance(seconds=0.5)
    assert not policy.exited("hall-tablet", -9).restart


def test_a_policy_that_never_restarts() -> None:
    policy, _ = _policy(max_restarts=0)
    decision = policy.exited("hall-kiosk", -6)
    assert not decision.restart and decision.message == "hall-kiosk 已退出（代码 -6），不自动重启"


def _sleeper(name: str, tmp_path: Path, code: str = "import time; time.sleep(60)") -> ChildSpec:
    return ChildSpec(name, lambda: [sys.executable, "-c", code], log_path=tmp_path / f"{name}.log")


def test_supervisor_restarts_a_killed_child_and_gives_up_at_the_cap(tmp_path: Path) -> None:
    said: list[str] = []
    policy = RestartPolicy(SystemClock(), delay=0.2, max_restarts=2, period=60)
    supervisor = Supervisor(policy, say=said.append, poll=0.05)
    try:
        first = supervisor.start(_sleeper("app", tmp_path)).pid
        supervisor.start(_sleeper("other", tmp_path))
        supervisor.watch()
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: supervisor.pid("app") not in (None, first), 10, "app restarted")
        assert said[:2] == ["app 已退出（代码 -9），0.2 秒后重启", f"app 已重启（进程 {supervisor.pid('app')}）"]
        os.kill(supervisor.pid("app"), signal.SIGKILL)
        wait_until(lambda: len(said) == 4, 10, "second restart")
        os.kill(supervisor.pid("app"), signal.SIGKILL)
        wait_until(lambda: len(said) == 5, 10, "give-up message")
        time.sleep(0.5)
        assert said[4] == f"app 已退出（代码 -9），一分钟内已重启 2 次，不再自动重启；请查看日志 {tmp_path / 'app.log'}"
        assert supervisor.pid("app") is None and supervisor.exits("app") == [-9, -9, -9]
        assert supervisor.running("other") and supervisor.starts("other") == 1      # untouched
        assert (tmp_path / "app.log").read_text().count("--- app: start") == 3
    finally:
        supervisor.stop()
    assert not supervisor.running("other")


def test_a_stopped_child_is_not_restarted_and_a_crashing_one_is_said(tmp_path: Path) -> None:
    said: list[str] = []
    supervisor = Supervisor(RestartPolicy(SystemClock(), delay=0.1, max_restarts=1), say=said.append, poll=0.05)
    try:
        supervisor.start(_sleeper("crasher", tmp_path, "import os; os.abort()"))
        keeper = supervisor.start(_sleeper("keeper", tmp_path)).pid
        supervisor.watch()
        wait_until(lambda: len(said) >= 3, 10, "crash, restart, crash")
        assert said[0] == "crasher 已退出（代码 -6），0.1 秒后重启"
        supervisor.stop(["keeper"])
        time.sleep(0.3)
        assert not any("keeper" in line for line in said)
        assert supervisor.pid("keeper") is None
        with pytest.raises(ProcessLookupError):      # stopped and reaped
            os.kill(keeper, 0)
    finally:
        supervisor.stop()


def test_children_do_not_get_the_consoles_ctrl_c(tmp_path: Path) -> None:
    """They run in their own process group: Ctrl-C stops the demo, which stops them in order."""
    supervisor = Supervisor(RestartPolicy(SystemClock()), say=lambda _: None)
    try:
        pid = supervisor.start(_sleeper("app", tmp_path)).pid
        assert os.getpgid(pid) == pid != os.getpgid(0)
    finally:
        supervisor.stop()
