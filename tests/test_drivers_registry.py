"""The driver registry: built-in kinds, the decorator and entry-point plug-ins."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from drivers import registry
from drivers.base import CameraDriver, PrinterDriver
from drivers.window_bus import open_window_bus


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate the module state so plug-in tests do not leak into other tests."""
    monkeypatch.setattr(registry, "_specs", dict(registry._specs))
    monkeypatch.setattr(registry, "_loaded", False)


def test_window_bus_serves_led_keypad_and_controller() -> None:
    for kind in ("led", "keypad", "controller"):
        assert registry.get_factory(kind) is open_window_bus
    assert registry.link_kind("led") == registry.link_kind("keypad") == "controller"
    assert registry.link_kind("controller") == "controller"
    assert {"led", "keypad", "controller"} <= set(registry.registered_kinds())


def test_unknown_kind() -> None:
    with pytest.raises(registry.UnknownDeviceKind) as info:
        registry.get_factory("fax")
    assert "fax" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_register_decorator(clean_registry: None, caplog: pytest.LogCaptureFixture) -> None:
    @registry.register("printer", interface=PrinterDriver, codec="drivers.codecs.window_bus")
    def open_printer(url: str, profiles: list[Any], **options: Any) -> Any:
        return f"printer at {url}"

    assert registry.get_factory("printer")("loop://", []) == "printer at loop://"
    assert registry.spec("printer").interface is PrinterDriver

    @registry.register("printer", interface=PrinterDriver, codec="drivers.codecs.window_bus")
    def other(url: str, profiles: list[Any], **options: Any) -> Any:
        return None

    assert registry.get_factory("printer") is other
    assert "replaced" in caplog.text
    with pytest.raises(ValueError, match="fax"):
        registry.register("fax", interface=PrinterDriver, codec="x")


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self.value = f"plugin:{name}"
        self._target = target

    def load(self) -> Any:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target()


def test_entry_point_plugins(
    clean_registry: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def open_camera(url: str, profiles: list[Any], **options: Any) -> Any:
        return "camera"

    def plugin_module() -> None:  # what importing a plug-in module does
        registry.register("camera", interface=CameraDriver, codec="drivers.codecs.window_bus")(open_camera)

    groups: list[str] = []

    def entry_points(group: str) -> list[FakeEntryPoint]:
        groups.append(group)
        return [FakeEntryPoint("camera", plugin_module), FakeEntryPoint("broken", ImportError("no module"))]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    caplog.set_level(logging.ERROR, logger="drivers.registry")
    assert registry.get_factory("camera") is open_camera
    assert registry.get_factory("led") is open_window_bus  # a broken plug-in does not hurt the others
    assert groups == [registry.ENTRY_POINT_GROUP]
    assert "broken" in caplog.text
