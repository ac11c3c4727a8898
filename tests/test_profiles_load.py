"""Device profiles: packaged models, inheritance, site overrides, schema errors and fuzzing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from device_profiles import (
    PACKAGE_DIR,
    SCHEMA_FILE,
    Profile,
    ProfileError,
    list_profiles,
    load_profile,
    transport_options,
)
from drivers.codecs.window_bus import KEY_CODES, KeypadFraming, LedFraming, keypad_framing, led_framing

REQUIRED = {
    "dory-controller",
    "dory-led-375-4",
    "dory-keypad",
    "generic-led-8",
    "dory-dl6009-card-reader",
    "dory-dl6009-printer",
    "pc-speaker",
}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -------------------------------------------------------------------------------- packaged files


def test_every_packaged_profile_loads_and_the_base_is_not_listed() -> None:
    names = list_profiles()
    assert REQUIRED <= set(names)
    assert "base-led-window" not in names
    for name in names:
        profile = load_profile(name)
        assert isinstance(profile, Profile)
        assert profile.name == name
        assert profile.source == PACKAGE_DIR / f"{name}.yaml"


def test_schema_file_is_packaged_next_to_the_profiles() -> None:
    assert SCHEMA_FILE.parent.name == "schema"
    assert SCHEMA_FILE.suffix == ".yaml"
    schema = yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))
    kinds = schema["fields"]["kind"]["enum"]
    assert kinds == ["led", "keypad", "controller", "card_reader", "printer", "speaker", "camera"]


def test_dory_controller() -> None:
    profile = load_profile("dory-controller")
    assert (profile.vendor, profile.kind) == ("DORY", "controller")
    assert transport_options(profile) == {
        "baudrate": 9600,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "timeout": 0.2,
        "write_timeout": 1.0,
    }
    assert profile.transport["link"] == "rs485"
    assert profile.quirks["local_echo"] is False
    assert profile.supports("rs485_bridge")
    assert not profile.supports("text")


def test_dory_led_inherits_the_common_base() -> None:
    profile = load_profile("dory-led-375-4")
    assert [p.stem for p in profile.chain] == ["base-led-window", "dory-led-375-4"]
    assert profile.framing["preamble"] == [0xA0, 0x90]  # from the base
    assert profile.addressing == {"min": 1, "max": 254, "broadcast": 0xFF, "default": 1}
    assert led_framing(profile) == LedFraming(
        preamble=b"\xa0\x90",
        checksum="xor8",
        cmd_text=0xA5,
        encoding="gbk",
        colour=0x01,
        max_chars=4,
        broadcast=0xFF,
        max_data=256,
    )
    assert profile.supports("gbk")


def test_second_led_model_differs_only_by_data() -> None:
    profile = load_profile("generic-led-8")
    framing = led_framing(profile)
    assert framing.preamble == b"\xa0\x90"  # inherited
    assert (framing.colour, framing.max_chars, framing.broadcast) == (0x02, 8, 0x00)
    assert profile.transport["baudrate"] == 19200
    assert profile.transport["parity"] == "N"  # inherited
    assert profile.addressing["max"] == 250
    assert profile.framing["colours"] == {"red": 1, "green": 2, "yellow": 3}
    assert profile.supports("colour")


def test_dory_keypad() -> None:
    profile = load_profile("dory-keypad")
    framing = keypad_framing(profile)
    assert framing == KeypadFraming(preamble=b"\xff", start=0x68, end=0x16, checksum="sum8", max_data=32)
    assert dict(framing.key_codes) == dict(KEY_CODES)
    assert profile.quirks["repeat_guard_ms"] == 500
    assert profile.supports("ack_echo")


def test_data_only_profiles() -> None:
    reader = load_profile("dory-dl6009-card-reader")
    assert reader.kind == "card_reader"
    assert reader.transport["baudrate"] == 115200
    assert reader.framing["preamble"] == [0xAA, 0xAA, 0xAA, 0x96, 0x69]
    assert reader.framing["commands"]["read_base_info"] == [0x30, 0x01]
    assert reader.supports("gat467")
    printer = load_profile("dory-dl6009-printer")
    assert (printer.framing["encoding"], printer.framing["paper_width_mm"]) == ("gb18030", 80)
    assert printer.framing["chinese_prefix"] == [0x1C, 0x26]  # FS &
    assert printer.supports("escpos")
    speaker = load_profile("pc-speaker")
    assert speaker.kind == "speaker"
    assert transport_options(speaker) == {}


def test_framing_helpers_check_the_kind() -> None:
    with pytest.raises(ProfileError) as info:
        led_framing(load_profile("dory-keypad"))
    assert info.value.field == "kind"
    with pytest.raises(ProfileError):
        keypad_framing(load_profile("dory-led-375-4"))


# ------------------------------------------------------------------------------------ site dir


def test_site_dir_adds_a_model(tmp_path: Path) -> None:
    write(
        tmp_path,
        "acme-led-2",
        "extends: base-led-window\nvendor: ACME\nmodel: 2 字屏\nframing: {max_chars: 2, colour: 0x04}\n",
    )
    assert "acme-led-2" in list_profiles(tmp_path)
    assert "acme-led-2" not in list_profiles()
    profile = load_profile("acme-led-2", site_dir=tmp_path)
    assert profile.kind == "led"  # inherited
    assert led_framing(profile).max_chars == 2
    assert profile.source == tmp_path / "acme-led-2.yaml"


def test_site_profile_overriding_and_extending_the_packaged_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        "dory-led-375-4",
        "extends: dory-led-375-4\nframing:\n  colour: 0x07\nfeatures: [text]\n",
    )
    profile = load_profile("dory-led-375-4", tmp_path)
    assert [p.stem for p in profile.chain] == ["base-led-window", "dory-led-375-4", "dory-led-375-4"]
    assert profile.chain[1].parent == PACKAGE_DIR
    assert led_framing(profile).colour == 0x07
    assert led_framing(profile).max_chars == 4
    assert profile.features == ("text",)
    assert list_profiles(tmp_path).count("dory-led-375-4") == 1


def test_a_quirk_the_kind_does_not_know_is_an_error(tmp_path: Path) -> None:
    """A typo in a quirk fails when the profile loads instead of being silently ignored."""
    write(tmp_path, "dory-keypad", "extends: dory-keypad\nquirks:\n  repeat_gaurd_ms: 300\n")
    with pytest.raises(ProfileError) as info:
        load_profile("dory-keypad", tmp_path)
    assert info.value.field == "quirks.repeat_gaurd_ms"
    assert "repeat_guard_ms" in info.value.message


def test_site_profile_replacing_the_packaged_one(tmp_path: Path) -> None:
    write(tmp_path, "dory-keypad", "vendor: DORY\nmodel: 新款呼叫器\nkind: keypad\n")
    profile = load_profile("dory-keypad", tmp_path)
    assert profile.model == "新款呼叫器"
    assert profile.framing == {}
    assert keypad_framing(profile) == KeypadFraming()


def test_null_removes_an_inherited_value(tmp_path: Path) -> None:
    write(
        tmp_path,
        "quiet-controller",
        "extends: dory-controller\nmodel: 无回显\nquirks:\n  local_echo: null\nnotes: null\n",
    )
    profile = load_profile("quiet-controller", tmp_path)
    assert profile.quirks == {}
    assert profile.notes == ""
    assert profile.transport["baudrate"] == 9600


# -------------------------------------------------------------------------------------- errors


def error_of(name: str, site: Path) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_profile(name, site)
    return info.value


def test_wrong_type_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "bad", "extends: dory-controller\ntransport:\n  baudrate: fast\n")
    err = error_of("bad", tmp_path)
    assert (err.file, err.field) == (str(path), "transport.baudrate")
    assert str(path) in str(err) and "transport.baudrate" in str(err)


def test_error_in_a_base_names_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path, "site-base", "abstract: true\nkind: led\nframing:\n  checksum: crc32\n")
    write(tmp_path, "child", "extends: site-base\nvendor: X\nmodel: Y\n")
    err = error_of("child", tmp_path)
    assert (err.file, err.field) == (str(base), "framing.checksum")


def test_overridden_value_is_blamed_on_the_overriding_file(tmp_path: Path) -> None:
    child = write(tmp_path, "child", "extends: dory-keypad\nframing:\n  keys:\n    next: 0x300\n")
    err = error_of("child", tmp_path)
    assert (err.file, err.field) == (str(child), "framing.keys.next")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("model: M\nkind: led\n", "vendor"),
        ("vendor: V\nmodel: M\nkind: fax\n", "kind"),
        ("vendor: V\nmodel: M\nkind: led\ncolour: red\n", "colour"),
        ("vendor: V\nmodel: M\nkind: led\nframing: {preamble: [0x1A0]}\n", "framing.preamble.0"),
        ("vendor: V\nmodel: M\nkind: led\nframing: {bogus: 1}\n", "framing.bogus"),
        ("vendor: V\nmodel: M\nkind: keypad\nframing: {keys: {explode: 0x20}}\n", "framing.keys.explode"),
        ("vendor: V\nmodel: M\nkind: led\ntransport: {stopbits: 3}\n", "transport.stopbits"),
        ("vendor: V\nmodel: M\nkind: led\ntransport: {timeout: 0}\n", "transport.timeout"),
        ("vendor: V\nmodel: M\nkind: led\ntransport: {parity: true}\n", "transport.parity"),
        ("vendor: V\nmodel: M\nkind: led\naddressing: {min: 9, max: 3}\n", "addressing.min"),
        ("vendor: V\nmodel: M\nkind: led\nfeatures: text\n", "features"),
        ("vendor: V\nmodel: M\nkind: led\nextends: 7\n", "extends"),
        ("vendor: V\nmodel: M\nkind: led\nextends: nowhere\n", "extends"),
        ("vendor: V\nmodel: M\nkind: led\nabstract: true\n", "abstract"),
    ],
)
def test_invalid_profiles(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, "bad", text)
    err = error_of("bad", tmp_path)
    assert err.field == field
    assert err.file == str(path)


def test_inheritance_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a", "extends: b\n")
    write(tmp_path, "b", "extends: a\n")
    err = error_of("a", tmp_path)
    assert err.field == "extends"
    assert "a → b → a" in err.message


@pytest.mark.parametrize("text", ["vendor: [unclosed\n", "- just\n- a list\n", "built: 2024-13-01\n"])
def test_unreadable_yaml(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "bad", text)
    err = error_of("bad", tmp_path)
    assert err.file == str(path)
    assert err.field is None


def test_unknown_or_unsafe_name(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="找不到"):
        load_profile("no-such-model")
    with pytest.raises(ProfileError):
        load_profile("../etc/passwd")


def test_framing_the_codec_rejects_is_a_profile_error(tmp_path: Path) -> None:
    write(tmp_path, "odd-led", "extends: dory-led-375-4\nframing: {encoding: no-such-codec}\n")
    with pytest.raises(ProfileError) as info:
        led_framing(load_profile("odd-led", tmp_path))
    assert info.value.field == "framing"


# -------------------------------------------------------------------------------------- fuzzing

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-300, 70000), st.floats(allow_nan=False), st.text(max_size=8)
)
keys = st.sampled_from(
    [
        "vendor",
        "model",
        "kind",
        "notes",
        "extends",
        "abstract",
        "transport",
        "framing",
        "addressing",
        "features",
        "quirks",
        "baudrate",
        "preamble",
        "keys",
        "next",
        "min",
        "max",
        "led",
        "x",
    ]
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=12,
)
kinds = st.sampled_from(["led", "keypad", "controller", "card_reader", "printer", "speaker", "camera", "fax"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=8), kinds)
def test_validator_never_crashes(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any], kind: str
) -> None:
    site = tmp_path_factory.mktemp("site")
    data = {"vendor": "V", "model": "M", "kind": kind, **data}
    write(site, "fuzz", yaml.safe_dump(data, allow_unicode=True))
    try:
        profile = load_profile("fuzz", site)
    except ProfileError as exc:
        assert exc.file is not None and exc.message
        return
    if profile.kind == "led":
        try:
            led_framing(profile)
        except ProfileError:
            pass
    if profile.kind == "keypad":
        try:
            keypad_framing(profile)
        except ProfileError:
            pass
