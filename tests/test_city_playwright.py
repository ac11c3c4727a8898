"""The 大屏 in a real headless Chromium at 1920×1080 against `hall-city --demo` as its own process (Mosquitto
as the city broker with `hallctl city-credentials` accounts, three simulated halls, a 差评): the page shows
the three halls attention-first and the open 差评 with its clock, takes pushes by SSE under its CSP (no
console error), asks no other host, and a tile opens the hall's page. Screenshots go to HALL_SCREENSHOTS
(docs/screenshots keeps city_screen.png and city_hall.png for the README)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from .harness import have_mosquitto, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("HALL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "hall-screenshots")
SCREEN = {"viewport": {"width": 1920, "height": 1080}, "locale": "zh-CN"}

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")
expect = sync_api.expect
pytestmark = [pytest.mark.slow, pytest.mark.mosquitto,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
              pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")]


@pytest.mark.parametrize("halls", ["real", "simulated"])
def test_the_city_screen_with_three_demo_halls_and_an_open_bad_rating(tmp_path: Path, halls: str):
    """`real`: three hall daemons with their uplinks and traffic, the 差评 rated at a tablet (its clock just
    started: green); `simulated`: the contract's messages from three clients, the 差评 50 minutes old (amber)."""
    simulated = ["--simulated-halls"] if halls == "simulated" else []
    proc = subprocess.Popen([sys.executable, "-m", "hall_city.cli", "--demo", "--demo-dir", str(tmp_path / "demo"),
                             "--listen", "127.0.0.1:0", "--log-level", "WARNING", *simulated],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    try:
        url = wait_until(lambda: next((m.group(0) for line in lines if (m := re.search(r"http://\S+", line))), None), 20,
                         "hall-city --demo's URL")
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = browser.new_context(**SCREEN)
            requested: list[str] = []
            errors: list[str] = []
            context.on("request", lambda r: requested.append(r.url))
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            expect(page.locator("#tiles .tile")).to_have_count(3, timeout=30_000)
            expect(page.locator("#ratings tr")).to_have_count(1, timeout=30_000)
            row = page.locator("#ratings tr").first
            expect(row).to_contain_text("徐汇区")
            expect(row).to_contain_text("法律咨询" if halls == "real" else "B017 · 法律援助")
            clock = row.locator("td.st-ok" if halls == "real" else "td.st-amber").first
            expect(clock).to_contain_text("剩")                       # real: 59 min; simulated: 10 min to contact
            names = page.locator("#tiles .tile .name").all_inner_texts()
            assert names[0] == "徐汇区公共法律服务中心", names          # the 差评 (and the long wait) first
            expect(page.locator("#t-halls")).to_have_text("3/3", timeout=10_000)
            assert "数据异常" not in page.locator("#tiles").inner_text()
            issued = page.locator("#t-issued").inner_text()
            expect(page.locator("#t-issued")).not_to_have_text(issued, timeout=10_000)   # pushed by SSE
            assert page.locator("#banner").is_hidden()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / ("city_screen.png" if halls == "real" else "city_screen_amber.png")))
            page.locator("#tiles .tile").first.click()
            expect(page.locator("#name")).to_have_text("徐汇区公共法律服务中心")
            expect(page.locator("#services tr").first).to_be_visible()
            expect(page.locator("#history tr").first).to_be_visible(timeout=15_000)
            if halls == "real":
                page.screenshot(path=str(SHOTS / "city_hall.png"))
            host = url.split("/")[2]
            assert all(u.split("/")[2] == host for u in requested), [u for u in requested if host not in u]
            assert errors == [], errors
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0, "".join(lines)[-2000:]
