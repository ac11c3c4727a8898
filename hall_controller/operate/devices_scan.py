"""`hallctl devices scan`: what is plugged into this PC, which device profile each one looks like, and
the `devices:` entries to paste into hall.yaml, so the first day with real hardware is not guesswork.

Sources (each one a parameter, so tests inject their own listings):
- serial ports from pyserial (`serial.tools.list_ports.comports()`), with the stable
  `/dev/serial/by-id/` link of each where udev made one;
- USB devices from pyusb when it and a libusb back end are there, else from `/sys/bus/usb/devices`
  (the listing says which; neither is an error, the scan then lists what it can).

Matching is data: each profile's `transport.usb_ids` (the model's own USB id: strong),
`usb_classes` (USB interface class: middling), `usb_serial_ids` (the USB-serial chip it usually sits
behind: weak, the same chip serves other devices) and `port_hints` (regular expressions on the port's
names and descriptions). The best-scoring profile makes the entry; the others are named beside it.
`hallctl doctor` uses the same listing to say what is present beside what an offline device expects.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from device_profiles import Profile, ProfileError, list_profiles, load_profile
from drivers.registry import UnknownDeviceKind, link_kind

from ..config import ConfigError, HallConfig, load_config

log = logging.getLogger(__name__)

BY_ID_DIR = Path("/dev/serial/by-id")
SYSFS_USB = Path("/sys/bus/usb/devices")
HUB_CLASS = 9
# Weights of the clues a profile gives (module docstring).
OWN_ID, USB_CLASS, SERIAL_CHIP, HINT = 100, 60, 30, 20
# The id a new entry of each kind gets (then -1, -2 … past the ids the config already has).
ID_PREFIX = {"controller": "bus", "card_reader": "card-reader", "printer": "printer", "speaker": "speaker",
             "camera": "camera"}
KIND_ZH = {"controller": "通讯控制器，接窗口屏与呼叫器", "card_reader": "身份证阅读器", "printer": "票据打印机",
           "speaker": "扬声器", "camera": "高拍仪"}
# What the IT person adds by hand to an entry of these kinds.
PLACEMENT = {"card_reader": "kiosk: 取号机编号（如 kiosk-1）", "printer": "kiosk: 取号机编号（如 kiosk-1）",
             "camera": "window: 窗口号"}


# ------------------------------------------------------------------------------------------ listings

@dataclass(frozen=True)
class SerialPort:
    device: str
    by_id: str | None = None
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    description: str = ""
    manufacturer: str | None = None
    product: str | None = None

    @property
    def usb_id(self) -> str | None:
        return _usb_id(self.vid, self.pid)

    @property
    def url(self) -> str:
        """What a config should name: the by-id link survives replugging into another socket."""
        return self.by_id or self.device

    def text(self) -> str:
        parts = [self.device, self.usb_id or "无 USB 标识 / no USB id"]
        if self.serial_number:
            parts.append(f"SN {self.serial_number}")
        parts += [p for p in (self.manufacturer, self.product or _described(self.description)) if p]
        line = "  ".join(parts)
        return f"{line}  ← {self.by_id}" if self.by_id else line


@dataclass(frozen=True)
class UsbDevice:
    vid: int
    pid: int
    where: str = ""                    # bus-port path (sysfs) or bus/address (pyusb)
    manufacturer: str | None = None
    product: str | None = None
    serial_number: str | None = None
    classes: tuple[int, ...] = ()      # the device class and its interfaces' classes

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"

    def text(self) -> str:
        parts = [self.where, self.usb_id, *(p for p in (self.manufacturer, self.product) if p)]
        if self.serial_number:
            parts.append(f"SN {self.serial_number}")
        if self.classes:
            parts.append("接口类 class " + ",".join(str(c) for c in self.classes))
        return "  ".join(p for p in parts if p)


@dataclass
class Listing:
    ports: list[SerialPort]
    usb: list[UsbDevice]
    usb_source: str                 # "pyusb", "sysfs" or "none"
    notes: list[str] = field(default_factory=list)   # why a source gave nothing (Chinese)

    def summary(self) -> str:
        """One short phrase of what is present, for `hallctl doctor`'s device lines."""
        ports = "、".join(f"{p.device}" + (f"（{p.usb_id}）" if p.usb_id else "") for p in self.ports) or "无"
        if self.usb_source == "none":
            usb = "无法列出"
        else:
            usb = "、".join(d.usb_id + (f" {d.product}" if d.product else "") for d in self.usb
                           if HUB_CLASS not in d.classes) or "无"
        return f"串口 {ports}；USB {usb}"


