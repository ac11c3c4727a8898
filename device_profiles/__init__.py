"""Device profiles: one YAML file per device model, validated against ``schema/profile.schema.yaml``.

Profiles keep device specifics (baud rate, framing bytes, addresses, features, quirks) out of the
code: a site supports a new LED model by dropping a YAML file into its site directory rather than by
changing drivers. A profile may ``extends`` another; the chain is flattened on load by a deep merge
(maps merge key by key, lists and scalars replace, ``null`` removes an inherited key). A site profile
with the same name as a packaged one replaces it, and may extend it by naming itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PACKAGE_DIR",
    "device_errors",
    "Profile",
    "ProfileError",
    "list_profiles",
    "load_profile",
    "make_framing",
    "require_kind",
    "transport_options",
]

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_FILE = PACKAGE_DIR / "schema" / "profile.schema.yaml"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_TRANSPORT_KWARGS = ("baudrate", "bytesize", "parity", "stopbits", "timeout", "write_timeout")


class ProfileError(Exception):
    """A profile cannot be found, read or validated; names the file and the field at fault."""

    def __init__(self, file: Path | str | None, field: str | None, message: str) -> None:
        self.file = str(file) if file is not None else None
        self.field = field
        self.message = message
        super().__init__(": ".join(part for part in (self.file, field, message) if part))


@dataclass(frozen=True)
class Profile:
    """A flattened, validated profile. The mappings are shared data: treat them as read-only."""

    name: str
    kind: str
    vendor: str
    model: str
    notes: str
    transport: dict[str, Any]
    framing: dict[str, Any]
    addressing: dict[str, Any]
    features: tuple[str, ...]
    quirks: dict[str, Any]
    source: Path
    chain: tuple[Path, ...]

    def supports(self, feature: str) -> bool:
        return feature in self.features


# ------------------------------------------------------------------------------------ file lookup


def _search_dirs(site_dir: Path | str | None) -> list[Path]:
    return [Path(site_dir), PACKAGE_DIR] if site_dir is not None else [PACKAGE_DIR]


def _find(name: str, dirs: list[Path], after: Path | None = None) -> Path:
    """First ``name.yaml`` in ``dirs``; with ``after``, only directories behind that file's one."""
    if not _NAME.match(name):
        raise ProfileError(None, None, f"档案名 {name!r} 无效（只允许小写字母、数字、点、下划线和连字符）")
    if after is not None:
        parent = after.resolve().parent
        dirs = dirs[[d.resolve() for d in dirs].index(parent) + 1 :]
    for directory in dirs:
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    raise ProfileError(
        None, None, f"找不到设备档案 {name!r}（查找目录：{', '.join(str(d) for d in dirs) or '无'}）"
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(path, None, f"无法读取：{exc}") from exc
    except (yaml.YAMLError, ValueError) as exc:
        # PyYAML raises a bare ValueError for impossible dates such as 2024-13-01.
        raise ProfileError(path, None, f"YAML 语法错误：{exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(path, None, "顶层必须是映射（键: 值）")
    return data


# ---------------------------------------------------------------------------------- flattening


def _merge(
    base: dict[str, Any],
    child: dict[str, Any],
    origin: dict[tuple[str, ...], Path],
    source: Path,
    prefix: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Deep merge ``child`` over ``base``, recording in ``origin`` which file set each value."""
    merged = dict(base)
    for key, value in child.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, origin, source, path)
            origin[path] = source
            continue
        for inherited in [p for p in origin if p[: len(path)] == path]:
            del origin[inherited]
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
            origin[path] = source
    return merged


def _flatten(name: str, dirs: list[Path]) -> tuple[dict[str, Any], dict[tuple[str, ...], Path], list[Path]]:
    """Merge the ``extends`` chain of ``name``; returns data, value origins and the chain (leaf first)."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    path = _find(name, dirs)
    while True:
        if any(path == seen for seen, _ in chain):
            cycle = " → ".join(p.stem for p in [*(seen for seen, _ in chain), path])
            raise ProfileError(chain[-1][0], "extends", f"继承关系出现循环：{cycle}")
        raw = _read(path)
        chain.append((path, raw))
        parent = raw.get("extends")
        if parent is None:
            break
        if not isinstance(parent, str):
            raise ProfileError(path, "extends", "必须是档案名（字符串）")
        try:
            # A site profile that extends its own name builds on the packaged profile it replaces.
            path = _find(parent, dirs, after=path if parent == path.stem else None)
        except ProfileError as exc:
            raise ProfileError(path, "extends", exc.message) from None
    data: dict[str, Any] = {}
    origin: dict[tuple[str, ...], Path] = {}
    for source, raw in reversed(chain):
        # Neither `extends` nor `abstract` is inherited: each describes only its own file.
        own = {key: value for key, value in raw.items() if key not in ("extends", "abstract")}
        data = _merge(data, own, origin, source)
    leaf, leaf_raw = chain[0]
    if "abstract" in leaf_raw:
        data["abstract"] = leaf_raw["abstract"]
        origin[("abstract",)] = leaf
    return data, origin, [p for p, _ in chain]


# ---------------------------------------------------------------------------------- validation


_SCHEMA: dict[str, Any] | None = None
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "number": (int, float),
    "bool": (bool,),
    "list": (list,),
    "map": (dict,),
}
_TYPE_NAMES = {
    "str": "字符串",
    "int": "整数",
    "number": "数字",
    "bool": "布尔值",
    "list": "列表",
    "map": "映射",
}


def _schema() -> dict[str, Any]:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = _read(SCHEMA_FILE)
    return _SCHEMA


class _Validator:
    def __init__(self, leaf: Path, origin: dict[tuple[str, ...], Path], kind: Any, abstract: bool) -> None:
        self.leaf = leaf
        self.origin = origin
        self.kind = kind
        self.abstract = abstract

    def fail(self, path: tuple[str, ...], message: str) -> ProfileError:
        source = self.leaf
        for depth in range(len(path), 0, -1):
            if path[:depth] in self.origin:
                source = self.origin[path[:depth]]
                break
        return ProfileError(source, ".".join(path) or None, message)

    def check(self, value: Any, schema: dict[str, Any], path: tuple[str, ...]) -> None:
        kind = schema.get("type", "any")
        if kind != "any":
            ok = isinstance(value, _TYPES[kind]) and not (
                kind in ("int", "number") and isinstance(value, bool)
            )
            if not ok:
                raise self.fail(path, f"应为{_TYPE_NAMES[kind]}，实际为 {value!r}")
        if "enum" in schema and value not in schema["enum"]:
            allowed = "、".join(str(v) for v in schema["enum"])
            raise self.fail(path, f"取值 {value!r} 无效，可选：{allowed}")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            raise self.fail(path, f"{value!r} 格式不对（应为 {schema.get('example', schema['pattern'])}）")
        if "min" in schema and value < schema["min"]:
            raise self.fail(path, f"{value!r} 小于最小值 {schema['min']}")
        if "max" in schema and value > schema["max"]:
            raise self.fail(path, f"{value!r} 大于最大值 {schema['max']}")
        if "items" in schema:
            for index, item in enumerate(value):
                self.check(item, schema["items"], (*path, str(index)))
        if "by_kind" in schema:
            sub = schema["by_kind"].get(self.kind)
            if sub is not None:
                self.check(value, sub, path)
        if "fields" in schema or "additional" in schema:
            self.check_map(value, schema, path)

    def check_map(self, value: dict[str, Any], schema: dict[str, Any], path: tuple[str, ...]) -> None:
        fields = schema.get("fields", {})
        for key, sub in fields.items():
            if key in value:
                self.check(value[key], sub, (*path, key))
            elif sub.get("required") and not self.abstract:
                raise self.fail((*path, key), "缺少必填字段")
        extra = schema.get("additional")
        for key, item in value.items():
            if key in fields:
                continue
            if extra is None:
                known = "、".join(fields) or "无"
                raise self.fail((*path, str(key)), f"未知字段（允许：{known}）")
            self.check(item, extra, (*path, str(key)))


def _validate(data: dict[str, Any], origin: dict[tuple[str, ...], Path], leaf: Path) -> None:
    abstract = data.get("abstract") is True
    kind = data.get("kind")
    validator = _Validator(leaf, origin, kind if isinstance(kind, str) else None, abstract)
    validator.check(data, _schema(), ())
    addressing = data.get("addressing", {})
    if "min" in addressing and "max" in addressing and addressing["min"] > addressing["max"]:
        raise validator.fail(("addressing", "min"), "不能大于 addressing.max")


# -------------------------------------------------------------------------------------- public API


def load_profile(name: str, site_dir: Path | str | None = None) -> Profile:
    """Load, flatten and validate profile ``name`` (site directory first, then the packaged ones)."""
    dirs = _search_dirs(site_dir)
    data, origin, chain = _flatten(name, dirs)
    _validate(data, origin, chain[0])
    if data.get("abstract"):
        raise ProfileError(chain[0], "abstract", "抽象档案只能被继承，不能直接使用")
    return Profile(
        name=name,
        kind=data["kind"],
        vendor=data["vendor"],
        model=data["model"],
        notes=data.get("notes", ""),
        transport=data.get("transport", {}),
        framing=data.get("framing", {}),
        addressing=data.get("addressing", {}),
        features=tuple(data.get("features", ())),
        quirks=data.get("quirks", {}),
        source=chain[0],
        chain=tuple(reversed(chain)),
    )


def list_profiles(site_dir: Path | str | None = None) -> list[str]:
    """Names of the usable (non-abstract) profiles, site ones included, sorted.

    Raises :class:`ProfileError` for a file that is not readable YAML, so a broken site file is
    noticed when profiles are listed rather than when a device is opened.
    """
    names: dict[str, Path] = {}
    for directory in reversed(_search_dirs(site_dir)):
        for path in directory.glob("*.yaml"):
            if _NAME.match(path.stem):
                names[path.stem] = path
    return sorted(name for name, path in names.items() if _read(path).get("abstract") is not True)


def require_kind(profile: Profile, kind: str) -> None:
    """A codec's framing builder refuses a profile of another kind."""
    if profile.kind != kind:
        raise ProfileError(profile.source, "kind", f"需要 {kind} 类设备档案，实际为 {profile.kind}")


def device_errors(profile_name: str, kind: str, address: int | None, options: dict[str, Any],
                  site_dir: Path | str | None = None) -> list[tuple[str, str]]:
    """What is wrong with a hall config's device entry against its profile and the schema.

    ``(field, message)`` pairs: the profile must load and be of the device's kind, a bus address
    must lie in the profile's ``addressing`` range, and ``options`` may only use the keys the
    schema's ``device_options`` lists for the kind (so a typo is reported, not ignored).
    """
    try:
        profile = load_profile(profile_name, site_dir)
    except ProfileError as exc:
        return [("profile", str(exc))]
    errors: list[tuple[str, str]] = []
    if profile.kind != kind:
        errors.append(("profile", f"profile {profile_name!r} is for a {profile.kind}, not a {kind}"))
    low, high = profile.addressing.get("min"), profile.addressing.get("max")
    if address is not None and low is not None and high is not None and not low <= address <= high:
        errors.append(("address", f"{address} is outside {low}–{high} of profile {profile_name!r}"))
    allowed = _schema().get("device_options", {}).get(kind, {})
    for key, value in options.items():
        spec = allowed.get(key)
        if spec is None:
            known = ", ".join(allowed) or "none"
            errors.append((f"options.{key}", f"unknown option for a {kind} (known: {known})"))
        elif spec.get("type") == "str" and not isinstance(value, str):
            errors.append((f"options.{key}", f"must be a string, got {value!r}"))
        elif spec.get("type") in ("number", "int") and not _in_bounds(value, spec):
            errors.append((f"options.{key}", f"must be a number from {spec.get('min', '-∞')} to "
                                             f"{spec.get('max', '∞')}, got {value!r}"))
    return errors


def _in_bounds(value: Any, spec: dict[str, Any]) -> bool:
    """A device option's number within its schema's min and max (an int where it must be one)."""
    kinds = (int,) if spec["type"] == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        return False
    return spec.get("min", value) <= value <= spec.get("max", value)


def make_framing(profile: Profile, cls: type, values: dict[str, Any]) -> Any:
    """Build a codec's framing object; a value the codec refuses names the profile file."""
    try:
        return cls(**values)
    except (ValueError, LookupError) as exc:
        raise ProfileError(profile.source, "framing", str(exc)) from exc


def transport_options(profile: Profile) -> dict[str, Any]:
    """The profile's transport defaults as keyword arguments for ``drivers.transport.open_transport``."""
    return {key: profile.transport[key] for key in _TRANSPORT_KWARGS if key in profile.transport}
