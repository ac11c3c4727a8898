"""``EmulatedHall``: every emulated device of a hall config, for ``hall-emu run``, tests and demos.

Devices whose config ``url`` is ``"emulated"`` are served here; LED screens and keypads are
emulated when the controller named by their ``bus`` is. Kinds without an emulator yet (card
reader, printer, speaker, camera) are listed with ``url: null`` so operators see what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from device_profiles import load_profile

from .control import ControlServer
from .device import AmbiguousDevice, DeviceNotFound, EmulatedDevice
from .dory import BusDevice, DoryController, EmulatedKeypad, EmulatedLed
from .link import Link, MemoryLink, MemoryPort, PtyLink, TcpLink

logger = logging.getLogger(__name__)

EMULATED = "emulated"
LINK_KINDS = ("tcp", "pty", "memory")
DEVICE_KINDS = ("controller", "led", "keypad", "card_reader", "printer", "speaker", "camera")


class HallSetupError(ValueError):
    """The device list cannot be emulated as given (names the device at fault)."""


def read_hall_config(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any], Path | None]:
    """``(devices, emulator section, profiles dir)`` of a hall config file.

    Stands in for ``hall_controller.config.load_config`` so the emulator only needs the devices.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise HallSetupError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise HallSetupError(f"{path}：顶层须为映射")
    devices = data.get("devices") or []
    emulator = data.get("emulator") or {}
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise HallSetupError(f"{path}：devices 须为映射列表")
    if not isinstance(emulator, dict):
        raise HallSetupError(f"{path}：emulator 须为映射")
    profiles_dir = data.get("profiles_dir")
    site_dir = (path.parent / profiles_dir).resolve() if profiles_dir else None
    return devices, emulator, site_dir


