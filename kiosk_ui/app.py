"""Entry points of the public touch apps (ticket kiosk, hall display, rating tablet)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main_kiosk(argv: Sequence[str] | None = None) -> int:
    """`hall-kiosk`: the touch ticket machine."""
    from .appkit import run_app
    from .kiosk import add_arguments, build

    return run_app("hall-kiosk", "自助取号机 (ticket kiosk)", build, role="kiosk", default_client="kiosk-1",
                   size=(1920, 1080), add_arguments=add_arguments, argv=argv)


def main_display(argv: Sequence[str] | None = None) -> int:
    """`hall-display`: the hall's call board on the TV."""
    from .appkit import run_app
    from .display import DISPLAY_EVENTS, add_arguments, build

    return run_app("hall-display", "叫号显示屏 (hall display)", build, role="display", default_client="display-1",
                   size=(1920, 1080), events=DISPLAY_EVENTS, add_arguments=add_arguments, argv=argv)


def _not_yet(name: str) -> int:
    print(f"{name}：尚未提供（not yet available in this release）", file=sys.stderr)
    return 1


def main_tablet(argv: Sequence[str] | None = None) -> int:
    """`hall-tablet`: the rating tablet at a window (kiosk_ui/tablet.py)."""
    from .tablet import main_tablet as run

    return run(list(argv) if argv is not None else None)
