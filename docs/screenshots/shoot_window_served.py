"""Screenshot of the real `hall-window` started mid-day on a 1366×768 X server (docs figure).

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/screenshots/shoot_window_served.py OUT.png

A sample hall (no devices) served by an in-process daemon; window 3's clerk (张伟, 1003) finishes twelve
visits before the terminal starts, some rated on the tablet, the last two still inside their rating
time; then the `hall-window` console script is started as its own process, full screen, as a window PC
starts it after a restart, and `import -window root` is taken once its client status is online and
its list has had time to fill. The terminal's 今日已办结 comes from the daemon's `day_summary`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from hall_controller.config import load_config, sample_config_text
from hall_controller.daemon import DaemonOptions, HallDaemon
from hall_controller.service import Actor
from hall_controller.setup_hall import init_hall

SCORES = (4, 1, None, 5, 5, None, 3, 5, None, 5, None, None)     # None: not rated (yet)


def main(out: str) -> int:
    folder = Path(tempfile.mkdtemp(prefix="hall-shot-"))
    data = yaml.safe_load(sample_config_text())
    data["devices"] = []
    for window in data["windows"]:
        window["devices"] = []
    config_path = folder / "hall.yaml"
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    init_hall(config_path, quiet=True)
    config = load_config(config_path)
    daemon = HallDaemon(config, DaemonOptions(db_url=f"sqlite:///{folder}/hall.db", mqtt_listen="127.0.0.1:0"),
                        config_path=str(config_path))
    daemon.start()
    assert daemon.mqtt_address is not None and daemon.service is not None
    host, port = daemon.mqtt_address
    service = daemon.service
    kiosk, clerk, tablet = Actor("kiosk-1", "kiosk"), Actor("window-3", "window", 3), Actor("tablet-3", "tablet", 3)
    service.execute(clerk, "login", {"staff_id": "S003", "pin": "1234"})
    for score in SCORES:
        service.execute(kiosk, "issue_ticket", {"service": "consult"})
        ticket = service.execute(clerk, "call_next", {})["ticket"]
        service.execute(clerk, "start", {})
        service.execute(clerk, "finish", {"outcome": "referred" if score == 3 else "completed"})
        if score is not None:
            service.execute(tablet, "rate", {"ticket": ticket["id"], "score": score})
    service.execute(kiosk, "issue_ticket", {"service": "consult"})
    service.execute(kiosk, "issue_ticket", {"service": "general"})

    online = threading.Event()
    observer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="admin", protocol=mqtt.MQTTv311)
    password = yaml.safe_load((folder / "client-passwords.yaml").read_text(encoding="utf-8"))["admin"]
    observer.username_pw_set("admin", password)
    observer.on_connect = lambda c, *_: c.subscribe(f"hall/{config.hall_id}/client/window-3/status")
    observer.on_message = lambda c, u, m: online.set() if b'"online"' in m.payload else None
    observer.connect(host, port)
    observer.loop_start()
    app = shutil.which("hall-window", path=str(Path(sys.executable).parent)) or "hall-window"
    log_path = folder / "hall-window.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([app, "--config", str(config_path), "--client", "window-3", "--camera", "none",
                                 "--mqtt-url", f"mqtt://{host}:{port}"], stdout=log_file, stderr=log_file,
                                env={**os.environ, "QT_QPA_PLATFORM": "xcb"})
    try:
        if not online.wait(30):
            print(log_path.read_text(), file=sys.stderr)
            return 1
        time.sleep(4)                                   # the day summary's reply and a first paint
        subprocess.run(["import", "-window", "root", out], check=True)
        return 0 if proc.poll() is None else 1
    finally:
        proc.terminate()
        proc.wait(15)
        observer.loop_stop()
        observer.disconnect()
        daemon.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "window-served-after-restart-xvfb.png"))
