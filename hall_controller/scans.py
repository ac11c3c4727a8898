"""Document scans (高拍仪) attached to a visit: checked, stored content-addressed, purged after delivery.

`attach_scan` carries the image as base64 in an MQTT command, so every check that costs memory or CPU
happens in order of cost: the encoded length first (a 50 MB payload is refused before it is decoded),
then base64, the magic bytes, and a full decode by Pillow (a corrupt or truncated JPEG is refused,
not stored). The bytes live in the `scans` table keyed by their SHA-256 (the same image twice is
stored once) until the forwarder has PUT them upstream; `hall_controller.store.retention` drops the
bytes `scans.retention_days` after that (DESIGN §8), keeping the row so the image is not uploaded again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image
from sqlalchemy import Engine

from .domain import DomainError
from .store.outbox import store_scan

log = logging.getLogger(__name__)

MAGIC = {b"\xff\xd8\xff": ("image/jpeg", "JPEG"), b"\x89PNG\r\n\x1a\n": ("image/png", "PNG")}
MAX_PIXELS = 60_000_000          # an A4 page at 600 dpi is 35 MP; anything far larger is not a scan
COMMAND_OVERHEAD = 64 * 1024     # JSON around the base64 image in one command


@dataclass(frozen=True)
class ScanImage:
    """A checked image: its bytes, type and hash, and the reference that goes into the service record."""

    data: bytes
    content_type: str
    sha256: str
    width: int
    height: int

    @property
    def ref(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": len(self.data), "type": self.content_type}


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def command_payload_limit(max_bytes: int) -> int:
    """The largest MQTT command the bridge must accept so that a scan of `max_bytes` fits (base64 + JSON)."""
    return -(-max_bytes // 3) * 4 + COMMAND_OVERHEAD


def decode_scan(value: Any, max_bytes: int) -> ScanImage:
    """The image of an `attach_scan` command, or DomainError("bad_request") saying what is wrong."""
    if not isinstance(value, str):
        raise DomainError("bad_request", "image 须为 base64 编码的 JPEG 或 PNG 图片")
    if len(value) > command_payload_limit(max_bytes):
        raise DomainError("bad_request", f"扫描件过大（约{_mb(len(value) * 3 // 4)}），上限{_mb(max_bytes)}")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DomainError("bad_request", "image 不是有效的 base64 编码") from None
    if not data:
        raise DomainError("bad_request", "扫描件为空（0 字节），请重新拍摄")
    if len(data) > max_bytes:
        raise DomainError("bad_request", f"扫描件过大（{_mb(len(data))}），上限{_mb(max_bytes)}")
    kind = next((k for magic, k in MAGIC.items() if data.startswith(magic)), None)
    if kind is None:
        raise DomainError("bad_request", "只接受 JPEG 或 PNG 格式的扫描件")
    content_type, pil_format = kind
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[pil_format]) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DomainError("bad_request", f"扫描件像素过多（{img.width}×{img.height}）")
                img.load()                          # decode every pixel: a truncated file fails here
                width, height = img.size
    except DomainError:
        raise
    except Exception as exc:    # Pillow raises OSError, SyntaxError, ValueError... for broken files
        log.info("refused a scan that does not decode: %s", exc)
        raise DomainError("bad_request", f"扫描件已损坏，无法解码（{pil_format}）") from None
    return ScanImage(data, content_type, hashlib.sha256(data).hexdigest(), width, height)


def save_scan(engine: Engine, image: ScanImage, ticket_id: str, now: datetime) -> None:
    """Store the bytes for upload (once per hash: a second identical image adds nothing)."""
    with engine.begin() as conn:
        store_scan(conn, data=image.data, content_type=image.content_type, ticket_id=ticket_id, now=now)
