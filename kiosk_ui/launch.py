"""Start the public Qt apps next to a hall running on this PC (`hallctl demo`)."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# (app, module, entry point, client id, extra arguments)
APPS = (("hall-kiosk", "kiosk_ui.app", "main_kiosk", "kiosk-1", ()),
        ("hall-display", "kiosk_ui.app", "main_display", "display-1", ()),
        ("hall-window", "window_terminal.app", "main", "window-1", ("--camera", "emulated")),
        ("hall-tablet", "kiosk_ui.app", "main_tablet", "tablet-1", ()))


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def start_public_apps(config_path: str | Path, host: str, port: int,
                      emulator: str | None = None) -> list[subprocess.Popen[bytes]]:
    """The kiosk, the hall display, window 1's terminal and its rating tablet as separate processes,
    windowed, each with its own client id and the password from the hall's password file; stopped when
    this process exits. ``emulator`` (HOST:PORT of the emulator's control API) tells the window
    terminal where its emulated document camera is listed."""
    procs = []
    for name, module, entry, client, extra in APPS:
        cmd = [sys.executable, "-c", f"from {module} import {entry}; raise SystemExit({entry}())",
               "--config", str(config_path), "--client", client, "--mqtt-url", f"mqtt://{host}:{port}", "--windowed",
               *extra]
        if emulator and "--camera" in extra:
            cmd += ["--emulator", emulator]
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
