"""The emulated document camera (高拍仪, Eloam S500L): synthetic A4 documents as JPEG.

It speaks the byte link of ``drivers.codecs.camera`` on its own link (TCP/pty/memory, like every
emulated device): a capture request byte is answered with one image frame. Every capture differs:
the page carries the capture's serial number and time, so two captures never hash alike (and the
same capture attached twice does). The page lies on a grey desk as a camera above it sees it.

Control API (DESIGN §9 style, routes below):
``GET /camera/{id}`` → what lies under the camera and how many captures were taken;
``POST /camera/{id}/document`` ``{"template": "legal_aid" | "mediation" | "id_copy"}`` puts another page
under it; ``GET /camera/{id}/capture`` → one capture as ``image/jpeg`` (the dashboard's preview; it counts).
Faults are those of every device: ``disconnect`` drops the link (the USB cable is pulled),
``corrupt`` alters a byte of the frame (the driver's CRC check refuses it).
"""

from __future__ import annotations

import io
import logging
import textwrap
from datetime import datetime
from typing import Any

from PIL import Image, ImageDraw

from drivers.codecs.camera import CAPTURE, IMAGE, STATUS, RequestDecoder, camera_framing, encode_frame

from .device import LinkedDevice, RawResponse
from .device import Request as ApiRequest
from .link import Link
from .printer import _font
from .registry import emulates

logger = logging.getLogger(__name__)

# What can lie under the camera: title, then (label, value) fields, then free text.
DOCUMENTS: dict[str, dict[str, Any]] = {
    "legal_aid": {
        "title": "法律援助申请表",
        "fields": [("申请人姓名", "王小明"), ("性别", "男"), ("出生日期", "1978年5月6日"),
                   ("身份证号码", "310101********1234"), ("住址", "上海市黄浦区示范路1号"),
                   ("联系电话", "138****5678"), ("申请事项", "追索劳动报酬"), ("对方当事人", "某建筑劳务有限公司")],
        "text": "申请人于2026年3月至8月在对方工地从事钢筋工作，对方至今拖欠工资共计人民币叁万贰仟元整。"
                "申请人经济困难，无力委托律师，现申请法律援助。本人承诺以上所填内容真实。",
        "sign": "申请人（签名）：王小明",
    },
    "mediation": {
        "title": "人民调解申请书",
        "fields": [("申请人", "李*华"), ("被申请人", "张*"), ("纠纷类型", "邻里纠纷"),
                   ("纠纷发生地", "示范区某小区12号楼"), ("联系电话", "139****2468")],
        "text": "被申请人装修期间多次在夜间施工，噪声影响申请人一家休息，经物业协调未果。"
                "请求人民调解委员会主持调解，停止夜间施工并赔礼道歉。",
        "sign": "申请人（签名）：李*华",
    },
    "id_copy": {
        "title": "居民身份证复印件",
        "fields": [("姓名", "赵*"), ("性别", "女"), ("民族", "汉"), ("出生", "1941年2月3日"),
                   ("住址", "上海市黄浦区示范路8号"), ("公民身份号码", "310101********0025")],
        "text": "此复印件仅供示范区公共法律服务中心办理公证业务使用，再次复印无效。",
        "sign": "本人确认（签名）：赵*",
    },
}
DEFAULT_DOCUMENT = "legal_aid"
A4_RATIO = 297 / 210
JPEG_QUALITY = 85


