"""`hallctl demo` / `hall-demo`: the whole hall on one PC with zero setup.

Embedded broker, SQLite, the management-system emulator and the daemon run in this process; the
device emulator and the Qt apps run as supervised child processes: one that exits is said at the
console (`hall-display 已退出（代码 -6），3 秒后重启`) and started again, at most 5 times a minute.
The restarted emulator serves every device on the port it had, so the daemon's device links simply
reconnect. Preferred ports are used when free, otherwise the OS picks one; the summary says where
each part listens. The management-system emulator's URL and token and the emulator's control API
are written into the demo's hall.yaml (`upstream:`, `emulator:`; the file 0600, as it holds a
token), where the daemon reads them as a real hall's daemon does — so `hallctl doctor --config
hall-demo/hall.yaml` checks the running demo whole.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from hall_controller.bus.credentials import write_private
from hall_controller.clock import Clock, SystemClock
from hall_controller.config import HallConfig, load_config, sample_config_text, verify_pin
from hall_controller.daemon import DaemonOptions, HallDaemon, split_hostport
from hall_controller.logsetup import setup_logging
from hall_controller.operate.install import set_top_level
from hall_controller.setup_hall import init_hall, passwords_path
from hw_emulators.hall import EmulatedHall, HallSetupError, read_hall_config
from hw_emulators.link import Link, TcpLink
from hw_emulators.mgmt import MgmtEmulator

from .apps import BOOTSTRAP, app_specs, display_available
from .supervise import ChildSpec, RestartPolicy, Supervisor

log = logging.getLogger(__name__)

PREFERRED = {"mqtt": 1883, "emulator": 8790, "mgmt": 8700}
EMULATOR = "hall-emu"
WEB = "hall-web"                   # the visitor's phone pages, a supervised child like the emulator
WEB_CLIENT = "web-1"
DEMO_PIN = "1234"                  # the sample hall's published demo PIN (DESIGN §9)
EMULATOR_START_TIMEOUT = 30.0


def _port_or_free(host: str, preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind((host, preferred))
            return s.getsockname()[1]       # preferred, or a free one when that is 0
        except OSError:
            s.bind((host, 0))
            return s.getsockname()[1]


def prepare_demo_dir(directory: Path) -> Path:
    """The demo hall folder: the sample config, written once, then initialised."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "hall.yaml"
    if not config_path.exists():
        write_private(config_path, sample_config_text())    # it will hold the upstream token
    init_hall(config_path, quiet=True)
    return config_path


def write_links(config_path: Path, upstream: dict[str, str], control: str) -> None:
    """Name the demo's management system (`upstream`: url and token) and the emulator's control API
    (HOST:PORT) in hall.yaml, keeping the rest of the file; rewritten only when they changed. The
    file is never readable by others (0600, or 0640 when it was group-readable): it holds a token."""
    text = config_path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    new = text
    wanted = {"upstream": {**(raw.get("upstream") or {}), **upstream},
              "emulator": {**(raw.get("emulator") or {}), "control": control}}
    for key, value in wanted.items():
        if raw.get(key) != value:
            new = set_top_level(new, key, value, mark="hallctl demo")
    if new != text:
        write_private(config_path, new)
    mode = stat.S_IMODE(config_path.stat().st_mode)
    if mode & 0o037:
        os.chmod(config_path, mode & 0o740)


def _number_ranges(numbers: list[str]) -> str:
    """'1001–1008' for consecutive job numbers, '1001、1003' otherwise."""
    if len(numbers) > 2 and all(n.isdigit() for n in numbers):
        ordered = sorted(numbers, key=int)
        if [int(n) for n in ordered] == list(range(int(ordered[0]), int(ordered[0]) + len(ordered))):
            return f"{ordered[0]}–{ordered[-1]}"
    return "、".join(numbers)


