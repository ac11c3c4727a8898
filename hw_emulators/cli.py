"""``hall-emu``: run the emulated devices of a hall, or the management-system emulator.

    hall-emu run --config hall.yaml [--control 127.0.0.1:8790] [--link tcp|pty]
    hall-emu mgmt --listen 127.0.0.1:8791 ...
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from device_profiles import ProfileError
from hall_controller.logsetup import setup_logging

from .hall import EmulatedHall, HallSetupError, read_hall_config

logger = logging.getLogger(__name__)

DEFAULT_CONTROL = "127.0.0.1:8790"


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"须为 HOST:PORT，收到 {text!r}")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hall-emu", description="大厅设备仿真器 (emulated hall devices)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start every emulated device of a hall config and the control API")
    run.add_argument("--config", required=True, help="hall config (YAML)")
    run.add_argument("--control", type=_host_port,
                     help=f"control API HOST:PORT (default: emulator.control of the config, else {DEFAULT_CONTROL})")
    run.add_argument("--link", choices=("tcp", "pty"),
                     help="how the daemon reaches the devices (default: emulator.link of the config, else tcp)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug log, including all traffic as hex")
    sub.add_parser("mgmt", help="management-system emulator (options: hall-emu mgmt --help)", add_help=False)
    return parser


def _run(args: argparse.Namespace) -> int:
    try:
        devices, emulator, site_dir = read_hall_config(args.config)
        control = args.control or _host_port(str(emulator.get("control") or DEFAULT_CONTROL))
        link = args.link or emulator.get("link") or "tcp"
        if link not in ("tcp", "pty"):
            raise HallSetupError(f"emulator.link 须为 tcp 或 pty，收到 {link!r}")
        hall = EmulatedHall(devices, link, site_dir=site_dir)
    except (HallSetupError, ProfileError, argparse.ArgumentTypeError) as exc:
        logger.error("无法仿真此大厅：%s", exc)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        hall.start()
        host, port = hall.serve_control(*control)
    except OSError as exc:
        logger.error("无法启动：%s", exc)
        hall.stop()
        return 1
    for device_id, url in hall.device_urls().items():
        logger.info("%s: %s", device_id, url or "not emulated yet")
    logger.info("ready http://%s:%d/", host, port)
    try:
        stop.wait()
    finally:
        logger.info("stopping")
        hall.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "mgmt":
        # mgmt has its own options; hand them over untouched.
        from .mgmt import main_mgmt

        return main_mgmt(argv[1:])
    args = _parser().parse_args(argv)
    setup_logging("DEBUG" if args.verbose else "INFO")
    return _run(args)
