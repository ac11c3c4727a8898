"""``EmulatedHall``: every emulated device of a hall config, for ``hall-emu run``, tests and demos.

Each config entry is built by the emulator class registered for its kind
(``hw_emulators.registry``); the hall itself knows no kind by name. Devices whose ``url`` is
``"emulated"`` are served here; a device hosted on another one's link (LED screens and keypads on a
communication controller) is emulated when its host is. Kinds without an emulator yet are listed
with ``url: null`` so operators see what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from device_profiles import load_profile
from drivers.registry import DEVICE_KINDS, UnknownDeviceKind, link_kind
from drivers.transport import EMULATED
from hall_controller.clock import Clock, SystemClock

from .control import ControlServer
from .device import AmbiguousDevice, DeviceNotFound, EmulatedDevice
from .link import Link, MemoryLink, MemoryPort, PtyLink, TcpLink
from .registry import emulator_for

logger = logging.getLogger(__name__)

LINK_KINDS = ("tcp", "pty", "memory")


class HallSetupError(ValueError):
    """The device list cannot be emulated as given (names the device at fault)."""


def _owner_kind(kind: str) -> str:
    try:
        return link_kind(kind)
    except UnknownDeviceKind:
        return kind


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
                 site_dir: str | Path | None = None, clock: Clock | None = None) -> None:
        """``devices``: config entries as mappings or ``hall_controller.config.DeviceConfig``s;
        ``clock`` stamps what the devices show and record (the system clock by default)."""
        if link not in LINK_KINDS:
            raise HallSetupError(f"未知的链路 {link!r}（可选：{'、'.join(LINK_KINDS)}）")
        self.link_kind = link
        self._site_dir = site_dir
        self.clock: Clock = clock or SystemClock()
        self.devices: dict[str, EmulatedDevice] = {}
        self.pending: dict[str, dict[str, Any]] = {}  # listed kinds without an emulator yet
        self._entries: dict[str, dict[str, Any]] = {}
        self._addresses: dict[tuple[str, str, int], str] = {}
        self._control: ControlServer | None = None
        self._started = False
        self._build([dict(d) if isinstance(d, Mapping) else asdict(d) for d in devices])

    # -- construction ---------------------------------------------------------------------------
    def _build(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            dev_id, kind = entry.get("id"), entry.get("kind")
            if not isinstance(dev_id, str) or not dev_id:
                raise HallSetupError(f"设备缺少 id：{entry}")
            if dev_id in self._entries:
                raise HallSetupError(f"{dev_id}：设备 id 重复")
            if kind not in DEVICE_KINDS:
                raise HallSetupError(f"{dev_id}：未知的设备类型 {kind!r}")
            self._entries[dev_id] = entry
        # Link owners first, so that hosted devices find their host built.
        for entry in sorted(entries, key=lambda e: _owner_kind(e["kind"]) != e["kind"]):
            kind = entry["kind"]
            hosted = _owner_kind(kind) != kind
            if not hosted and entry.get("url") != EMULATED:
                continue  # a real device: not ours to emulate
            cls = emulator_for(kind)
            if cls is None:
                self.pending[entry["id"]] = {k: entry[k] for k in ("id", "kind", "kiosk", "window")
                                             if entry.get(k) is not None}
                continue
            if hosted and self.host_of(entry) is None:
                continue  # on a real host
            device = cls.build(entry, self._profile(entry, kind), self)
            if device is not None:
                device.clock = self.clock
                self.devices[entry["id"]] = device

    def _profile(self, entry: dict[str, Any], kind: str) -> Any:
        name = entry.get("profile")
        if not isinstance(name, str):
            raise HallSetupError(f"{entry['id']}：缺少 profile")
        profile = load_profile(name, self._site_dir)
        if profile.kind != kind:
            raise HallSetupError(f"{entry['id']}：档案 {name} 用于 {profile.kind}，不是 {kind}")
        return profile

    # HallBuilder, for the emulator classes' build()
    def make_link(self, name: str) -> Link:
        if self.link_kind == "tcp":
            return TcpLink(name)
        if self.link_kind == "memory":
            return MemoryLink(name)
        return PtyLink(name)

    def host_of(self, entry: dict[str, Any]) -> EmulatedDevice | None:
        """The emulated device whose link carries ``entry`` (None when that host is real hardware)."""
        dev_id, host_kind = entry["id"], _owner_kind(entry["kind"])
        host_id = entry.get("bus")
        if host_id is None:
            hosts = [e["id"] for e in self._entries.values() if e["kind"] == host_kind]
            if len(hosts) != 1:
                raise HallSetupError(f"{dev_id}：缺少 bus（所接{host_kind}的 id）")
            host_id = hosts[0]
        host = self._entries.get(host_id)
        if host is None or host["kind"] != host_kind:
            raise HallSetupError(f"{dev_id}：bus {host_id!r} 不是本配置中的 {host_kind}")
        return self.devices.get(host_id)

    def claim_address(self, host_id: str, kind: str, address: int, device_id: str) -> None:
        """Two devices of a kind cannot share an address on one line."""
        key = (host_id, kind, address)
        if key in self._addresses:
            raise HallSetupError(f"{device_id}：{host_id} 上已有地址为 {address} 的 {kind}")
        self._addresses[key] = device_id

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for device in self.devices.values():
            device.start()

    def stop(self) -> None:
        if self._control is not None:
            self._control.stop()
            self._control = None
        for device in self.devices.values():
            device.stop()
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
        """Where the daemon connects for each listed device (hosted ones: their host's url)."""
        return {item["id"]: item["url"] for item in self.listing()}

    def listing(self) -> list[dict[str, Any]]:
        """``GET /devices``."""
        out = [{**device.describe(), "url": device.url} for device in self.devices.values()]
        out += [{**entry, "url": None} for entry in self.pending.values()]
        return out

    def state(self) -> dict[str, Any]:
        """``GET /state``: everything the dashboard shows."""
        devices = [{**device.state(), "url": device.url, "emulated": True} for device in self.devices.values()]
        devices += [{**entry, "url": None, "emulated": False, "online": False, "fault": None}
                    for entry in self.pending.values()]
        return {"link": self.link_kind, "devices": devices}

    def device(self, device_id: str) -> EmulatedDevice:
        try:
            return self.devices[device_id]
        except KeyError:
            raise DeviceNotFound(f"没有仿真设备 {device_id!r}") from None

    def find(self, kind: str, ref: str, bus: str | None = None) -> EmulatedDevice:
        """A device of ``kind`` by the reference its control routes use (id, or bus address)."""
        cls = emulator_for(kind)
        if cls is None:
            raise DeviceNotFound(f"这类设备暂未仿真：{kind}")
        if cls.lookup != "address":
            device = self.device(ref)
            if device.kind != kind:
                raise DeviceNotFound(f"{ref} 是 {device.kind}，不是 {kind}")
            return device
        if not ref.isdigit() or int(ref) > 255:
            raise ValueError(f"地址须为 0–255 的整数，收到 {ref!r}")
        address = int(ref)
        found = [d for d in self.devices.values() if d.kind == kind and d.address == address
                 and (bus is None or getattr(d, "host_id", None) == bus)]
        where = f"{bus} 上" if bus else ""
        if not found:
            raise DeviceNotFound(f"{where}地址 {address} 上没有 {kind}")
        if len(found) > 1:
            hosts = "、".join(str(getattr(d, "host_id", "?")) for d in found)
            raise AmbiguousDevice(f"地址 {address} 上有 {len(found)} 个 {kind}，请加 ?bus=ID（可选：{hosts}）")
        return found[0]

    def led(self, address: int, bus: str | None = None) -> Any:
        return self.find("led", str(address), bus)

    def keypad(self, address: int, bus: str | None = None) -> Any:
        return self.find("keypad", str(address), bus)

    def host_port(self, device_id: str, timeout: float | None = 1.0) -> MemoryPort:
        """The host end of an in-process (``link="memory"``) device link."""
        link = getattr(self.device(device_id), "link", None)
        if not isinstance(link, MemoryLink):
            raise HallSetupError(f"{device_id}：不是进程内链路，请连接它的 url")
        return link.host_port(timeout)
