"""The emulated PA speaker: receives WAVs over its link, "plays" them in real time and records them.

The daemon's speaker driver (``drivers.speaker.LinkSpeaker``) sends each announcement as a PLAY
frame of ``drivers.codecs.audio_frames``; this device answers STARTED when the first sample would
reach the amplifier and DONE when the last one has, taking the WAV's real duration in between — so
the daemon's queue behaves exactly as with a loudspeaker. A PLAY that arrives while another is
playing waits for it (a speaker plays one thing at a time; nothing is cut off).

Every announcement is kept as DESIGN §9 says: ``GET /speaker/{id}/announcements`` →
``[{"text", "tokens", "zone", "start", "duration", "wav"}]`` in the order played (``wav`` is the
file as played, in the emulator's folder), and ``GET /speaker/{id}/announcements/{n}.wav`` serves
its bytes so IT staff can hear on the dashboard what the hall would hear.
"""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from device_profiles import Profile
from drivers.codecs.audio_frames import (
    DONE,
    ERROR,
    PLAY,
    STARTED,
    AudioFrame,
    AudioFrameDecoder,
    WavError,
    encode,
    read_wav,
)

from .device import LinkedDevice, RawResponse, Request
from .link import Link
from .registry import emulates

logger = logging.getLogger(__name__)

KEEP = 500  # announcements kept (and their WAV files)


@emulates("speaker")
class EmulatedSpeaker(LinkedDevice):
    """A PC audio output → amplifier → ceiling speakers, reached over a byte link."""

    routes = {("GET", "announcements"): "api_announcements"}

    def __init__(self, device_id: str, profile_name: str, profile: Profile, link: Link, *,
                 zone: str | None = None, speed: float = 1.0, **where: Any) -> None:
        super().__init__(device_id, profile_name, profile, link, **where)
        self.zone = zone or device_id
        self.speed = speed  # 1.0 = real time; tests of the emulator alone may play faster
        self.announcements: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.played = 0
        self.refused = 0
        self._decoder = AudioFrameDecoder()
        self._rx_lock = threading.Lock()
        self._queue: queue.Queue[AudioFrame | None] = queue.Queue()
        self._player: threading.Thread | None = None
        self._stopping = threading.Event()
        self._folder: Path | None = None

    @classmethod
    def placement(cls, entry: dict[str, Any]) -> dict[str, Any]:
        return {**super().placement(entry), "zone": (entry.get("options") or {}).get("zone")}

    @property
    def folder(self) -> Path:
        if self._folder is None:
            raise RuntimeError(f"{self.id}: not started")
        return self._folder

    def start(self) -> None:
        self._stopping.clear()
        self._folder = Path(tempfile.mkdtemp(prefix=f"hall-emu-{self.id}-"))
        self._player = threading.Thread(target=self._play_loop, name=f"emu-{self.id}-player", daemon=True)
        self._player.start()
        super().start()
        logger.info("%s keeps WAVs in %s", self.id, self._folder)

    def stop(self) -> None:
        self._stopping.set()
        self.link.stop()
        self._queue.put(None)
        if self._player is not None:
            self._player.join(5)
            self._player = None
        super().stop()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    # -- bytes ----------------------------------------------------------------------------------
    def on_bytes(self, data: bytes) -> None:
        with self._rx_lock:
            frames = self._decoder.feed(data)
        for frame in frames:
            if frame.type != PLAY:
                logger.warning("%s: ignoring frame type %#x from the host", self.id, frame.type)
                continue
            self._queue.put(frame)

    def _play_loop(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            try:
                self._play(frame)
            except Exception:
                logger.exception("%s: playing frame %d failed", self.id, frame.seq)

    def _play(self, frame: AudioFrame) -> None:
        try:
            info = read_wav(frame.data)
        except WavError as exc:
            with self._lock:
                self.refused += 1
            logger.warning("%s: refused frame %d: %s", self.id, frame.seq, exc)
            self.send(encode(ERROR, frame.seq, {"error": str(exc)}))
            return
        started = self.now()
        t0 = time.monotonic()
        self.send(encode(STARTED, frame.seq))
        with self._lock:
            self.played += 1
            n = self.played
        path = self.folder / f"{n:04d}.wav"
        path.write_bytes(frame.data)
        meta = frame.meta
        record = {"n": n, "text": meta.get("text"), "tokens": meta.get("tokens"),
                  "zone": meta.get("zone") or self.zone, "start": started.isoformat(timespec="milliseconds"),
                  "duration": round(info.duration, 3), "wav": str(path),
                  "number": meta.get("number"), "window": meta.get("window"),
                  "announcement_id": meta.get("announcement_id")}
        with self._lock:
            evicted = self.announcements[0] if len(self.announcements) == KEEP else None
            self.announcements.append(record)
        if evicted is not None:
            Path(evicted["wav"]).unlink(missing_ok=True)
        logger.info("%s: playing %d: %s (%.2f s)", self.id, n, record["text"], info.duration)
        if self._stopping.wait(max(0.0, info.duration / self.speed - (time.monotonic() - t0))):
            return  # switched off mid-announcement
        self.send(encode(DONE, frame.seq, {"duration": round(info.duration, 3)}))

    # -- control API ----------------------------------------------------------------------------
    def api_announcements(self, request: Request) -> Any:
        """``GET /speaker/{id}/announcements`` and ``GET /speaker/{id}/announcements/{n}.wav``."""
        if not request.rest:
            with self._lock:
                return list(self.announcements)
        name = request.rest[0]
        if len(request.rest) > 1 or not name.endswith(".wav") or not name[:-4].isdigit():
            raise ValueError(f"播报录音地址应为 announcements/<序号>.wav，收到 {'/'.join(request.rest)}")
        n = int(name[:-4])
        with self._lock:
            record = next((a for a in self.announcements if a["n"] == n), None)
        if record is None:
            raise ValueError(f"没有第 {n} 条播报")
        return RawResponse(Path(record["wav"]).read_bytes(), "audio/wav")

    def state(self) -> dict[str, Any]:
        with self._lock:
            recent = [{k: a[k] for k in ("n", "text", "start", "duration")} for a in list(self.announcements)[-20:]]
            played, refused = self.played, self.refused
        return {**super().state(), "zone": self.zone, "played": played, "refused": refused, "announcements": recent}
