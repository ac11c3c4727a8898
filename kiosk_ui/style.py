"""Age-friendly look shared by the public Qt apps (kiosk, display, tablet) and the window terminal.

The national age-friendly guidance for public terminals asks for main text of at least 18 dp with a
large mode of at least 30 dp, touch targets of at least 60×60 dp, a contrast of at least 4.5:1 and
no meaning carried by colour alone (every state here also has words). Qt's logical pixels are the
dp here: Qt scales them on high-density screens.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import QApplication

FONT_FAMILY = "WenQuanYi Micro Hei"
FALLBACK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Droid Sans Fallback")
MIN_TOUCH = 60          # dp, both sides of anything that can be touched
MIN_TEXT = 18           # dp, main text
MIN_TEXT_LARGE = 30     # dp, main text in large-text mode
MIN_CONTRAST = 4.5


@dataclass(frozen=True)
class TextScale:
    """Font sizes in dp for one text mode."""

    small: int      # secondary lines (never below MIN_TEXT)
    body: int       # main text
    button: int     # words on buttons
    title: int      # screen titles
    big: int        # numbers in tables, the waiting count
    huge: int       # the ticket number, the latest call


NORMAL = TextScale(small=20, body=24, button=30, title=36, big=48, huge=140)
LARGE = TextScale(small=30, body=34, button=40, title=48, big=64, huge=190)


@dataclass(frozen=True)
class Palette:
    """Colours as #rrggbb. Each text/background pair used together is checked for 4.5:1 in the tests."""

    background: str = "#ffffff"
    surface: str = "#eef3fa"
    text: str = "#1a1a1a"
    muted: str = "#3d4a5c"
    primary: str = "#0b4ea2"        # buttons: white text on it
    primary_text: str = "#ffffff"
    accent: str = "#8a4b00"         # estimates, notes
    alert: str = "#b00020"          # offline, paused: white text on it
    alert_text: str = "#ffffff"
    ok: str = "#0a6b2f"             # online marks
    disabled: str = "#5f6670"       # disabled buttons: white text on it
    board: str = "#0d1b2a"          # the hall display's dark board
    board_text: str = "#ffffff"
    board_highlight: str = "#ffd54a"  # the latest call on the board
    board_muted: str = "#c9d6e3"


PALETTE = Palette()

# (foreground, background) pairs the apps draw; tests assert every one meets MIN_CONTRAST.
TEXT_PAIRS: tuple[tuple[str, str], ...] = (
    (PALETTE.text, PALETTE.background), (PALETTE.muted, PALETTE.background), (PALETTE.text, PALETTE.surface),
    (PALETTE.muted, PALETTE.surface), (PALETTE.primary, PALETTE.background),
    (PALETTE.primary_text, PALETTE.primary), (PALETTE.accent, PALETTE.background),
    (PALETTE.accent, PALETTE.surface), (PALETTE.alert_text, PALETTE.alert), (PALETTE.alert, PALETTE.background),
    (PALETTE.ok, PALETTE.background), (PALETTE.primary_text, PALETTE.disabled),
    (PALETTE.board_text, PALETTE.board), (PALETTE.board_highlight, PALETTE.board),
    (PALETTE.board_muted, PALETTE.board), (PALETTE.alert_text, PALETTE.alert),
)


def relative_luminance(colour: str) -> float:
    """WCAG 2 relative luminance of #rrggbb."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio (1–21)."""
    a, b = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def font_family() -> str:
    """The CJK font to use: WenQuanYi Micro Hei when installed, else the first CJK fallback found."""
    families = set(QFontDatabase.families())
    for family in (FONT_FAMILY, *FALLBACK_FAMILIES):
        if family in families:
            return family
    return FONT_FAMILY


def font(px: int, *, bold: bool = False) -> QFont:
    f = QFont(font_family())
    f.setPixelSize(px)
    f.setBold(bold)
    return f


def stylesheet(scale: TextScale = NORMAL, palette: Palette = PALETTE) -> str:
    """One Qt style sheet for the whole app; object names select the roles (title, muted, alert …)."""
    p = palette
    return f"""
    QWidget {{ font-family: "{font_family()}"; font-size: {scale.body}px; color: {p.text};
               background: {p.background}; }}
    QLabel#title {{ font-size: {scale.title}px; font-weight: bold; }}
    QLabel#muted {{ color: {p.muted}; font-size: {scale.small}px; }}
    QLabel#accent {{ color: {p.accent}; }}
    QLabel#banner {{ background: {p.alert}; color: {p.alert_text}; font-size: {scale.title}px;
                     font-weight: bold; padding: 12px; }}
    QPushButton {{ background: {p.primary}; color: {p.primary_text}; font-size: {scale.button}px;
                   font-weight: bold; border: none; border-radius: 12px; padding: 12px 20px;
                   min-height: {MIN_TOUCH}px; min-width: {MIN_TOUCH}px; }}
    QPushButton:pressed {{ background: #083a78; }}
    QPushButton:disabled {{ background: {p.disabled}; color: {p.primary_text}; }}
    QPushButton#secondary {{ background: {p.surface}; color: {p.primary}; border: 3px solid {p.primary}; }}
    QPushButton#secondary:disabled {{ color: {p.muted}; border-color: {p.muted}; }}
    QFrame#card {{ background: {p.surface}; border-radius: 16px; }}
    QFrame#card QLabel {{ background: transparent; }}
    """


def apply_style(app: QApplication, scale: TextScale = NORMAL) -> None:
    app.setFont(font(scale.body))
    app.setStyleSheet(stylesheet(scale))
