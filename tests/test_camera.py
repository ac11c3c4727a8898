"""Document camera (高拍仪): the byte-link codec against hand-written vectors, the emulated camera read
through the driver the window app uses (over real TCP), its faults, its control route, and the
QtMultimedia driver's refusal when there is no camera."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import urllib.request

import pytest
from PIL import Image

from device_profiles import load_profile
from drivers.base import CameraDriver
from drivers.camera import LinkCamera, QtCamera
from drivers.codecs.camera import (
    CAPTURE,
    ERROR,
    IMAGE,
    STATUS_REQUEST,
    CameraFraming,
    Frame,
    FrameDecoder,
    RequestDecoder,
    camera_framing,
    encode_frame,
    encode_request,
)
from drivers.registry import get_factory
from drivers.transport import DeviceNotFound, NotSupported, TransportError, TransportTimeout
from hw_emulators.hall import EmulatedHall

PROFILE = load_profile("eloam-s500l")
# 'I', length 4, a minimal JPEG (SOI EOI), CRC32(FF D8 FF D9) = 0x10F02A67.
IMAGE_VECTOR = bytes.fromhex("49 00000004 FFD8FFD9 10F02A67")
# 'E', length 6, "无纸" in UTF-8 (E6 97 A0 E7 BA B8), CRC32 = 0x28AF0090.
ERROR_VECTOR = bytes.fromhex("45 00000006 E697A0E7BAB8 28AF0090")


# -- codec ---------------------------------------------------------------------------------------

def test_requests_are_single_bytes():
    assert encode_request(CAPTURE) == b"\x43" and encode_request(STATUS_REQUEST) == b"\x3f"
    with pytest.raises(ValueError):
        encode_request(0x00)
    decoder = RequestDecoder()
    assert decoder.feed(b"\x43\x00\x3f\x43") == [CAPTURE, STATUS_REQUEST, CAPTURE] and decoder.discarded == 1


def test_frames_encode_to_the_vectors():
    assert encode_frame(IMAGE, bytes.fromhex("FFD8FFD9")) == IMAGE_VECTOR
    assert encode_frame(ERROR, "无纸".encode()) == ERROR_VECTOR
    with pytest.raises(ValueError):
        encode_frame(IMAGE, b"x" * 2000, CameraFraming(max_frame=1024))
    with pytest.raises(ValueError):
        encode_frame(0x41, b"")


def test_decoder_takes_any_chunking_and_resynchronises():
    decoder = FrameDecoder()
    frames = []
    for byte in IMAGE_VECTOR + ERROR_VECTOR:          # one byte at a time
        frames += decoder.feed(bytes([byte]))
    assert frames == [Frame(IMAGE, bytes.fromhex("FFD8FFD9")), Frame(ERROR, "无纸".encode())]
    assert frames[1].text == "无纸" and decoder.pending == 0 and decoder.discarded == 0

    broken = bytearray(IMAGE_VECTOR)
    broken[6] ^= 0x01                                 # a bit flipped in the image: CRC mismatch
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x17" + bytes(broken) + ERROR_VECTOR) == [Frame(ERROR, "无纸".encode())]
    assert decoder.discarded >= 3                        # two garbage bytes, then the broken frame's type byte

    decoder = FrameDecoder(CameraFraming(max_frame=1024))
    huge = bytes.fromhex("49 7FFFFFFF")               # a length beyond the limit is not waited for
    assert decoder.feed(huge + IMAGE_VECTOR) == [Frame(IMAGE, bytes.fromhex("FFD8FFD9"))]
    assert decoder.feed(IMAGE_VECTOR[:7]) == [] and decoder.pending == 7


def test_framing_from_the_profile():
    framing = camera_framing(PROFILE)
    assert framing == CameraFraming(resolution=(2592, 1944), format="jpeg", max_frame=16 * 1024 * 1024,
                                    capture_ms=5000)


# -- the emulated camera through the driver ----------------------------------------------------------

@pytest.fixture
def emulated():
    devices = [{"id": "camera-3", "kind": "camera", "profile": "eloam-s500l", "url": "emulated", "window": 3}]
    with EmulatedHall(devices, link="tcp") as hall:
        yield hall


def fast_profile(capture_ms: int = 1500):
    return dataclasses.replace(PROFILE, framing={**PROFILE.framing, "capture_ms": capture_ms})


def test_capture_from_the_emulated_camera_through_the_driver(emulated, tmp_path):
    url = emulated.device_urls()["camera-3"]
    assert url.startswith("socket://127.0.0.1:")
    camera = get_factory("camera")(url, [PROFILE])
    assert isinstance(camera, CameraDriver) and isinstance(camera, LinkCamera)
    camera.open()
    try:
        first, content_type = camera.capture()
        second, _ = camera.capture()
    finally:
        camera.close()
        camera.close()                                       # idempotent
    assert content_type == "image/jpeg" and first[:3] == b"\xff\xd8\xff"
    assert hashlib.sha256(first).digest() != hashlib.sha256(second).digest()   # serial + time on the page
    with Image.open(io.BytesIO(first)) as page:
        page.load()
        assert (page.format, page.size) == ("JPEG", (1944, 2592))            # A4 upright, the S500L's 5 MP
        grey = page.convert("L")
        width, height = grey.size
        desk = grey.getpixel((5, height // 2))
        paper = grey.getpixel((width // 2, height - 60 - int(height * 0.03)))
        assert desk < 140 < 230 < paper                                     # a white sheet on a grey desk
        ink = grey.crop((300, 200, width - 300, 900)).point(lambda v: 255 if v < 100 else 0).histogram()[255]
        assert ink > 2000                                                   # the title and the form's lines
        page.save(tmp_path / "capture.png")
    assert emulated.device("camera-3").captures == 2


def test_a_corrupted_frame_is_refused_and_a_pulled_cable_fails_the_capture(emulated):
    device = emulated.device("camera-3")
    camera = LinkCamera(emulated.device_urls()["camera-3"], fast_profile())
    camera.open()
    try:
        device.set_fault("corrupt")
        with pytest.raises(TransportTimeout, match="校验失败"):
            camera.capture()
        device.clear_fault()
        assert camera.capture()[0][:3] == b"\xff\xd8\xff"                   # the next one is fine
        device.set_fault("silent")
        with pytest.raises(TransportTimeout, match="无应答"):
            camera.capture()
    finally:
        camera.close()
    device.set_fault("disconnect")
    camera = LinkCamera(emulated.device_urls()["camera-3"], fast_profile())
    with pytest.raises(TransportError):
        camera.open()
        camera.capture()
    camera.close()


def test_control_api_capture_route_and_document_choice(emulated):
    host, port = emulated.serve_control("127.0.0.1", 0)
    base = f"http://{host}:{port}/camera/camera-3"
    request = urllib.request.Request(base + "/document", data=json.dumps({"template": "mediation"}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert json.loads(resp.read())["title"] == "人民调解申请书"
    with urllib.request.urlopen(base + "/capture", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(resp.read())).size == (1944, 2592)
    bad = urllib.request.Request(base + "/document", data=b'{"template": "x"}', method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=5)
    assert err.value.code == 400


# -- QtMultimedia ----------------------------------------------------------------------------------

def test_qt_camera_without_a_camera_says_so(qapp):
    camera = get_factory("camera")("uvc://S500L", [PROFILE])
    assert isinstance(camera, QtCamera)
    with pytest.raises(DeviceNotFound, match="未检测到高拍仪"):
        camera.open()
    camera.close()
    with pytest.raises(TransportError, match="未打开"):
        camera.capture()


def test_qt_camera_needs_a_qt_application(monkeypatch):
    from PySide6.QtCore import QCoreApplication

    monkeypatch.setattr(QCoreApplication, "instance", staticmethod(lambda: None))
    with pytest.raises(NotSupported, match="Qt 应用"):
        QtCamera("uvc://").open()
