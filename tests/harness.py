"""The one test harness: a hall for every level a test works at, and the one way to wait.

- `wait_until(predicate, timeout, what)`: poll until true; the only polling wait in the tests (Qt
  tests wait with pytest-qt's `qtbot.waitUntil`, which keeps the event loop turning; `wait_online`).
- `init_hall` makes a hall folder (the sample config, secret, credentials, schema) as `hallctl init`
  does; `no_devices`, `two_windows`, `card_reader_only` trim its devices.
- `EngineHall`: the pure queue engine, readable scenarios in ticket numbers.
- `Hall`: a hall folder served in this process: the HallService alone on its database
  (`daemon=False`), or the whole daemon (HallDaemon) on its embedded broker or a private Mosquitto,
  its devices on emulators (`devices="tcp"` or `"pty"`), on a manual clock when given one; every event
  recorded, MQTT clients and Qt buses of its clients, `restart()` on the same database.
- `DaemonProcess`: `hallctl run` as a child process (crash tests, the Qt apps' daemon; the fixtures
  `hall_template`, `hall_daemon` and `ui_bus` in conftest.py build on it).
- The MQTT level under the daemon: a private `Mosquitto`, `RawClient`s, the `FakeService` the bridge
  is tested against, `EventLog` / `StateLog` of a client.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from bisect import insort
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
import yaml

from device_profiles import load_profile
from hall_controller.bus.client import CommandError, HallClient
from hall_controller.bus.credentials import DAEMON_CLIENT_ID, CredentialStore
from hall_controller.bus.mosquitto import write_mosquitto_config
from hall_controller.bus.topics import ALL_EVENTS
from hall_controller.cli import main as hallctl
from hall_controller.clock import Clock, ManualClock, SystemClock
from hall_controller.config import HallConfig, load_config, sample_config_text
from hall_controller.daemon import DaemonOptions, HallDaemon
from hall_controller.domain import Actor, CardData, DomainError, QueueEngine
from hall_controller.identity import check_digit
from hall_controller.service import HallService
from hall_controller.setup_hall import load_or_create_secret
from hall_controller.store import Store
from hw_emulators.hall import EmulatedHall

if TYPE_CHECKING:
    from kiosk_ui.qtbus import QtHallBus

T = TypeVar("T")

# ============================================================================================ waiting


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition", *,
               interval: float = 0.01) -> T:
    """Poll `predicate` every `interval` s until it returns something truthy (returned) or fail after
    `timeout` s, naming `what` was waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


ONLINE_TIMEOUT_MS = 15_000


def wait_online(qtbot: Any, bus: QtHallBus, online: bool = True, timeout: int = ONLINE_TIMEOUT_MS) -> None:
    """A Qt bus online (or offline): waited for with the Qt event loop turning."""
    qtbot.waitUntil(lambda: bus.online is online, timeout=timeout)


def kiosk_window(qtbot: Any, client: HallClient) -> Any:
    """The kiosk window on a connected HallClient, shown at 1920×1080, once its six service buttons are live."""
    from kiosk_ui.kiosk import KioskModel, KioskWindow
    from kiosk_ui.qtbus import QtHallBus

    bus = QtHallBus(client, poll_ms=50)
    bus.start()
    window = KioskWindow(KioskModel(bus), "示范区公共法律服务中心")
    qtbot.addWidget(window)
    window.resize(1920, 1080)
    window.show()
    qtbot.waitUntil(lambda: len(window._buttons) == 6 and window._buttons["consult"].isEnabled(), timeout=10_000)
    return window


# ============================================================================================ hall folders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_hall(directory: Path, mutate: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A fresh hall folder (sample config, secret, credentials, schema); returns the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "hall.yaml"
    data = yaml.safe_load(sample_config_text())
    if mutate:
        mutate(data)
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert hallctl(["--log-level", "WARNING", "init", "--config", str(config)]) == 0
    return config


def passwords(config: Path) -> dict[str, str]:
    """The client passwords `hallctl init` wrote beside the config."""
    return yaml.safe_load((config.parent / "client-passwords.yaml").read_text(encoding="utf-8"))


def no_devices(data: dict[str, Any]) -> None:
    """Keep the daemon away from emulated devices: the queue is driven over MQTT only."""
    data["devices"] = []
    for window in data["windows"]:
        window["devices"] = []


WINDOWS = (3, 6)  # the windows whose LED screens and keypads two_windows keeps on the bus
BUS_DEVICES = ("bus-1", *(f"{kind}-{n}" for kind in ("led", "keypad") for n in WINDOWS))
REPEAT_GUARD_S = load_profile("dory-keypad").quirks["repeat_guard_ms"] / 1000 + 0.05


