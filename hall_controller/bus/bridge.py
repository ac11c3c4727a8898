"""The daemon side of the MQTT contract (DESIGN §5): commands in, replies, events and state out.

Every command is validated here before it reaches the service, and answered: `bad_request` for a
malformed payload (when the topic names a known client to reply to), otherwise dropped with a log
line. Nothing a client sends can stop the bridge. A client's commands run in arrival order: on
paho's network thread when nothing else is in flight, else on worker threads (a client's commands
always on the same one; commands of several clients running at once share a database commit).
A command over its role's size limit (bus.limits: a window's attach_scan up to the scan limit,
anything else 16 KiB) is refused on the network thread before it is queued or parsed.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import paho.mqtt.client as mqtt

from ..redact import redact_text, register_secret
from ..scans import COMMAND_OVERHEAD
from ..service import Actor
from .client import AuthenticationFailed, DirectWriteClient, set_nodelay
from .credentials import CredentialStore
from .limits import SMALL_COMMAND_BYTES, command_limit, leading_op
from .topics import HallTopics, is_segment

log = logging.getLogger(__name__)

MAX_ID_CHARS = 64
MAX_DEPTH = 16  # nesting of the command object; real commands need 3
_OP_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_QUEUED_COMMANDS = 1000
# Commands of different clients run on parallel workers so that they can share a database commit
# (the service's group commit); one client's commands always go to the same worker, in order.
_WORKERS = 4
_MAX_PAHO_QUEUE = 10_000  # a bound on what paho may buffer; we do not publish while disconnected
# Waiting counts change with every ticket and go to every kiosk, window and display: under a rush
# they are sent at most this often (the first change at once, the last one always).
QUEUE_STATE_INTERVAL = 0.1


class HallServiceLike(Protocol):
    """What the bridge needs of hall_controller.service.HallService."""

    def execute(self, actor: Actor, op: str, args: dict[str, Any], command_id: str | None = None) -> dict[str, Any]: ...
    def subscribe(self, callback: Callable[[Any], None], *, batch: bool = False) -> Callable[[], None]: ...
    def subscribe_cards(self, callback: Callable[[str, dict[str, Any]], None]) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...
    @property
    def clock(self) -> Any: ...  # the hall's injected clock (`now()`): the status's `started_at`


class BadRequest(Exception):
    """A malformed command; `command_id` is the id to echo, when the payload had a usable one."""

    def __init__(self, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.command_id = command_id


def parse_command(payload: bytes, max_payload: int) -> tuple[str, str, dict[str, Any]]:
    """(command id, op, args) from a raw payload, or BadRequest. Pure, so it is easy to fuzz."""
    if not payload:
        raise BadRequest("empty payload")
    if len(payload) > max_payload:
        raise BadRequest(f"payload larger than {max_payload} bytes", _leading_id(payload))
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("payload is not UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise BadRequest("payload nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN, giant integers
        raise BadRequest(f"payload is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest(f"payload must be a JSON object, not {type(obj).__name__}")
    command_id = obj.pop("id", None)
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_ID_CHARS or not command_id.isprintable():
        raise BadRequest(f"id must be a printable string of 1-{MAX_ID_CHARS} characters")
    op = obj.pop("op", None)
    if not isinstance(op, str) or _OP_RE.fullmatch(op) is None:
        raise BadRequest("op must be an operation name like call_next", command_id)
    problem = _check_values(obj, 1)
    if problem:
        raise BadRequest(problem, command_id)
    return command_id, op, obj


_LEADING_ID = re.compile(rb'\{\s*"id"\s*:\s*"([\x20-\x21\x23-\x5b\x5d-\x7e]{1,%d})"' % MAX_ID_CHARS)


def _leading_id(payload: bytes) -> str | None:
    """The id of an oversized command that starts with it (HallClient sends id first), so the refusal
    reaches the sender instead of leaving it to time out."""
    match = _LEADING_ID.match(payload, 0, 256)
    return match.group(1).decode("ascii") if match else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate keys")
    return result


def _check_values(value: Any, depth: int) -> str | None:
    """Why the args cannot be passed on (too deep, or strings a database or UTF-8 would refuse)."""
    if depth > MAX_DEPTH:
        return f"arguments nested deeper than {MAX_DEPTH}"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "string with an unpaired surrogate"
        return "string with a NUL character" if "\0" in value else None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = _check_values(item, depth + 1)
        if problem:
            return problem
    return None


def _kb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{-(-size // 1024)} KB"


def _too_large_text(op: str | None, size: int, limit: int) -> str:
    """What the person at the terminal reads: how large, the limit, and what to do."""
    if op == "attach_scan" and limit > SMALL_COMMAND_BYTES:
        return (f"扫描件过大（约{_kb(size * 3 // 4)}），上限{_kb((limit - COMMAND_OVERHEAD) * 3 // 4)}："
                "请降低高拍仪分辨率或分页拍摄后重新上传")
    if op == "attach_scan":
        return "本终端不能上传扫描件：请在窗口的业务终端上拍摄上传"
    return f"指令内容过大（{_kb(size)}），上限{_kb(limit)}：请缩短填写的备注等内容后重试"


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: the bridge serialises every event and state topic of every commit).
    Raises TypeError (orjson.JSONEncodeError) for what JSON cannot carry."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


class MqttBridge:
    """Connects as the daemon account and serves the hall's command topics."""

    def __init__(
        self,
        service: HallServiceLike,
        hall_id: str,
        host: str,
        port: int,
        username: str,
        password: str,
        credentials: CredentialStore,
        *,
        version: str,
        max_payload: int = 64 * 1024,
        keepalive: int = 30,
        reconnect_min_delay: float = 0.5,
        reconnect_max_delay: float = 10.0,
        queue_state_interval: float = QUEUE_STATE_INTERVAL,
        timezone: str | None = None,
        on_command: Callable[[str, float], None] | None = None,
        tls: bool = False,
        ca: str | None = None,
    ) -> None:
        """`tls`: connect over TLS (`mqtts://`), the broker's certificate checked against the CA file `ca`."""
        self.service = service
        # Called as on_command(op, seconds) once a command that reached the service is answered
        # (seconds from its arrival, queueing included): the daemon's command latency histogram.
        self.on_command = on_command
        self.topics = HallTopics(hall_id)
        self.host, self.port, self.keepalive = host, port, keepalive
        self.credentials = credentials
        self.max_payload = max_payload   # the largest command of any role: a window's attach_scan
        started_at = service.clock.now().isoformat(timespec="seconds")
        self._status = {"version": version, "started_at": started_at}
        if timezone:   # the hall's zone: apps started without the config show every time in it
            self._status["timezone"] = timezone
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._connected = False
        self._refused: str | None = None
        self._tls_failure: str | None = None
        self._sub_mid: int | None = None
        self._queues: list[queue.Queue[Callable[[], None] | None]] = [queue.Queue() for _ in range(_WORKERS)]
        self._workers: list[threading.Thread] = []
        self._announced = threading.Event()  # retained state and `online` published after connecting
        self._state_lock = threading.Lock()  # orders state publishing; never held while calling the service
        self._published: dict[str, bytes] = {}  # retained state topic -> last payload sent
        self._published_seq = -1
        self._queue_state_interval = queue_state_interval
        self._queues_sent_at = float("-inf")
        self._queues_timer: threading.Timer | None = None
        self._client_states: dict[str, str] = {}
        self._in_flight = 0  # commands queued or running

        self._mqtt = DirectWriteClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv311, clean_session=True
        )
        register_secret(password)   # the daemon's own account: never in the log
        self._mqtt.username_pw_set(username, password)
        self._mqtt.will_set(self.topics.status, _dumps({"state": "offline", **self._status}), qos=1, retain=True)
        self._mqtt.reconnect_delay_set(reconnect_min_delay, reconnect_max_delay)  # type: ignore[arg-type]
        self._mqtt.max_queued_messages_set(_MAX_PAHO_QUEUE)
        self._mqtt.on_socket_open = set_nodelay
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_subscribe = self._on_subscribe
        self._mqtt.on_disconnect = self._on_disconnect
        self._mqtt.on_message = self._on_message
        if tls:
            self._mqtt.use_tls(ca)
            self._mqtt.on_tls_failure = self._on_tls_failure
        self.ca = ca
        service.subscribe(self._on_events, batch=True)
        service.subscribe_cards(self._on_card)

    # ---------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def start(self, timeout: float = 10.0) -> bool:
        """Start the worker and connect; True once subscribed, False if the broker is not reachable yet
        (the bridge keeps retrying). Raises AuthenticationFailed if the broker refuses the account."""
        if self._workers:
            raise RuntimeError("bridge already started")
        self._workers = [threading.Thread(target=self._work, args=(q,), name=f"mqtt-bridge-worker-{i}", daemon=True)
                         for i, q in enumerate(self._queues)]
        for worker in self._workers:
            worker.start()
        self._mqtt.connect_async(self.host, self.port, self.keepalive)
        self._mqtt.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._connected or self._refused is not None
                                or self._tls_failure is not None, timeout)
            ready, refused = self._connected, self._refused
        if refused is not None:
            self.stop()
            raise AuthenticationFailed(f"broker {self.host}:{self.port} refused the daemon account: {refused}")
        if not ready:
            log.warning("bridge: broker %s:%d not reachable yet, retrying in the background", self.host, self.port)
            return False
        return self._announced.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish `offline` (a clean disconnect sends no last will), disconnect, finish the worker."""
        with self._lock:
            was_connected, self._connected = self._connected, False
        if was_connected:
            offline = _dumps({"state": "offline", **self._status})
            info = self._mqtt.publish(self.topics.status, offline, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("bridge: offline status not sent")
        with self._state_lock:
            if self._queues_timer is not None:
                self._queues_timer.cancel()
                self._queues_timer = None
        self._mqtt.disconnect()
        self._mqtt.loop_stop()
        for q in self._queues:
            q.put(None)
        for worker in self._workers:
            worker.join(timeout)
        self._workers = []
        log.info("bridge: stopped")

    def client_states(self) -> dict[str, str]:
        """Last `client/{id}/status` state per client id (online/offline)."""
        with self._lock:
            return dict(self._client_states)

    # ---------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("bridge: broker refused the daemon account: %s", reason)
            with self._cond:
                self._refused = str(reason)
                self._cond.notify_all()
            return
        result, mid = client.subscribe([(self.topics.all_cmds, 0), (self.topics.all_client_status, 0)])
        with self._lock:
            self._sub_mid = mid if result == mqtt.MQTT_ERR_SUCCESS else None
            self._refused = None
            self._tls_failure = None

    def _on_tls_failure(self, exc: Any) -> None:
        """The broker's certificate was refused: logged raw once (again when the error changes); paho
        retries with the bridge's capped backoff."""
        text = str(exc)
        with self._cond:
            repeated, self._tls_failure = self._tls_failure == text, text
            self._cond.notify_all()
        if repeated:
            log.debug("bridge: TLS handshake with %s:%d failed again: %s", self.host, self.port, exc)
        else:
            log.error("bridge: TLS handshake with the broker %s:%d failed: %s (check mqtt.ca in the config, now %s, "
                      "and that mqtt.url names the hall PC as the broker's certificate does: hallctl tls show)",
                      self.host, self.port, exc, self.ca or "the system CAs")

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        with self._cond:
            if mid != self._sub_mid:
                return
            self._connected = True
            self._cond.notify_all()
        if any(r.is_failure for r in reasons):
            log.error("bridge: broker refused the command subscriptions (ACL?): %s", reasons)
        self._queues[0].put(self._announce)

    def _announce(self) -> None:
        """Republish the retained state, then say `online`: a client that sees the daemon online
        finds the state already there."""
        self._republish_all()
        self._publish(self.topics.status, _dumps({"state": "online", **self._status}), retain=True)
        self._announced.set()
        log.info("bridge: serving hall %s on %s:%d", self.topics.hall_id, self.host, self.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
        if was_connected:
            log.warning("bridge: lost the broker (%s), reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic, size = message.topic, len(message.payload)
        info = self.topics.parse(topic)
        if size > SMALL_COMMAND_BYTES and info is not None and info.kind == "cmd" \
                and self._refused_as_too_large(str(info.key), bytes(message.payload[:256]), size):
            return   # before copying, queueing or parsing it
        # An oversized payload is refused anyway: keep only enough of it to tell that it is too big.
        payload = bytes(message.payload[:self.max_payload + 1])
        if info is not None and info.kind == "client_status":
            self._on_client_status(str(info.key), payload)
            return
        if sum(q.qsize() for q in self._queues) >= _MAX_QUEUED_COMMANDS:
            log.warning("bridge: %d commands waiting, dropped one on %s", _MAX_QUEUED_COMMANDS, topic)
            return
        with self._lock:
            idle = self._in_flight == 0
            self._in_flight += 1
        received = time.monotonic()
        if idle and not self._more_incoming():
            # Nothing running and nothing behind it: run it here rather than wake a worker (a thread
            # wake-up on an idle machine costs more than the queue saves). Order is kept: no
            # command of any client is in flight.
            self._run_command(topic, payload, received)
            return
        key = str(info.key) if info is not None and info.kind == "cmd" else ""
        self._queues[zlib.crc32(key.encode()) % _WORKERS].put(lambda: self._run_command(topic, payload, received))

    def _more_incoming(self) -> bool:
        """True if more bytes wait on the broker connection (more commands are coming: let the
        workers take this one, so that paho reads on and the commands share a commit)."""
        sock = self._mqtt.socket()
        if isinstance(sock, ssl.SSLSocket):   # mqtts: no peeking; decrypted bytes buffered, or records on the wire
            try:
                return sock.pending() > 0 or bool(select.select([sock], [], [], 0)[0])
            except (OSError, ValueError):
                return True
        try:
            return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))  # type: ignore[union-attr]
        except BlockingIOError:
            return False
        except (OSError, AttributeError, TypeError):
            return True

    def _run_command(self, topic: str, payload: bytes, received: float) -> None:
        try:
            op = self._handle_command(topic, payload)
            if op is not None and self.on_command is not None:
                self.on_command(op, time.monotonic() - received)
        except Exception:  # the network thread and the workers must survive anything
            log.exception("bridge: command on %s failed", topic)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _refused_as_too_large(self, client_id: str, head: bytes, size: int, op: str | None = None) -> bool:
        """Refuse (reply and log, without the payload) a command of ``size`` bytes over its role's
        limit; its op is read from ``head``, the payload's start, unless given. False for a command
        within it, or from no client of this hall (dropped later with its own log line)."""
        cred = self.credentials.get(client_id)
        if cred is None or cred.role == "daemon":
            return False
        op = op if op is not None else leading_op(head)
        limit = command_limit(cred.role, op, cred.window, self.max_payload)
        if size <= limit:
            return False
        log.warning("bridge: refused %s from %s (role %s): %d bytes, over its limit of %d (payload not read)",
                    op or "a command", client_id, cred.role, size, limit)
        self._reply(self.topics.reply(client_id), {
            "id": _leading_id(head), "ok": False,
            "error": {"code": "bad_request", "reason": "too_large", "message": _too_large_text(op, size, limit)}})
        return True

    def _on_client_status(self, client_id: str, payload: bytes) -> None:
        try:
            state = json.loads(payload)["state"] if payload else "offline"
        except (ValueError, TypeError, KeyError):
            log.warning("bridge: malformed status of client %s: %r", client_id, payload[:100])
            return
        with self._lock:
            previous = self._client_states.get(client_id)
            self._client_states[client_id] = str(state)
        if previous != state:
            log.info("bridge: client %s is %s", client_id, state)

    # ---------------------------------------------------------------- worker thread

    def _work(self, tasks: queue.Queue[Callable[[], None] | None]) -> None:
        while (task := tasks.get()) is not None:
            try:
                task()
            except Exception:  # the worker must survive anything
                log.exception("bridge: task failed")

    def _handle_command(self, topic: str, payload: bytes) -> str | None:
        """Answer one command; returns its op once the service ran it (refused or not), else None."""
        info = self.topics.parse(topic)
        if info is None or info.kind != "cmd":
            log.warning("bridge: dropped command on unexpected topic %r", topic)
            return None
        client_id = str(info.key)
        cred = self.credentials.get(client_id)
        if cred is None or cred.role == "daemon":
            log.warning("bridge: dropped command on %s: %s is not a client of this hall", topic, client_id)
            return None
        reply_topic = self.topics.reply(client_id)
        try:
            command_id, op, args = parse_command(payload, self.max_payload)
        except BadRequest as exc:
            # the payload's start shows what was wrong; a login's PIN in it is masked
            log.warning("bridge: bad request from %s: %s (payload %s)", client_id, exc.message,
                        redact_text(repr(payload[:200])))
            self._reply(reply_topic, {"id": exc.command_id, "ok": False,
                                      "error": {"code": "bad_request", "message": exc.message}})
            return None
        if len(payload) > SMALL_COMMAND_BYTES and self._refused_as_too_large(client_id, payload[:256], len(payload), op):
            return None   # the op read from the start was not the one parsed: impossible with unique keys
        actor = Actor(client_id=client_id, role=cred.role, window=cred.window)
        try:
            result = self.service.execute(actor, op, args, command_id=command_id)
        except Exception as exc:
            code, message = getattr(exc, "code", None), getattr(exc, "message", None)
            if not isinstance(code, str):
                log.exception("bridge: %s from %s failed", op, client_id)
                code, message = "internal", "internal error"
            self._reply(reply_topic, {"id": command_id, "ok": False, "error": {"code": code, "message": str(message)}})
            return op
        self._reply(reply_topic, {"id": command_id, "ok": True, "result": result})
        return op

    def _reply(self, topic: str, reply: dict[str, Any]) -> None:
        try:
            payload = _dumps(reply)
        except (TypeError, ValueError, UnicodeEncodeError):
            log.exception("bridge: reply to %s is not JSON-serialisable", reply.get("id"))
            payload = _dumps({"id": reply.get("id"), "ok": False,
                              "error": {"code": "internal", "message": "reply not serialisable"}})
        self._publish(topic, payload, retain=False)

    def _republish_all(self) -> None:
        """After (re)connecting: the broker may have lost retained state (the embedded one always does)."""
        with self._state_lock:
            self._published.clear()
            self._published_seq = -1
        self._sync_state()

    # ---------------------------------------------------------------- service callbacks (any thread)

    def _on_events(self, events: list[dict[str, Any]]) -> None:
        """One committed batch: its events in order, then the retained state topics that changed."""
        if not self.connected:
            return  # stale by the time it could be delivered; the state is republished on reconnect
        for event in events:
            event_type = event.get("type")
            if not is_segment(event_type):
                log.error("bridge: event without a valid type dropped: %r", event)
                continue
            try:
                payload = _dumps(event)
            except (TypeError, ValueError, UnicodeEncodeError):
                log.exception("bridge: event %s is not JSON-serialisable", event_type)
                continue
            self._publish(self.topics.event(event_type), payload, retain=False)
        self._sync_state()

    def _on_card(self, kiosk_id: str, card: dict[str, Any]) -> None:
        if not self.connected:
            return
        if not is_segment(kiosk_id):
            log.error("bridge: card for invalid kiosk id %r dropped", kiosk_id)
            return
        self._publish(self.topics.kiosk_card(kiosk_id), _dumps(card), retain=False)

    def _sync_state(self) -> None:
        """Publish the retained state topics whose JSON changed since we last sent them."""
        snapshot = self.service.snapshot()
        seq = snapshot.get("seq")
        wanted: dict[str, bytes] = {self.topics.state_queues: _dumps(snapshot.get("queues", {})),
                                    self.topics.state_calls: _dumps(snapshot.get("calls", []))}
        for number, window in (snapshot.get("windows") or {}).items():
            wanted[self.topics.state_window(int(number))] = _dumps(window)
        for device_id, device in (snapshot.get("devices") or {}).items():
            if is_segment(device_id):
                wanted[self.topics.device(device_id)] = _dumps(device)
        with self._state_lock:
            if isinstance(seq, int):
                if seq < self._published_seq:
                    return  # another thread already published a newer snapshot
                self._published_seq = seq
            for topic in [t for t in self._published if t not in wanted]:  # a window or device went away
                self._publish(topic, b"", retain=True)
                del self._published[topic]
            for topic, payload in wanted.items():
                if self._published.get(topic) == payload:
                    continue
                if topic == self.topics.state_queues and not self._queue_state_due():
                    continue
                self._publish(topic, payload, retain=True)
                self._published[topic] = payload

    def _queue_state_due(self) -> bool:
        """Throttle for state/queues (state lock held): True to send now, else a flush is scheduled."""
        now = time.monotonic()
        due = self._queues_sent_at + self._queue_state_interval
        if now >= due:
            self._queues_sent_at = now
            return True
        if self._queues_timer is None:
            self._queues_timer = threading.Timer(due - now, self._flush_queue_state)
            self._queues_timer.daemon = True
            self._queues_timer.start()
        return False

    def _flush_queue_state(self) -> None:
        with self._state_lock:
            self._queues_timer = None
        if self.connected:
            self._sync_state()

    def _publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """QoS 0 while connected; while not, drop: replies and events would be stale when they arrive,
        and the retained state is republished on reconnect. (Subscribers take QoS 0 anyway, so QoS 1
        on this leg would only add a PUBACK per message to the broker's work.)"""
        if not self.connected:
            log.debug("bridge: not connected, dropped message on %s", topic)
            return
        info = self._mqtt.publish(topic, payload, qos=0, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("bridge: publish on %s failed: %s", topic, mqtt.error_string(info.rc))
