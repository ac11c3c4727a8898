"""Hall controller daemon: queue domain, store, bus, devices, upstream."""

from __future__ import annotations

__version__ = "0.1.0"
