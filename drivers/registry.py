"""Device kinds: the one list of them, and per kind its driver factory, interface and codec.

Everything that handles devices by kind — the daemon's device manager, the emulated hall, the
emulator control API, the config loader and the profile schema — asks this module instead of
branching on kind names (like python-can's interface table).

A factory is called as ``factory(url, profiles, **options)``: ``url`` is the transport URL from the
hall config, ``profiles`` the :class:`device_profiles.Profile` objects of every configured device
reached through that URL, and ``options`` the kind's callbacks (``on_error``, ``on_key``,
``on_card``, ...). It returns an unopened :class:`drivers.base.DeviceDriver` of the kind's interface.
A factory names every option it takes (no ``**kwargs``): :func:`create_driver` refuses an option the
kind's factory does not take with :class:`UnknownDriverOption` naming it, instead of a driver that
silently ignores a misspelt callback.

A kind with a ``host`` has no link of its own: LED screens and keypads are reached through their
communication controller's window bus, so one driver serves the whole line.

Built-in drivers register themselves when first needed; third-party packages add kinds through the
``hall_controller.drivers`` entry-point group (value = a module that calls :func:`register`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from drivers.base import DeviceDriver

log = logging.getLogger(__name__)

__all__ = [
    "DEVICE_KINDS",
    "ClassRegistry",
    "ENTRY_POINT_GROUP",
    "PENDING_KINDS",
    "DriverFactory",
    "KindSpec",
    "UnknownDeviceKind",
    "UnknownDriverOption",
    "create_driver",
    "get_factory",
    "link_kind",
    "register",
    "registered_kinds",
    "spec",
]

ENTRY_POINT_GROUP = "hall_controller.drivers"
D = TypeVar("D", bound=DeviceDriver)

#: Every device kind the hall knows, in the order IT staff see them listed.
DEVICE_KINDS: tuple[str, ...] = ("controller", "led", "keypad", "card_reader", "printer", "speaker", "camera")
#: Kinds whose codec, driver, profile and emulator are not all there yet (the conformance test
#: checks both ways: a pending kind must really lack something, a complete one must not be listed).
PENDING_KINDS: frozenset[str] = frozenset()

_BUILTIN_MODULES = ("drivers.window_bus", "drivers.speaker", "drivers.card_reader", "drivers.printer",
                    "drivers.camera")


#: ``factory(url, profiles, *, on_error=..., <the kind's own options>) -> DeviceDriver``
DriverFactory = Callable[..., DeviceDriver]


@dataclass(frozen=True)
class KindSpec:
    kind: str
    factory: DriverFactory
    interface: type[DeviceDriver]
    codec: str  # dotted name of the kind's sans-IO codec module
    host: str | None = None  # kind whose driver carries this one (led/keypad -> controller)
    options: frozenset[str] = frozenset()  # the keyword options the factory takes


_specs: dict[str, KindSpec] = {}
_loaded = False


class UnknownDeviceKind(LookupError):
    """No driver is registered for a device kind."""


class UnknownDriverOption(TypeError):
    """A driver was asked for with an option its factory does not take (a misspelt callback, say)."""


def _factory_options(factory: DriverFactory) -> frozenset[str]:
    """The keyword options a factory names; ValueError for one that would swallow any (``**kwargs``)."""
    params = list(inspect.signature(factory).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise ValueError(f"driver factory {getattr(factory, '__qualname__', factory)!r} must name its options "
                         "instead of taking **kwargs")
    return frozenset(p.name for p in params[2:] if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def register(kind: str, *, interface: type[DeviceDriver], codec: str,
             host: str | None = None) -> Callable[[DriverFactory], DriverFactory]:
    """Decorator registering ``factory`` as the driver of ``kind``."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {kind!r} (one of {', '.join(DEVICE_KINDS)})")
    if host is not None and host not in DEVICE_KINDS:
        raise ValueError(f"unknown host kind {host!r}")

    def decorate(factory: DriverFactory) -> DriverFactory:
        options = _factory_options(factory)
        previous = _specs.get(kind)
        if previous is not None and previous.factory is not factory:
            log.warning("driver for kind %r replaced: %r -> %r", kind, previous.factory, factory)
        _specs[kind] = KindSpec(kind, factory, interface, codec, host, options)
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
            ep.load()
        except Exception:
            # A broken plug-in must not take the built-in drivers down with it.
            log.exception("cannot load driver plug-in %s = %s", ep.name, ep.value)


def spec(kind: str) -> KindSpec:
    """The registration of ``kind``; :class:`UnknownDeviceKind` if it has no driver."""
    _load()
    try:
        return _specs[kind]
    except KeyError:
        known = "、".join(sorted(_specs)) or "无"
        raise UnknownDeviceKind(f"没有设备类型 {kind!r} 的驱动（已注册：{known}）") from None


def get_factory(kind: str) -> DriverFactory:
    return spec(kind).factory


def create_driver(kind: str, interface: type[D], url: str, profiles: Sequence[Any], **options: Any) -> D:
    """An unopened driver of ``kind`` for ``url``, checked to be an ``interface`` (TypeError if the
    registered factory builds something else); :class:`UnknownDriverOption` names any option the
    factory does not take (nothing is built then)."""
    kind_spec = spec(kind)
    unknown = sorted(set(options) - kind_spec.options)
    if unknown:
        raise UnknownDriverOption(f"the {kind} driver takes no option {', '.join(unknown)} "
                                  f"(it takes: {', '.join(sorted(kind_spec.options)) or 'none'})")
    driver = kind_spec.factory(url, profiles, **options)
    if not isinstance(driver, interface):
        raise TypeError(f"the {kind} driver {type(driver).__name__} is not a {interface.__name__}")
    return driver


def link_kind(kind: str) -> str:
    """The kind whose driver owns the link a device of ``kind`` is reached through."""
    return spec(kind).host or kind


def registered_kinds() -> list[str]:
    _load()
    return sorted(_specs)


C = TypeVar("C", bound=type)


class ClassRegistry(Generic[C]):
    """Device kind -> class, filled by a class decorator; the built-in modules are imported on first
    lookup. The daemon's device handlers and the emulators are each found through one of these."""

    def __init__(self, builtin_modules: tuple[str, ...]) -> None:
        self.classes: dict[str, C] = {}
        self._builtin_modules = builtin_modules
        self._loaded = False

    def register(self, kind: str) -> Callable[[C], C]:
        if kind not in DEVICE_KINDS:
            raise ValueError(f"unknown device kind {kind!r} (one of {', '.join(DEVICE_KINDS)})")

        def decorate(cls: C) -> C:
            cls.kind = kind
            self.classes[kind] = cls
            return cls

        return decorate

    def get(self, kind: str) -> C | None:
        if not self._loaded:
            self._loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)
        return self.classes.get(kind)
