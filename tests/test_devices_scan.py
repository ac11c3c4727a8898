"""`hallctl devices scan`: injected listings of serial ports and USB devices matched against the device
profiles, the `devices:` entries it prints parse inside a hall config, and one real run on this PC."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from device_profiles import ProfileError, load_profile
from hall_controller.cli import main as hallctl
from hall_controller.config import parse_config, sample_config_text
from hall_controller.operate import devices_scan as ds

CH340, PL2303, FTDI, POS = "1a86:7523", "067b:2303", "0403:6001", "0416:5011"


def port(device: str, usb: str | None = None, description: str = "n/a", product: str | None = None,
         serial: str | None = None, manufacturer: str | None = None) -> SimpleNamespace:
    """What pyserial's comports() yields (a ListPortInfo's attributes)."""
    vid, pid = (int(x, 16) for x in usb.split(":")) if usb else (None, None)
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial, description=description,
                           manufacturer=manufacturer, product=product)


def listing(ports: list[SimpleNamespace], usb: list[ds.UsbDevice] | None = None, by_id: Path | None = None,
            source: str = "sysfs") -> ds.Listing:
    return ds.scan(lambda: ds.list_serial_ports(lambda: ports, by_id or Path("/nonexistent")),
                   lambda: (usb or [], source, []))


def usb(usb_id: str, classes: tuple[int, ...] = (), product: str | None = None, serial: str | None = None) -> ds.UsbDevice:
    vid, pid = (int(x, 16) for x in usb_id.split(":"))
    return ds.UsbDevice(vid, pid, where="1-1", product=product, classes=classes, serial_number=serial)


@pytest.fixture(scope="module")
def profiles() -> list[Any]:
    return ds.linked_profiles()


def best(found: list[ds.Found], name: str) -> ds.Candidate | None:
    thing = next(f for f in found if f.name == name)
    return thing.candidates[0] if thing.candidates else None


def test_profiles_carry_their_usb_clues_as_validated_data(tmp_path: Path) -> None:
    assert POS in load_profile("dory-dl6009-printer").transport["usb_ids"]
    assert CH340 in load_profile("dory-controller").transport["usb_serial_ids"]
    assert load_profile("dory-dl6009-card-reader").transport["usb_serial_ids"]      # inherited from the generic reader
    (tmp_path / "odd.yaml").write_text("extends: dory-dl6009-printer\ntransport: {usb_ids: ['0416-5011']}\n",
                                       encoding="utf-8")
    with pytest.raises(ProfileError, match=r"transport\.usb_ids\.0.*1a86:7523"):
        load_profile("odd", tmp_path)


def test_ports_and_usb_devices_are_matched_by_ids_classes_and_names(profiles: list[Any], tmp_path: Path) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-1a86_USB2.0-Ser_-if00-port0").symlink_to("/dev/ttyUSB1")
    found = ds.match(listing([
        port("/dev/ttyUSB0", FTDI, "USB-RS485 Cable", product="USB-RS485 Cable"),
        port("/dev/ttyUSB1", CH340, "USB2.0-Ser!"),
        port("/dev/ttyACM0", PL2303, "ID Card Reader"),
        port("/dev/ttyS0"),
    ], [usb(POS, (7,), "POS Printer"), usb("1d6b:0002", (9,)), usb("046d:0825", (14,), "Webcam C270"),
        usb("1a86:7523", (255,)), usb("0bda:8153", (255,), "USB 10/100/1000 LAN")], by_id=by_id), profiles)
    assert best(found, "/dev/ttyUSB0").profile == "dory-controller"          # FTDI + "485"
    assert best(found, "/dev/ttyACM0").kind == "card_reader"                 # PL2303 + ttyACM + "ID card"
    plain = next(f for f in found if f.name == "/dev/ttyUSB1")
    assert plain.url == str(by_id / "usb-1a86_USB2.0-Ser_-if00-port0")     # the stable name, not ttyUSB1
    assert {c.kind for c in plain.candidates} == {"controller", "card_reader"}   # a bare CH340: both named
    assert best(found, "/dev/ttyS0") is None
    printer = next(f for f in found if f.name == POS)
    assert printer.url == "usb://0416:5011" and printer.candidates[0].profile == "dory-dl6009-printer"
    assert printer.candidates[0].score >= ds.OWN_ID + ds.USB_CLASS
    assert best(found, "046d:0825").kind == "camera"
    names = [f.name for f in found]
    assert "1d6b:0002" not in names          # hubs are left out
    assert "0bda:8153" in names and best(found, "0bda:8153") is None   # listed, not recognised


def test_the_printed_entries_parse_inside_the_sample_hall(profiles: list[Any]) -> None:
    config = parse_config(yaml.safe_load(sample_config_text()))
    found = ds.match(listing([port("/dev/ttyUSB0", CH340, "USB-RS485"), port("/dev/ttyACM0", None, "ID card")],
                             [usb(POS, (7,))]), profiles, config)
    items = ds.entries(found, config)
    text = ds.entries_yaml(items)
    assert "# " in text     # each entry says why, and what to add by hand
    ids = [entry["id"] for entry, _ in items]
    assert ids == ["card-reader-3", "bus-2", "printer-3"]    # port order; past the ids the sample hall has
    assert "请补上 kiosk" in text
    data = yaml.safe_load(sample_config_text())
    data["devices"] += yaml.safe_load(text)["devices"]
    hall = parse_config(data)
    assert {d.id: (d.kind, d.profile, d.url) for d in hall.devices}["printer-3"] == (
        "printer", "dory-dl6009-printer", "usb://0416:5011")


def test_a_port_the_config_already_uses_is_not_offered_again(profiles: list[Any]) -> None:
    data = yaml.safe_load(sample_config_text())
    next(d for d in data["devices"] if d["id"] == "bus-1")["url"] = "/dev/ttyUSB0"
    next(d for d in data["devices"] if d["id"] == "printer-1")["url"] = "usb://0416:5011"
    config = parse_config(data)
    found = ds.match(listing([port("/dev/ttyUSB0", CH340, "USB-RS485")], [usb(POS, (7,))]), profiles, config)
    assert {f.name: f.configured_as for f in found} == {"/dev/ttyUSB0": "bus-1", POS: "printer-1"}
    assert ds.entries(found, config) == []
    assert ds.entries_yaml([]).startswith("devices: []")


def test_usb_from_sysfs_and_from_pyusb(tmp_path: Path) -> None:
    def device(name: str, values: dict[str, str]) -> None:
        folder = tmp_path / name
        folder.mkdir()
        for key, value in values.items():
            (folder / key).write_text(value + "\n", encoding="utf-8")

    device("usb1", {"idVendor": "1d6b", "idProduct": "0002", "bDeviceClass": "09"})
    device("1-1", {"idVendor": "0416", "idProduct": "5011", "bDeviceClass": "00", "product": "POS Printer",
                   "manufacturer": "Winbond"})
    device("1-1:1.0", {"bInterfaceClass": "07"})
    devices = ds.usb_from_sysfs(tmp_path)
    assert [(d.usb_id, d.classes, d.product) for d in devices] == [("0416:5011", (7,), "POS Printer"),
                                                                   ("1d6b:0002", (9,), None)]

    class Dev:   # what pyusb's find(find_all=True) yields; strings not readable without permission
        idVendor, idProduct, bus, address, bDeviceClass = 0x0416, 0x5011, 1, 4, 0
        iManufacturer = iProduct = iSerialNumber = 0

        def __iter__(self):
            return iter([[SimpleNamespace(bInterfaceClass=7)]])

    found, source, notes = ds.list_usb(lambda find_all: [Dev()])
    assert source == "pyusb" and found[0].usb_id == POS and found[0].classes == (7,) and not notes

    def no_backend(find_all: bool) -> list[Any]:
        raise RuntimeError("No backend available")

    found, source, notes = ds.list_usb(no_backend, sysfs=tmp_path)
    assert source == "sysfs" and len(found) == 2 and "libusb" in notes[0]
    found, source, notes = ds.list_usb(no_backend, sysfs=tmp_path / "absent")
    assert (found, source) == ([], "none") and any("无法列出 USB" in n for n in notes)


def test_a_failing_source_is_a_note_not_a_crash() -> None:
    def broken() -> list[ds.SerialPort]:
        raise OSError("permission denied")

    result = ds.scan(broken, lambda: ([], "none", []))
    assert result.ports == [] and "无法列出串口" in result.notes[0]


def run_scan(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = hallctl(["--log-level", "ERROR", "devices", "scan", *args])
    return code, out.getvalue()


def test_a_real_run_on_this_pc(tmp_path: Path) -> None:
    """Whatever this PC has (a container may have only /dev/ttyS0 and no USB at all): no crash, a
    listing, and YAML a hall config accepts."""
    code, text = run_scan("--config", str(tmp_path / "none.yaml"))
    assert code == 0
    assert text.startswith("串口 / serial ports") and "USB 设备 / USB devices" in text
    code, raw = run_scan("--json", "--config", str(tmp_path / "none.yaml"))
    report = json.loads(raw)
    assert code == 0 and report["usb_source"] in ("pyusb", "sysfs", "none")
    from serial.tools import list_ports

    assert {p["device"] for p in report["ports"]} == {p.device for p in list_ports.comports()}
    data = yaml.safe_load(sample_config_text())
    data["devices"] += yaml.safe_load(report["yaml"])["devices"]
    parse_config(data)
    assert report["yaml"] in text
