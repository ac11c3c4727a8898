"""Every device kind has its four parts — codec, driver, profile, emulator — or is listed as pending.

The parts are found the way the product finds them: through ``drivers.registry`` (driver factory,
interface, codec module), the packaged profiles, ``hw_emulators.registry`` and, for kinds the
daemon drives itself, ``hall_controller.devices.handler``. A pending kind must really lack a part,
so the list shrinks as kinds land and cannot hide a finished kind.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from device_profiles import list_profiles, load_profile
from drivers.base import DeviceDriver
from drivers.registry import DEVICE_KINDS, PENDING_KINDS, UnknownDeviceKind, link_kind, spec
from hall_controller.devices.handler import handler_for
from hw_emulators.device import EmulatedDevice
from hw_emulators.registry import emulator_for

# Kinds the daemon does not drive itself: the document camera is read by the window app.
CLIENT_SIDE_KINDS = {"camera"}


def _profiles_by_kind() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in list_profiles():
        out.setdefault(load_profile(name).kind, []).append(name)
    return out


def _missing_parts(kind: str) -> list[str]:
    missing = []
    try:
        kind_spec = spec(kind)
    except UnknownDeviceKind:
        return ["driver", "codec"] + (["profile"] if kind not in _profiles_by_kind() else []) + (
            ["emulator"] if emulator_for(kind) is None else [])
    if not (inspect.isclass(kind_spec.interface) and issubclass(kind_spec.interface, DeviceDriver)):
        missing.append("interface")
    try:
        codec = importlib.import_module(kind_spec.codec)
    except ImportError:
        missing.append("codec")
    else:
        if not any(name.startswith(("encode", "decode")) or name.endswith("Decoder") for name in dir(codec)):
            missing.append("codec")
    if kind not in _profiles_by_kind():
        missing.append("profile")
    emulator = emulator_for(kind)
    if emulator is None or not issubclass(emulator, EmulatedDevice) or inspect.isabstract(emulator):
        missing.append("emulator")
    owner = link_kind(kind)
    if owner not in CLIENT_SIDE_KINDS and handler_for(owner) is None:
        missing.append("daemon handler")
    return missing


@pytest.mark.parametrize("kind", DEVICE_KINDS)
def test_every_kind_is_complete_or_pending(kind: str) -> None:
    missing = _missing_parts(kind)
    if kind in PENDING_KINDS:
        assert missing, f"{kind} has every part: take it off PENDING_KINDS"
    else:
        assert not missing, f"{kind} lacks {', '.join(missing)}"


def test_profile_schema_lists_exactly_the_device_kinds() -> None:
    from device_profiles import _schema

    assert set(_schema()["fields"]["kind"]["enum"]) == set(DEVICE_KINDS)


# The window bus carries the LED screens and keypads: they have no link of their own (DESIGN §3).
EXPECTED_HOSTS = {"led": "controller", "keypad": "controller"}


def test_hosted_kinds_share_their_hosts_driver() -> None:
    hosted: dict[str, str] = {}
    for kind in DEVICE_KINDS:
        try:
            kind_spec = spec(kind)
        except UnknownDeviceKind:
            continue
        if kind_spec.host is not None:
            hosted[kind] = kind_spec.host
            assert spec(kind_spec.host).factory is kind_spec.factory, f"{kind} is not driven by its host's driver"
            assert link_kind(kind) == kind_spec.host
    # the loop above checks something only if hosted kinds are found: the ones the hall has must be
    assert EXPECTED_HOSTS.items() <= hosted.items(), hosted
    for host in set(hosted.values()):
        assert spec(host).host is None and link_kind(host) == host, f"host {host} has no link of its own"
