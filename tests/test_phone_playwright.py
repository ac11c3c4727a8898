"""The visitor's phone in a real headless Chromium (Debian's `chromium`, Playwright) at a phone's
viewport (390×844, mobile, zh-CN), against the whole hall: the daemon with kiosk-1's emulated printer
and the management-system emulator, hall-web as its own process.

A ticket is taken at kiosk-1; the URL is read from the QR code its printer printed; the page follows
the call (timed), vibrates and sounds the armed tone, the visit is finished and rated on the phone, and
the rating reaches the upstream record. A second ticket leaves the line (我不排了 + confirm). Every
state is screenshotted (HALL_SCREENSHOTS=docs/screenshots keeps them for the README), and the page is
checked at 320 px with text at 200 %. No request goes to any host but the hall.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .harness import Hall, WebProcess, free_port, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("HALL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "hall-screenshots")
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "locale": "zh-CN",
         "device_scale_factor": 2}

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")
expect = sync_api.expect
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")]

# Records what the page asks of the phone: vibrations and the tones it plays (WebAudio oscillators).
PHONE_PROBE = """
window.__vibrations = [];
navigator.vibrate = function (p) { window.__vibrations.push(p); return true; };
window.__tones = 0;
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...a) { window.__tones++; return start.apply(this, a); };
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def hall(tmp_path: Path, emu: Any) -> Any:
    web_port = free_port()

    def mutate(data: dict[str, Any]) -> None:
        data["devices"] = [d for d in data["devices"] if d["id"] == "printer-1"]
        for window in data["windows"]:
            window["devices"] = []
        data["web"]["listen"] = f"127.0.0.1:{web_port}"

    hall = Hall(tmp_path, mutate=mutate, devices="tcp", control=True, upstream_url=emu.url, upstream_token="tok")
    web = WebProcess(hall.config_path, hall.port, web_port)
    try:
        web.start()
        yield hall, web
    finally:
        web.kill()
        hall.close()


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"phone_{name}.png"))


def _printed_url(hall: Hall, web: WebProcess) -> str:
    """The phone page's URL as decoded from the QR code of the last ticket kiosk-1's printer printed."""
    tickets = _get(f"{hall.control}/printer/printer-1/tickets")["tickets"]
    urls = [q for q in tickets[-1]["qr"] if q.startswith(f"{web.url}/t/")]
    assert len(urls) == 1, tickets[-1]["qr"]
    return urls[0]


