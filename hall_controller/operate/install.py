"""(being written)"""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: argparse._SubParsersAction, with_config: Any) -> None:
    """Adds this module's hallctl subcommands."""
