"""Sans-IO codec of the document camera's byte link (the emulated 高拍仪, or a camera behind a capture
box that speaks it): one request byte, answered by one length-prefixed frame.

The Eloam S500L itself is a UVC camera read through QtMultimedia (``drivers.camera.QtCamera``); this
link is what the emulator offers so that the window app's capture path can be exercised without one.

Host → camera: ``43`` ('C') capture a still image; ``3F`` ('?') status.
Camera → host: ``TYPE | LEN (4 bytes, big-endian) | PAYLOAD | CRC32 (4 bytes, big-endian, over PAYLOAD)``
with TYPE ``49`` ('I') a JPEG image, ``53`` ('S') a status text (UTF-8 JSON), ``45`` ('E') an error text
(UTF-8, Chinese, for the clerk). The CRC lets the host refuse an image a noisy line altered instead of
attaching a broken scan.

The decoder resynchronises on garbage: a byte that is not a frame type, a length above the framing's
limit, or a CRC mismatch drops one byte and scans on; `errors` counts what was dropped.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAPTURE",
    "ERROR",
    "IMAGE",
    "STATUS",
    "STATUS_REQUEST",
    "CameraFraming",
    "Frame",
    "FrameDecoder",
    "RequestDecoder",
    "camera_framing",
    "encode_frame",
    "encode_request",
]

CAPTURE, STATUS_REQUEST = 0x43, 0x3F
REQUESTS = (CAPTURE, STATUS_REQUEST)
IMAGE, STATUS, ERROR = 0x49, 0x53, 0x45
FRAME_TYPES = (IMAGE, STATUS, ERROR)
HEADER = struct.Struct(">BI")
TRAILER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


@dataclass(frozen=True)
class CameraFraming:
    """Codec parameters from a profile: the image size and format it produces, the largest frame
    accepted, and how long one capture may take."""

    resolution: tuple[int, int] = (2592, 1944)
    format: str = "jpeg"
    max_frame: int = DEFAULT_MAX_FRAME
    capture_ms: int = 5000


def camera_framing(profile: Any) -> CameraFraming:
    """The framing of a `device_profiles.Profile` of kind camera."""
    framing = dict(getattr(profile, "framing", {}) or {})
    width, height = framing.get("resolution", CameraFraming.resolution)
    return CameraFraming(resolution=(int(width), int(height)), format=framing.get("format", "jpeg"),
                         max_frame=int(framing.get("max_frame_bytes", DEFAULT_MAX_FRAME)),
                         capture_ms=int(framing.get("capture_ms", CameraFraming.capture_ms)))


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


def encode_request(request: int) -> bytes:
    if request not in REQUESTS:
        raise ValueError(f"unknown camera request 0x{request:02X}")
    return bytes([request])


def encode_frame(frame_type: int, payload: bytes, framing: CameraFraming | None = None) -> bytes:
    if frame_type not in FRAME_TYPES:
        raise ValueError(f"unknown camera frame type 0x{frame_type:02X}")
    limit = (framing or CameraFraming()).max_frame
    if len(payload) > limit:
        raise ValueError(f"frame of {len(payload)} bytes exceeds {limit}")
    return HEADER.pack(frame_type, len(payload)) + payload + TRAILER.pack(zlib.crc32(payload))


class FrameDecoder:
    """Camera → host frames from a byte stream (any chunking)."""

    def __init__(self, framing: CameraFraming | None = None) -> None:
        self.framing = framing or CameraFraming()
        self._buf = bytearray()
        self.errors = 0

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete frame (a capture in transfer)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        while buf:
            if buf[0] not in FRAME_TYPES:
                self._skip()
                continue
            if len(buf) < HEADER.size:
                break
            frame_type, length = HEADER.unpack_from(buf)
            if length > self.framing.max_frame:
                self._skip()
                continue
            end = HEADER.size + length + TRAILER.size
            if len(buf) < end:
                break
            payload = bytes(buf[HEADER.size:HEADER.size + length])
            (crc,) = TRAILER.unpack_from(buf, HEADER.size + length)
            if crc != zlib.crc32(payload):
                self._skip()
                continue
            del buf[:end]
            frames.append(Frame(frame_type, payload))
        return frames

    def flush(self) -> list[Frame]:
        """End of a read with nothing new: an incomplete frame stays until more bytes come."""
        return []

    def reset(self) -> None:
        self._buf.clear()

    def _skip(self) -> None:
        self.errors += 1
        del self._buf[:1]


class RequestDecoder:
    """Host → camera request bytes; anything else is counted and ignored."""

    def __init__(self) -> None:
        self.errors = 0

    def feed(self, data: bytes) -> list[int]:
        requests = [b for b in data if b in REQUESTS]
        self.errors += len(data) - len(requests)
        return requests

    def flush(self) -> list[int]:
        return []
