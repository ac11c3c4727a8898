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
    def open_printer(url: str, profiles: list[Any], *, on_error: Any = None) -> Any:
        return f"printer at {url}"

    assert registry.get_factory("printer")("loop://", []) == "printer at loop://"
    assert registry.spec("printer").interface is PrinterDriver
    assert registry.spec("printer").options == {"on_error"}

    @registry.register("printer", interface=PrinterDriver, codec="drivers.codecs.window_bus")
    def other(url: str, profiles: list[Any], *, on_error: Any = None) -> Any:
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
    def open_camera(url: str, profiles: list[Any], *, on_error: Any = None) -> Any:
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


# ------------------------------------------------------------------------------ factory options

@pytest.mark.parametrize("kind", ["controller", "card_reader", "printer", "speaker", "camera"])
def test_every_factory_names_its_options(kind: str) -> None:
    """No built-in factory swallows options it does not know (``**_``)."""
    import inspect

    params = inspect.signature(registry.get_factory(kind)).parameters.values()
    assert not [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert "on_error" in registry.spec(kind).options


def test_an_unknown_option_is_refused_naming_it() -> None:
    from device_profiles import load_profile

    with pytest.raises(registry.UnknownDriverOption, match="poll_ms") as info:
        registry.create_driver("printer", PrinterDriver, "loop://", [load_profile("dory-dl6009-printer")],
                               on_error=None, poll_ms=500)
    assert isinstance(info.value, TypeError) and "on_error" in str(info.value)      # what it does take
    with pytest.raises(registry.UnknownDriverOption, match="on_keys"):              # a misspelt callback
        registry.create_driver("controller", CameraDriver, "loop://", [], on_keys=print)
    # positive control: the options the factory names go through, and the interface is checked
    printer = registry.create_driver("printer", PrinterDriver, "loop://", [load_profile("dory-dl6009-printer")],
                                     on_error=None)
    assert isinstance(printer, PrinterDriver)
    with pytest.raises(TypeError, match="is not a CameraDriver"):
        registry.create_driver("printer", CameraDriver, "loop://", [load_profile("dory-dl6009-printer")])


def test_a_factory_that_would_swallow_options_is_not_registered(clean_registry: None) -> None:
    def open_anything(url: str, profiles: list[Any], **_: Any) -> Any:
        return None

    with pytest.raises(ValueError, match="must name its options"):
        registry.register("printer", interface=PrinterDriver, codec="drivers.codecs.escpos")(open_anything)
