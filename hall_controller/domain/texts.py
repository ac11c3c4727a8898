"""User-facing Chinese texts produced by the domain (announcements, LED lines, notice slips)."""

from __future__ import annotations

_DIGITS = "零一二三四五六七八九"


def spoken_number(number: str) -> str:
    """A001 -> A零零一: queue numbers are read digit by digit."""
    return "".join(_DIGITS[int(c)] if c.isdigit() else c for c in number)


def announcement_text(number: str, window: int) -> str:
    return f"请{number}号到{window}号窗口办理"


def notice_slip(service_name: str, materials: tuple[str, ...], hall_name: str) -> dict[str, object]:
    """一次性告知单: everything the visitor must bring, printed in one go."""
    lines = [f"{i}. {m}" for i, m in enumerate(materials, 1)]
    return {
        "title": "一次性告知单",
        "hall": hall_name,
        "service": service_name,
        "materials": list(materials),
        "lines": [f"办理{service_name}请携带以下材料：", *lines, "如有疑问请咨询综合接待窗口。"],
    }
