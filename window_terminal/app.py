"""`hall-window`: the window clerk's terminal, or the supervisor view.

    hall-window --mqtt-url mqtt://window-3:PASSWORD@HALL-PC:1883 --hall demo [--window 3] [--camera URL]
    hall-window --config hall.yaml --client window-3         # its camera: the config's camera-3
    hall-window --config hall.yaml --client supervisor       # supervisor view (also the admin, --supervisor)

The window number comes from --window, else the config's client entry, else a client id `window-N`;
a window client bound to no window (the sample hall's `supervisor`) or the admin gets the supervisor view.
The document camera: --camera, else the config's camera device of the window (see window_terminal.camera).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from hall_controller.bus.topics import ALL_EVENTS, ROLE_EVENTS
from hall_controller.clock import SystemClock

# the day's finished visits and their rating state (asked, received, or the visit closed unrated)
WINDOW_EVENTS = (*ROLE_EVENTS["window"], "service_finished", "rating_requested", "visit_closed")


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
    parser.add_argument("--camera", default=None,
                        help="document camera: a driver URL (uvc://S500L, socket://HOST:PORT, /dev/ttyUSB0), "
                             "emulated (this window's camera in hall-emu), none; default: the config's camera "
                             "device of this window")
    parser.add_argument("--emulator", metavar="HOST:PORT", default=None,
                        help="hall-emu control API for an emulated camera (default: the config's emulator.control)")


def _bus_options(options: Any, args: argparse.Namespace) -> dict[str, Any]:
    # every window's state either way (the transfer picker lists the windows); the supervisor all events
    return {"events": ALL_EVENTS if is_supervisor(options, args) else WINDOW_EVENTS}


def _build(options: Any, bus: Any, args: argparse.Namespace) -> Any:
    from PySide6.QtWidgets import QApplication

    from .camera import DocumentCamera, camera_source
    from .supervisor import SupervisorView
    from .terminal import WindowTerminal

    clock = SystemClock()
    zone = options.config.timezone if options.config is not None else None   # until the daemon's status says
    if is_supervisor(options, args):
        return SupervisorView(bus, clock=clock, staff_names=staff_names(options), zone=zone)
    number = window_number(options, args)
    assert number is not None
    source = camera_source(args.camera, number, options.config, args.emulator)
    camera = DocumentCamera(source) if source is not None else None
    if camera is not None:
        QApplication.instance().aboutToQuit.connect(camera.close)
    return WindowTerminal(bus, number, clock=clock, camera=camera, staff_names=staff_names(options), zone=zone)


def main(argv: list[str] | None = None) -> int:
    from kiosk_ui.appkit import run_app

    return run_app("hall-window", "窗口呼叫软件 / window clerk's terminal", _build, role="window",
                   default_client="window-1", size=(1600, 1000), add_arguments=_arguments,
                   argv=argv, bus_options=_bus_options)
