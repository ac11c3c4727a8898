"""Helpers for the hall bus tests: private Mosquitto processes, raw MQTT clients, a fake HallService."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from hall_controller.bus.credentials import CredentialStore
from hall_controller.clock import ManualClock
from hall_controller.domain import DomainError
from hall_controller.service import Actor

from .daemonkit import free_port, wait_until  # noqa: F401 - re-exported for the tests

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


def make_store(path: Path) -> CredentialStore:
    store = CredentialStore(path, iterations=FAST_HASH)
    for client_id, (role, window) in ROLES.items():
        store.add_or_reset(client_id, role, window, PASSWORDS[client_id])
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

    def start(self, port: int) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf), "-v"], stdout=log, stderr=log)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen in time")

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