def _usb_id(vid: int | None, pid: int | None) -> str | None:
    return f"{vid:04x}:{pid:04x}" if vid is not None and pid is not None else None


def _described(description: str) -> str | None:
    return None if description in ("", "n/a") else description


def _by_id_links(by_id_dir: Path) -> dict[str, str]:
    """Real device path -> its /dev/serial/by-id link."""
    links: dict[str, str] = {}
    try:
        entries = sorted(by_id_dir.iterdir())
    except OSError:
        return links
    for link in entries:
        try:
            links.setdefault(os.path.realpath(link), str(link))
        except OSError:
            continue
    return links


def _system_comports() -> Iterable[Any]:
    from serial.tools import list_ports

    return list_ports.comports()


def list_serial_ports(comports: Callable[[], Iterable[Any]] = _system_comports,
                      by_id_dir: Path = BY_ID_DIR) -> list[SerialPort]:
    """The serial ports pyserial sees (objects with ListPortInfo's attributes), by device name."""
    links = _by_id_links(by_id_dir)
    ports = []
    for info in comports():
        device = str(info.device)
        ports.append(SerialPort(
            device=device, by_id=links.get(os.path.realpath(device)), vid=info.vid, pid=info.pid,
            serial_number=info.serial_number, description=str(info.description or ""),
            manufacturer=info.manufacturer, product=info.product))
    return sorted(ports, key=lambda p: p.device)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def usb_from_sysfs(root: Path = SYSFS_USB) -> list[UsbDevice]:
    """USB devices as the kernel lists them (no library needed): `idVendor`/`idProduct` of each device
    folder, the class of each of its interfaces (folders `<device>:<config>.<interface>`)."""
    devices = []
    for folder in sorted(root.iterdir()):
        vid, pid = _read(folder / "idVendor"), _read(folder / "idProduct")
        if ":" in folder.name or vid is None or pid is None:
            continue
        try:
            classes = [int(_read(folder / "bDeviceClass") or "0", 16)]
            for intf in sorted(root.glob(f"{folder.name}:*")):
                classes.append(int(_read(intf / "bInterfaceClass") or "0", 16))
            ids = int(vid, 16), int(pid, 16)
        except ValueError:
            log.debug("unreadable USB ids in %s", folder)
            continue
        devices.append(UsbDevice(*ids, where=folder.name, manufacturer=_read(folder / "manufacturer"),
                                 product=_read(folder / "product"), serial_number=_read(folder / "serial"),
                                 classes=tuple(sorted({c for c in classes if c}))))
    return devices


def _pyusb_string(dev: Any, index: int) -> str | None:
    if not index:
        return None
    try:
        import usb.util

        return usb.util.get_string(dev, index) or None
    except Exception:   # no permission to open the device, a device that stalls: the ids still count
        return None


def _pyusb_classes(dev: Any) -> tuple[int, ...]:
    classes = {int(dev.bDeviceClass)}
    try:
        for cfg in dev:
            classes.update(int(intf.bInterfaceClass) for intf in cfg)
    except Exception:
        log.debug("cannot read the configuration of USB %04x:%04x", dev.idVendor, dev.idProduct)
    return tuple(sorted(c for c in classes if c))


def usb_from_pyusb(find: Callable[..., Iterable[Any]]) -> list[UsbDevice]:
    return [UsbDevice(int(dev.idVendor), int(dev.idProduct), where=f"{dev.bus:03d}/{dev.address:03d}",
                      manufacturer=_pyusb_string(dev, dev.iManufacturer), product=_pyusb_string(dev, dev.iProduct),
                      serial_number=_pyusb_string(dev, dev.iSerialNumber), classes=_pyusb_classes(dev))
            for dev in find(find_all=True)]