def on_database(url: str) -> Callable[[dict[str, Any]], None]:
    """A `mutate` for a hall without devices on the database at `url` (e.g. the pg_url fixture's)."""
    def mutate(data: dict[str, Any]) -> None:
        no_devices(data)
        data["database"] = url

    return mutate


def two_windows(data: dict[str, Any]) -> None:
    """Keep the LED screens and keypads of windows 3 and 6 only: restores stay short on the wire."""
    keep = {"bus-1", *BUS_DEVICES}
    data["devices"] = [d for d in data["devices"] if d["kind"] not in ("led", "keypad") or d["id"] in keep]
    for window in data["windows"]:
        window["devices"] = [d for d in window["devices"] if d in keep]


def card_reader_only(data: dict[str, Any]) -> None:
    """The hall with kiosk-1's card reader as its only device: nothing else to wait for."""
    data["devices"] = [d for d in data["devices"] if d["id"] == "card-reader-1"]
    for window in data["windows"]:
        window["devices"] = []


# ============================================================================================ ID cards


def id_number(birth: str = "19800101", serial: str = "123", region: str = "310101") -> str:
    first17 = region + birth + serial
    return first17 + check_digit(first17)


def card(name: str = "张三", birth: str = "19800101", serial: str = "123") -> CardData:
    return CardData(name=name, id_number=id_number(birth, serial))


NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")   # the card tests' manual clock starts here
# 78 on NOW: born 1948-03-15; check digit worked in tests/test_identity_table.py
ELDER = {"name": "李秀英", "sex": "女", "birth": "19480315", "id_number": "310101194803150022",
         "valid_from": "20100101", "valid_to": "长期"}
# a valid number on a card whose validity ended the day before NOW
EXPIRED = {"name": "王五", "id_number": "440304199001010011", "valid_from": "20061122", "valid_to": "20261122"}
# ELDER's number with the last digit changed: 1 instead of 2
WRONG_CHECK = {**ELDER, "name": "赵六", "id_number": "310101194803150021"}


# ============================================================================================ actors

KIOSK = Actor("kiosk-1", "kiosk")
ADMIN = Actor("admin", "admin")
SUPERVISOR = Actor("supervisor", "window")      # a window client without a window: the 值班长's terminal
WEB = Actor("web-1", "web")                     # hall-web: the visitors' phone pages (token ops only)


def window(n: int) -> Actor:
    return Actor(f"window-{n}", "window", n)


def tablet(n: int) -> Actor:
    return Actor(f"tablet-{n}", "tablet", n)


def refused(hall: Hall, actor: Actor, op: str, **args: Any) -> DomainError:
    """The DomainError of an op the service must refuse."""
    with pytest.raises(DomainError) as err:
        hall.run(actor, op, **args)
    return err.value


def error_code(call: Callable[[], Any]) -> str:
    """The `error.code` of a request over MQTT that must fail with `ok: false`."""
    with pytest.raises(CommandError) as info:
        call()
    return info.value.code


# ============================================================================================ the engine


class EngineHall:
    """Drive the engine like the daemon does, returning ticket numbers for readable scenarios."""

    def __init__(self, config: HallConfig, clock: Clock) -> None:
        self.engine = QueueEngine(config, clock, secret=b"test-secret")
        self.clock = clock

    def issue(self, service: str, **kwargs: Any) -> str:
        return self.engine.issue_ticket(service, **kwargs).result["ticket"]["number"]

    def login(self, window: int, staff: str) -> None:
        self.engine.login(window, staff, "1234")

    def next(self, window: int) -> str | None:
        ticket = self.engine.call_next(window, finish_current=True).result["ticket"]
        return ticket["number"] if ticket else None

    def drain(self, window: int) -> list[str]:
        order = []
        while (number := self.next(window)) is not None:
            order.append(number)
        return order

    def ticket(self, number: str) -> Any:
        return next(t for t in self.engine.state.tickets.values() if t.number == number)


# ============================================================================================ a hall in this process

FAST_RECONNECT = {"reconnect_min_delay": 0.05, "reconnect_max_delay": 0.3}
PIN = "1234"


