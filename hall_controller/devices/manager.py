"""DeviceManager: every device of the hall config, each run by the handler registered for its kind.

The manager knows no kind by name. For each device that owns a link (``drivers.registry.link_kind``
is its own kind) it asks ``handler_for(kind)`` and hands it the device and the devices hosted on
its link (LED screens and keypads naming it as their ``bus``). A kind without a daemon-side handler
(a document camera is read by the window app, not by the daemon) is listed once in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from drivers.registry import UnknownDeviceKind, link_kind
from drivers.transport import device_url

from ..config import DeviceConfig, HallConfig
from ..service import HallService
from .handler import DeviceHandler, HandlerContext, handler_for

log = logging.getLogger(__name__)


class DeviceManager:
    """Builds one handler per link-owning device; ``start()``/``stop()`` run them all.

    ``device_urls`` (device id → url) overrides a device's configured url; a device left at
    ``url: emulated`` without an override is opened at its ``emulated://`` transport URL through the
    config's ``emulator.control`` (which ``hallctl run --emulator`` overrides), resolved by the
    transport layer each time it is opened.
    ``bus_clock`` is the monotonic clock window bus drivers pace frames with.
    """

    def __init__(
        self,
        config: HallConfig,
        service: HallService,
        *,
        device_urls: dict[str, str] | None = None,
        bus_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.service = service
        self.device_urls = dict(device_urls or {})
        ctx = HandlerContext(config, service, self._device_url, self._on_status, {"bus_clock": bus_clock})
        self.handlers: dict[str, DeviceHandler] = {}
        self.unhandled: list[DeviceConfig] = []
        owners = {d.id: _link_kind(d.kind) for d in config.devices}
        for device in config.devices:
            if owners[device.id] != device.kind:
                continue  # served by the handler of the device it hangs on
            cls = handler_for(device.kind)
            if cls is None:
                self.unhandled.append(device)
                continue
            members = [d for d in config.devices if d.bus == device.id and owners[d.id] == device.kind]
            self.handlers[device.id] = cls(ctx, device, members)
        if self.unhandled:
            log.info("not driven by the daemon: %s", ", ".join(f"{d.id} ({d.kind})" for d in self.unhandled))

    def handler(self, device_id: str) -> DeviceHandler:
        return self.handlers[device_id]

    def driven(self) -> list[DeviceConfig]:
        """Every device the daemon drives: each handler's own and those hosted on its link."""
        return [d for h in self.handlers.values() for d in (h.device, *h.members)]

    def stats(self) -> dict[str, dict[str, float]]:
        """Each handler's live figures (`DeviceHandler.stats`) by device id, for /metrics."""
        return {device_id: figures for device_id, h in self.handlers.items() if (figures := h.stats())}

    def start(self) -> None:
        for handler in self.handlers.values():
            handler.start()

    def stop(self) -> None:
        """Stop every handler at once: each waits out its driver's read timeout, not one after another."""
        stoppers = [threading.Thread(target=self._stop_one, args=(handler,), name=f"stop-{handler.id}")
                    for handler in self.handlers.values()]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()

    @staticmethod
    def _stop_one(handler: DeviceHandler) -> None:
        try:
            handler.stop()
        except Exception:
            log.exception("stopping %s failed", handler.id)

    def _device_url(self, device: DeviceConfig) -> str:
        """The device's transport URL: an override from the daemon options, else from the config."""
        return self.device_urls.get(device.id) or device_url(device.url, device.id, self.config.emulator_control)

    def _on_status(self, device: DeviceConfig, online: bool, error: str | None) -> None:
        try:
            self.service.device_status(device.id, online, device.profile, error)
        except Exception:
            log.exception("cannot record the state of %s", device.id)


def _link_kind(kind: str) -> str:
    try:
        return link_kind(kind)
    except UnknownDeviceKind:
        return kind  # no driver yet: listed as not driven
