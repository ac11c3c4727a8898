"""Entry points of the public touch apps (ticket kiosk, hall display, rating tablet)."""

from __future__ import annotations

import sys


def _not_yet(name: str) -> int:
    print(f"{name}：尚未提供（not yet available in this release）", file=sys.stderr)
    return 1


def main_kiosk() -> int:
    return _not_yet("取号机界面 hall-kiosk")


def main_display() -> int:
    return _not_yet("叫号显示屏 hall-display")


def main_tablet() -> int:
    return _not_yet("评价屏 hall-tablet")