def login_note(config: HallConfig) -> str:
    """The demo logins for the banner: job numbers, and the PIN only while it is the published demo PIN
    (a hall whose PINs were changed gets no PIN printed)."""
    staff = [s for s in config.staff if s.pin_hash]
    if not staff:
        return "未配置工作人员"
    demo = [s.job_number for s in staff if verify_pin(DEMO_PIN, s.pin_hash)]
    if demo:
        return f"工号 {_number_ranges(demo)}，PIN {DEMO_PIN}（示范数据）"
    return f"工号 {_number_ranges([s.job_number for s in staff])}（PIN 已由本大厅设定）"


# -- the emulator child ----------------------------------------------------------------------------

def emulator_command(config_path: Path, control: tuple[str, int], ports: dict[str, int]) -> list[str]:
    return [sys.executable, "-c", "from hall_demo.hall import emulator_main; raise SystemExit(emulator_main())",
            "--config", str(config_path), "--control", f"{control[0]}:{control[1]}", "--ports", json.dumps(ports)]


def emulator_main(argv: list[str] | None = None) -> int:
    """The demo's emulator child: `hall-emu run` whose device links listen on the ports given (a device
    not listed gets a free one), so a restarted emulator serves the URLs the daemon already has."""
    parser = argparse.ArgumentParser(prog="hall-emu (hallctl demo)")
    parser.add_argument("--config", required=True)
    parser.add_argument("--control", required=True, help="HOST:PORT of the control API")
    parser.add_argument("--ports", default="{}", help="JSON {device id: TCP port}")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    ports: dict[str, int] = {str(k): int(v) for k, v in json.loads(args.ports).items()}

    class PinnedPortsHall(EmulatedHall):
        def make_link(self, name: str) -> Link:
            return TcpLink(name, port=ports.get(name, 0))

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        devices, _, site_dir = read_hall_config(args.config)
        hall = PinnedPortsHall(devices, "tcp", site_dir=site_dir)
        hall.start()
    except (HallSetupError, OSError, ValueError) as exc:
        log.error("emulator cannot start: %s", exc)
        return 1
    try:
        host, port = hall.serve_control(*split_hostport(args.control))
    except OSError as exc:
        log.error("emulator control API cannot listen on %s: %s", args.control, exc)
        hall.stop()
        return 1
    log.info("ready http://%s:%d/", host, port)
    try:
        stop.wait()
    finally:
        hall.stop()
    return 0


def _tcp_ports(urls: dict[str, str]) -> dict[str, int]:
    ports = {}
    for dev_id, url in urls.items():
        parsed = urlparse(url)
        if parsed.scheme == "socket" and parsed.port:
            ports[dev_id] = parsed.port
    return ports


def _wait_for_emulator(supervisor: Supervisor, control: tuple[str, int], timeout: float) -> dict[str, str]:
    """The device URLs once the emulator child serves its control API (RuntimeError if it does not)."""
    deadline = time.monotonic() + timeout
    url = f"http://{control[0]}:{control[1]}/devices"
    while True:
        if not supervisor.running(EMULATOR):
            codes = supervisor.exits(EMULATOR)
            raise RuntimeError(f"设备仿真器启动失败（代码 {codes[-1] if codes else '?'}）")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return {d["id"]: d["url"] for d in json.loads(resp.read()) if d.get("url")}
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"设备仿真器 {timeout:.0f} 秒内未就绪")
        time.sleep(0.1)


# -- the demo hall ---------------------------------------------------------------------------------