def _system_usb_find() -> Callable[..., Iterable[Any]] | None:
    try:
        import usb.core
    except ImportError:
        return None
    return usb.core.find


def list_usb(find: Callable[..., Iterable[Any]] | None | str = "system",
             sysfs: Path = SYSFS_USB) -> tuple[list[UsbDevice], str, list[str]]:
    """(devices, source, notes): pyusb's `find` when it has a back end, else the kernel's sysfs."""
    notes: list[str] = []
    finder = _system_usb_find() if find == "system" else find
    if callable(finder):
        try:
            return usb_from_pyusb(finder), "pyusb", notes
        except Exception as exc:    # NoBackendError: pyusb without libusb
            log.debug("pyusb cannot list USB devices: %s", exc)
            notes.append("pyusb 无可用的 libusb 后端，改读 /sys/bus/usb / pyusb has no libusb back end")
    else:
        notes.append("未安装 pyusb，改读 /sys/bus/usb / pyusb not installed")
    if sysfs.is_dir():
        try:
            return usb_from_sysfs(sysfs), "sysfs", notes
        except OSError as exc:
            notes.append(f"无法读取 {sysfs}：{exc.strerror or exc}")
    else:
        notes.append(f"本机没有 {sysfs}（容器或非 Linux 系统），无法列出 USB 设备 / no {sysfs}")
    return [], "none", notes


def scan(serial_source: Callable[[], list[SerialPort]] = list_serial_ports,
         usb_source: Callable[[], tuple[list[UsbDevice], str, list[str]]] = list_usb) -> Listing:
    """Everything present; a source that fails is a note, never a crash."""
    notes: list[str] = []
    try:
        ports = serial_source()
    except Exception as exc:
        log.warning("listing serial ports failed: %s", exc)
        ports, notes = [], [f"无法列出串口：{exc}"]
    try:
        usb, source, usb_notes = usb_source()
    except Exception as exc:
        log.warning("listing USB devices failed: %s", exc)
        usb, source, usb_notes = [], "none", [f"无法列出 USB 设备：{exc}"]
    return Listing(ports, usb, source, notes + usb_notes)


# ------------------------------------------------------------------------------------------ matching

@dataclass(frozen=True)
class Candidate:
    profile: str
    kind: str
    score: int
    why: tuple[str, ...]


@dataclass
class Found:
    """One thing present (a serial port, or a USB device without one) and the profiles it may be."""

    what: str                       # "serial" or "usb"
    name: str                       # /dev/ttyUSB0, or the USB id
    url: str                        # what a config entry names
    text: str                       # one line for the listing
    candidates: list[Candidate]
    configured_as: str | None = None


def linked_profiles(site_dir: str | None = None) -> list[Profile]:
    """The usable profiles of devices with a link of their own (LED screens and keypads hang on a bus)."""
    profiles = []
    for name in list_profiles(site_dir):
        try:
            profile = load_profile(name, site_dir)
            if link_kind(profile.kind) == profile.kind:
                profiles.append(profile)
        except (ProfileError, UnknownDeviceKind) as exc:
            log.warning("profile %s left out of the scan: %s", name, exc)
    return profiles


def _clues(profile: Profile) -> tuple[set[str], set[int], set[str], list[re.Pattern[str]]]:
    t = profile.transport
    own = {str(i).lower() for i in t.get("usb_ids", [])} | ({str(t["usb_id"]).lower()} if t.get("usb_id") else set())
    hints = []
    for text in t.get("port_hints", []):
        try:
            hints.append(re.compile(text, re.IGNORECASE))
        except re.error:
            log.warning("profile %s: port hint %r is not a regular expression", profile.name, text)
    return own, set(t.get("usb_classes", [])), {str(i).lower() for i in t.get("usb_serial_ids", [])}, hints


