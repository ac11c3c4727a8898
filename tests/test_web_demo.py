"""`hallctl demo` starts hall-web as a supervised child and prints its address; the ticket's QR (the
kiosk's `visit_url`) points at it, the page opens, and a killed hall-web is started again on the same
address; Ctrl-C stops it with the rest."""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest
import yaml

from hall_controller.bus.client import HallClient

from .harness import DemoProcess, wait_until


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.slow
def test_the_demo_serves_the_phone_pages(tmp_path: Path) -> None:
    demo = DemoProcess(tmp_path, "--no-ui")
    try:
        summary = demo.summary(60)
        hall_page = summary["visitor_pages"].split()[0]
        assert hall_page.startswith("http://127.0.0.1:") and hall_page.endswith("/")
        wait_until(lambda: _get(hall_page)[0] == 200, 30, "hall-web serving")
        assert "示范区公共法律服务中心" in _get(hall_page)[1]

        host, port = summary["mqtt"].rsplit(":", 1)
        passwords = yaml.safe_load((tmp_path / "hall" / "client-passwords.yaml").read_text())
        kiosk = HallClient("kiosk-1", passwords["kiosk-1"], host, int(port), "demo", role="kiosk")
        kiosk.connect(timeout=10)
        issued = kiosk.request("issue_ticket", service="consult")
        kiosk.close()
        assert issued["visit_url"] == f"{hall_page}t/{issued['visit_token']}"
        status, page = _get(issued["visit_url"])
        assert status == 200 and issued["ticket"]["number"] in page and "等候中" in page

        # hall-web killed: the demo says so and starts it again on the same address
        pid = int(summary["visitor_pages"].split("pid ")[1].rstrip("）"))
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: "hall-web" in "\n".join(demo.lines) and _get(issued["visit_url"])[0] == 200, 30,
                   "hall-web back")
    finally:
        assert demo.stop(20) == 0
