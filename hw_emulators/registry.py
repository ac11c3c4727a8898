"""Device kind -> emulator class: the emulated hall and the control API dispatch through this.

An emulator class registers itself with :func:`emulates`; ``hw_emulators.hall`` imports the built-in
emulator modules once. Kinds of ``drivers.registry.DEVICE_KINDS`` without an emulator are listed by
the hall as not emulated yet (``url: null``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from drivers.registry import DEVICE_KINDS

if TYPE_CHECKING:
    from .device import EmulatedDevice

__all__ = ["emulator_for", "emulated_kinds", "emulates"]

_BUILTIN_MODULES = ("hw_emulators.dory", "hw_emulators.card_reader", "hw_emulators.printer", "hw_emulators.speaker",
                    "hw_emulators.camera")
_emulators: dict[str, type[EmulatedDevice]] = {}
_loaded = False

T = TypeVar("T", bound="type[EmulatedDevice]")


def emulates(kind: str) -> Callable[[T], T]:
    """Class decorator: ``cls`` emulates devices of ``kind``."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {kind!r}")

    def decorate(cls: T) -> T:
        cls.kind = kind
        _emulators[kind] = cls
        return cls

    return decorate


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def emulator_for(kind: str) -> type[EmulatedDevice] | None:
    _load()
    return _emulators.get(kind)


def emulated_kinds() -> list[str]:
    _load()
    return [kind for kind in DEVICE_KINDS if kind in _emulators]
