"""The hall's uplink to the city broker (DESIGN §11): summary, alerts and presence under
`city/{district}/{hall}/`, on its own thread, so nothing in the hall ever waits on the WAN.

- `online` (retained, QoS 1): `{"online": true, …}` at each connect, the MQTT last will says
  `{"online": false, "will": true}` when the hall vanishes (kill -9, power, WAN), a clean stop says
  `{"online": false}` itself.
- `summary` (retained, QoS 1): `service.city_summary()` (domain/city.py, no personal data), published
  at connect and then at most once a second while it changes (`MIN_INTERVAL`); the ever-growing oldest
  waits alone do not count as a change, they are refreshed every `REFRESH` seconds while anyone waits.
- `alert/{type}` (QoS 1, not retained): the rows of the `city_alerts` table in id order (written in
  the transaction of the event that raised them), at most `WINDOW` in flight; a row is marked sent
  only after the broker's PUBACK. The session is persistent (clean_session false, a fixed client id)
  and paho resends what was in flight after a reconnect; a row sent but not acknowledged before a
  crash is sent again after the restart with the same alert id (the city counts it once).

A WAN cut of days only grows the table; the summary is simply current again at the next connect.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from .bus.tls import client_context
from .bus.url import parse_mqtt_url, read_password_file
from .clock import Clock
from .config import HallConfig
from .domain.model import iso
from .service import HallService
from .store import Store
from .store.city_alerts import mark_sent, purge_sent, queued, unsent
from .store.outbox import backlog

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0     # s between two summaries
REFRESH = 30.0         # s: republish an unchanged summary while anyone waits (its oldest waits grow)
CHECK = 5.0            # s: rebuild the summary without an event (outbox backlog, the open/closed flip)
WINDOW = 20            # alerts in flight
KEEPALIVE = 30
PURGE_EVERY = 3600.0


def client_id(config: HallConfig) -> str:
    return f"hall-{config.city_district}-{config.hall_id}"


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class CityUplink:
    """Started by the daemon when `city:` is set; `connected` and `alerts_queued` feed /metrics."""

    def __init__(self, config: HallConfig, service: HallService, store: Store, clock: Clock, *,
                 version: str, min_interval: float = MIN_INTERVAL, refresh: float = REFRESH) -> None:
        self.config, self.service, self.store, self.clock = config, service, store, clock
        self.version = version
        self.min_interval, self.refresh = min_interval, refresh
        self.prefix = f"city/{config.city_district}/{config.hall_id}/"
        self.connected = False
        self.alerts_queued = 0
        self.summaries = 0              # published (tests, logs)
        self._mqtt: mqtt.Client | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._dirty = True
        self._acked: collections.deque[int] = collections.deque()
        self._inflight: dict[int, int] = {}          # mid -> alert row id
        self._last_queued = 0                         # highest row id handed to paho
        self._last_key: bytes | None = None
        self._last_publish = self._last_check = self._last_purge = self._last_count = 0.0
        self._timeout = min_interval
        self._thread: threading.Thread | None = None
        self._unsubscribe: Any = None
        self._failing: set[str] = set()
        self._where = ""                              # the broker's URL without a password, for the log

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> bool:
        """Connect in the background; False (logged, the hall serves on) when the config cannot be used."""
        config = self.config
        try:
            endpoint = parse_mqtt_url(config.city_url or "", ca=config.city_ca)
            password = read_password_file(config.city_password_file or "")
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(config),
                                 protocol=mqtt.MQTTv311, clean_session=False)
            if endpoint.tls:
                client.tls_set_context(client_context(endpoint.ca))
        except ValueError as exc:
            log.error("city uplink not started: %s. 请检查配置 city.url / city.password_file / city.ca", exc)
            return False
        self._where = str(endpoint)
        client.username_pw_set(config.city_username, password)
        client.will_set(self.prefix + "online", _dumps({"online": False, "at": None, "will": True}), qos=1,
                        retain=True)
        client.reconnect_delay_set(1, 60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        self._mqtt = client
        self._unsubscribe = self.service.subscribe(self._on_events, batch=True)
        client.connect_async(endpoint.host, endpoint.port, KEEPALIVE)
        client.loop_start()
        self._thread = threading.Thread(target=self._run, name="city-uplink", daemon=True)
        self._thread.start()
        log.info("city uplink to %s as %s under %s", endpoint, client_id(config), self.prefix)
        return True

    def stop(self) -> None:
        """Say offline (when connected), then disconnect; the queue stays in the database."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        client = self._mqtt
        if client is None:
            return
        if self.connected:
            info = client.publish(self.prefix + "online", _dumps({"online": False, "at": iso(self.clock.now()),
                                                                  "version": self.version}), qos=1, retain=True)
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("city broker refused the hall (%s): 请核对 city.username 与密码文件 city.password_file", reason)
            return
        self.connected = True
        self._failing.discard("connect")
        log.info("city uplink connected (session %s)", "kept" if flags.session_present else "new")
        client.publish(self.prefix + "online", _dumps({"online": True, "at": iso(self.clock.now()),
                                                       "version": self.version}), qos=1, retain=True)
        self._dirty, self._last_key = True, None      # the summary again, current
        self._wake.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        """The broker not reachable, or its certificate refused (paho retries on its backoff): said once
        per outage, not at every retry."""
        if "connect" not in self._failing:
            self._failing.add("connect")
            log.warning("city uplink cannot reach the city broker %s (WAN down, or its certificate not "
                        "signed by city.ca); retrying, alerts wait in the database", self._where)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self.connected and not self._stop.is_set():
            log.warning("city uplink lost the city broker (%s); alerts wait in the database", reason)
        self.connected = False

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        self._acked.append(mid)      # paho holds its own lock here: the worker does the rest
        self._wake.set()

    def _on_events(self, _events: list[dict[str, Any]]) -> None:
        self._dirty = True
        self._wake.set()

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._timeout)
            self._wake.clear()
            self._timeout = self.min_interval
            if self._stop.wait(0.05):       # a burst of commits is one pass
                return
            for step in (self._take_acks, self._send_alerts, self._send_summary, self._count):
                try:
                    step()
                except Exception:
                    if step.__name__ not in self._failing:
                        self._failing.add(step.__name__)
                        log.exception("city uplink: %s failed (retried)", step.__name__.strip("_"))
                else:
                    self._failing.discard(step.__name__)

    def _take_acks(self) -> None:
        done = []
        while self._acked:
            row_id = self._inflight.pop(self._acked.popleft(), None)
            if row_id is not None:
                done.append(row_id)
        if done:
            now = self.clock.now()
            with self.store.engine.begin() as conn:
                for row_id in done:
                    mark_sent(conn, row_id, now)
            log.info("city uplink: %d alert(s) acknowledged", len(done))

    def _send_alerts(self) -> None:
        client = self._mqtt
        if not self.connected or client is None or len(self._inflight) >= WINDOW:
            return
        with self.store.engine.connect() as conn:
            rows = [r for r in unsent(conn, WINDOW + len(self._inflight)) if r[0] > self._last_queued]
        for row_id, type_, payload in rows[:WINDOW - len(self._inflight)]:
            info = client.publish(f"{self.prefix}alert/{type_}", _dumps(payload), qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):   # NO_CONN: paho keeps it
                log.warning("city uplink: alert %s not queued (%s); retried", payload.get("id"), info.rc)
                return
            self._inflight[info.mid] = row_id
            self._last_queued = row_id

    def _send_summary(self) -> None:
        client = self._mqtt
        if not self.connected or client is None:
            return
        now = time.monotonic()
        if now - self._last_publish < self.min_interval:
            if self._dirty:                 # come back when the second is over
                self._timeout = self.min_interval - (now - self._last_publish)
            return
        if not self._dirty and now - self._last_check < CHECK and now - self._last_publish < self.refresh:
            return
        self._dirty, self._last_check = False, now
        with self.store.engine.connect() as conn:
            pending, dead, _oldest = backlog(conn)
        summary = self.service.city_summary((pending, dead))
        key = _dumps({**summary, "at": None, "services": [{**s, "oldest_wait_s": None} for s in summary["services"]]})
        waiting = any(s["waiting"] for s in summary["services"])
        if key == self._last_key and not (waiting and now - self._last_publish >= self.refresh):
            return
        client.publish(self.prefix + "summary", _dumps(summary), qos=1, retain=True)
        self._last_key, self._last_publish = key, now
        self.summaries += 1

    def _count(self) -> None:
        """The queue length for /metrics, and the hourly purge of alerts sent a week ago."""
        now = time.monotonic()
        if now - self._last_count < 2.0 and not self._inflight:
            return
        self._last_count = now
        with self.store.engine.begin() as conn:
            self.alerts_queued = queued(conn)
            if now - self._last_purge >= PURGE_EVERY:
                self._last_purge = now
                purge_sent(conn, self.clock.now())
