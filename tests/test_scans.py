"""attach_scan: images checked (magic bytes + a full decode), stored content-addressed, linked to the
visit's record, uploaded by the forwarder and purged after the retention; a 50 MB payload over MQTT is
refused with a clear error while the daemon keeps serving."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
import sqlalchemy as sa
from PIL import Image

from hall_controller.bus.client import BusUnavailable, CommandError
from hall_controller.domain import DomainError
from hall_controller.upstream.service import UpstreamService
from hw_emulators.mgmt import MgmtEmulator

from .harness import (
    KIOSK,
    DaemonProcess,
    Hall,
    free_port,
    init_hall,
    service_hall,
    tablet,
    wait_until,
    window,
)


def image_bytes(fmt: str, colour=(200, 30, 30), size=(320, 240)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def hall(tmp_path):
    h = service_hall(tmp_path)
    h.run(window(3), "login", staff_id="S003", pin="1234")
    yield h
    h.close()


def serving(hall: Hall, n: int = 3) -> dict:
    hall.run(KIOSK, "issue_ticket", service="consult")
    ticket = hall.run(window(n), "call_next")["ticket"]
    hall.run(window(n), "start")
    return ticket


def stored(hall: Hall) -> list[sa.Row]:
    with hall.store.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT sha256, content_type, size, data, uploaded_at FROM scans")))


def refusal(hall: Hall, ticket: dict, image) -> DomainError:
    with pytest.raises(DomainError) as err:
        hall.run(window(3), "attach_scan", ticket=ticket["id"], image=image)
    return err.value


def test_png_and_jpeg_are_stored_content_addressed_and_linked_to_the_record(hall):
    ticket = serving(hall)
    png, jpeg = image_bytes("PNG"), image_bytes("JPEG", colour=(10, 10, 200))
    first = hall.run(window(3), "attach_scan", ticket=ticket["id"], image=b64(png))
    assert first["scan"] == {"sha256": hashlib.sha256(png).hexdigest(), "size": len(png), "type": "image/png"}
    assert first["duplicate"] is False
    assert hall.run(window(3), "attach_scan", ticket=ticket["number"], image=b64(jpeg))["scan"]["type"] == "image/jpeg"
    hall.run(window(3), "finish")
    hall.run(tablet(3), "rate", ticket=ticket["id"], score=5)
    record = hall.record(ticket["id"])
    assert [s["sha256"] for s in record["scans"]] == [hashlib.sha256(png).hexdigest(), hashlib.sha256(jpeg).hexdigest()]
    rows = {r.sha256: r for r in stored(hall)}
    assert bytes(rows[hashlib.sha256(png).hexdigest()].data) == png and len(rows) == 2
    assert len(hall.of_type("scan_attached")) == 2


def test_the_same_image_twice_is_stored_once(hall):
    png = image_bytes("PNG")
    ticket = serving(hall)
    hall.run(window(3), "attach_scan", ticket=ticket["id"], image=b64(png))
    again = hall.run(window(3), "attach_scan", ticket=ticket["id"], image=b64(png))
    assert again["duplicate"] is True and len(again["ticket"]["scans"]) == 1
    hall.run(window(3), "finish")
    hall.run(tablet(3), "rate", ticket=ticket["id"], score=5)
    other = serving(hall)                       # the same page for the next visitor: linked, not copied
    hall.run(window(3), "attach_scan", ticket=other["id"], image=b64(png))
    assert len(stored(hall)) == 1
    assert len(hall.of_type("scan_attached")) == 2


def test_bad_images_are_refused_with_a_clear_error_and_nothing_is_stored(hall):
    ticket = serving(hall)
    jpeg = image_bytes("JPEG", size=(800, 600))
    cases = [
        (b64(jpeg[: len(jpeg) // 2]), "已损坏"),                            # truncated JPEG
        (b64(jpeg[:3] + b"\x00" * 2000), "已损坏"),                         # JPEG magic, garbage after
        (b64(image_bytes("PNG")[:60]), "已损坏"),                           # PNG header only
        ("", "0 字节"),
        (b64(b"%PDF-1.7\n" + b"x" * 100), "JPEG 或 PNG"),
        (b64(image_bytes("GIF")), "JPEG 或 PNG"),
        ("这不是base64!", "base64"),
        (12345, "base64"),
        (b64(b"\xff\xd8\xff" + b"\x00" * (10 * 1024 * 1024)), "过大"),       # over the 10 MB limit
    ]
    for image, words in cases:
        err = refusal(hall, ticket, image)
        assert err.code == "bad_request" and words in err.message, (words, err.message)
    assert stored(hall) == [] and not hall.of_type("scan_attached")
    hall.run(window(3), "attach_scan", ticket=ticket["id"], image=b64(jpeg))     # the visit lost nothing
    assert len(stored(hall)) == 1


def test_scans_only_for_open_visits_of_the_window(hall):
    hall.run(window(4), "login", staff_id="S004", pin="1234")
    hall.run(KIOSK, "issue_ticket", service="legal_aid")
    other = hall.run(window(4), "call_next")["ticket"]
    png = b64(image_bytes("PNG"))
    assert refusal(hall, other, png).code == "conflict"               # another window's visitor
    ticket = serving(hall)
    hall.run(window(3), "finish")
    hall.run(window(3), "attach_scan", ticket=ticket["id"], image=png)  # still waiting for its rating: fine
    hall.run(tablet(3), "rate", ticket=ticket["id"], score=5)
    err = refusal(hall, ticket, b64(image_bytes("PNG", colour=(0, 0, 0))))
    assert err.code == "not_found" and "已结束" in err.message


def test_images_are_purged_after_the_retention_once_the_upstream_has_them(hall):
    ticket = serving(hall)
    uploaded, waiting = image_bytes("PNG"), image_bytes("JPEG")
    hall.run(window(3), "attach_scan", ticket=ticket["id"], image=b64(uploaded))
    hall.run(window(3), "finish")
    hall.run(tablet(3), "rate", ticket=ticket["id"], score=5)
    later = serving(hall)
    hall.run(window(3), "attach_scan", ticket=later["id"], image=b64(waiting))   # its visit is still open

    with MgmtEmulator(token="tok") as emu:
        upstream = UpstreamService(hall.config, hall.service, hall.store, url=emu.url, token="tok",
                                   clock=hall.clock)
        assert upstream.forwarder.run_once() == 1
        assert [s["sha256"] for s in emu.received_scans()] == [hashlib.sha256(uploaded).hexdigest()]
        assert upstream.purge_personal_data()["scans"] == 0      # delivered, but not retained long enough yet
        hall.clock.advance(days=hall.config.scan_retention_days)
        hall.clock.advance(seconds=-1)
        assert upstream.purge_personal_data()["scans"] == 0
        hall.clock.advance(seconds=1)
        assert upstream.purge_personal_data()["scans"] == 1
        assert upstream.purge_personal_data()["scans"] == 0
    rows = {r.sha256: r for r in stored(hall)}
    purged = rows[hashlib.sha256(uploaded).hexdigest()]
    assert purged.data is None and purged.uploaded_at is not None and purged.size == len(uploaded)
    kept = rows[hashlib.sha256(waiting).hexdigest()]
    assert bytes(kept.data) == waiting and kept.uploaded_at is None   # never uploaded: never purged
    hall.clock.advance(days=365)
    assert upstream.purge_personal_data()["scans"] == 0
    assert {r.sha256: r.data for r in stored(hall)}[hashlib.sha256(waiting).hexdigest()] == waiting


def test_a_50_mb_payload_over_mqtt_is_refused_and_the_daemon_keeps_serving(tmp_path):
    daemon = DaemonProcess(init_hall(tmp_path), free_port())
    daemon.start()
    clients = []
    try:
        win = daemon.client("window-3", "window", 3)
        kiosk = daemon.client("kiosk-1", "kiosk")
        clients += [win, kiosk]
        win.request("login", staff_id="S003", pin="1234")
        kiosk.request("issue_ticket", service="consult")
        ticket = win.request("call_next")["ticket"]
        huge = "/9j/" + "A" * (50 * 1024 * 1024)
        # Over the broker's packet limit (the largest command a role may send): the broker drops the
        # connection before reading the packet, so it never reaches the daemon; the client reconnects.
        with pytest.raises(BusUnavailable):
            win.request("attach_scan", timeout=60, ticket=ticket["id"], image=huge)
        wait_until(lambda: win.connected, 15, "window-3 reconnected")
        assert not any("attach_scan" in line for line in daemon.log if "bridge" in line)
        # Within the bridge's limit (10 MB as base64 + 64 KB) but over the 10 MB scan limit: the service's
        # own refusal, in Chinese.
        with pytest.raises(CommandError) as err:
            win.request("attach_scan", timeout=30, ticket=ticket["id"], image="/9j/" + "A" * 14_008_972)
        assert err.value.code == "bad_request" and "过大" in str(err.value)
        result = win.request("attach_scan", ticket=ticket["id"], image=b64(image_bytes("JPEG")))
        assert result["scan"]["type"] == "image/jpeg"
        assert kiosk.request("issue_ticket", service="consult")["ticket"]["number"] == "A002"
        assert daemon.proc.poll() is None
    finally:
        for c in clients:
            c.close()
        daemon.terminate()