def test_follow_the_call_rate_on_the_phone_and_leave_the_line(hall: Any, emu: Any) -> None:
    hall, web = hall
    wait_until(lambda: hall.service.snapshot()["devices"].get("printer-1", {}).get("online"), 10, "printer-1 online")
    kiosk, window = hall.client("kiosk-1"), hall.client("window-1")
    hall.login(window, "S001")
    issued = kiosk.request("issue_ticket", service="consult")
    assert issued["printed"] is True
    url = _printed_url(hall, web)
    assert url == issued["visit_url"]
    number = issued["ticket"]["number"]

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=user-gesture-required"])
        try:
            context = browser.new_context(**PHONE)
            context.add_init_script(PHONE_PROBE)
            requested: list[str] = []
            context.on("request", lambda r: requested.append(r.url))
            page = context.new_page()
            page.goto(url)
            page.locator("#status").wait_for()
            assert page.locator("#status").inner_text() == "等候中"
            assert page.locator("#number").inner_text() == number
            assert page.locator("#detail").inner_text() == "前面没有人了，马上轮到您，请留意叫号"
            assert page.locator("html").get_attribute("lang") == "zh-CN"
            page.get_by_role("button", name="提醒音：点此开启").click()
            assert page.locator("#arm").inner_text() == "提醒音已开启"
            _shot(page, "waiting")

            # a window calls it: the page turns into 请到1号窗口, vibrates and sounds the armed tone
            tones = page.evaluate("window.__tones")
            called = time.monotonic()
            window.request("call_next")
            page.locator("#called").wait_for(state="visible", timeout=10_000)
            took_ms = (time.monotonic() - called) * 1000
            print(f"\ncall_next -> 请到1号窗口 on the phone: {took_ms:.0f} ms")
            assert page.locator("#called-text").inner_text() == "请到1号窗口"
            assert page.locator("#called-number").inner_text() == number
            assert page.evaluate("window.__vibrations") == [[400, 200, 400, 200, 800]]
            assert page.evaluate("window.__tones") > tones
            assert took_ms < 2000
            _shot(page, "called")
            page.get_by_role("button", name="知道了").click()
            assert page.locator("#status").inner_text() == "请到1号窗口办理"

            # the visit ends: rate it on the phone (five levels and the four dimensions)
            window.request("start")
            expect(page.locator("#status")).to_have_text("办理中")
            window.request("finish")
            page.locator("#rate-box").wait_for(state="visible", timeout=10_000)
            assert page.locator("#status").inner_text() == "已办结"
            _shot(page, "served_rating")
            page.locator("#rate-box label", has_text="满意").nth(1).click()       # 非常满意, 满意, …
            page.locator("fieldset", has_text="服务态度").locator("label", has_text="非常满意").click()
            page.locator("fieldset", has_text="廉洁从政").locator("label", has_text="基本满意").click()
            page.get_by_role("button", name="提交评价").click()
            expect(page.locator("#rated")).to_have_text("感谢您的评价！")
            assert page.locator("#rate-box").is_hidden()
            _shot(page, "rated")
            record = wait_until(lambda: [r["body"] for r in _get(f"{emu.url}/_received/service-records")
                                         if r["body"].get("ticket_number", r["body"].get("number")) == number],
                                20, "the upstream record")[0]
            rating = record["rating"]
            assert (rating["score"], rating["by"]) == (4, "phone")
            assert rating["dimensions"] == {"服务态度": 5, "廉洁从政": 3}

            # a second ticket leaves the line
            kiosk.request("issue_ticket", service="consult")
            second = _printed_url(hall, web)
            page.goto(second)
            page.get_by_role("button", name="我不排了").click()
            dialog = page.get_by_role("dialog")
            assert "确定不排了吗？" in dialog.inner_text()
            _shot(page, "leave_confirm")
            dialog.get_by_role("button", name="确定离开").click()
            expect(page.locator("#status")).to_have_text("已离开队伍")
            assert page.locator("#leave-box").is_hidden()
            _shot(page, "left")
            assert any(e["type"] == "ticket_left" for e in hall.events)

            # an unknown token, and the hall page
            page.goto(f"{web.url}/t/{secrets.token_urlsafe(16)}")
            assert page.locator("h1").inner_text() == "号码已失效或不存在"
            _shot(page, "expired")
            page.goto(f"{web.url}/")
            page.locator("#services li").first.wait_for()
            assert "法律咨询（A）" in page.locator("#services").inner_text()
            _shot(page, "hall")

            # 320 px wide, text at 200 %: nothing runs off the side
            kiosk.request("issue_ticket", service="consult")
            narrow = browser.new_context(**{**PHONE, "viewport": {"width": 320, "height": 640}})
            small = narrow.new_page()
            third = _printed_url(hall, web)
            small.goto(third)
            small.locator("#status").wait_for()
            small.evaluate("document.documentElement.style.fontSize = '200%'")
            overflow = small.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{overflow} px run off the side at 320 px, 200 %"
            number_box = small.locator("#number").bounding_box()
            assert number_box is not None and number_box["height"] < 2 * 0.21 * 320 * 1.2, "the number wrapped"
            _shot(small, "320px_200pct")

            # the daemon goes: the open pages say so
            page.goto(third)
            page.locator("#status").wait_for()
            hall.stop_daemon()
            for each in (page, small):
                each.locator("#offline").wait_for(state="visible", timeout=10_000)
                assert each.locator("#offline").inner_text() == "连接中断，正在重连…"
            _shot(page, "offline")
            assert all(u.startswith(web.url + "/") for u in requested), [u for u in requested
                                                                         if not u.startswith(web.url)]
        finally:
            browser.close()


def test_where_server_sent_events_are_cut_the_page_polls(hall: Any) -> None:
    """A proxy that cuts /events (here: the browser aborts it): the page polls /state every 5 s and
    still turns to 请到1号窗口, without the offline banner once a poll has answered."""
    hall, web = hall
    kiosk, window = hall.client("kiosk-1"), hall.client("window-1")
    hall.login(window, "S001")
    url = kiosk.request("issue_ticket", service="consult")["visit_url"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(**PHONE)
            context.route("**/events", lambda route: route.abort())
            page = context.new_page()
            with page.expect_request(lambda r: r.url.endswith("/state"), timeout=5000):    # the first poll
                page.goto(url)
            expect(page.locator("#offline")).to_be_hidden(timeout=5000)
            called = time.monotonic()
            window.request("call_next")
            page.locator("#called").wait_for(state="visible", timeout=8000)
            took = time.monotonic() - called
            print(f"\nwith SSE cut: 请到1号窗口 after {took * 1000:.0f} ms (polling every 5 s)")
            assert took < 6.5 and page.locator("#called-text").inner_text() == "请到1号窗口"
        finally:
            browser.close()