def render_document(template: str, serial: int, at: datetime, size: tuple[int, int], hall: str = "") -> bytes:
    """A photographed A4 page as JPEG bytes: `size` is the camera's (width, height) in portrait."""
    doc = DOCUMENTS[template]
    width, height = size
    image = Image.new("RGB", size, (118, 112, 104))                     # the desk
    page_h = int(height * 0.94)
    page_w = int(page_h / A4_RATIO)
    left, top = (width - page_w) // 2, (height - page_h) // 2
    draw = ImageDraw.Draw(image)
    draw.rectangle((left + 8, top + 10, left + page_w + 8, top + page_h + 10), fill=(80, 76, 70))   # shadow
    draw.rectangle((left, top, left + page_w, top + page_h), fill=(250, 250, 246))
    unit = page_w / 210                                                  # pixels per millimetre
    margin = int(20 * unit)
    x, y = left + margin, top + int(22 * unit)
    title = _font(int(9 * unit))
    body = _font(int(4.6 * unit))
    small = _font(int(3.4 * unit))
    draw.text((left + page_w // 2, y), doc["title"], font=title, fill=(0, 0, 0), anchor="mt")
    y += int(18 * unit)
    row_h = int(11 * unit)
    label_w = int(42 * unit)
    right = left + page_w - margin
    for label, value in doc["fields"]:
        draw.rectangle((x, y, right, y + row_h), outline=(0, 0, 0), width=max(1, int(0.35 * unit)))
        draw.line((x + label_w, y, x + label_w, y + row_h), fill=(0, 0, 0), width=max(1, int(0.35 * unit)))
        draw.text((x + int(2 * unit), y + row_h // 2), label, font=body, fill=(0, 0, 0), anchor="lm")
        draw.text((x + label_w + int(3 * unit), y + row_h // 2), value, font=body, fill=(20, 30, 120), anchor="lm")
        y += row_h
    y += int(8 * unit)
    chars = max(10, int((right - x) / (4.6 * unit)))
    for line in textwrap.wrap(doc["text"], chars):
        draw.text((x, y), line, font=body, fill=(0, 0, 0))
        y += int(7.5 * unit)
    y += int(12 * unit)
    draw.text((right, y), doc["sign"], font=body, fill=(0, 0, 0), anchor="rt")
    draw.text((right, y + int(9 * unit)), f"{at:%Y年%m月%d日}", font=body, fill=(0, 0, 0), anchor="rt")
    footer = f"{hall}  高拍仪模拟拍摄  第{serial:04d}张  {at:%Y-%m-%d %H:%M:%S.%f}"[:80]
    draw.text((left + page_w // 2, top + page_h - int(10 * unit)), footer, font=small, fill=(90, 90, 90),
              anchor="mm")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


@emulates("camera")
class EmulatedCamera(LinkedDevice):
    """A document camera at a window, on its own link."""

    routes = {("GET", ""): "api_view", ("GET", "capture"): "api_capture", ("POST", "document"): "api_document"}

    def __init__(self, device_id: str, profile_name: str, profile: Any, link: Link, **where: Any) -> None:
        super().__init__(device_id, profile_name, profile, link, **where)
        self.framing = camera_framing(profile)
        width, height = self.framing.resolution
        self.size = (min(width, height), max(width, height))            # a page is photographed upright
        self._decoder = RequestDecoder()
        self.document = DEFAULT_DOCUMENT
        self.captures = 0
        self.last_capture_at: str | None = None

    # -- capturing ------------------------------------------------------------------------------
    def capture(self) -> bytes:
        with self._lock:
            self.captures += 1
            serial, document = self.captures, self.document
            moment = self.now()
            self.last_capture_at = moment.isoformat(timespec="seconds")
        jpeg = render_document(document, serial, moment, self.size, hall=f"{self.window or ''}号窗口")
        logger.info("%s: capture %d (%s, %d bytes)", self.id, serial, document, len(jpeg))
        return jpeg

    def on_bytes(self, data: bytes) -> None:
        for request in self._decoder.feed(data):
            if request == CAPTURE:
                self.send(encode_frame(IMAGE, self.capture(), self.framing))
            else:
                status = f'{{"document": "{self.document}", "captures": {self.captures}}}'
                self.send(encode_frame(STATUS, status.encode(), self.framing))

    # -- control API ----------------------------------------------------------------------------
    def api_view(self, request: ApiRequest) -> dict[str, Any]:
        with self._lock:
            return {"document": self.document, "title": DOCUMENTS[self.document]["title"],
                    "documents": {k: v["title"] for k, v in DOCUMENTS.items()}, "captures": self.captures,
                    "last_capture_at": self.last_capture_at, "resolution": list(self.size)}

    def api_capture(self, request: ApiRequest) -> RawResponse:
        return RawResponse(self.capture(), "image/jpeg")

    def api_document(self, request: ApiRequest) -> dict[str, Any]:
        template = request.body.get("template") if isinstance(request.body, dict) else None
        if template not in DOCUMENTS:
            raise ValueError(f"template 须为 {'、'.join(DOCUMENTS)} 之一")
        with self._lock:
            self.document = template
        return self.api_view(request)

    def state(self) -> dict[str, Any]:
        return {**super().state(), **self.api_view(ApiRequest({}, {}))}
