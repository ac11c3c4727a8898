"""Speaker drivers: play whole WAV files, one at a time, each to its end (a PA zone's output).

The hall config's ``url`` picks the output:

* ``audio://default`` — the PC's default sound output (→ amplifier → ceiling speakers), through
  miniaudio (a runtime dependency; its wheels bundle the library, ALSA/PulseAudio are
  loaded at run time). ``audio://NAME`` picks the first output whose name contains NAME;
  ``audio://null`` is miniaudio's null backend (plays in real time to nowhere: headless tests).
  Without a usable sound device ``open()`` fails with a clear :class:`NotSupported`/:class:`DeviceNotFound`.
* ``wavdir:///abs/folder`` (``?paced=1``) — a WAV sink: every announcement is written as
  ``NNNN.wav`` with ``NNNN.json`` beside it (text, tokens, zone); ``paced=1`` takes as long as
  playing would, so queueing behaves exactly as with a loudspeaker.
* any ``drivers.transport`` URL (``socket://HOST:PORT``, a serial device, ``loop://``) — a remote
  player such as the emulated speaker of ``hall-emu``, speaking ``drivers.codecs.audio_frames``:
  ``play`` sends a PLAY frame and returns when the player reports DONE.

``play(wav, meta=None)`` blocks until the last sample has gone out and returns the duration;
``started_at`` is the ``time.perf_counter()`` at which the first sample was handed to the output
(what ``bench/announce.py`` measures). No retries here: a failure raises :class:`TransportError`
(or is reported once through ``on_error`` from the reader thread) and the daemon's DeviceLink reopens.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from device_profiles import Profile, transport_options
from drivers.base import ErrorCallback, SpeakerDriver, ThreadedDriver
from drivers.codecs.audio_frames import (
    DONE,
    ERROR,
    PLAY,
    STARTED,
    AudioFrameDecoder,
    WavError,
    WavInfo,
    encode,
    read_wav,
)
from drivers.registry import register
from drivers.transport import (
    DeviceNotFound,
    NotSupported,
    Transport,
    TransportIOError,
    TransportTimeout,
    open_transport,
)

log = logging.getLogger(__name__)

__all__ = ["AudioOutSpeaker", "LinkSpeaker", "WavDirSpeaker", "open_speaker"]

#: extra time allowed beyond a WAV's duration before a player that has not finished counts as failed
PLAY_MARGIN_S = 2.0


def _wav(wav: bytes) -> WavInfo:
    try:
        return read_wav(wav)
    except WavError as exc:
        raise ValueError(str(exc)) from exc


class _Speaker(SpeakerDriver):
    kind = "speaker"

    def __init__(self, url: str, *, on_error: ErrorCallback | None = None) -> None:
        super().__init__(url, on_error=on_error)
        self.started_at: float | None = None
        self._play_lock = threading.Lock()  # one WAV at a time, whoever calls


class WavDirSpeaker(_Speaker):
    """Writes each WAV played into a folder (optionally taking real time)."""

    def __init__(self, url: str, folder: Path, paced: bool, *, on_error: ErrorCallback | None = None) -> None:
        super().__init__(url, on_error=on_error)
        self.folder = folder
        self.paced = paced
        self._count = 0
        self._open = False

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceNotFound(f"{self.url}: 无法创建文件夹：{exc.strerror or exc}") from exc
        self._count = len(list(self.folder.glob("*.wav")))
        self._open = True

    def close(self) -> None:
        self._open = False

    def play(self, wav: bytes, meta: dict[str, Any] | None = None) -> float:
        info = _wav(wav)
        with self._play_lock:
            if not self._open:
                raise TransportIOError(f"{self.url}: 未打开")
            self._count += 1
            stem = self.folder / f"{self._count:04d}"
            self.started_at = time.perf_counter()
            try:
                stem.with_suffix(".wav").write_bytes(wav)
                stem.with_suffix(".json").write_text(json.dumps({**(meta or {}), "duration": info.duration},
                                                                ensure_ascii=False), encoding="utf-8")
            except OSError as exc:
                raise TransportIOError(f"{self.url}: 写入失败：{exc.strerror or exc}") from exc
            if self.paced:
                time.sleep(max(0.0, info.duration - (time.perf_counter() - self.started_at)))
            return info.duration


class AudioOutSpeaker(_Speaker):
    """The PC's sound output through miniaudio: blocking playback, one device per WAV format."""

    def __init__(self, url: str, device: str, *, buffer_ms: int = 60, on_error: ErrorCallback | None = None) -> None:
        super().__init__(url, on_error=on_error)
        self.device_name = device
        self.buffer_ms = buffer_ms
        self._miniaudio: Any = None
        self._device: Any = None
        self._format: tuple[int, int] | None = None
        self._device_id: Any = None
        self._backends: list[Any] | None = None

    def open(self) -> None:
        try:
            import miniaudio
        except ImportError as exc:
            raise NotSupported("播放声音需要 miniaudio（pip install miniaudio）") from exc
        self._miniaudio = miniaudio
        if self.device_name == "null":
            self._backends = [miniaudio.Backend.NULL]
        elif self.device_name != "default":
            try:
                outputs = miniaudio.Devices().get_playbacks()
            except miniaudio.MiniaudioError as exc:
                raise DeviceNotFound(f"{self.url}: 没有可用的音频输出（{exc}）") from exc
            match = [d for d in outputs if self.device_name.lower() in str(d["name"]).lower()]
            if not match:
                names = "、".join(str(d["name"]) for d in outputs) or "无"
                raise DeviceNotFound(f"{self.url}: 找不到音频输出“{self.device_name}”（现有：{names}）")
            self._device_id = match[0]["id"]
        self._start_device(22050, 1)  # fail now, not at the first call, when there is no output at all

    def _start_device(self, rate: int, channels: int) -> None:
        if self._format == (rate, channels) and self._device is not None:
            return
        self._stop_device()
        ma = self._miniaudio
        try:
            self._device = ma.PlaybackDevice(output_format=ma.SampleFormat.SIGNED16, nchannels=channels,
                                             sample_rate=rate, buffersize_msec=self.buffer_ms,
                                             device_id=self._device_id, backends=self._backends)
        except ma.MiniaudioError as exc:
            raise DeviceNotFound(f"{self.url}: 没有可用的音频输出设备（{exc}）；"
                                 "无声卡的机器请用 wavdir:// 或 audio://null") from exc
        self._format = (rate, channels)
        log.info("%s: audio output open (%s, %d Hz x%d)", self.url, self._device.backend, rate, channels)

    def _stop_device(self) -> None:
        device, self._device, self._format = self._device, None, None
        if device is not None:
            device.close()

    def close(self) -> None:
        with self._play_lock:
            self._stop_device()

    def play(self, wav: bytes, meta: dict[str, Any] | None = None) -> float:
        info = _wav(wav)
        if info.sample_width != 2:
            raise ValueError("只能播放 16 位 PCM WAV")
        with self._play_lock:
            if self._miniaudio is None:
                raise TransportIOError(f"{self.url}: 未打开")
            self._start_device(info.sample_rate, info.channels)
            done = threading.Event()
            frame_bytes = info.channels * 2
            tail = bytes(int(info.sample_rate * self.buffer_ms / 1000) * 2 * frame_bytes)
            data = memoryview(info.frames + tail)  # the tail pushes the last samples out of the buffer

            def feed() -> Any:
                pos = 0
                wanted = yield b""
                self.started_at = time.perf_counter()
                while pos < len(data):
                    chunk = data[pos: pos + wanted * frame_bytes]
                    pos += len(chunk)
                    wanted = yield bytes(chunk)
                done.set()
                while True:  # until stop(): silence
                    wanted = yield bytes(wanted * frame_bytes)

            generator = feed()
            next(generator)
            try:
                self._device.start(generator)
                if not done.wait(info.duration + self.buffer_ms / 1000 + PLAY_MARGIN_S):
                    raise TransportTimeout(f"{self.url}: 音频输出停止响应")
            except self._miniaudio.MiniaudioError as exc:
                self._stop_device()
                raise TransportIOError(f"{self.url}: 播放失败：{exc}") from exc
            finally:
                if self._device is not None:
                    self._device.stop()
            return info.duration


