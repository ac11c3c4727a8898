"""Composer: tokens → one WAV (chime, then the phrase, repeated with pauses) from a clip pack.

Concatenation of raw PCM with silences between clips: no resampling, no mixing, so composing a
five-second announcement takes well under a millisecond and the first sample can go to the
speaker almost as soon as the call is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.codecs.audio_frames import write_wav

from .pack import ClipPack
from .template import CHIME, PAUSES, VoiceTemplate

__all__ = ["Composed", "Composer", "Gaps"]


@dataclass(frozen=True)
class Gaps:
    """Silences in seconds: between words, after the chime, between repeats, at both ends."""

    word: float = 0.06
    after_chime: float = 0.3
    repeat: float = 0.8
    edge: float = 0.05


@dataclass(frozen=True)
class Composed:
    text: str
    tokens: list[str]  # as spoken, chime and repeats included (pauses are not tokens)
    wav: bytes
    duration: float
    repeat: int


class Composer:
    def __init__(self, pack: ClipPack, template: VoiceTemplate, gaps: Gaps | None = None) -> None:
        self.pack = pack
        self.template = template
        self.gaps = gaps or Gaps()

    def phrase(self, number: str, window: int | None) -> tuple[str, list[str]]:
        return self.template.render(number, window)

    def compose(self, number: str, window: int | None, repeat: int = 1, *, chime: bool = True) -> Composed:
        """The whole announcement; a token without a clip raises ValueError (the config check prevents it)."""
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        text, phrase = self.phrase(number, window)
        missing = self.pack.missing([t for t in phrase if t not in PAUSES] + ([CHIME] if chime else []))
        if missing:
            raise ValueError(f"语音包缺少片段：{'、'.join(missing)}")
        pack, gaps = self.pack, self.gaps
        parts: list[bytes] = [pack.silence(gaps.edge)]
        spoken: list[str] = []
        if chime:
            parts += [pack.clips[CHIME], pack.silence(gaps.after_chime)]
            spoken.append(CHIME)
        word_gap = pack.silence(gaps.word)
        for n in range(repeat):
            if n:
                parts.append(pack.silence(gaps.repeat))
            for i, token in enumerate(phrase):
                if token in PAUSES:
                    parts.append(pack.silence(PAUSES[token]))
                    continue
                if i:
                    parts.append(word_gap)
                parts.append(pack.clips[token])
                spoken.append(token)
        parts.append(pack.silence(gaps.edge))
        pcm = b"".join(parts)
        return Composed(text, spoken, write_wav(pcm, pack.sample_rate, pack.channels, pack.sample_width),
                        len(pcm) / pack.bytes_per_second, repeat)
