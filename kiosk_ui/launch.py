"""Start the public Qt apps next to a hall running on this PC (`hallctl demo`)."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

APPS = (("hall-kiosk", "main_kiosk", "kiosk-1"), ("hall-display", "main_display", "display-1"))


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def start_public_apps(config_path: str | Path, host: str, port: int) -> list[subprocess.Popen[bytes]]:
    """The kiosk and the hall display as separate processes, windowed, each with its own client id and the
    password from the hall's password file; stopped when this process exits."""
    procs = []
    for name, entry, client in APPS:
        cmd = [sys.executable, "-c", f"from kiosk_ui.app import {entry}; raise SystemExit({entry}())",
               "--config", str(config_path), "--client", client, "--mqtt-url", f"mqtt://{host}:{port}", "--windowed"]
        procs.append(subprocess.Popen(cmd))
        log.info("started %s as %s (pid %d)", name, client, procs[-1].pid)
    atexit.register(stop_apps, procs)
    return procs


def stop_apps(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
