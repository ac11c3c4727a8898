"""`hall-window`: the window clerk's terminal, or the supervisor view.

    hall-window --mqtt-url mqtt://window-3:PASSWORD@HALL-PC:1883 --hall demo [--window 3] [--camera emulated]
    hall-window --config hall.yaml --client window-3
    hall-window --config hall.yaml --client admin            # supervisor view (also --supervisor)

The window number comes from --window, else the config's client entry, else a client id `window-N`;
a client with no window (or the admin) gets the supervisor view.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from hall_controller.bus.topics import ALL_EVENTS, ROLE_EVENTS
from hall_controller.clock import SystemClock

WINDOW_EVENTS = (*ROLE_EVENTS["window"], "service_finished")


def window_number(options: Any, args: argparse.Namespace) -> int | None:
    if getattr(args, "window", None) is not None:
        return int(args.window)
    if options.config is not None:
        client = next((c for c in options.config.clients if c.id == options.client_id), None)
        if client is not None:
            return client.window
    match = re.fullmatch(r"window-(\d+)", options.client_id)
    return int(match.group(1)) if match else None


def is_supervisor(options: Any, args: argparse.Namespace) -> bool:
    return bool(args.supervisor) or options.role == "admin" or window_number(options, args) is None


def staff_names(options: Any) -> dict[str, str]:
    return {s.id: s.name for s in options.config.staff} if options.config is not None else {}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=int, help="window number (default: from the config or the client id)")
    parser.add_argument("--supervisor", action="store_true", help="the supervisor view instead of a window")
    parser.add_argument("--camera", default="auto",
                        help="document camera: auto (first video input), emulated, none, or part of its name")


def _bus_options(options: Any, args: argparse.Namespace) -> dict[str, Any]:
    # every window's state either way (the transfer picker lists the windows); the supervisor all events
    return {"events": ALL_EVENTS if is_supervisor(options, args) else WINDOW_EVENTS}


def _build(options: Any, bus: Any, args: argparse.Namespace) -> Any:
    from .camera import open_camera
    from .supervisor import SupervisorView
    from .terminal import WindowTerminal

    clock = SystemClock()
    if is_supervisor(options, args):
        return SupervisorView(bus, clock=clock, staff_names=staff_names(options))
    number = window_number(options, args)
    assert number is not None
    terminal: WindowTerminal

    def caption() -> str:
        ticket = terminal.state.ticket or {}
        return f"{number}号窗口 {ticket.get('number', '')} {clock.now().astimezone():%Y-%m-%d %H:%M}"

    terminal = WindowTerminal(bus, number, clock=clock, camera=open_camera(args.camera, caption),
                              staff_names=staff_names(options))
    return terminal


def main(argv: list[str] | None = None) -> int:
    from kiosk_ui.appkit import run_app

    return run_app("hall-window", "窗口呼叫软件 / window clerk's terminal", _build, role="window",
                   default_client="window-1", size=(1600, 1000), add_arguments=_arguments,
                   argv=argv, bus_options=_bus_options)
