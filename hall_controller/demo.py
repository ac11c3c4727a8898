"""`hallctl demo`: the whole hall on one PC with zero setup.

Embedded broker, SQLite, every device emulated, the management-system emulator, and the daemon,
all in this process. Preferred ports are used when free, otherwise the OS picks one; the summary
says where each part listens.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from .config import sample_config_text
from .daemon import DaemonOptions, HallDaemon, split_hostport
from .setup_hall import init_hall, passwords_path

log = logging.getLogger(__name__)

PREFERRED = {"mqtt": 1883, "emulator": 8790, "mgmt": 8700}


def _port_or_free(host: str, preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind((host, preferred))
            return preferred
        except OSError:
            s.bind((host, 0))
            return s.getsockname()[1]


def prepare_demo_dir(directory: Path) -> Path:
    """The demo hall folder: the sample config, written once, then initialised."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "hall.yaml"
    if not config_path.exists():
        config_path.write_text(sample_config_text(), encoding="utf-8")
    init_hall(config_path, quiet=True)
    return config_path


def run_demo(directory: Path, *, ui: bool = True, stop: threading.Event | None = None,
             on_ready: Any = None) -> int:
    from hw_emulators.hall import EmulatedHall
    from hw_emulators.mgmt import MgmtEmulator

    from .config import load_config

    config_path = prepare_demo_dir(directory)
    config = load_config(config_path)
    host = "127.0.0.1"
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    token = config.upstream_token or secrets.token_urlsafe(16)     # both sides of the emulated upstream
    mgmt = MgmtEmulator(listen=(host, _port_or_free(host, PREFERRED["mgmt"])),
                        db_path=str(directory / "mgmt.db"), token=token)
    mgmt.start()
    emulated = EmulatedHall(config.devices, link="tcp", site_dir=config.profiles_dir)
    emulated.start()
    control = emulated.serve_control(host, _port_or_free(host, PREFERRED["emulator"]))
    mqtt_port = _port_or_free(host, split_hostport(config.mqtt_listen or f"{host}:1883")[1])
    urls = {dev_id: url for dev_id, url in emulated.device_urls().items() if url}
    daemon = HallDaemon(config, DaemonOptions(mqtt_listen=f"{host}:{mqtt_port}", upstream_url=mgmt.url,
                                              upstream_token=token, device_urls=urls),
                        config_path=str(config_path))
    apps: list[Any] = []
    try:
        daemon.start()
        summary = {
            "hall": f"{config.name} ({config.hall_id})",
            "config": str(config_path),
            "database": config.database,
            "mqtt": f"{daemon.mqtt_address[0]}:{daemon.mqtt_address[1]}" if daemon.mqtt_address else None,
            "client_passwords": str(passwords_path(config)),
            "emulator_control": f"http://{control[0]}:{control[1]}/",
            "management_system": mgmt.url,
            "apps": _apps_note(ui, config_path, daemon.mqtt_address, f"{control[0]}:{control[1]}", apps),
        }
        print("示范大厅已启动 / demo hall running:")
        for key, value in summary.items():
            print(f"  {key:18} {value}")
        print("Ctrl-C 停止 / to stop", flush=True)
        log.info("ready")
        if on_ready:
            on_ready(summary)
        stop.wait()
    finally:
        if apps:
            from kiosk_ui.launch import stop_apps

            stop_apps(apps)     # before the broker goes, so the apps leave their offline status cleanly
        daemon.stop()
        emulated.stop()
        mgmt.stop()
    return 0


def _apps_note(ui: bool, config_path: Path, mqtt_address: tuple[str, int] | None, emulator: str,
               started: list[Any]) -> str:
    """Start the kiosk and the hall display when there is a screen (they stop when the demo exits)."""
    if not ui:
        return "not started (--no-ui)"
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display: Qt apps not started"
    try:
        from kiosk_ui.launch import start_public_apps
    except ImportError as exc:      # PySide6 is the `ui` extra
        return f"Qt apps not started: {exc} (pip install 'hall-controller[ui]')"
    if mqtt_address is None:
        return "no MQTT broker: Qt apps not started"
    procs = start_public_apps(config_path, *mqtt_address, emulator=emulator)
    started.extend(procs)
    return ("hall-kiosk (kiosk-1), hall-display (display-1), hall-window (window-1), hall-tablet (tablet-1) "
            "started: pids " + ", ".join(str(p.pid) for p in procs))
