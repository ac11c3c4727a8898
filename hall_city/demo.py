"""`hall-city --demo`: a city broker (Mosquitto, with one account per hall and the ACL of `hallctl
city-credentials`), three real hall daemons reporting to it (demo_halls.py; `--simulated-halls`: three
simulated ones instead, below),
three simulated halls publishing contract-shaped summaries and one 差评, and the page — on one PC.

The simulated halls stand in for real hall daemons' uplinks: each is one MQTT client with the hall's
account, a retained `online` with a last will, a retained `summary` every few seconds as its queue
moves, and a `bad_rating` alert (QoS 1) from the second hall.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from hall_controller.bus.city_accounts import (
    HALL_CITY,
    CityCredentialStore,
    hall_username,
    write_city_mosquitto_config,
)
from hall_controller.bus.credentials import write_private
from hall_controller.bus.url import MqttEndpoint
from hall_controller.clock import Clock, SystemClock

from .demo_halls import RealHall, Traffic, wait_port

log = logging.getLogger(__name__)

MOSQUITTO = "/usr/sbin/mosquitto"
DISTRICT = "310101"
HALLS = (("hall-a", "黄浦区公共法律服务中心", "HP"), ("hall-b", "徐汇区公共法律服务中心", "XH"),
         ("hall-c", "静安区公共法律服务中心", "JA"))
SERVICES = (("A", "法律咨询", "A"), ("B", "法律援助", "B"), ("C", "公证", "C"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_broker(directory: Path, port: int, halls: list[str], *, iterations: int = 10_000) -> tuple[Path, dict[str, str]]:
    """The demo city's accounts (`hallctl city-credentials`' store: one per hall, writing only its own
    `city/{district}/{hall}/#`, and `hall-city` reading `city/#`) and its Mosquitto config on the loopback.
    Returns the conf file and the clear passwords by account (the demo's own, kept in memory)."""
    store = CityCredentialStore(directory / "city-credentials", iterations=iterations)
    passwords = {HALL_CITY: store.add_service(HALL_CITY)[1]}
    for hall in halls:
        account, password = store.add_hall(hall, DISTRICT)
        passwords[account.username] = password
    files = write_city_mosquitto_config(directory / "mosquitto", store, port=port, bind_address="127.0.0.1")
    text = files.conf_file.read_text().replace("persistence true", "persistence false")
    if os.geteuid() == 0:
        text += "user root\n"     # as root mosquitto drops to `mosquitto`, who cannot read our 0600 files
    write_private(files.conf_file, text)
    return files.conf_file, passwords


def summary(hall: str, name: str, code: str, at: datetime, step: int, open_bad: int) -> dict[str, Any]:
    """A busy hall's summary at `step` (the contract's shape; numbers that move)."""
    base = {"hall-a": 3, "hall-b": 9, "hall-c": 1}[hall]
    services = []
    for i, (scode, sname, prefix) in enumerate(SERVICES):
        waiting = max(0, base + (step + i * 3) % 7 - i * 2)
        oldest = None if not waiting else 60.0 * (waiting * (4 if hall == "hall-b" else 2) + i)
        services.append({"code": scode, "name": sname, "prefix": prefix, "waiting": waiting, "oldest_wait_s": oldest})
    issued = 40 + base * 12 + step
    return {"schema": 1, "hall": {"id": hall, "name": name, "district": DISTRICT, "code": code},
            "at": at.isoformat(), "seq": 1000 + step, "open": True,
            "windows": {"staffed": 4 if hall != "hall-c" else 2, "total": 6},
            "services": services, "wait_today": {"median_s": 300.0 + base * 90, "p90_s": 900.0 + base * 200},
            "counts": {"issued": issued, "served": issued - 10 - base, "left": 2 + base // 3, "no_show": 1},
            "ratings": {"count": 30 + step // 5, "good": 28 + step // 5, "bad": 1 if hall == "hall-b" else 0,
                        "bad_open": open_bad},
            "devices_offline": [{"id": "printer-2", "kind": "printer", "since": at.isoformat()}]
            if hall == "hall-c" else [], "outbox": {"pending": 0, "dead": 0}}


class DemoHall:
    """One simulated hall on the city broker."""

    def __init__(self, endpoint: MqttEndpoint, hall: str, name: str, code: str, password: str, clock: Clock) -> None:
        self.hall, self.name, self.code, self.clock = hall, name, code, clock
        self.prefix = f"city/{DISTRICT}/{hall}"
        username = hall_username(DISTRICT, hall)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username,
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username, password)
        self.client.will_set(f"{self.prefix}/online", json.dumps({"online": False, "at": None, "will": True}),
                             qos=1, retain=True)
        self.client.connect(endpoint.host, endpoint.port, keepalive=30)
        self.client.loop_start()
        self.step = 0
        self.open_bad = 0

    def publish(self, topic: str, data: dict[str, Any], *, retain: bool) -> None:
        self.client.publish(f"{self.prefix}/{topic}", json.dumps(data, ensure_ascii=False), qos=1, retain=retain)

    def online(self) -> None:
        self.publish("online", {"online": True, "at": self.clock.now().isoformat(), "version": "demo"}, retain=True)

    def tick(self) -> None:
        self.step += 1
        self.publish("summary", summary(self.hall, self.name, self.code, self.clock.now(), self.step, self.open_bad),
                     retain=True)

    def bad_rating(self, minutes_ago: float) -> None:
        now = self.clock.now()
        raised = now - timedelta(minutes=minutes_ago)
        self.open_bad += 1
        self.publish("alert/bad_rating", {
            "id": str(uuid.uuid4()), "type": "bad_rating", "at": raised.isoformat(),
            "hall": {"id": self.hall, "district": DISTRICT},
            "ticket": {"number": "B017", "service": "法律援助", "window": 3}, "score": 1, "level": "很不满意",
            "raised_at": raised.isoformat(), "contact_by": (raised + timedelta(hours=1)).isoformat(),
            "fix_by": (raised + timedelta(hours=72)).isoformat()}, retain=False)

    def stop(self) -> None:
        self.publish("online", {"online": False, "at": self.clock.now().isoformat()}, retain=True)
        time.sleep(0.2)
        self.client.disconnect()
        self.client.loop_stop()


class _Halls:
    """The demo's three halls, started once hall-city is subscribed: real daemons or simulated clients."""

    def __init__(self, directory: Path, port: int, accounts: dict[str, str], clock: Clock, simulated: bool) -> None:
        self.directory, self.port, self.accounts, self.clock = directory, port, accounts, clock
        self.simulated = simulated
        self.endpoint = MqttEndpoint("127.0.0.1", port)
        self.fake: list[DemoHall] = []
        self.real: list[RealHall] = []
        self.traffic: list[threading.Thread] = []
        self.stopping = threading.Event()

    def start(self, url: str) -> None:
        threading.Thread(target=self._run, args=(url,), name="demo-halls", daemon=True).start()

    def _run(self, url: str) -> None:
        _wait_subscribed(url)           # alerts are not retained: hall-city's session must exist first
        if self.simulated:
            self._run_simulated()
        else:
            self._run_real()

    def _run_real(self) -> None:
        for h, name, code in HALLS:
            username = hall_username(DISTRICT, h)
            real = RealHall(self.directory / h, h, name, code, DISTRICT, self.port, username, self.accounts[username])
            self.real.append(real)
            real.start()
        for i, real in enumerate(self.real):
            wait_port(real.port)
            thread = threading.Thread(target=Traffic(real, self.stopping, bad_first=i == 1, seed=i).run,
                                      name=f"demo-traffic-{real.hall}", daemon=True)
            thread.start()
            self.traffic.append(thread)
        print(f"hall-city demo: 三个大厅已启动（{', '.join(str(r.folder) for r in self.real)}）", flush=True)

    def _run_simulated(self) -> None:
        self.fake.extend(DemoHall(self.endpoint, h, name, code, self.accounts[hall_username(DISTRICT, h)], self.clock)
                         for h, name, code in HALLS)
        for hall in self.fake:
            hall.online()
            hall.tick()
        self.fake[1].bad_rating(minutes_ago=50)       # contact due in 10 min: amber on the page
        while not self.stopping.wait(3.0):
            for hall in self.fake:
                hall.tick()

    def stop(self) -> None:
        self.stopping.set()
        for hall in self.fake:
            hall.stop()
        for thread in self.traffic:
            thread.join(10)
        for real in self.real:
            real.stop()


def run_demo(args: argparse.Namespace) -> int:
    """Start the broker, the halls and the page; run until Ctrl-C."""
    from .app import Options, serve, split_hostport

    if not os.access(MOSQUITTO, os.X_OK) and not shutil.which("mosquitto"):
        print("hall-city --demo: 需要 Mosquitto 作为市级消息服务器：sudo apt-get install mosquitto", file=sys.stderr)
        return 2
    directory = Path(args.demo_dir).resolve()
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    conf, accounts = write_broker(directory, port, [h for h, _, _ in HALLS])
    log_file = (directory / "city-mosquitto.log").open("ab")
    broker = subprocess.Popen([MOSQUITTO if os.access(MOSQUITTO, os.X_OK) else "mosquitto", "-c", str(conf)],
                              stdout=log_file, stderr=log_file)
    clock = SystemClock()
    halls = _Halls(directory, port, accounts, clock, args.simulated_halls)
    try:
        _wait_listening(port, broker)
        print(f"hall-city demo: 市级消息服务器 mqtt://127.0.0.1:{port}（账号与 ACL 在 {directory}）", flush=True)
        options = Options(halls.endpoint.with_login(HALL_CITY, accounts[HALL_CITY]), split_hostport(args.listen),
                          args.db or f"sqlite:///{directory / 'city-history.db'}", args.timezone, args.title)
        return asyncio.run(serve(options, clock=clock, on_ready=halls.start))
    finally:
        halls.stop()
        broker.terminate()
        broker.wait(5)
        log_file.close()


def _wait_listening(port: int, broker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if broker.poll() is not None:
            raise RuntimeError("mosquitto exited at start; see city-mosquitto.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not listen")


def _wait_subscribed(url: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as resp:
                if json.loads(resp.read()).get("broker"):
                    time.sleep(0.3)         # the SUBACK follows the CONNACK
                    return
        except OSError:
            pass
        time.sleep(0.1)
