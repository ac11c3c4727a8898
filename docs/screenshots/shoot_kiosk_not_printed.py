"""Screenshot of `hall-kiosk` telling a visitor the printer failed, on a real X server (docs figure).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/screenshots/shoot_kiosk_not_printed.py OUT.png

A sample hall with kiosk-1's emulated printer, its cable pulled (the fault of issue 16: the screen
used to read 号票未能打印（写入失败 socket://…: [Errno 32] Broken pipe）); the kiosk app started full
screen through its own `run_app`; one touch on 法律咨询; `import -window root` once the result shows.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from hall_controller.config import load_config, sample_config_text
from hall_controller.daemon import DaemonOptions, HallDaemon
from hall_controller.setup_hall import init_hall
from hw_emulators.hall import EmulatedHall
from kiosk_ui import kiosk
from kiosk_ui.appkit import run_app


def main(out: str) -> int:
    folder = Path(tempfile.mkdtemp(prefix="hall-shot-"))
    data = yaml.safe_load(sample_config_text())
    data["devices"] = [d for d in data["devices"] if d["id"] == "printer-1"]
    for window in data["windows"]:
        window["devices"] = []
    (folder / "hall.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    init_hall(folder / "hall.yaml", quiet=True)
    config = load_config(folder / "hall.yaml")
    emu = EmulatedHall(config.devices, link="tcp")
    emu.start()
    daemon = HallDaemon(config, DaemonOptions(db_url=f"sqlite:///{folder}/hall.db", mqtt_listen="127.0.0.1:0",
                                              device_urls={k: v for k, v in emu.device_urls().items() if v}),
                        config_path=str(folder / "hall.yaml"))
    daemon.start()
    assert daemon.mqtt_address is not None
    host, port = daemon.mqtt_address
    emu.device("printer-1").set_fault("disconnect")          # the printer's cable is out

    def build(options, bus, args):
        window = kiosk.build(options, bus, args)
        state = {"clicked": False, "shot": False}

        def step() -> None:
            button = window._buttons.get("consult")
            if not state["clicked"] and button is not None and button.isEnabled():
                state["clicked"] = True
                button.click()
            elif state["clicked"] and not state["shot"] and window.stack.currentWidget() is window.result_page:
                state["shot"] = True
                QTimer.singleShot(1000, shoot)

        def shoot() -> None:
            subprocess.run(["import", "-window", "root", out], check=True)
            print(window.result_print.text())
            QApplication.instance().quit()

        timer = QTimer(window)
        timer.timeout.connect(step)
        timer.start(200)
        return window

    try:
        return run_app("hall-kiosk", "自助取号机 (ticket kiosk)", build, role="kiosk", default_client="kiosk-1",
                       size=(1920, 1080), add_arguments=kiosk.add_arguments,
                       argv=["--config", str(folder / "hall.yaml"), "--client", "kiosk-1",
                             "--mqtt-url", f"mqtt://{host}:{port}"])
    finally:
        daemon.stop()
        emu.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "kiosk_not_printed_xvfb.png"))