class Hall:
    """A hall folder (`init_hall`, then `mutate`) and its service, in this process.

    - `daemon=True`: the whole daemon (HallDaemon) with its embedded broker, or a private Mosquitto
      (`broker="mosquitto"`) configured from the generated password file and ACL; devices on
      emulators over `devices` ("tcp", "pty"), given to the daemon by URL (`device_urls`) and/or
      through the emulator's control API (`control`); `watch_cards="kiosk-1"` records what that
      kiosk's card topic says (`cards`) through its client (`kiosk`); the management system at
      `upstream_url` (with `upstream_token`) when given.
    - `daemon=False`: the HallService alone on the hall's SQLite database (sync NORMAL: speed; the
      crash tests pin durability), with no broker: the config's MQTT address is a free port, so
      hallctl run by a test takes its offline path.

    Time comes from `clock` (the wall clock when None). Every event the service publishes is in
    `events`, in seq order. `restart()` stops the service (what it held in memory is gone) and
    starts a new one on the same database, devices and clock; `close()` stops everything.
    """

    def __init__(self, tmp_path: Path, *, mutate: Callable[[dict[str, Any]], None] | None = None,
                 clock: Clock | None = None, daemon: bool = True, devices: str | None = None,
                 device_urls: bool = True, control: bool = False, broker: str = "embedded",
                 watch_cards: str | None = None, upstream_url: str | None = None,
                 upstream_token: str | None = None) -> None:
        offline_port = None if daemon else free_port()

        def prepare(data: dict[str, Any]) -> None:
            if mutate:
                mutate(data)
            if offline_port is not None:     # nothing listens there: hallctl takes its offline path
                data["mqtt"]["listen"] = f"127.0.0.1:{offline_port}"

        self.tmp_path, self.broker = tmp_path, broker
        self.config_path = init_hall(tmp_path, prepare)
        self.config: HallConfig = load_config(self.config_path)
        self.clock: Clock = clock or SystemClock()
        self.passwords = passwords(self.config_path)
        self.roles = {c.id: (c.role, c.window) for c in self.config.clients}
        self.events: list[dict[str, Any]] = []   # in seq order
        self.cards: list[dict[str, Any]] = []    # what the watched kiosk's card topic said
        self.clients: list[HallClient] = []
        self._buses: list[QtHallBus] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._last_press: dict[int, tuple[tuple[str, str], float]] = {}
        self.emu: EmulatedHall | None = None
        self.control: str | None = None
        self.mosquitto: Mosquitto | None = None
        self.daemon: HallDaemon | None = None
        self.store: Store | None = None
        self._daemon_stopped = False
        try:
            self._start_devices(devices, control)
            if daemon:
                self._options = self._daemon_options(device_urls, upstream_url, upstream_token)
                self._start_daemon()
            else:
                self._start_service()
            if watch_cards:
                self.kiosk = self.client(watch_cards)
                self.kiosk.subscribe_cards(self.cards.append)
        except BaseException:
            self.close()
            raise

    # -- starting and stopping ----------------------------------------------------------------------
    def _start_devices(self, link: str | None, control: bool) -> None:
        if link is None:
            return
        self.emu = EmulatedHall(self.config.devices, link=link)
        self.emu.start()
        if control:
            host, port = self.emu.serve_control()
            self.control = f"http://{host}:{port}"

    def _daemon_options(self, device_urls: bool, upstream_url: str | None,
                        upstream_token: str | None) -> DaemonOptions:
        urls = {k: v for k, v in self.emu.device_urls().items() if v} if self.emu and device_urls else {}
        control = self.control.removeprefix("http://") if self.control else None
        if self.broker == "embedded":
            return DaemonOptions(mqtt_listen="127.0.0.1:0", device_urls=urls, emulator_control=control,
                                 upstream_url=upstream_url, upstream_token=upstream_token)
        if self.broker != "mosquitto":
            raise ValueError(self.broker)
        # The daemon's password must be in the store before the Mosquitto password file is written.
        daemon_password = CredentialStore(self.config.credentials_path).add_or_reset(DAEMON_CLIENT_ID, "daemon")
        port = free_port()
        files = write_mosquitto_config(self.tmp_path / "mosquitto", self.config.hall_id,
                                       CredentialStore(self.config.credentials_path), port=port,
                                       bind_address="127.0.0.1", scan_max_bytes=self.config.scan_max_bytes)
        self.mosquitto = Mosquitto(self.tmp_path, files.conf_file.read_text())  # adds `user root` as root
        self.mosquitto.start(port)
        return DaemonOptions(mqtt_url=f"mqtt://{DAEMON_CLIENT_ID}:{daemon_password}@127.0.0.1:{port}",
                             device_urls=urls, emulator_control=control, upstream_url=upstream_url,
                             upstream_token=upstream_token)

    def _start_daemon(self) -> None:
        self.daemon = HallDaemon(self.config, self._options, clock=self.clock, config_path=str(self.config_path))
        self._daemon_stopped = False
        self.daemon.start()
        assert self.daemon.bridge is not None and self.daemon.bridge.connected, "bridge not connected"
        assert self.daemon.service is not None and self.daemon.mqtt_address is not None
        self.service: HallService = self.daemon.service
        self.store = self.service.store
        self.host, self.port = self.daemon.mqtt_address
        self._listen()

    def _start_service(self) -> None:
        self.store = Store(self.config.database, sqlite_sync="NORMAL")
        self.service = HallService(self.config, self.store, self.clock,
                                   secret=load_or_create_secret(self.config.secret_path))
        self._listen()

    def _listen(self) -> None:
        self.service.subscribe(self._record)
        # The device links start inside daemon.start(): what they logged before we subscribed is in
        # the event log (a race with the subscription is settled by the event id).
        for event in self.service.store.iter_events():
            self._record(event)

    def _record(self, event: dict[str, Any]) -> None:
        with self._lock:
            if event["event_id"] in self._seen:
                return
            self._seen.add(event["event_id"])
            insort(self.events, event, key=lambda e: e["seq"])

    def restart(self) -> None:
        """A new service on the same database, devices and clock (what the old one held in memory is gone)."""
        if self.daemon is not None:
            self.stop_daemon()
            self._start_daemon()
        else:
            assert self.store is not None
            self.store.close()
            self._start_service()

    def stop_daemon(self) -> None:
        if self.daemon is not None and not self._daemon_stopped:
            self._daemon_stopped = True
            self.daemon.stop()

    def close(self) -> None:
        for bus in self._buses:
            bus.close()
        for client in self.clients:
            client.close()
        if self.daemon is not None:
            self.stop_daemon()
        elif self.store is not None:
            self.store.close()
        if self.emu is not None:
            self.emu.stop()
        if self.mosquitto is not None:
            self.mosquitto.stop()

    # -- the service, directly --------------------------------------------------------------------
    def run(self, actor: Actor, op: str, **args: Any) -> Any:
        return self.service.execute(actor, op, args)

    def issue(self, service: str = "consult") -> str:
        """A ticket taken at kiosk-1; its number."""
        return self.run(KIOSK, "issue_ticket", service=service)["ticket"]["number"]

    def serve(self, n: int = 3, service: str = "consult") -> dict[str, Any]:
        """Issue a ticket and serve it to the end at window `n` (4 minutes on the clock, which must
        be a ManualClock); returns the finished ticket."""
        assert isinstance(self.clock, ManualClock)
        if self.service.snapshot()["windows"][str(n)]["staff"] is None:
            self.run(window(n), "login", staff_id=f"S00{n}", pin=PIN)
        issued = self.run(KIOSK, "issue_ticket", service=service)["ticket"]
        assert self.run(window(n), "call_next")["ticket"]["id"] == issued["id"]
        self.run(window(n), "start")
        self.clock.advance(minutes=4)
        return self.run(window(n), "finish")["ticket"]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["type"] == kind]

    def record(self, ticket_id: str) -> dict[str, Any] | None:
        """The service record of a closed visit, as it waits in the outbox."""
        import sqlalchemy as sa

        assert self.store is not None
        with self.store.engine.connect() as conn:
            payload = conn.execute(sa.text("SELECT payload FROM outbox WHERE record_key = :k"),
                                   {"k": ticket_id}).scalar()
        return json.loads(payload) if payload else None

    # -- clients over MQTT ------------------------------------------------------------------------
    def client(self, client_id: str, role: str | None = None, window: int | None = None, *,
               connect: bool = True, events: Any = None) -> HallClient:
        """A HallClient of the hall's client `client_id` (role and window from the config unless
        given; a display gets every event), closed by `close()`."""
        if role is None:
            role, window = self.roles[client_id]
        client = HallClient(client_id, self.passwords[client_id], "127.0.0.1", self.port, self.config.hall_id,
                            role=role, window=window, events=events or (ALL_EVENTS if role == "display" else None),
                            **FAST_RECONNECT)
        self.clients.append(client)
        if connect:
            client.connect(timeout=10)
        return client

    def login(self, client: HallClient, staff_id: str) -> dict[str, Any]:
        return client.request("login", staff_id=staff_id, pin=PIN)

    def bus(self, qtbot: Any, client_id: str, role: str | None = None, **kwargs: Any) -> QtHallBus:
        """A started QtHallBus of `client_id`, waited online; closed by `close()`."""
        from kiosk_ui.qtbus import QtHallBus

        if role is None:
            role, window = self.roles[client_id]
            kwargs.setdefault("window", window)
        client = HallClient(client_id, self.passwords[client_id], "127.0.0.1", self.port, self.config.hall_id,
                            role=role, reconnect_min_delay=0.1, reconnect_max_delay=0.5, **kwargs)
        bus = QtHallBus(client, poll_ms=50)
        self._buses.append(bus)
        bus.start()
        wait_online(qtbot, bus)
        return bus

    # -- devices ----------------------------------------------------------------------------------
    def led(self, window: int) -> str:
        assert self.emu is not None
        return self.emu.led(window).text

    def led_history(self, window: int) -> list[str]:
        assert self.emu is not None
        return [entry["text"] for entry in self.emu.led(window).view()["history"]]

    def keypad_display(self, window: int) -> str:
        assert self.emu is not None
        return self.emu.keypad(window).display

    def device_events(self, kind: str, device: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["type"] == kind and device in (None, e["device"])]

    def online(self, device: str) -> bool:
        return bool(self.service.snapshot()["devices"].get(device, {}).get("online"))

    def devices_online(self, devices: tuple[str, ...] = BUS_DEVICES) -> bool:
        return all(self.online(d) for d in devices)

    def wait_online(self, timeout: float = 5.0, devices: tuple[str, ...] = BUS_DEVICES) -> None:
        wait_until(lambda: self.devices_online(devices), timeout, f"{', '.join(devices)} online")

    def wait_led(self, window: int, text: str, timeout: float = 3.0) -> None:
        wait_until(lambda: self.led(window) == text, timeout, f"LED {window} to show {text!r}")

    def wait_keypad(self, window: int, text: str, timeout: float = 3.0) -> None:
        wait_until(lambda: self.keypad_display(window) == text, timeout, f"keypad {window} to show {text!r}")

    def press(self, window: int, key: str, digits: str = "") -> None:
        """Press a key; the same key again is held back until the driver no longer takes it for a
        retransmission (the keypad profile's repeat guard)."""
        assert self.emu is not None
        last = self._last_press.get(window)
        if last is not None and last[0] == (key, digits):
            time.sleep(max(0.0, last[1] + REPEAT_GUARD_S - time.monotonic()))
        self._last_press[window] = ((key, digits), time.monotonic())
        result = self.emu.keypad(window).press(key, digits)
        assert result.acked, f"keypad {window}: {digits}{key} not acknowledged"

    # -- the card reader, through the emulator's control API ----------------------------------------
    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        assert self.control is not None, "Hall(control=True) serves the emulator's control API"
        request = urllib.request.Request(self.control + path, data=json.dumps(body or {}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    def put_card(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Put a card on kiosk-1's reader and wait for what the watched kiosk is told; then take it away."""
        seen = len(self.cards)
        status, _ = self.post("/card-reader/card-reader-1/insert", fields)
        assert status == 200
        wait_until(lambda: self.reads(seen), 5, "the card event at kiosk-1")
        assert self.post("/card-reader/card-reader-1/remove")[0] == 200
        card = self.reads(seen)[0]
        text = json.dumps(card, ensure_ascii=False)
        assert fields["id_number"] not in text and fields["id_number"][6:14] not in text
        assert fields["name"] not in text
        return card

    def reads(self, since: int = 0) -> list[dict[str, Any]]:
        """The card reads the kiosk was told of (its card topic also says removed / dropped)."""
        return [c for c in self.cards[since:] if c.get("event", "read") == "read"]


def device_hall(tmp_path: Path, link: str = "tcp", *, urls: bool = True,
                mutate: Callable[[dict[str, Any]], None] | None = None, clock: Clock | None = None) -> Hall:
    """The daemon with the sample hall's devices on emulators (LEDs and keypads of windows 3 and 6)."""
    def prepare(data: dict[str, Any]) -> None:
        two_windows(data)
        if mutate:
            mutate(data)

    return Hall(tmp_path, mutate=prepare, devices=link, device_urls=urls, clock=clock)


MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))   # the service halls' clock starts here


def service_hall(tmp_path: Path, start: datetime = MONDAY,
                 mutate: Callable[[dict[str, Any]], None] | None = None) -> Hall:
    """The HallService alone on the hall's database, on a manual clock from `start` (no broker)."""
    return Hall(tmp_path, daemon=False, clock=ManualClock(start), mutate=mutate)


def card_hall(tmp_path: Path, link: str = "tcp") -> Hall:
    """The daemon on a manual clock at NOW with kiosk-1's card reader, found through the emulator's
    control API; kiosk-1's card topic recorded."""
    return Hall(tmp_path, mutate=card_reader_only, clock=ManualClock(NOW), devices=link, device_urls=False,
                control=True, watch_cards="kiosk-1")


# ============================================================================================ hallctl run as a child


class ReadyProcess:
    """A product command run as a child that logs `…: ready` on stderr once it serves (`hallctl run`,
    `hall-web`): its stderr lines go to `log`; `kill()` / `terminate()` end it."""

    name = "child"

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []

    def _start(self, cmd: list[str], timeout: float) -> None:
        """Start `cmd` and return once it logged `: ready`; RuntimeError when it exits first, killed and
        TimeoutError when not ready within `timeout` (both with the log's last lines)."""
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ready = threading.Event()

        def pump(stream: Any) -> None:
            for line in stream:
                self.log.append(line.rstrip())
                if line.rstrip().endswith(": ready"):
                    ready.set()

        threading.Thread(target=pump, args=(self.proc.stderr,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n" + "\n".join(self.log[-30:]))
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.name} not ready:\n" + "\n".join(self.log[-30:]))

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


class DaemonProcess(ReadyProcess):
    """`hallctl run` in a child process; `start()` returns once it logged `ready`."""

    name = "daemon"

    def __init__(self, config: Path, port: int, *extra: str):
        super().__init__()
        self.config, self.port, self.extra = config, port, extra

    def start(self, timeout: float = 30.0) -> None:
        # the embedded broker on `port`, unless `extra` names another broker (--mqtt-url mqtts://…)
        listen = () if "--mqtt-url" in self.extra else ("--mqtt-listen", f"127.0.0.1:{self.port}")
        self._start([sys.executable, "-m", "hall_controller.cli", "run", "--config", str(self.config), *listen,
                     *self.extra], timeout)

    def client(self, client_id: str, role: str | None = None, window: int | None = None) -> HallClient:
        c = HallClient(client_id, passwords(self.config)[client_id], "127.0.0.1", self.port, "demo",
                       role=role, window=window, events=ALL_EVENTS if role == "display" else None)
        c.connect(timeout=10)
        return c


def make_bus(daemon: DaemonProcess, client_id: str, role: str, *, window: int | None = None,
             events: Any = None) -> QtHallBus:
    """A QtHallBus for a client of the daemon's hall (not started)."""
    from kiosk_ui.qtbus import QtHallBus

    client = HallClient(client_id, passwords(daemon.config)[client_id], "127.0.0.1", daemon.port, "demo",
                        role=role, window=window, events=events, reconnect_min_delay=0.1,
                        reconnect_max_delay=0.5)
    return QtHallBus(client, poll_ms=50)


def window_client(daemon: DaemonProcess, number: int, staff: str | None = None) -> HallClient:
    """A plain HallClient for window N (logged in as `staff` when given), to call numbers in tests."""
    client = daemon.client(f"window-{number}", role="window", window=number)
    if staff:
        client.request("login", staff_id=staff, pin=PIN)
    return client


class WebProcess(ReadyProcess):
    """`hall-web` as a child process of the hall's config (client web-1), its broker at `mqtt_port`,
    serving on `port` (restarted on the same one); `start()` returns once it logged `ready`."""

    name = "hall-web"

    def __init__(self, config: Path, mqtt_port: int, port: int, *extra: str) -> None:
        super().__init__()
        self.config, self.mqtt_port, self.port, self.extra = config, mqtt_port, port, extra
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 30.0) -> None:
        self._start([sys.executable, "-m", "hall_web.cli", "--config", str(self.config), "--client", "web-1",
                     "--mqtt-url", f"mqtt://127.0.0.1:{self.mqtt_port}", "--listen", f"127.0.0.1:{self.port}",
                     *self.extra], timeout)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


class DemoProcess:
    """`hallctl demo --dir TMP/hall …` started as a child: its stdout lines in `lines`, its log in
    TMP/demo.log (on a shared pipe a log line can land inside the summary lines); `summary()` waits for
    what it prints once up, `stop()` is Ctrl-C."""

    def __init__(self, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.folder, self.log_path = tmp_path / "hall", tmp_path / "demo.log"
        self.lines: list[str] = []
        with self.log_path.open("w") as log:      # the child holds its own copy
            self.proc = subprocess.Popen([sys.executable, "-m", "hall_controller.cli", "demo", "--dir",
                                          str(self.folder), *extra], stdout=subprocess.PIPE, stderr=log,
                                         text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        stdout = self.proc.stdout
        threading.Thread(target=lambda: [self.lines.append(line.rstrip()) for line in stdout], daemon=True).start()

    def summary(self, timeout: float = 60) -> dict[str, str]:
        """Once it printed its summary (`Ctrl-C …` last): {name: value} of the summary's indented lines."""
        wait_until(lambda: any(line.startswith("Ctrl-C") for line in self.lines), timeout, "demo ready")
        return dict(line.split(None, 1) for line in self.lines
                    if line.startswith("  ") and len(line.split(None, 1)) == 2)

    def stop(self, timeout: float = 20) -> int:
        """Ctrl-C, then its exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)


# ============================================================================================ the MQTT level

MOSQUITTO = "/usr/sbin/mosquitto"
HALL = "demo"
FAST_HASH = 1000  # PBKDF2 iterations for test stores: the format is the same, connects are faster

PASSWORDS = {"hall-daemon": "daemon-pw", "kiosk-1": "kiosk-pw", "window-3": "window-pw",
             "window-4": "window4-pw", "tablet-3": "tablet-pw", "display-1": "display-pw", "admin": "admin-pw"}
ROLES: dict[str, tuple[str, int | None]] = {"hall-daemon": ("daemon", None), "kiosk-1": ("kiosk", None),
                                            "window-3": ("window", 3), "window-4": ("window", 4),
                                            "tablet-3": ("tablet", 3), "display-1": ("display", None),
                                            "admin": ("admin", None)}


def have_mosquitto() -> bool:
    return os.access(MOSQUITTO, os.X_OK)


BROKERS = ["embedded", pytest.param("mosquitto", marks=[
    pytest.mark.mosquitto, pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")])]


def make_store(path: Path) -> CredentialStore:
    """A credential store with the test clients of PASSWORDS / ROLES."""
    store = CredentialStore(path, iterations=FAST_HASH)
    for client_id, (role, window_number) in ROLES.items():
        store.add_or_reset(client_id, role, window_number, PASSWORDS[client_id])
    return store


class Mosquitto:
    """A private mosquitto on its own port; stopped by its own pid."""

    def __init__(self, workdir: Path, conf_text: str) -> None:
        self.workdir = workdir
        self.conf = workdir / "test-mosquitto.conf"
        if os.geteuid() == 0:  # as root mosquitto drops to user `mosquitto`, who cannot read our 0600 files
            conf_text += "user root\n"
        self.conf.write_text(conf_text)
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int, *more_ports: int) -> None:
        """Start it and wait until every listener (`port`, e.g. a TLS one too) takes connections."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf), "-v"], stdout=log, stderr=log)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                for each in (port, *more_ports):
                    socket.create_connection(("127.0.0.1", each), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_until(listening, 5, f"mosquitto to listen on {(port, *more_ports)}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class RawClient:
    """A bare paho client that records everything it receives (to see exactly what goes over the wire)."""

    def __init__(self, port: int, username: str, password: str, *, client_id: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.qos: list[int] = []  # the QoS each message of `messages` was delivered at
        self.lock = threading.Lock()
        self.connack: Any = None
        self.suback: list[Any] | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or username,
                                protocol=mqtt.MQTTv311)
        self.mqtt.username_pw_set(username, password)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe
        self.port = port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connack = reason
        self._connected.set()
        if reason.is_failure:
            client.disconnect()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))
            self.qos.append(message.qos)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
        self.suback = reasons
        self._subscribed.set()

    def connect(self, *, will: tuple[str, str] | None = None) -> bool:
        """True if the broker accepted us."""
        if will is not None:
            self.mqtt.will_set(will[0], will[1], qos=1, retain=True)
        self.mqtt.connect("127.0.0.1", self.port, keepalive=30)
        self.mqtt.loop_start()
        assert self._connected.wait(5), "no CONNACK"
        return not self.connack.is_failure

    def subscribe(self, *filters: str) -> list[Any]:
        self._subscribed.clear()
        self.mqtt.subscribe([(f, 1) for f in filters])
        assert self._subscribed.wait(5), "no SUBACK"
        assert self.suback is not None
        return self.suback

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1) -> None:
        self.mqtt.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def received(self, topic: str | None = None) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if topic is None or t == topic]

    def json_on(self, topic: str) -> list[Any]:
        return [json.loads(p) for p in self.received(topic)]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


STARTED = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # the FakeService's clock: the bridge's `started_at`


class FakeService:
    """Implements the HallService interface the bridge is written against, with a few test ops."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # the real service calls subscribers while holding its lock
        self.clock = ManualClock(STARTED)
        self.subscribers: list[Callable[[dict[str, Any]], None]] = []
        self.card_subscribers: list[Callable[[str, dict[str, Any]], None]] = []
        self.executed: list[tuple[Actor, str, dict[str, Any], str | None, str]] = []
        self.results: dict[str, Any] = {}
        self.seq = 0
        self.queues: dict[str, int] = {"consult": 0}
        self.windows: dict[str, dict[str, Any]] = {"3": {"status": "idle", "ticket": None},
                                                    "4": {"status": "closed", "ticket": None}}
        self.calls: list[dict[str, Any]] = []
        self.devices: dict[str, dict[str, Any]] = {"printer-1": {"online": True, "profile": "dory", "error": None}}
        self.release = threading.Event()
        self.release.set()

    def subscribe(self, callback: Callable[[Any], None], *, batch: bool = False) -> Callable[[], None]:
        subscriber = callback if not batch else (lambda event: callback([event]))
        self.subscribers.append(subscriber)
        return lambda: self.subscribers.remove(subscriber)

    def subscribe_cards(self, callback: Callable[[str, dict[str, Any]], None]) -> None:
        self.card_subscribers.append(callback)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps({"seq": self.seq, "queues": self.queues, "windows": self.windows,
                                          "calls": self.calls, "devices": self.devices}))

    def emit(self, event_type: str, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
        with self.lock:
            self.seq += 1
            event = {"event_id": event_id or f"ev-{self.seq}", "seq": self.seq, "ts": "2026-11-23T09:00:00+08:00",
                     "type": event_type, **fields}
            for callback in self.subscribers:
                callback(event)
        return event

    def card(self, kiosk_id: str, view: dict[str, Any]) -> None:
        for callback in self.card_subscribers:
            callback(kiosk_id, view)

    def execute(self, actor: Actor, op: str, args: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        with self.lock:
            self.executed.append((actor, op, args, command_id, threading.current_thread().name))
            if command_id in self.results:
                return self.results[command_id]
            result = self._run(actor, op, args)
            if command_id:
                self.results[command_id] = result
            return result

    def _run(self, actor: Actor, op: str, args: dict[str, Any]) -> Any:
        if op == "echo":
            return {"args": args, "client": actor.client_id, "role": actor.role, "window": actor.window}
        if op == "slow":
            self.release.wait(10)
            return {"slow": True}
        if op == "issue_ticket":
            if not isinstance(args.get("service"), str):
                raise DomainError("bad_request", "service must be a string")
            self.queues[args["service"]] = self.queues.get(args["service"], 0) + 1
            ticket = {"id": f"t{self.seq + 1}", "number": f"A{self.seq + 1:03d}", "service": args["service"]}
            self.emit("ticket_issued", ticket=ticket, window=None)
            return {"ticket": ticket}
        if op == "call_next":
            if actor.role != "window":
                raise DomainError("forbidden", f"{actor.role} may not call")
            self.windows[str(actor.window)] = {"status": "calling", "ticket": "A001"}
            self.calls.insert(0, {"number": "A001", "window": actor.window})
            self.emit("ticket_called", ticket={"number": "A001"}, window=actor.window)
            return {"ticket": {"number": "A001"}}
        if op == "boom":
            raise RuntimeError("the service broke")
        if op == "unserialisable":
            return {"value": object()}
        raise DomainError("bad_request", f"unknown op {op!r}")


class EventLog:
    """Everything a client receives on `event/#`, in arrival order."""

    def __init__(self, client: HallClient) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        client.subscribe_events(self._add)

    def _add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def of(self, event_type: str, ticket_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == event_type
                and (ticket_id is None or (e.get("ticket") or {}).get("id") == ticket_id)]


class StateLog:
    """Every retained-state change a client sees: (section, key, value) in arrival order."""

    def __init__(self, client: HallClient) -> None:
        self._lock = threading.Lock()
        self._changes: list[tuple[str, Any, Any]] = []
        client.add_state_listener(self._add)

    def _add(self, section: str, key: Any, value: Any) -> None:
        with self._lock:
            self._changes.append((section, key, value))

    def window_statuses(self, number: int) -> list[str]:
        """The window's status as published, consecutive repeats collapsed."""
        with self._lock:
            statuses = [v["status"] for s, k, v in self._changes if s == "window" and k == number and v]
        return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
