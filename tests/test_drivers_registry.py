"""The driver registry: built-in kinds, the decorator and entry-point plug-ins."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from drivers import registry
from drivers.window_bus import open_window_bus


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate the module state so plug-in tests do not leak into other tests."""
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_loaded", False)


def test_window_bus_serves_led_keypad_and_controller() -> None:
    for kind in ("led", "keypad", "controller"):
        assert registry.get_factory(kind) is open_window_bus
    assert {"led", "keypad", "controller"} <= set(registry.registered_kinds())


def test_unknown_kind() -> None:
    with pytest.raises(registry.UnknownDeviceKind) as info:
        registry.get_factory("fax")
    assert "fax" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_register_decorator(clean_registry: None, caplog: pytest.LogCaptureFixture) -> None:
    @registry.register("printer", "card_reader")
    def open_printer(url: str, profiles: list[Any]) -> str:
        return f"printer at {url}"

    assert registry.get_factory("printer")("loop://", []) == "printer at loop://"
    assert registry.get_factory("card_reader") is open_printer

    @registry.register("printer")
    def other(url: str, profiles: list[Any]) -> None:
        return None

    assert registry.get_factory("printer") is other
    assert "replaced" in caplog.text
    with pytest.raises(ValueError):
        registry.register()


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self.value = f"plugin:{name}"
        self._target = target

    def load(self) -> Any:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_entry_point_plugins(
    clean_registry: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def open_camera(url: str, profiles: list[Any]) -> str:
        return "camera"

    groups: list[str] = []

    def entry_points(group: str) -> list[FakeEntryPoint]:
        groups.append(group)
        return [FakeEntryPoint("camera", open_camera), FakeEntryPoint("broken", ImportError("no module"))]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    caplog.set_level(logging.ERROR, logger="drivers.registry")
    assert registry.get_factory("camera") is open_camera
    assert registry.get_factory("led") is open_window_bus  # a broken plug-in does not hurt the others
    assert groups == [registry.ENTRY_POINT_GROUP]
    assert "broken" in caplog.text
    with pytest.raises(registry.UnknownDeviceKind):
        registry.get_factory("broken")