class EmulatedHall:
    """Builds, starts and stops the emulated devices of one hall and serves their control API."""

    def __init__(self, devices: Iterable[Mapping[str, Any] | Any], link: str = "tcp", *,
                 site_dir: str | Path | None = None) -> None:
        """``devices``: config entries as mappings or ``hall_controller.config.DeviceConfig``s."""
        if link not in LINK_KINDS:
            raise HallSetupError(f"未知的链路 {link!r}（可选：{'、'.join(LINK_KINDS)}）")
        self.link_kind = link
        self._site_dir = site_dir
        self.controllers: dict[str, DoryController] = {}
        self.devices: dict[str, EmulatedDevice] = {}
        self.pending: dict[str, dict[str, Any]] = {}  # listed kinds without an emulator yet
        self._control: ControlServer | None = None
        self._started = False
        self._build([dict(d) if isinstance(d, Mapping) else asdict(d) for d in devices])

    # -- construction ---------------------------------------------------------------------------
    def _build(self, entries: list[dict[str, Any]]) -> None:
        seen: set[str] = set()
        for entry in entries:
            dev_id, kind = entry.get("id"), entry.get("kind")
            if not isinstance(dev_id, str) or not dev_id:
                raise HallSetupError(f"设备缺少 id：{entry}")
            if dev_id in seen:
                raise HallSetupError(f"{dev_id}：设备 id 重复")
            seen.add(dev_id)
            if kind not in DEVICE_KINDS:
                raise HallSetupError(f"{dev_id}：未知的设备类型 {kind!r}")
        for entry in entries:
            if entry["kind"] == "controller" and entry.get("url") == EMULATED:
                self._add_controller(entry)
        taken: set[tuple[str, str, int]] = set()
        for entry in entries:
            if entry["kind"] in ("led", "keypad"):
                self._add_bus_device(entry, entries, taken)
            elif entry["kind"] != "controller" and entry.get("url") == EMULATED:
                self.pending[entry["id"]] = {k: entry[k] for k in ("id", "kind", "kiosk", "window")
                                             if entry.get(k) is not None}
        for controller in self.controllers.values():
            rates = {d.profile.transport.get("baudrate") for d in controller.bus_devices}
            rates.add(controller.profile.transport.get("baudrate"))
            if len(rates - {None}) > 1:
                logger.warning("%s: devices on this bus use different baud rates %s; the real bus "
                               "would not work", controller.id, sorted(rates - {None}))

    def _profile(self, entry: dict[str, Any], kind: str) -> Any:
        name = entry.get("profile")
        if not isinstance(name, str):
            raise HallSetupError(f"{entry['id']}：缺少 profile")
        profile = load_profile(name, self._site_dir)
        if profile.kind != kind:
            raise HallSetupError(f"{entry['id']}：档案 {name} 用于 {profile.kind}，不是 {kind}")
        return profile

    def _make_link(self, name: str) -> Link:
        if self.link_kind == "tcp":
            return TcpLink(name)
        if self.link_kind == "memory":
            return MemoryLink(name)
        return PtyLink(name)

    def _add_controller(self, entry: dict[str, Any]) -> None:
        dev_id = entry["id"]
        controller = DoryController(dev_id, entry["profile"], self._profile(entry, "controller"),
                                    self._make_link(dev_id))
        self.controllers[dev_id] = controller
        self.devices[dev_id] = controller

    def _add_bus_device(self, entry: dict[str, Any], entries: list[dict[str, Any]],
                        taken: set[tuple[str, str, int]]) -> None:
        dev_id, kind = entry["id"], entry["kind"]
        bus_id = entry.get("bus")
        if bus_id is None:
            buses = [e["id"] for e in entries if e["kind"] == "controller"]
            if len(buses) != 1:
                raise HallSetupError(f"{dev_id}：缺少 bus（所接通讯控制器的 id）")
            bus_id = buses[0]
        if not any(e["id"] == bus_id and e["kind"] == "controller" for e in entries):
            raise HallSetupError(f"{dev_id}：bus {bus_id!r} 不是本配置中的通讯控制器")
        controller = self.controllers.get(bus_id)
        if controller is None:
            return  # on a real controller: not ours to emulate
        address = entry.get("address")
        if isinstance(address, bool) or not isinstance(address, int):
            raise HallSetupError(f"{dev_id}：address 须为整数")
        profile = self._profile(entry, kind)
        low, high = profile.addressing.get("min", 0), profile.addressing.get("max", 255)
        if not low <= address <= high:
            raise HallSetupError(f"{dev_id}：地址 {address} 超出档案 {entry['profile']} 的范围 {low}–{high}")
        if (bus_id, kind, address) in taken:
            raise HallSetupError(f"{dev_id}：{bus_id} 上已有地址为 {address} 的 {kind}")
        taken.add((bus_id, kind, address))
        cls = EmulatedLed if kind == "led" else EmulatedKeypad
        self.devices[dev_id] = cls(dev_id, entry["profile"], profile, controller, address=address,
                                   window=entry.get("window"))

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for controller in self.controllers.values():
            controller.start()
            logger.info("%s listens at %s", controller.id, controller.url)

    def stop(self) -> None:
        if self._control is not None:
            self._control.stop()
            self._control = None
        for controller in self.controllers.values():
            controller.stop()
        self._started = False

    def __enter__(self) -> EmulatedHall:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_control(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve the control API and dashboard; returns the bound address (port 0 = ephemeral)."""
        if self._control is None:
            self._control = ControlServer(self, host, port)
            self._control.start()
        return self._control.address

    # -- lookups --------------------------------------------------------------------------------
    def device_urls(self) -> dict[str, str | None]:
        """Where the daemon connects for each listed device (LED/keypad: their controller's url)."""
        return {item["id"]: item["url"] for item in self.listing()}

    def _url(self, device: EmulatedDevice) -> str:
        controller = device.bus if isinstance(device, BusDevice) else device
        assert isinstance(controller, DoryController)
        return controller.url

    def listing(self) -> list[dict[str, Any]]:
        """``GET /devices``."""
        out = [{**device.describe(), "url": self._url(device)} for device in self.devices.values()]
        out += [{**entry, "url": None} for entry in self.pending.values()]
        return out

    def state(self) -> dict[str, Any]:
        """``GET /state``: everything the dashboard shows."""
        devices = [{**device.state(), "url": self._url(device), "emulated": True}
                   for device in self.devices.values()]
        devices += [{**entry, "url": None, "emulated": False, "online": False, "fault": None}
                    for entry in self.pending.values()]
        return {"link": self.link_kind, "devices": devices}

    def device(self, device_id: str) -> EmulatedDevice:
        try:
            return self.devices[device_id]
        except KeyError:
            raise DeviceNotFound(f"没有仿真设备 {device_id!r}") from None

    def controller(self, device_id: str) -> DoryController:
        device = self.device(device_id)
        if not isinstance(device, DoryController):
            raise DeviceNotFound(f"{device_id!r} 不是通讯控制器")
        return device

    def _on_bus(self, cls: type[BusDevice], address: int, bus: str | None) -> Any:
        found = [d for d in self.devices.values()
                 if isinstance(d, cls) and d.address == address and (bus is None or d.bus.id == bus)]
        where = f"{bus} 上" if bus else ""
        if not found:
            raise DeviceNotFound(f"{where}地址 {address} 上没有 {cls.kind}")
        if len(found) > 1:
            raise AmbiguousDevice(f"地址 {address} 上有 {len(found)} 个 {cls.kind}，请加 ?bus=ID"
                                  f"（可选：{'、'.join(d.bus.id for d in found)}）")
        return found[0]

    def led(self, address: int, bus: str | None = None) -> EmulatedLed:
        return self._on_bus(EmulatedLed, address, bus)

    def keypad(self, address: int, bus: str | None = None) -> EmulatedKeypad:
        return self._on_bus(EmulatedKeypad, address, bus)

    def host_port(self, controller_id: str, timeout: float | None = 1.0) -> MemoryPort:
        """The host end of an in-process (``link="memory"``) controller."""
        link = self.controller(controller_id).link
        if not isinstance(link, MemoryLink):
            raise HallSetupError(f"{controller_id}：不是进程内链路，请连接它的 url")
        return link.host_port(timeout)
