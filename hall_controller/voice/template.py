"""Announcement templates: ``请{number}号到{window}号窗口办理`` → the text shown and the clip tokens spoken.

Placeholders:

* ``{number}`` — the ticket number, read character by character: letters by name (one clip per
  letter), digits one by one (``A001`` → A 零 零 一), as Chinese halls announce numbers.
* ``{window}`` — the window number, as a Chinese numeral by default (``3`` → 三, ``12`` → 十二,
  ``105`` → 一百零五), or digit by digit (``12`` → 一 二) with ``window_numbers: digits``.

Everything else in a template is literal text, split into the pack's word tokens by longest match
(``请``, ``号``, ``到``, ``窗口``, ``办理`` …). Commas and full stops are short pauses. A template that
uses a word the pack has no clip for is refused when the config is loaded, not when a call comes.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

__all__ = [
    "CHIME",
    "DIGITS",
    "PAUSES",
    "TemplateError",
    "VoiceTemplate",
    "chinese_numeral",
    "number_tokens",
]

CHIME = "chime"
DIGITS = "零一二三四五六七八九"
#: pause tokens -> seconds of silence (they need no clip)
PAUSES: dict[str, float] = {"，": 0.25, ",": 0.25, "、": 0.2, "。": 0.4, ".": 0.4, " ": 0.1}
WINDOW_STYLES = ("chinese", "digits")
_FIELDS = ("number", "window")


class TemplateError(ValueError):
    """A template that cannot be spoken (unknown placeholder, word without a clip, bad number)."""


def number_tokens(number: str) -> list[str]:
    """``A001`` → ``["A", "零", "零", "一"]``: letters by name, digits one by one."""
    if not number:
        raise TemplateError("号码为空")
    out: list[str] = []
    for ch in number:
        if ch in string.digits:
            out.append(DIGITS[int(ch)])
        elif ch in string.ascii_letters:
            out.append(ch.upper())
        else:
            raise TemplateError(f"号码 {number!r} 含有无法播报的字符 {ch!r}")
    return out


def chinese_numeral(n: int) -> str:
    """1–999 as read aloud: 3 三, 10 十, 12 十二, 20 二十, 105 一百零五, 110 一百一十."""
    if not 1 <= n <= 999:
        raise TemplateError(f"窗口号 {n} 超出 1–999")
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    out = ""
    if hundreds:
        out += DIGITS[hundreds] + "百"
        if tens == 0 and units:
            return out + "零" + DIGITS[units]
    if tens:
        out += ("" if tens == 1 and not hundreds else DIGITS[tens]) + "十"
    if units:
        out += DIGITS[units]
    return out


def window_tokens(window: int, style: str) -> list[str]:
    if style == "digits":
        return number_tokens(str(window))
    return list(chinese_numeral(window))


@dataclass(frozen=True)
class VoiceTemplate:
    """A parsed template; ``words`` is the vocabulary literal text is split into."""

    template: str
    words: frozenset[str]
    window_style: str = "chinese"

    def __post_init__(self) -> None:
        if self.window_style not in WINDOW_STYLES:
            raise TemplateError(f"window_numbers 须为 {' 或 '.join(WINDOW_STYLES)}，不是 {self.window_style!r}")
        _ = self._parts  # validate now

    @cached_property
    def _parts(self) -> list[tuple[str, str]]:
        """``[("text", "请"), ("field", "number"), ...]``."""
        parts: list[tuple[str, str]] = []
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            raise TemplateError(f"模板 {self.template!r} 的花括号不配对：{exc}") from exc
        for literal, field_name, spec, conversion in parsed:
            if literal:
                parts.append(("text", literal))
            if field_name is None:
                continue
            if field_name not in _FIELDS or spec or conversion:
                raise TemplateError(f"模板中的 {{{field_name}}} 不可用（可用：{{number}}、{{window}}）")
            parts.append(("field", field_name))
        if not any(kind == "field" and name == "number" for kind, name in parts):
            raise TemplateError("模板必须包含 {number}")
        for kind, text in parts:
            if kind == "text":
                self._split(text)
        return parts

    def _split(self, text: str) -> list[str]:
        """Longest-match split of literal text into pack words and pauses."""
        longest = max((len(w) for w in self.words), default=1)
        out: list[str] = []
        i = 0
        while i < len(text):
            if text[i] in PAUSES:
                out.append(text[i])
                i += 1
                continue
            for size in range(min(longest, len(text) - i), 0, -1):
                if text[i:i + size] in self.words:
                    out.append(text[i:i + size])
                    i += size
                    break
            else:
                raise TemplateError(f"模板中的“{text[i]}”（在“{text}”里）没有语音片段；可用词语："
                                    f"{'、'.join(sorted(w for w in self.words if len(w) > 1 or w not in DIGITS))}")
        return out

    def render(self, number: str, window: int | None) -> tuple[str, list[str]]:
        """``(text, tokens)`` for one call; tokens exclude the chime (the composer adds it)."""
        text, tokens = "", []
        for kind, value in self._parts:
            if kind == "text":
                text += value
                tokens += self._split(value)
            elif value == "number":
                text += number
                tokens += number_tokens(number)
            else:
                if window is None:
                    raise TemplateError("该呼叫没有窗口号，模板却需要 {window}")
                text += str(window)
                tokens += window_tokens(window, self.window_style)
        return text, tokens

    def required_tokens(self, prefixes: Iterable[str], windows: Iterable[int]) -> set[str]:
        """Every clip this template can need in a hall with these prefixes and windows."""
        needed = {CHIME, *DIGITS}
        for kind, value in self._parts:
            if kind == "text":
                needed.update(self._split(value))
            elif value == "number":
                needed.update(p.upper() for p in prefixes)
            else:
                for window in windows:
                    needed.update(window_tokens(window, self.window_style))
        return {t for t in needed if t not in PAUSES}

