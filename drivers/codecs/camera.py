"""Sans-IO codec of the document camera's byte link (the emulated 高拍仪, or a camera behind a capture
box that speaks it): one request byte, answered by one length-prefixed frame.

The Eloam S500L itself is a UVC camera read through QtMultimedia (``drivers.camera.QtCamera``); this
link is what the emulator offers so that the window app's capture path can be exercised without one.

Host → camera: ``43`` ('C') capture a still image; ``3F`` ('?') status.
Camera → host: ``TYPE | LEN (4 bytes, big-endian) | PAYLOAD | CRC32 (4 bytes, big-endian, over PAYLOAD)``
with TYPE ``49`` ('I') a JPEG image, ``53`` ('S') a status text (UTF-8 JSON), ``45`` ('E') an error text
(UTF-8, Chinese, for the clerk). The CRC lets the host refuse an image a noisy line altered instead of
attaching a broken scan.

The decoder is a :class:`drivers.codecs.framing.FrameScanner`: it resynchronises on garbage (a byte
that is not a frame type, a length above the framing's limit, or a CRC mismatch drops one byte and
scans on) and counts what was dropped in ``discarded``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from drivers.codecs.framing import BAD, NEED_MORE, FrameScanner, ParseResult

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


class FrameDecoder(FrameScanner[Frame]):
    """Camera → host frames from a byte stream (any chunking)."""

    def __init__(self, framing: CameraFraming | None = None) -> None:
        super().__init__(bytes(FRAME_TYPES))
        self.framing = framing or CameraFraming()

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, Frame | None, int]:
        if len(buf) - pos < HEADER.size:
            return NEED_MORE
        frame_type, length = HEADER.unpack_from(buf, pos)
        if length > self.framing.max_frame:
            return BAD
        start = pos + HEADER.size
        end = start + length + TRAILER.size
        if len(buf) < end:
            return NEED_MORE
        payload = bytes(buf[start : start + length])
        (crc,) = TRAILER.unpack_from(buf, start + length)
        if crc != zlib.crc32(payload):
            return BAD
        return ParseResult.OK, Frame(frame_type, payload), end - pos


class RequestDecoder(FrameScanner[int]):
    """Host → camera request bytes; anything else is counted in ``discarded`` and ignored."""

    def __init__(self) -> None:
        super().__init__(bytes(REQUESTS))

    def _parse(self, buf: bytearray, pos: int) -> tuple[ParseResult, int | None, int]:
        return ParseResult.OK, buf[pos], 1
