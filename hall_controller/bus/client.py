"""HallClient: what kiosks, window terminals, tablets, displays and tools use to talk to the daemon.

Request/reply over `cmd/{id}` and `reply/{id}`, events with duplicate dropping, and a cache of the
retained state topics. paho-mqtt runs the network on its own thread and reconnects with capped
backoff; every blocking call has a timeout and fails fast while the bus is down.

Callbacks (events, state, cards) run on paho's network thread: keep them short, hand work to your
own thread (e.g. a Qt signal), and never call `request()` from them.
"""

from __future__ import annotations

import copy
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from ..redact import register_secret
from .tls import client_context
from .topics import HallTopics, subscriptions

log = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], None]
StateListener = Callable[[str, "str | int | None", Any], None]

_OFFLINE = json.dumps({"state": "offline"})
_ONLINE = json.dumps({"state": "online"})
_EVENT_HISTORY = 256  # recent events wait_for_event() can still match


def set_nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's `on_socket_open`: commands, replies and events are tiny, and with Nagle's algorithm on
    the kernel holds each one back up to ~40 ms waiting for an ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        log.debug("TCP_NODELAY not available on %r", sock)


class DirectWriteClient(mqtt.Client):
    """paho's threaded client, except that `publish()` sends from the publishing thread.

    With `loop_start()` paho hands every outgoing packet to its network thread, which under the GIL
    runs only once the publisher blocks: a reply or event waited for all the work its sender did
    after publishing it (measured: 0.5-1 ms per command in the daemon). Here the publisher writes
    the packet itself; one lock keeps the writers (the publisher and paho's loop) from interleaving
    bytes on the socket, and the FIFO packet queue keeps the order. paho also wakes its network
    thread for every packet (a byte on its socket pair), which then competes for the GIL to find
    nothing to write: it is woken only when part of a packet is left for it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = threading.RLock()  # paho may call back (on_publish) while writing
        # Called (network thread) with the error of a failed TLS handshake: paho only logs "connection
        # failed, retrying" and waits its backoff, so nobody would learn that the certificate was refused.
        self.on_tls_failure: Callable[[ssl.SSLError], None] | None = None
        self._direct = True

    def use_tls(self, ca: str | None) -> None:
        """`mqtts://`: TLS 1.2+, the broker's certificate checked against `ca` (None: the system's
        CAs) and its name against the host connected to (bus.tls.client_context).

        Over TLS packets go out from paho's thread as paho does it: an OpenSSL connection must not be
        written by one thread while another reads it (the direct write would do just that)."""
        self.tls_set_context(client_context(ca))
        self._direct = False

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except ssl.SSLError as exc:   # unknown CA, a name the certificate does not carry, not TLS at all
            callback = self.on_tls_failure
            if callback is not None:
                callback(exc)
            raise

    def loop_write(self) -> mqtt.MQTTErrorCode:
        with self._write_lock:
            return super().loop_write()

    def publish(self, *args: Any, **kwargs: Any) -> mqtt.MQTTMessageInfo:  # type: ignore[override]
        if not self._direct:
            return super().publish(*args, **kwargs)
        with self._write_lock:
            wake, self._sockpairW = self._sockpairW, None  # paho skips its wake-up without it
            try:
                info = super().publish(*args, **kwargs)
            finally:
                self._sockpairW = wake
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                super().loop_write()
            if wake is not None and self.want_write():  # the socket is full: the rest is paho's
                try:
                    wake.send(b"0")
                except OSError:  # BlockingIOError: a wake-up is already pending
                    pass
        return info


class BusError(Exception):
    """Base of the errors raised by HallClient."""


class BusUnavailable(BusError):
    """Not connected to the broker (raised at once, never after a wait)."""


class AuthenticationFailed(BusUnavailable):
    """The broker refused the client id or password; the client stops retrying."""


class TlsFailed(BusUnavailable):
    """The broker's certificate was refused (not signed by the CA given, or issued for another name);
    the client goes on trying with its backoff, in case the broker's certificate is put right."""


class RequestTimeout(BusError):
    """No reply (or no matching event) within the timeout."""


