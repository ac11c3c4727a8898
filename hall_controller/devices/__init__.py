"""Device layer: owns the hall's LED screens and keypads on their controller buses."""

from __future__ import annotations

from .manager import DeviceManager

__all__ = ["DeviceManager"]