def candidates(profiles: Iterable[Profile], usb_id: str | None, classes: Iterable[int],
               names: Iterable[str | None]) -> list[Candidate]:
    """The profiles a thing with this USB id, these interface classes and these names may be, best first."""
    haystack = " ".join(n for n in names if n)
    found = []
    for profile in profiles:
        own, usb_classes, chips, hints = _clues(profile)
        score, why = 0, []
        if usb_id and usb_id in own:
            score, why = score + OWN_ID, [*why, f"USB 标识 {usb_id}"]
        matched_classes = sorted(usb_classes & set(classes))
        if matched_classes:
            score, why = score + USB_CLASS, [*why, f"USB 接口类 {matched_classes[0]}"]
        if usb_id and usb_id in chips:
            score, why = score + SERIAL_CHIP, [*why, f"USB 串口芯片 {usb_id}"]
        for hint in hints:
            seen = hint.search(haystack)
            if seen:
                score, why = score + HINT, [*why, f"名称含“{seen.group(0)}”"]
        if score:
            found.append(Candidate(profile.name, profile.kind, score, tuple(why)))
    return sorted(found, key=lambda c: (-c.score, c.profile))


def _configured(config: HallConfig | None) -> dict[str, str]:
    """Where the config's devices are (path, by-id target, usb id) -> device id."""
    where: dict[str, str] = {}
    for dev in config.devices if config else ():
        url = dev.url.strip()
        if url.startswith("usb://"):
            where[url.split("://", 1)[1].split("?", 1)[0].lower()] = dev.id
        elif url.startswith("/"):
            where[url] = dev.id
            where[os.path.realpath(url)] = dev.id
    return where


def match(listing: Listing, profiles: list[Profile], config: HallConfig | None = None) -> list[Found]:
    """Every serial port, and every USB device that is not behind one of them, with its candidates."""
    configured = _configured(config)
    found = []
    port_ids = {(p.vid, p.pid, p.serial_number) for p in listing.ports if p.vid is not None}
    for port in listing.ports:
        names = (port.device, port.by_id, port.description, port.manufacturer, port.product)
        cands = candidates(profiles, port.usb_id, (), names)
        used = configured.get(port.device) or configured.get(os.path.realpath(port.device)) \
            or (configured.get(port.by_id) if port.by_id else None)
        found.append(Found("serial", port.device, port.url, port.text(), cands, used))
    for dev in listing.usb:
        if HUB_CLASS in dev.classes or (dev.vid, dev.pid, dev.serial_number) in port_ids:
            continue    # a hub, or the USB side of a serial port listed above
        cands = [c for c in candidates(profiles, dev.usb_id, dev.classes, (dev.manufacturer, dev.product))
                 if c.kind in ("printer", "camera")]    # the kinds reached as USB devices, not as ports
        found.append(Found("usb", dev.usb_id, _usb_url(dev, cands), dev.text(), cands, configured.get(dev.usb_id)))
    return found


def _usb_url(dev: UsbDevice, cands: list[Candidate]) -> str:
    if cands and cands[0].kind == "camera":
        return "uvc://"
    return f"usb://{dev.usb_id}"


# ------------------------------------------------------------------------------------------ output

def _new_id(kind: str, taken: set[str]) -> str:
    prefix = ID_PREFIX.get(kind, kind.replace("_", "-"))
    n = 1
    while f"{prefix}-{n}" in taken:
        n += 1
    taken.add(f"{prefix}-{n}")
    return f"{prefix}-{n}"


def entries(found: list[Found], config: HallConfig | None = None) -> list[tuple[dict[str, str], str]]:
    """(entry, comment) for each recognised thing the config does not use yet."""
    taken = {d.id for d in config.devices} if config else set()
    out = []
    for thing in found:
        if not thing.candidates or thing.configured_as:
            continue
        best = thing.candidates[0]
        entry = {"id": _new_id(best.kind, taken), "kind": best.kind, "profile": best.profile, "url": thing.url}
        notes = [f"{thing.name}：{'、'.join(best.why)}"]
        others = [c.profile for c in thing.candidates[1:]]
        if others:
            notes.append(f"也可能是 {'、'.join(others)}")
        if best.kind in PLACEMENT:
            notes.append(f"请补上 {PLACEMENT[best.kind]}")
        out.append((entry, "；".join(notes)))
    return out