class CommandError(BusError):
    """The daemon answered `ok: false`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class HallState:
    """A copy of the retained state: `hall` is `status`, `windows` is keyed by window number."""

    hall: dict[str, Any] | None = None
    queues: Any = None
    windows: dict[int, Any] = field(default_factory=dict)
    calls: Any = None
    devices: dict[str, Any] = field(default_factory=dict)


class _Pending:
    __slots__ = ("done", "reply", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None
        self.error: BusError | None = None


# Retained topic kind -> (HallState section, whether the section is keyed)
_STATE_KINDS = {
    "status": ("hall", False),
    "state_queues": ("queues", False),
    "state_calls": ("calls", False),
    "state_window": ("window", True),
    "device": ("device", True),
}


class HallClient:
    """One MQTT connection as `client_id` (MQTT 3.1.1, clean session, username = client id).

    `role` (and `window` for tablets) selects the topics to subscribe to: what that role's app needs
    (`topics.subscriptions`), within the broker ACL; without a role the client subscribes as a
    window terminal. `events` widens or narrows the event types: a list, or "all".

    Everything reaches the client at QoS 0: with a clean session QoS 1 redelivers nothing after a
    reconnect, it only adds PUBACKs (and amqtt stalls a connection waiting for those). What a
    client misses while disconnected it gets from the retained state when it is back.
    """

    def __init__(
        self,
        client_id: str,
        password: str,
        host: str,
        port: int,
        hall_id: str,
        *,
        role: str | None = None,
        window: int | None = None,
        keepalive: int = 30,
        reconnect_min_delay: float = 0.5,
        reconnect_max_delay: float = 10.0,
        event_memory: int = 4096,
        events: str | list[str] | tuple[str, ...] | None = None,
        tls: bool = False,
        ca: str | None = None,
    ) -> None:
        """`tls` connects over TLS (`mqtts://`), checking the broker's certificate against the CA file
        `ca` (None: the system's CAs); a CA file that cannot be read raises bus.tls.TlsSetupError."""
        if role == "daemon":
            raise ValueError("the daemon side is MqttBridge, not HallClient")
        self.topics = HallTopics(hall_id)
        self.client_id = client_id
        self._cmd_topic = self.topics.cmd(client_id)
        self._status_topic = self.topics.client_status(client_id)
        self._filters = list(subscriptions(self.topics, client_id, role or "window", window, events))
        self.host, self.port, self.keepalive = host, port, keepalive

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._ready = False  # CONNACK ok and our subscriptions acknowledged
        self._started = False
        self._closed = False
        self._refused: str | None = None
        self._tls_failure: str | None = None
        self.tls, self.ca = tls, ca
        self._sub_mid: int | None = None
        self._network_thread: int | None = None
        self._pending: dict[str, _Pending] = {}
        self._event_callbacks: list[tuple[EventCallback, frozenset[str] | None]] = []
        self._card_callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._state_listeners: list[StateListener] = []
        self._seen_events: OrderedDict[str, None] = OrderedDict()
        self._event_memory = event_memory
        self._history: deque[tuple[int, dict[str, Any]]] = deque(maxlen=_EVENT_HISTORY)
        self._event_count = 0
        self._state_json: dict[tuple[str, str | int | None], str] = {}
        self._state: dict[tuple[str, str | int | None], Any] = {}

        self._mqtt = DirectWriteClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        register_secret(password)   # never in this process's log, whatever logs it
        self._mqtt.username_pw_set(client_id, password)
        self._mqtt.will_set(self._status_topic, _OFFLINE, qos=1, retain=True)
        self._mqtt.reconnect_delay_set(reconnect_min_delay, reconnect_max_delay)  # type: ignore[arg-type]
        self._mqtt.on_socket_open = set_nodelay
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_disconnect = self._on_disconnect
        self._mqtt.on_subscribe = self._on_subscribe
        self._mqtt.on_message = self._on_message
        if tls:
            self._mqtt.use_tls(ca)
            self._mqtt.on_tls_failure = self._on_tls_failure

    # ---------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        """True while connected and subscribed, i.e. while requests can be answered."""
        with self._lock:
            return self._ready

    @property
    def refused(self) -> str | None:
        """The broker's reason when it refused our client id or password (the client stopped), else None."""
        with self._lock:
            return self._refused

    @property
    def tls_failure(self) -> str | None:
        """The last TLS handshake error while it stands (cleared once connected), else None."""
        with self._lock:
            return self._tls_failure

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; keeps retrying in the background if the broker is not there yet.

        Raises AuthenticationFailed if refused, TlsFailed at once when the broker's certificate is
        refused, BusUnavailable if not connected within `timeout` (the client goes on trying in both
        cases; `close()` stops it).
        """
        with self._lock:
            if self._closed:
                raise BusUnavailable("client is closed")
            if self._refused is not None:
                raise AuthenticationFailed(f"{self.client_id}: broker refused the connection ({self._refused})")
            start, self._started = not self._started, True
        if start:
            self._mqtt.connect_async(self.host, self.port, self.keepalive)
            self._mqtt.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self._refused is not None or self._closed
                                or self._tls_failure is not None, timeout)
            ready, refused, closed, tls_failure = self._ready, self._refused, self._closed, self._tls_failure
        if closed:
            raise BusUnavailable("client is closed")
        if tls_failure is not None and not ready:
            raise TlsFailed(f"{self.client_id}: TLS handshake with {self.host}:{self.port} failed ({tls_failure})")
        if refused is not None:
            self._mqtt.loop_stop()
            raise AuthenticationFailed(f"{self.client_id}: broker refused the connection ({refused})")
        if not ready:
            raise BusUnavailable(f"no connection to {self.host}:{self.port} within {timeout} s")

    def close(self, timeout: float = 2.0) -> None:
        """Publish `offline`, disconnect and stop the network thread. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            was_ready, self._ready = self._ready, False
            self._cond.notify_all()
        if was_ready:
            info = self._mqtt.publish(self._status_topic, _OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.debug("%s: offline status not sent", self.client_id)
        self._mqtt.disconnect()
        self._mqtt.loop_stop()
        self._fail_pending("client closed")

    def __enter__(self) -> HallClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- requests

    def request(self, op: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        """Send a command and wait for its reply; returns `result`.

        Raises BusUnavailable at once when not connected (or when the connection drops while
        waiting), RequestTimeout after `timeout`, CommandError for `ok: false`. Commands go out
        with QoS 0: a command is never queued inside paho and sent after the caller was told it failed.
        """
        if threading.get_ident() == self._network_thread:
            raise RuntimeError("request() from an MQTT callback would deadlock the network thread")
        command_id = str(uuid.uuid4())
        # id and op first: a command too large for the daemon is still refused with its id.
        payload = json.dumps({"id": command_id, "op": op} | {k: v for k, v in args.items() if k not in ("id", "op")},
                             ensure_ascii=False)
        pending = _Pending()
        with self._lock:
            if not self._ready:
                raise BusUnavailable(f"{self.client_id}: not connected to the hall bus")
            self._pending[command_id] = pending
        try:
            info = self._mqtt.publish(self._cmd_topic, payload, qos=0)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BusUnavailable(f"{self.client_id}: publish failed ({mqtt.error_string(info.rc)})")
            if not pending.done.wait(timeout):
                raise RequestTimeout(f"{op}: no reply within {timeout} s")
        finally:
            with self._lock:
                self._pending.pop(command_id, None)
        reply = pending.reply
        if reply is None:
            raise pending.error or BusUnavailable(f"{self.client_id}: no reply")
        if reply.get("ok") is True:
            result = reply.get("result")
            return result if isinstance(result, dict) else {}
        error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        raise CommandError(str(error.get("code", "error")), str(error.get("message", "")))

    # ---------------------------------------------------------------- events

    def subscribe_events(self, callback: EventCallback, types: Iterable[str] | None = None) -> Callable[[], None]:
        """Call `callback(event)` for every new event (optionally only these types); returns an unsubscribe."""
        entry = (callback, frozenset(types) if types is not None else None)
        with self._lock:
            self._event_callbacks.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._event_callbacks:
                    self._event_callbacks.remove(entry)

        return unsubscribe

    def wait_for_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """The first event matching `predicate`, looking at the last events already received too.

        The reply to a command can overtake its events or arrive after them, so recent events count:
        make the predicate specific (e.g. match the ticket id). A predicate that raises is a non-match.
        """
        deadline = time.monotonic() + timeout
        checked = -1
        with self._cond:
            while True:
                for index, event in self._history:
                    if index > checked:
                        checked = index
                        if _safe_match(predicate, event):
                            return copy.deepcopy(event)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeout(f"no matching event within {timeout} s")
                self._cond.wait(remaining)

    def subscribe_cards(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Kiosks: call `callback(card)` for each card read at this kiosk; returns an unsubscribe."""
        with self._lock:
            self._card_callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._card_callbacks:
                    self._card_callbacks.remove(callback)

        return unsubscribe

    # ---------------------------------------------------------------- state

    @property
    def state(self) -> HallState:
        """A deep copy of the retained state seen so far (stale while disconnected)."""
        with self._lock:
            values = copy.deepcopy(self._state)
        keyed: dict[str, dict[Any, Any]] = {"window": {}, "device": {}}
        for (section, key), value in values.items():
            if section in keyed:
                keyed[section][key] = value
        return HallState(
            hall=values.get(("hall", None)),
            queues=values.get(("queues", None)),
            windows=keyed["window"],
            calls=values.get(("calls", None)),
            devices=keyed["device"],
        )

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        """Call `listener(section, key, value)` when a retained value changes; value None = removed.

        Sections: hall, queues, calls (key None), window (key = number), device (key = device id).
        """
        with self._lock:
            self._state_listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._state_listeners:
                    self._state_listeners.remove(listener)

        return remove

    # ---------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._network_thread = threading.get_ident()
        if reason.is_failure:
            log.error("%s: broker refused the connection: %s", self.client_id, reason)
            with self._cond:
                self._refused = str(reason)
                self._cond.notify_all()
            client.disconnect()  # retrying with the same credentials is pointless
            return
        result, mid = client.subscribe([(f, 0) for f in self._filters])
        with self._lock:
            self._sub_mid = mid if result == mqtt.MQTT_ERR_SUCCESS else None
            self._tls_failure = None
        client.publish(self._status_topic, _ONLINE, qos=1, retain=True)

    def _on_tls_failure(self, exc: ssl.SSLError) -> None:
        """The broker's certificate was refused: said once in the log (raw), again only when it changes;
        paho retries with the client's capped backoff."""
        text = str(exc)
        with self._cond:
            repeated, self._tls_failure = self._tls_failure == text, text
            self._cond.notify_all()
        if repeated:
            log.debug("%s: TLS handshake with %s:%s failed again: %s", self.client_id, self.host, self.port, exc)
        else:
            log.error("%s: TLS handshake with %s:%s failed: %s (check the CA file %s and that the URL names the "
                      "hall PC as its certificate does: hallctl tls show)", self.client_id, self.host, self.port,
                      exc, self.ca or "(system CAs)")

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        refused = [f for f, r in zip(self._filters, reasons, strict=False) if r.is_failure]
        if refused:
            log.warning("%s: broker refused subscriptions %s (ACL)", self.client_id, refused)
        with self._cond:
            if mid != self._sub_mid:
                return
            self._ready = not self._closed
            self._cond.notify_all()
        log.info("%s: connected to %s:%s", self.client_id, self.host, self.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            was_ready, self._ready = self._ready, False
        if was_ready:
            log.warning("%s: lost the connection to the hall bus (%s), reconnecting", self.client_id, reason)
        self._fail_pending("connection lost")

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            pending = list(self._pending.values())
        for p in pending:
            p.error = BusUnavailable(f"{self.client_id}: {why}")
            p.done.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        info = self.topics.parse(message.topic)
        if info is None:
            return
        try:
            raw = message.payload
            value = orjson.loads(raw) if raw else None
            if info.kind == "reply":
                self._handle_reply(value)
            elif info.kind == "event":
                self._handle_event(value, raw)
            elif info.kind == "kiosk_card":
                self._handle_card(value)
            elif info.kind in _STATE_KINDS:
                section, keyed = _STATE_KINDS[info.kind]
                self._handle_state(section, info.key if keyed else None, value, message.payload)
        except ValueError:
            log.warning("%s: dropped non-JSON message on %s", self.client_id, message.topic)
        except Exception:  # a bad message must not kill the network thread
            log.exception("%s: failed to handle message on %s", self.client_id, message.topic)

    def _handle_reply(self, reply: Any) -> None:
        if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
            log.warning("%s: dropped malformed reply %r", self.client_id, reply)
            return
        with self._lock:
            pending = self._pending.get(reply["id"])
        if pending is None:
            log.debug("%s: reply %s came after its request gave up", self.client_id, reply["id"])
            return
        pending.reply = reply
        pending.done.set()

    def _handle_event(self, event: Any, raw: bytes) -> None:
        if not isinstance(event, dict):
            log.warning("%s: dropped malformed event %r", self.client_id, event)
            return
        event_id = event.get("event_id")
        with self._cond:
            if isinstance(event_id, str):
                if event_id in self._seen_events:
                    log.debug("%s: dropped duplicate event %s", self.client_id, event_id)
                    return
                self._seen_events[event_id] = None
                if len(self._seen_events) > self._event_memory:
                    self._seen_events.popitem(last=False)
            self._event_count += 1
            self._history.append((self._event_count, event))
            self._cond.notify_all()
            callbacks = [cb for cb, types in self._event_callbacks if types is None or event.get("type") in types]
        for callback in callbacks:  # each its own copy: parsing again is cheaper than deepcopy
            _call("event callback", callback, orjson.loads(raw))

    def _handle_card(self, card: Any) -> None:
        if not isinstance(card, dict):
            log.warning("%s: dropped malformed card %r", self.client_id, card)
            return
        with self._lock:
            callbacks = list(self._card_callbacks)
        for callback in callbacks:
            _call("card callback", callback, copy.deepcopy(card))

    def _handle_state(self, section: str, key: str | int | None, value: Any, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        with self._lock:
            if self._state_json.get((section, key)) == text or (value is None and (section, key) not in self._state):
                return
            if value is None:
                self._state.pop((section, key), None)
                self._state_json.pop((section, key), None)
            else:
                self._state[(section, key)] = value
                self._state_json[(section, key)] = text
            listeners = list(self._state_listeners)
        for listener in listeners:
            _call("state listener", listener, section, key, orjson.loads(raw) if raw else None)


def _safe_match(predicate: Callable[[dict[str, Any]], bool], event: dict[str, Any]) -> bool:
    try:
        return bool(predicate(event))
    except Exception:
        return False


def _call(what: str, callback: Callable[..., Any], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("%s failed", what)
