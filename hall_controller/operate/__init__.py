"""Operating a hall PC (DESIGN §12): install, backup/restore, doctor, device scan, staff roster, TLS.

Each module adds its `hallctl` subcommands through `add_commands(sub, with_config)`; the command line
(`hallctl`) calls `add_commands` here once. Everything in this package sits above the daemon and the
admin path: it may use them, they never use it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from . import backup, city, devices_scan, doctor, firewall, install, staff, tls

WithConfig = Callable[..., argparse.ArgumentParser]


def add_commands(sub: argparse._SubParsersAction, with_config: WithConfig) -> None:
    for module in (install, backup, doctor, devices_scan, staff, tls, firewall, city):
        module.add_commands(sub, with_config)
