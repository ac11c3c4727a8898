"""Clip packs: one short WAV per spoken token, described by the pack's ``manifest.json``.

The shipped pack lives in ``hall_controller/voice/clips`` (made by ``make_clips.py``). A site replaces
it with its own recordings by naming a folder in the hall config (``voice.pack``). That folder holds
the WAVs and either its own ``manifest.json`` (``{"tokens": {"请": {"file": "qing.wav"}, ...}}``,
``file`` may also be given as a plain string) or no manifest, in which case the files are looked up
under the shipped pack's file names (``qing.wav``, ``digit_0.wav``, ``letter_A.wav``, ``chime.wav`` …).

All clips of a pack share one format (16-bit PCM, one sample rate, one channel count) so that they
concatenate without resampling. :func:`check_pack` finds every problem at once (missing tokens,
unreadable or mismatched files) so the config loader can refuse to start with one clear list.
"""

from __future__ import annotations

import json
import struct
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from drivers.codecs.audio_frames import WavError, WavInfo, read_wav

__all__ = ["ClipPack", "VoicePackError", "builtin_pack_dir", "check_pack", "load_pack", "pack_tokens"]

MANIFEST = "manifest.json"


class VoicePackError(ValueError):
    """A clip pack that cannot speak what the hall needs; ``problems`` lists each issue."""

    def __init__(self, folder: str, problems: list[str]) -> None:
        self.folder = folder
        self.problems = problems
        super().__init__(f"语音包 {folder} 不可用：\n" + "\n".join(f"  - {p}" for p in problems))


def builtin_pack_dir() -> Path:
    return Path(str(resources.files("hall_controller.voice").joinpath("clips")))


@dataclass(frozen=True)
class ClipPack:
    """Loaded clips: raw PCM per token, one format."""

    folder: str
    sample_rate: int
    channels: int
    sample_width: int
    clips: dict[str, bytes]
    manifest: dict[str, Any]

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * self.channels * self.sample_width

    def silence(self, seconds: float) -> bytes:
        frame = self.channels * self.sample_width
        return bytes(int(round(seconds * self.sample_rate)) * frame)

    def missing(self, tokens: Iterable[str]) -> list[str]:
        return sorted(set(tokens) - set(self.clips))


def _file_map(folder: Path) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    """``(token -> file name, manifest, problems)`` of a pack folder."""
    problems: list[str] = []
    manifest: dict[str, Any] = {}
    path = folder / MANIFEST
    if path.exists():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return {}, {}, [f"{MANIFEST} 无法读取：{exc}"]
        source = manifest.get("tokens") if isinstance(manifest, dict) else None
        if not isinstance(source, dict):
            return {}, {}, [f"{MANIFEST} 须含 tokens 映射（词 → 文件）"]
    else:
        # a folder of recordings under the shipped pack's file names
        source = _builtin_manifest()["tokens"]
        manifest = {"name": folder.name, "tokens": {}}
    files: dict[str, str] = {}
    for token, entry in source.items():
        name = entry.get("file") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not name or Path(name).name != name:
            problems.append(f"词“{token}”的文件名 {name!r} 无效（须为文件夹内的文件名）")
            continue
        if path.exists() or (folder / name).exists():
            files[token] = name
    return files, manifest, problems


def _builtin_manifest() -> dict[str, Any]:
    return json.loads((builtin_pack_dir() / MANIFEST).read_text(encoding="utf-8"))


def _read(path: Path, frames: bool) -> WavInfo:
    """A clip's format, and its PCM when ``frames`` (a check only needs the header)."""
    if frames:
        return read_wav(path.read_bytes())
    try:
        with wave.open(str(path), "rb") as w:
            return WavInfo(w.getframerate(), w.getnchannels(), w.getsampwidth(), b"\0" * min(w.getnframes(), 1))
    except (wave.Error, EOFError, struct.error) as exc:
        raise WavError(f"不是可播放的 PCM WAV 文件：{exc}") from exc


def _load(folder: Path, required: Iterable[str], frames: bool = True) -> tuple[ClipPack | None, list[str]]:
    if not folder.is_dir():
        return None, [f"文件夹不存在：{folder}"]
    files, manifest, problems = _file_map(folder)
    required = set(required)
    missing = sorted(required - set(files))
    if missing:
        names = _builtin_manifest()["tokens"]
        hint = "、".join(f"{t}（{names[t]['file'] if t in names else '?'}）" for t in missing)
        problems.append(f"缺少 {len(missing)} 个语音片段：{hint}")
    clips: dict[str, bytes] = {}
    formats: dict[tuple[int, int, int], list[str]] = {}
    for token, name in files.items():
        try:
            info = _read(folder / name, frames)
        except OSError as exc:
            problems.append(f"{name}（{token}）无法读取：{exc.strerror or exc}")
            continue
        except WavError as exc:
            problems.append(f"{name}（{token}）{exc}")
            continue
        if info.sample_width != 2:
            problems.append(f"{name}（{token}）须为 16 位 PCM，实为 {info.sample_width * 8} 位")
            continue
        if not info.frames:
            problems.append(f"{name}（{token}）是空的")
            continue
        formats.setdefault((info.sample_rate, info.channels, info.sample_width), []).append(name)
        clips[token] = info.frames
    if len(formats) > 1:
        listing = "；".join(f"{rate} Hz {ch} 声道：{'、'.join(sorted(names)[:4])}{' 等' if len(names) > 4 else ''}"
                            for (rate, ch, _), names in sorted(formats.items()))
        problems.append(f"片段格式不一致（须为同一采样率与声道数）：{listing}")
    if problems or not formats:
        return None, problems or ["没有语音片段"]
    (rate, channels, width), = formats
    return ClipPack(str(folder), rate, channels, width, clips, manifest), []


def pack_tokens(folder: str | Path | None) -> tuple[set[str], list[str]]:
    """The tokens a pack folder offers (None = the shipped pack), without reading the clips."""
    path = Path(folder) if folder else builtin_pack_dir()
    if not path.is_dir():
        return set(), [f"文件夹不存在：{path}"]
    files, _, problems = _file_map(path)
    return set(files), problems


def check_pack(folder: str | Path | None, required: Iterable[str]) -> list[str]:
    """Every problem of the pack in ``folder`` (None = the shipped pack) for these tokens; [] if fine."""
    return _load(Path(folder) if folder else builtin_pack_dir(), required, frames=False)[1]


def load_pack(folder: str | Path | None = None, required: Iterable[str] = ()) -> ClipPack:
    """The pack in ``folder`` (None = the shipped pack); :class:`VoicePackError` lists what is wrong."""
    path = Path(folder) if folder else builtin_pack_dir()
    pack, problems = _load(path, required)
    if pack is None:
        raise VoicePackError(str(path), problems)
    return pack