class DemoHall:
    """Every part of the demo, started in order and stopped in reverse (the apps before the broker, so
    they leave their offline status cleanly). `policy` decides restarts (bench/soak.py passes one that
    never restarts, so a death shows)."""

    def __init__(self, directory: Path, *, ui: bool = True, policy: RestartPolicy | None = None,
                 say: Callable[[str], None] | None = None, clock: Clock | None = None,
                 app_env: dict[str, str] | None = None, app_bootstrap: str | None = None,
                 ports: dict[str, int] | None = None) -> None:
        """`ports` overrides the preferred ports (PREFERRED; 0 = any free one, as tests ask)."""
        self.directory = Path(directory)
        self.ui = ui
        self.clock = clock or SystemClock()
        self.policy = policy or RestartPolicy(self.clock)
        self.supervisor = Supervisor(self.policy, say=say, clock=self.clock)
        self.app_env = app_env
        self.app_bootstrap = app_bootstrap
        self.ports = dict(ports or {})
        self.host = "127.0.0.1"
        self.log_dir = self.directory / "logs"
        self.apps: list[str] = []
        self.web_address: tuple[str, int] | None = None    # where hall-web listens (set by start())
        self.daemon: HallDaemon | None = None
        self.mgmt: Any = None
        self.control: tuple[str, int] | None = None
        self.device_urls: dict[str, str] = {}
        self.config_path: Path | None = None
        self.config: HallConfig | None = None

    def start(self) -> dict[str, Any]:
        """Start everything; returns the summary the banner prints."""
        host = self.host
        self.config_path = config_path = prepare_demo_dir(self.directory)
        token = load_config(config_path).upstream_token or secrets.token_urlsafe(16)    # kept across runs
        self.mgmt = MgmtEmulator(listen=(host, _port_or_free(host, self._preferred("mgmt"))),
                                 db_path=str(self.directory / "mgmt.db"), token=token)
        self.mgmt.start()

        control = self.control = (host, _port_or_free(host, self._preferred("emulator")))
        write_links(config_path, {"url": self.mgmt.url, "token": token}, f"{control[0]}:{control[1]}")
        self.config = config = self._web_moved(load_config(config_path))
        ports: dict[str, int] = {}     # filled once the first emulator listens: restarts keep the ports
        self.supervisor.start(ChildSpec(EMULATOR, lambda: emulator_command(config_path, control, ports),
                                        log_path=self.log_dir / f"{EMULATOR}.log"))
        self.supervisor.watch()
        self.device_urls = _wait_for_emulator(self.supervisor, control, EMULATOR_START_TIMEOUT)
        ports.update(_tcp_ports(self.device_urls))

        mqtt_port = _port_or_free(host, self.ports["mqtt"] if "mqtt" in self.ports
                                  else split_hostport(config.mqtt_listen or f"{host}:{PREFERRED['mqtt']}")[1])
        # The upstream comes from hall.yaml, as on a real hall; the device URLs are the emulator's.
        self.daemon = HallDaemon(config, DaemonOptions(mqtt_listen=f"{host}:{mqtt_port}", device_urls=self.device_urls),
                                 config_path=str(config_path))
        self.daemon.start()
        mqtt = self.daemon.mqtt_address
        return {
            "hall": f"{config.name} ({config.hall_id})",
            "config": str(config_path),
            "database": config.database,
            "mqtt": f"{mqtt[0]}:{mqtt[1]}" if mqtt else None,
            "client_passwords": str(passwords_path(config)),
            "emulator_control": f"http://{control[0]}:{control[1]}/",
            "emulator": f"{EMULATOR} pid {self.supervisor.pid(EMULATOR)}",
            "management_system": self.mgmt.url,
            "visitor_pages": self._start_web(),
            "metrics": _metrics_url(self.daemon),
            "logins": login_note(config),
            "apps": self._start_apps(),
            "logs": f"{self.log_dir}/（仿真器与各应用的日志；退出的进程 3 秒后自动重启，每分钟最多 "
                    f"{self.policy.max_restarts} 次）",
        }

    def _preferred(self, part: str) -> int:
        return self.ports.get(part, PREFERRED[part])

    def _web_moved(self, config: HallConfig) -> HallConfig:
        """The config with hall-web where it will listen: web.listen, or a free port when that one is
        taken (`ports["web"]` overrides); the QR codes carry the address it really has."""
        host, port = split_hostport(config.web_listen or f"{self.host}:8080")
        self.web_address = (host, _port_or_free(host, self.ports.get("web", port)))
        listen = f"{host}:{self.web_address[1]}"
        derived = config.web_public_url in (None, f"http://{config.web_listen}")
        return replace(config, web_listen=listen,
                       web_public_url=f"http://{listen}" if derived else config.web_public_url)

    def _start_web(self) -> str:
        """hall-web, the visitor's phone pages (`/` and the tickets' `/t/…`), when it can run."""
        assert self.daemon is not None and self.config is not None and self.config_path is not None
        if importlib.util.find_spec("aiohttp") is None:    # aiohttp is the `web` extra
            return "hall-web not started: aiohttp missing (pip install 'hall-controller[web]')"
        if not any(c.id == WEB_CLIENT for c in self.config.clients):
            return f"hall-web not started: no client {WEB_CLIENT} (hallctl client add {WEB_CLIENT} --role web)"
        if self.daemon.mqtt_address is None:
            return "no MQTT broker: hall-web not started"
        mqtt_host, mqtt_port = self.daemon.mqtt_address
        assert self.web_address is not None
        host, port = self.web_address
        command = [sys.executable, "-m", "hall_web.cli", "--config", str(self.config_path), "--client", WEB_CLIENT,
                   "--mqtt-url", f"mqtt://{mqtt_host}:{mqtt_port}", "--listen", f"{host}:{port}"]
        self.supervisor.start(ChildSpec(WEB, lambda: command, log_path=self.log_dir / f"{WEB}.log"))
        return (f"{self.config.hall_page_url or f'http://{host}:{port}/'}  访客手机页（小票二维码 /t/…；"
                f"{WEB} pid {self.supervisor.pid(WEB)}）")

    def _start_apps(self) -> str:
        """Start the kiosk, the display, window 1's terminal and tablet when they can show."""
        if not self.ui:
            return "not started (--no-ui)"
        if not display_available(self.app_env):
            return "no display: Qt apps not started"
        if importlib.util.find_spec("PySide6") is None:   # PySide6 is the `ui` extra
            return "Qt apps not started: PySide6 missing (pip install 'hall-controller[ui]')"
        assert self.daemon is not None and self.control is not None and self.config_path is not None
        if self.daemon.mqtt_address is None:
            return "no MQTT broker: Qt apps not started"
        specs = app_specs(self.config_path, *self.daemon.mqtt_address, emulator=f"{self.control[0]}:{self.control[1]}",
                          log_dir=self.log_dir, bootstrap=self.app_bootstrap or BOOTSTRAP, env=self.app_env)
        for spec in specs:
            self.supervisor.start(spec)
            self.apps.append(spec.name)
        return ("hall-kiosk (kiosk-1), hall-display (display-1), hall-window (window-1), hall-tablet (tablet-1) "
                "started: pids " + ", ".join(str(self.supervisor.pid(name)) for name in self.apps))

    def stop(self) -> dict[str, int | None]:
        """Stop everything; returns the apps' exit codes (0 after a clean stop)."""
        codes = self.supervisor.stop(self.apps)   # before the broker goes: the apps leave their offline status
        codes.update(self.supervisor.stop([WEB]))
        if self.daemon is not None:
            self.daemon.stop()
        self.supervisor.stop()
        if self.mgmt is not None:
            self.mgmt.stop()
        return codes


def _metrics_url(daemon: HallDaemon) -> str:
    """Where the daemon serves Prometheus /metrics and /healthz (monitoring.listen), or why not."""
    address = daemon.monitoring.address if daemon.monitoring is not None else None
    if address is None:
        return "未提供 not served (monitoring.listen)"
    return f"http://{address[0]}:{address[1]}/metrics  /healthz"


def run_demo(directory: Path, *, ui: bool = True, stop: threading.Event | None = None,
             on_ready: Any = None) -> int:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    hall = DemoHall(directory, ui=ui)
    try:
        try:
            summary = hall.start()
        except RuntimeError as exc:
            print(f"示范大厅未能启动：{exc}；请查看 {hall.log_dir}/{EMULATOR}.log", file=sys.stderr)
            return 1
        print("示范大厅已启动 / demo hall running:")
        for key, value in summary.items():
            print(f"  {key:18} {value}")
        print("Ctrl-C 停止 / to stop", flush=True)
        log.info("ready")
        if on_ready:
            on_ready(summary)
        stop.wait()
    finally:
        hall.stop()
    return 0
