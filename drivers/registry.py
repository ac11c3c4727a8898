"""Device kind → driver factory, plug-in style (like python-can's interfaces).

A factory is called as ``factory(url, profiles, **options)``: ``url`` is the transport URL from the
hall config, ``profiles`` the :class:`device_profiles.Profile` objects of every configured device
reached through that URL, and ``options`` driver-specific callbacks/settings. Kinds registered to the
*same* factory share one driver per URL: the LED screens, keypads and communication controller on
one RS-485 line are all served by a single window bus.

Built-in drivers register themselves when first needed; third-party packages can add kinds through
the ``hall_controller.drivers`` entry-point group (name = kind, value = ``module:factory``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "ENTRY_POINT_GROUP",
    "DriverFactory",
    "UnknownDeviceKind",
    "get_factory",
    "register",
    "registered_kinds",
]

ENTRY_POINT_GROUP = "hall_controller.drivers"
DriverFactory = Callable[..., Any]

_BUILTIN_MODULES = ("drivers.window_bus",)
_factories: dict[str, DriverFactory] = {}
_loaded = False


class UnknownDeviceKind(LookupError):
    """No driver is registered for a device kind."""


def register(*kinds: str) -> Callable[[DriverFactory], DriverFactory]:
    """Class/function decorator registering a factory for one or more device kinds."""
    if not kinds:
        raise ValueError("register() needs at least one device kind")

    def decorate(factory: DriverFactory) -> DriverFactory:
        for kind in kinds:
            previous = _factories.get(kind)
            if previous is not None and previous is not factory:
                log.warning("driver for kind %r replaced: %r -> %r", kind, previous, factory)
            _factories[kind] = factory
        return factory

    return decorate


def _load() -> None:
    """Import built-in drivers and entry-point plug-ins once, on first lookup."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(ep.name)(ep.load())
        except Exception:
            # A broken plug-in must not take the built-in drivers down with it.
            log.exception("cannot load driver plug-in %s = %s", ep.name, ep.value)


def get_factory(kind: str) -> DriverFactory:
    """The factory for ``kind``; :class:`UnknownDeviceKind` if none is registered."""
    _load()
    try:
        return _factories[kind]
    except KeyError:
        known = "、".join(sorted(_factories)) or "无"
        raise UnknownDeviceKind(f"没有设备类型 {kind!r} 的驱动（已注册：{known}）") from None


def registered_kinds() -> list[str]:
    _load()
    return sorted(_factories)
