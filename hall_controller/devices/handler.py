"""Device handlers: what the daemon does with one kind of device, found by kind through one registry.

A handler serves one link-owning device of the hall config (a communication controller, a card
reader, a printer, a speaker, ...) and the devices hosted on its link. It supervises the driver
through a :class:`~.link.DeviceLink` (the one place that retries), turns the device's input into
service commands (a key press, a card read) and keeps the device showing the current state.

Life cycle: the constructor builds (no threads, no subscriptions), ``start()`` subscribes to the
service and starts threads, ``stop()`` undoes both (in the manner of Home Assistant's coordinator
listeners: a stopped handler hears nothing more). Subscriptions made through :meth:`DeviceHandler.listen`
are dropped by :meth:`DeviceHandler.stop_listening`, which every ``stop()`` calls.
A handler class registers itself with :func:`handles`; the device manager imports the built-in
handler modules and dispatches through :func:`handler_for` — never on kind names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from drivers.base import DeviceDriver
from drivers.registry import ClassRegistry

from ..config import DeviceConfig, HallConfig

if TYPE_CHECKING:
    from ..service import HallService
    from .link import DeviceLink

D = TypeVar("D", bound=DeviceDriver)

__all__ = ["DeviceHandler", "HandlerContext", "handler_for", "handles"]

_BUILTIN_MODULES = ("hall_controller.devices.window_bus", "hall_controller.devices.card_reader",
                    "hall_controller.devices.printer", "hall_controller.devices.speaker")


@dataclass(frozen=True)
class HandlerContext:
    """What every handler gets from the device manager."""

    config: HallConfig
    service: HallService
    device_url: Callable[[DeviceConfig], str]   # the transport URL a device is opened at
    on_status: Callable[[DeviceConfig, bool, str | None], None]
    options: dict[str, Any]  # daemon-level settings a kind may read (e.g. the window bus clock)

    def link(self, owner: DeviceConfig, interface: type[D], members: Sequence[DeviceConfig] = (), *,
             on_up: Callable[[DeviceLink[D]], None], **driver_options: Any) -> DeviceLink[D]:
        """A supervised link to ``owner``'s driver, typed by its kind's ``interface`` (not started)."""
        from .link import DeviceLink

        return DeviceLink(owner, members, interface=interface, url=self.device_url(owner),
                          profiles_dir=self.config.profiles_dir, on_up=on_up, on_status=self.on_status,
                          driver_options=driver_options)


class DeviceHandler(ABC):
    kind: ClassVar[str]

    def __init__(self, ctx: HandlerContext, device: DeviceConfig, members: Sequence[DeviceConfig]) -> None:
        self.ctx = ctx
        self.device = device
        self.members = tuple(members)
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def id(self) -> str:
        return self.device.id

    def listen(self, callback: Callable[[Any], None]) -> None:
        """Subscribe ``callback`` to the service's events until :meth:`stop_listening` (call it in start())."""
        self._unsubscribe.append(self.ctx.service.subscribe(callback))

    def stop_listening(self) -> None:
        """Drop every subscription made by :meth:`listen`: no event reaches this handler any more."""
        unsubscribe, self._unsubscribe = self._unsubscribe, []
        for drop in unsubscribe:
            drop()

    def stats(self) -> dict[str, float]:
        """Live figures of this device for /metrics (name -> value); a kind with a queue overrides it."""
        return {}

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...


REGISTRY: ClassRegistry[type[DeviceHandler]] = ClassRegistry(_BUILTIN_MODULES)
#: Class decorator: the class runs devices of that kind in the daemon.
handles = REGISTRY.register
#: The handler class of a kind, or None (the daemon does not drive that kind itself).
handler_for = REGISTRY.get