class LinkSpeaker(ThreadedDriver, _Speaker):
    """A remote player over a byte transport (the emulated speaker), ``audio_frames`` protocol.

    Its reader thread (a :class:`ThreadedDriver`'s) files the player's replies by ``seq``."""

    device_name = "扬声器"

    def __init__(self, url: str, transport_kwargs: dict[str, Any], *, on_error: ErrorCallback | None = None) -> None:
        super().__init__(url, on_error=on_error)
        self._kwargs = transport_kwargs
        self._transport: Transport | None = None
        self._replies: dict[int, dict[int, Any]] = {}
        self._seq = 0

    def open(self) -> None:
        if self.running:
            return
        transport = self._transport = open_transport(self.url, **self._kwargs)
        self._start_threads({"speaker-reader": lambda: self._read_loop(transport)})

    def close(self) -> None:
        self._begin_close()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()        # ends a read under way
        self._stop_threads(2.0)

    def _read_loop(self, transport: Transport) -> None:
        decoder = AudioFrameDecoder()
        while not self._stop.is_set():
            try:
                data = transport.read(4096)
            except Exception:
                if self._closing:
                    return           # a port closed under the read may raise anything
                raise
            for frame in decoder.feed(data):
                with self._cond:
                    self._replies.setdefault(frame.seq, {})[frame.type] = frame.meta
                    self._cond.notify_all()

    def _wait(self, seq: int, types: Sequence[int], deadline: float) -> dict[int, Any]:
        with self._cond:
            while True:
                got = self._replies.get(seq, {})
                if any(t in got for t in types):
                    return got
                if self._failed is not None:
                    raise TransportIOError(f"{self.url}: {self._failed}")
                left = deadline - time.monotonic()
                if left <= 0 or self._transport is None:
                    raise TransportTimeout(f"{self.url}: 扬声器未应答")
                self._cond.wait(left)

    def play(self, wav: bytes, meta: dict[str, Any] | None = None) -> float:
        info = _wav(wav)
        timeout = float(self._kwargs.get("write_timeout", 1.0))
        with self._play_lock:
            transport = self._transport
            if transport is None:
                raise TransportIOError(f"{self.url}: 未打开")
            self._seq = (self._seq + 1) & 0xFFFF
            seq = self._seq
            with self._cond:
                self._replies.pop(seq, None)
            self.started_at = time.perf_counter()
            transport.write(encode(PLAY, seq, meta, wav))
            try:
                got = self._wait(seq, (STARTED, DONE, ERROR), time.monotonic() + timeout + PLAY_MARGIN_S)
                if ERROR not in got:
                    got = self._wait(seq, (DONE, ERROR), time.monotonic() + info.duration + timeout + PLAY_MARGIN_S)
            finally:
                with self._cond:
                    self._replies.pop(seq, None)
            if ERROR in got:
                raise TransportIOError(f"{self.url}: 扬声器拒绝播放：{got[ERROR].get('error', '?')}")
            return float(got[DONE].get("duration", info.duration))


@register("speaker", interface=SpeakerDriver, codec="drivers.codecs.audio_frames")
def open_speaker(url: str, profiles: Sequence[Profile] = (), *,
                 on_error: ErrorCallback | None = None) -> SpeakerDriver:
    """An unopened speaker driver for ``url`` (see the module docstring for the schemes)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower() if "://" in url else ""
    if scheme == "audio":
        return AudioOutSpeaker(url, unquote(parts.netloc + parts.path).strip("/") or "default", on_error=on_error)
    if scheme == "wavdir":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ValueError(f"{url}: wavdir 需要绝对路径，如 wavdir:///var/lib/hall/announcements")
        paced = parse_qs(parts.query).get("paced", ["0"])[-1] in ("1", "true", "yes")
        return WavDirSpeaker(url, Path(path), paced, on_error=on_error)
    kwargs: dict[str, Any] = {}
    for profile in profiles:
        kwargs.update(transport_options(profile))
    return LinkSpeaker(url, kwargs, on_error=on_error)
