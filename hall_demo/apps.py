"""Start the Qt apps next to a hall running on this PC (`hallctl demo`, bench/soak.py).

Each app is a separate process (as on the hall's separate PCs), described here as a `ChildSpec` for
`hall_demo.supervise.Supervisor`, which restarts one that exits. The apps are named by module and
entry point only: each child imports its own, so the demo itself never loads Qt.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .supervise import ChildSpec

log = logging.getLogger(__name__)

# (app, module, entry point, client id, extra arguments)
APPS = (("hall-kiosk", "kiosk_ui.app", "main_kiosk", "kiosk-1", ()),
        ("hall-display", "kiosk_ui.app", "main_display", "display-1", ()),
        ("hall-window", "window_terminal.app", "main", "window-1", ("--camera", "emulated")),
        ("hall-tablet", "kiosk_ui.app", "main_tablet", "tablet-1", ()))
APP_NAMES = tuple(app[0] for app in APPS)

# How a child runs an app's entry point; tests swap in one that also reports what the app shows.
BOOTSTRAP = "from {module} import {entry}; raise SystemExit({entry}())"

# Qt platforms that draw without a display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb", "eglfs")


def display_available(env: Mapping[str, str] | None = None) -> bool:
    """Whether a Qt app started now (with `env` added to ours) can show, or with a headless platform
    draw, its window."""
    env = {**os.environ, **(env or {})}
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or platform in HEADLESS_PLATFORMS)


def app_specs(config_path: str | Path, host: str, port: int, emulator: str | None = None, *,
              log_dir: Path | None = None, bootstrap: str = BOOTSTRAP,
              env: Mapping[str, str] | None = None) -> list[ChildSpec]:
    """The kiosk, the hall display, window 1's terminal and its rating tablet, windowed, each with its
    own client id and the password from the hall's password file. ``emulator`` (HOST:PORT of the
    emulator's control API) tells the window terminal where its emulated document camera is listed;
    ``log_dir`` gets one log file per app (else they log to our stderr)."""
    specs = []
    for name, module, entry, client, extra in APPS:
        cmd = [sys.executable, "-c", bootstrap.format(module=module, entry=entry),
               "--config", str(config_path), "--client", client, "--mqtt-url", f"mqtt://{host}:{port}", "--windowed",
               *extra]
        if emulator and "--camera" in extra:
            cmd += ["--emulator", emulator]
        specs.append(ChildSpec(name, lambda cmd=cmd: cmd, log_path=log_dir / f"{name}.log" if log_dir else None,
                               env=env))
    return specs
