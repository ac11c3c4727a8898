"""The ``voice:`` section of the hall config, checked when the config is loaded.

    voice:
      template: 请{number}号到{window}号窗口办理   # see hall_controller.voice.template
      repeat: 2                 # times the phrase is spoken after the chime (1–5)
      chime: true               # the two-tone chime before each announcement
      window_numbers: chinese   # 12 → 十二 (chinese) or 一二 (digits)
      max_wait_seconds: 20      # later than this after its call: spoken once, no repeat (announcement_shortened)
      drop_after_seconds: 120   # later than this: not spoken at all (announcement_dropped)
      pack: null                # a folder of the site's own recordings; null = the shipped pack

The pack is checked here against everything the template can need in this hall (its service
prefixes and window numbers), so a missing clip stops the daemon at start with the list of what is
missing instead of failing on the first call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .composer import Composer
from .pack import builtin_pack_dir, check_pack, load_pack, pack_tokens
from .template import WINDOW_STYLES, TemplateError, VoiceTemplate

__all__ = ["DEFAULT_TEMPLATE", "VoiceConfig", "composer_for", "parse_voice"]

DEFAULT_TEMPLATE = "请{number}号到{window}号窗口办理"
_KEYS = {"template", "repeat", "chime", "window_numbers", "max_wait_seconds", "drop_after_seconds", "pack"}


@dataclass(frozen=True)
class VoiceConfig:
    template: str = DEFAULT_TEMPLATE
    repeat: int = 2
    chime: bool = True
    window_numbers: str = "chinese"
    max_wait_seconds: float = 20.0
    drop_after_seconds: float = 120.0
    pack: str | None = None  # absolute folder, None = the shipped pack

    def pack_dir(self) -> Path:
        return Path(self.pack) if self.pack else builtin_pack_dir()


def _template(template: str, words: set[str], style: str) -> VoiceTemplate:
    # split literal text by every word a pack may have, so that a clip missing from a site pack is
    # reported as missing rather than as a word the template may not use
    return VoiceTemplate(template, frozenset(words | pack_tokens(None)[0]), style)


def composer_for(voice: VoiceConfig) -> Composer:
    """Load the configured pack (VoicePackError if it broke since the config was checked)."""
    pack = load_pack(voice.pack)
    return Composer(pack, _template(voice.template, set(pack.clips), voice.window_numbers))


def _number(raw: dict[str, Any], key: str, default: float, add: Callable[[str, str], None]) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        add(f"voice.{key}", f"must be a number of seconds between 0 and 3600, got {value!r}")
        return default
    return float(value)


def parse_voice(raw: Any, add: Callable[[str, str], None], prefixes: Iterable[str], windows: Iterable[int],
                base_dir: Path) -> VoiceConfig:
    """Validate the ``voice`` section; problems go to ``add(field, message)``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        add("voice", f"must be a mapping, got {type(raw).__name__}")
        return VoiceConfig()
    for key in raw:
        if key not in _KEYS:
            add(f"voice.{key}", f"unknown field (allowed: {', '.join(sorted(_KEYS))})")
    defaults = VoiceConfig()
    template = raw.get("template", defaults.template)
    if not isinstance(template, str) or not template.strip():
        add("voice.template", f"must be a non-empty string, got {template!r}")
        template = defaults.template
    repeat = raw.get("repeat", defaults.repeat)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 5:
        add("voice.repeat", f"must be an integer 1–5, got {repeat!r}")
        repeat = defaults.repeat
    chime = raw.get("chime", True)
    if not isinstance(chime, bool):
        add("voice.chime", f"must be true or false, got {chime!r}")
        chime = True
    style = raw.get("window_numbers", defaults.window_numbers)
    if style not in WINDOW_STYLES:
        add("voice.window_numbers", f"must be {' or '.join(WINDOW_STYLES)}, got {style!r}")
        style = defaults.window_numbers
    max_wait = _number(raw, "max_wait_seconds", defaults.max_wait_seconds, add)
    drop_after = _number(raw, "drop_after_seconds", max(defaults.drop_after_seconds, max_wait), add)
    if drop_after < max_wait:
        add("voice.drop_after_seconds", f"must not be less than max_wait_seconds ({max_wait:g}), got {drop_after:g}")
    folder = _pack_folder(raw.get("pack"), base_dir, add)
    _check_clips(folder, template, style, chime, prefixes, windows, add)
    return VoiceConfig(template, repeat, chime, style, max_wait, drop_after, str(folder) if folder else None)


def _pack_folder(pack: Any, base_dir: Path, add: Callable[[str, str], None]) -> Path | None:
    """`voice.pack`: the site's clip folder (relative to the config), None for the built-in pack."""
    if pack is not None and (not isinstance(pack, str) or not pack.strip()):
        add("voice.pack", f"must be a folder path or null, got {pack!r}")
        return None
    return (base_dir / pack).resolve() if pack else None


def _check_clips(folder: Path | None, template: str, style: str, chime: bool, prefixes: Iterable[str],
                 windows: Iterable[int], add: Callable[[str, str], None]) -> None:
    """Every clip the template can need for these prefixes and windows is in the pack, so a call is
    never spoken with a gap (found at start, not at the first call of a number)."""
    words, problems = pack_tokens(folder)
    for problem in problems:
        add("voice.pack", problem)
    if problems:
        return
    try:
        parsed = _template(template, words, style)
    except TemplateError as exc:
        add("voice.template", str(exc))
        return
    needed = parsed.required_tokens(prefixes, windows)
    if not chime:
        needed.discard("chime")
    for problem in check_pack(folder, needed):
        add("voice.pack" if folder else "voice", f"{folder or '内置语音包'}：{problem}")
