"""Entry point of the window clerks' app."""

from __future__ import annotations

import sys


def main() -> int:
    print("窗口呼叫软件 hall-window：尚未提供（not yet available in this release）", file=sys.stderr)
    return 1
