"""The emulator dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
put the 78-year-old's sample card on kiosk-1's reader from the card panel, take a number at kiosk-1,
and watch the printed ticket appear on the page as an image."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .harness import device_hall, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def hall(tmp_path):
    hall = device_hall(tmp_path)
    yield hall
    hall.close()


@pytest.fixture
def page(hall):
    host, port = hall.emu.serve_control()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
            page.goto(f"http://{host}:{port}/")
            yield page
        finally:
            browser.close()


def test_sample_card_then_ticket_image_on_the_dashboard(hall, page, tmp_path):
    wait_until(lambda: hall.service.snapshot()["devices"].get("printer-1", {}).get("online"), 10, "printer-1 online")
    kiosk = hall.client("kiosk-1", "kiosk")
    cards: list[dict] = []
    kiosk.subscribe_cards(cards.append)

    reader = page.locator("section[data-kind='card_reader'] tr", has_text="card-reader-1")
    reader.locator("button[data-sample='elder']").click()  # 放入：78岁老人
    wait_until(lambda: cards, 10, "the card read at kiosk-1")
    assert cards[-1]["usable"] and cards[-1]["elderly"] and cards[-1]["age"] == 78

    reply = kiosk.request("issue_ticket", service="consult", use_card=True)
    assert reply["printed"] is True and reply["ticket"]["priority"] == "elderly"

    image = page.locator("section[data-kind='printer'] img.ticket").first
    image.wait_for(state="visible", timeout=10_000)
    page.wait_for_function("img => img.complete && img.naturalWidth === 576", arg=image.element_handle(),
                           timeout=10_000)
    assert image.get_attribute("src") == "/printer/printer-1/tickets/1.png"
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