def entries_yaml(items: list[tuple[dict[str, str], str]]) -> str:
    """`devices:` with one flow mapping per entry and its comment: valid YAML to paste into hall.yaml."""
    if not items:
        return "devices: []   # 没有识别出的新设备 / nothing new recognised\n"
    lines = ["devices:"]
    for entry, comment in items:
        flow = yaml.safe_dump(entry, default_flow_style=True, allow_unicode=True, sort_keys=False, width=1000).strip()
        lines.append(f"  - {flow}   # {comment}")
    return "\n".join(lines) + "\n"


def report(listing: Listing, found: list[Found], items: list[tuple[dict[str, str], str]]) -> str:
    usb_from = {"pyusb": "pyusb", "sysfs": str(SYSFS_USB), "none": "无法列出 / not available"}[listing.usb_source]
    lines = ["串口 / serial ports（pyserial）："]
    lines += [f"  {p.text()}" for p in listing.ports] or ["  （无 / none）"]
    lines.append(f"USB 设备 / USB devices（来源 / from {usb_from}）：")
    lines += [f"  {d.text()}" for d in listing.usb if HUB_CLASS not in d.classes] or ["  （无 / none）"]
    lines += [f"  注 / note: {n}" for n in listing.notes]
    recognised = [f for f in found if f.candidates]
    if recognised:
        lines.append("识别结果 / recognised：")
        for thing in recognised:
            best = thing.candidates[0]
            used = f"（已在配置中：{thing.configured_as} / already configured）" if thing.configured_as else ""
            lines.append(f"  {thing.name} → {best.profile}（{KIND_ZH.get(best.kind, best.kind)}）：{'、'.join(best.why)}"
                         f"{used}")
    lines.append("可粘贴到 hall.yaml 的设备条目 / entries to paste into hall.yaml:")
    lines.append(entries_yaml(items).rstrip("\n"))
    unknown = [f for f in found if not f.candidates]
    if unknown:
        lines.append("未识别 / not recognised（请核对型号；新型号可在站点的 profiles_dir 中加设备档案，"
                     "写上它的 usb_ids / port_hints）：")
        for thing in unknown:
            used = f"（已在配置中：{thing.configured_as}）" if thing.configured_as else ""
            lines.append(f"  {thing.text}{used}")
    return "\n".join(lines) + "\n"


def _config_or_none(path: str) -> tuple[HallConfig | None, str | None]:
    """The hall config when there is a valid one (its site profiles, its device ids); the scan works without."""
    if not Path(path).exists():
        from .paths import HallPaths

        if not HallPaths().config.exists():    # an installed hall PC keeps it in /etc/hall
            return None, None
        path = str(HallPaths().config)
    try:
        return load_config(path), None
    except ConfigError as exc:
        return None, f"配置 {path} 无效，按未配置任何设备处理（hallctl doctor 会列出问题） / config invalid: {exc.message}"


def cmd_devices_scan(args: argparse.Namespace) -> int:
    config, problem = _config_or_none(args.config)
    if problem:
        print(problem, file=sys.stderr)
    listing = scan()
    found = match(listing, linked_profiles(config.profiles_dir if config else None), config)
    items = entries(found, config)
    if args.json:
        print(json.dumps({"ports": [asdict(p) for p in listing.ports], "usb": [asdict(d) for d in listing.usb],
                          "usb_source": listing.usb_source, "notes": listing.notes,
                          "found": [asdict(f) for f in found], "entries": [e for e, _ in items],
                          "yaml": entries_yaml(items)}, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(report(listing, found, items))
    return 0


def add_commands(sub: argparse._SubParsersAction, with_config: Any) -> None:
    """`hallctl devices scan`."""
    devices = sub.add_parser("devices", help="devices plugged into this PC").add_subparsers(
        dest="devices_command", required=True)
    sp = with_config(devices.add_parser("scan", help="list serial ports and USB devices, match them to the device "
                                                     "profiles and print devices: entries to paste"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_devices_scan)
