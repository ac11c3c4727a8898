"""The demo's command line: `hall-demo`, and `hallctl demo` as a plug-in command of hallctl.

hallctl does not import this package: it finds `register` through the `hallctl.commands` entry point
group (setup.cfg), as python-can finds its interfaces, so the daemon's package stays below the
emulators and the apps the demo starts. Only argparse is loaded at registration; the hall itself
(daemon, emulators) is imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DEFAULT_DIR = "hall-demo"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=DEFAULT_DIR, help="working folder (default %(default)s)")
    parser.add_argument("--no-ui", action="store_true", help="do not start the Qt apps")


def run(args: argparse.Namespace) -> int:
    """Run the demo hall until Ctrl-C (the summary and the logins are printed once it is up)."""
    from .hall import run_demo

    return run_demo(Path(args.dir), ui=not args.no_ui)


def register(subparsers: Any) -> None:
    """Add `demo` to hallctl's subcommands (the `hallctl.commands` entry point)."""
    sp = subparsers.add_parser("demo", help="run the whole hall on embedded defaults")
    _add_arguments(sp)
    sp.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """`hall-demo`: the same as `hallctl demo`."""
    from hall_controller.logsetup import setup_logging

    parser = argparse.ArgumentParser(prog="hall-demo", description="示范大厅：整个大厅在一台电脑上运行（嵌入式默认设置）")
    parser.add_argument("--log-level", default=os.environ.get("HALL_LOG_LEVEL", "INFO"))
    _add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
