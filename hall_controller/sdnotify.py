"""The systemd notify protocol (sd_notify(3)) without a dependency: `Type=notify` and `WatchdogSec=`.

systemd passes `$NOTIFY_SOCKET` (a path, or an abstract socket written `@name`) to a `Type=notify`
service: the daemon says `READY=1` once it serves, `STOPPING=1` when it begins to stop and
`STATUS=…` for `systemctl status`. With `WatchdogSec=` systemd also passes `$WATCHDOG_USEC` (and
`$WATCHDOG_PID`): the daemon must send `WATCHDOG=1` more often than that, or it is killed and, with
`Restart=always`, started again. A `WatchdogFeeder` sends it only while the daemon's own health check
passes, so a hung daemon is restarted rather than left looking alive. Outside systemd every call is
a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_warned = False    # one warning per process when the notify socket cannot be written


def _address() -> str | None:
    """Where to send, from $NOTIFY_SOCKET: a file path, or an abstract socket (`@name` -> NUL + name)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return None
    return "\0" + address[1:] if address[0] == "@" else address


def notify(*assignments: str) -> bool:
    """Send `VAR=value` lines as one datagram; True when sent, False outside systemd or on an error
    (logged once: the daemon keeps serving whatever the notify socket does)."""
    global _warned
    address = _address()
    if address is None:
        return False
    data = "\n".join(assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(data)
    except OSError as exc:
        if not _warned:
            _warned = True
            log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def _status_line(text: str) -> str:
    """STATUS= takes one line."""
    return "STATUS=" + " ".join(text.split())


def ready(status: str = "") -> bool:
    """The daemon serves: systemd ends `systemctl start` and starts the units after it."""
    return notify("READY=1", *([_status_line(status)] if status else []))


def stopping(status: str = "") -> bool:
    return notify("STOPPING=1", *([_status_line(status)] if status else []))


def status(text: str) -> bool:
    return notify(_status_line(text))


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between two `WATCHDOG=1` (half systemd's period), or None when no watchdog is set
    for this process ($WATCHDOG_PID names another one, e.g. a parent that exec'd us without it)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


class WatchdogFeeder:
    """A thread that sends `WATCHDOG=1` every `interval` s while `problem()` returns None.

    `problem()` is the daemon's own health check: a text saying what is wrong, or None. While it
    says something the watchdog starves (systemd restarts the daemon once its period runs out) and
    `systemctl status` shows why. A check that hangs starves it too: nothing is sent meanwhile.
    """

    def __init__(self, interval: float, problem: Callable[[], str | None], *,
                 send: Callable[[], object] = watchdog, say: Callable[[str], object] = status) -> None:
        self.interval = interval
        self._problem = problem
        self._send = send
        self._say = say
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None
        self.fed = 0     # watchdog messages sent, for tests and the log

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()
        log.info("systemd watchdog fed every %.1f s while the daemon is healthy", self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stop.wait(self.interval):
                return

    def beat(self) -> bool:
        """One round: feed the watchdog if healthy; True when fed."""
        try:
            problem = self._problem()
        except Exception as exc:   # a broken check is a failing one
            log.exception("health check for the systemd watchdog failed")
            problem = f"health check failed: {type(exc).__name__}"
        if problem is None:
            if self._failing is not None:
                log.warning("daemon healthy again: feeding the systemd watchdog")
                self._say("服务中 serving")
            self._failing = None
            self._send()
            self.fed += 1
            return True
        if problem != self._failing:
            log.error("daemon unhealthy (%s): the systemd watchdog is no longer fed and will restart it",
                      problem)
            self._say(f"不健康 unhealthy: {problem}")
        self._failing = problem
        return False
