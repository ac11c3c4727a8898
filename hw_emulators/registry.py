"""Device kind -> emulator class: the emulated hall and the control API dispatch through this.

An emulator class registers itself with :func:`emulates`; ``hw_emulators.hall`` imports the built-in
emulator modules once. Kinds of ``drivers.registry.DEVICE_KINDS`` without an emulator are listed by
the hall as not emulated yet (``url: null``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.registry import ClassRegistry

if TYPE_CHECKING:
    from .device import EmulatedDevice

__all__ = ["emulator_for", "emulates"]

_BUILTIN_MODULES = ("hw_emulators.dory", "hw_emulators.card_reader", "hw_emulators.printer", "hw_emulators.speaker",
                    "hw_emulators.camera")
REGISTRY: ClassRegistry[type[EmulatedDevice]] = ClassRegistry(_BUILTIN_MODULES)
#: Class decorator: the class emulates devices of that kind.
emulates = REGISTRY.register
#: The emulator class of a kind, or None.
emulator_for = REGISTRY.get
