"""Embedded MQTT broker (amqtt, MQTT 3.1.1) for the zero-setup hall PC (DESIGN §3).

amqtt runs in-process on its own asyncio loop in a daemon thread. We own the listening socket and
hand connections to amqtt's "external" listener, which gives us three things:

- port 0 yields a real ephemeral port, and stop() closes every connection;
- a gate that reads and authenticates the CONNECT packet *before* amqtt sees it. amqtt 0.12.1
  deletes or takes over the session of a client id before checking the password, so a CONNECT with
  a wrong password and a live client's id would leave that client connected but deaf;
- a clean takeover: when a client reconnects while its old connection is still open (half-open TCP),
  the old connection is closed first, so its last will cannot overwrite the new `online` status.

- a packet size limit (``max_packet``): amqtt 0.12.1 has none and would read a packet of any size
  (MQTT allows 256 MB) into memory. The gate follows the fixed header of every packet a client
  sends and disconnects it, before amqtt reads the body, when one is larger — Mosquitto's
  ``max_packet_size`` (the daemon sets both to bus.limits.broker_packet_limit).

`_HallBroker` fixes two more amqtt 0.12.1 faults (see its docstring). All of them are pinned by
tests/test_bus_broker.py, so an amqtt upgrade that changes these internals shows up there.

With a hall id the same topic ACL as the generated Mosquitto ACL is enforced (topics.access_rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from .credentials import ClientCredential, CredentialStore
from .topics import AccessRules, HallTopics, access_rules

log = logging.getLogger(__name__)

_LISTENER = "default"
_CONNECT_TIMEOUT = 10.0  # a socket that sends no CONNECT in time is closed
_MAX_CONNECT_BYTES = 256 * 1024  # CONNECT carries at most ids, credentials and a last will
# amqtt may sit in a connection's message loop waiting up to 5 s for a PUBACK that a vanished client
# will never send; a connection we close gets this long to finish before it is cancelled.
_CLOSE_GRACE = 0.5
_SHUTDOWN_TIMEOUT = 5.0
# CONNACK return codes (MQTT 3.1.1 §3.2.2.3)
_UNACCEPTABLE_PROTOCOL = 1
_IDENTIFIER_REJECTED = 2
_NOT_AUTHORIZED = 5

Peer = tuple[str, int]


class _BadConnect(Exception):
    """The first packet is not a well-formed MQTT 3.1.1 CONNECT; `code` is the CONNACK to send, if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class _Connect:
    client_id: str
    username: str | None
    password: str | None = field(repr=False)     # a CONNECT that gets logged never shows it
    will_topic: str | None


class _PacketReader:
    """Reads the CONNECT packet and keeps its exact bytes, to replay them to amqtt."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.raw = bytearray()
        self._body = b""
        self._pos = 0

    async def _take(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        self.raw += data
        return data

    async def read_connect(self) -> _Connect:
        if (await self._take(1))[0] != 0x10:
            raise _BadConnect("first packet is not CONNECT")
        length, shift = 0, 0
        for _ in range(4):
            byte = (await self._take(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            raise _BadConnect("malformed remaining length")
        if length > _MAX_CONNECT_BYTES:
            raise _BadConnect(f"CONNECT of {length} bytes")
        self._body = await self._take(length)
        return self._parse()

    def _bytes(self, n: int) -> bytes:
        if self._pos + n > len(self._body):
            raise _BadConnect("truncated CONNECT")
        data = self._body[self._pos:self._pos + n]
        self._pos += n
        return data

    def _blob(self) -> bytes:
        (n,) = struct.unpack("!H", self._bytes(2))
        return self._bytes(n)

    def _text(self) -> str:
        try:
            return self._blob().decode("utf-8")
        except UnicodeDecodeError:
            raise _BadConnect("string in CONNECT is not UTF-8") from None

    def _parse(self) -> _Connect:
        name, level = self._blob(), self._bytes(1)[0]
        if name != b"MQTT" or level != 4:
            raise _BadConnect(f"protocol {name!r} level {level}: only MQTT 3.1.1", _UNACCEPTABLE_PROTOCOL)
        flags = self._bytes(1)[0]
        self._bytes(2)  # keep-alive: amqtt handles it
        if flags & 0x01:
            raise _BadConnect("reserved CONNECT flag set")
        client_id = self._text()
        will_topic = None
        if flags & 0x04:
            will_topic = self._text()
            self._blob()
        username = self._text() if flags & 0x80 else None
        password = self._text() if flags & 0x40 else None
        return _Connect(client_id, username, password, will_topic)


class PacketTooLarge(Exception):
    """A client announced a packet over the broker's limit (its body is never read)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"packet of {size} bytes, over the limit of {limit}")
        self.size, self.limit = size, limit


class _PacketSizes:
    """Follows the MQTT packets of a byte stream by their fixed headers (type byte, then the
    remaining length in 1-4 bytes, then that many bytes): :meth:`feed` raises :class:`PacketTooLarge`
    as soon as a header announces more than ``limit`` bytes, whatever the packet type."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._body = 0                   # bytes of the current packet's body still to come
        self._length: int | None = None  # the remaining length being decoded; None: a type byte is next
        self._shift = 0

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._body:
                taken = min(self._body, n - i)
                self._body -= taken
                i += taken
                continue
            byte = data[i]
            i += 1
            if self._length is None:
                self._length, self._shift = 0, 0
                continue
            self._length |= (byte & 0x7F) << self._shift
            self._shift += 7
            if byte & 0x80 and self._shift < 28:
                continue
            size, self._length = self._length, None
            if size > self.limit:
                raise PacketTooLarge(size, self.limit)
            self._body = size


class _ReplayReader(StreamReaderAdapter):
    """Serves the already-consumed CONNECT bytes first, then the socket, whose packets must stay
    within ``max_packet`` bytes (None: no limit)."""

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader, max_packet: int | None = None,
                 on_too_large: Any = None) -> None:
        super().__init__(reader)
        self._prefix = prefix
        self._sizes = _PacketSizes(max_packet) if max_packet else None
        self._on_too_large = on_too_large

    async def read(self, n: int = -1) -> bytes:
        if not self._prefix:
            return self._checked(await super().read(n))
        if n == -1:
            data, self._prefix = self._prefix, b""
            return data + self._checked(await super().read(-1))
        data, self._prefix = self._prefix[:n], self._prefix[n:]
        return data if len(data) == n else data + self._checked(await super().read(n - len(data)))

    def _checked(self, data: bytes) -> bytes:
        """``data`` from the socket, or end of stream for amqtt (a closed connection: it publishes the
        client's last will) once a packet header says the packet is too large."""
        if self._sizes is not None:
            try:
                self._sizes.feed(data)
            except PacketTooLarge as exc:
                if self._on_too_large is not None:
                    self._on_too_large(exc)
                raise asyncio.IncompleteReadError(b"", None) from exc
        return data


class GateAuthPlugin(BaseAuthPlugin):
    """Admits exactly the connections the gate authenticated (matched by peer address and username)."""

    @dataclass
    class Config:
        admitted: Any = None  # dict[Peer, str], shared with EmbeddedBroker (dacite cannot type it)

    async def authenticate(self, *, session: Session) -> bool:
        peer = (session.remote_address, session.remote_port)
        return session.username is not None and self.config.admitted.get(peer) == session.username


class TopicAclPlugin(BaseTopicPlugin):
    """Publish and subscribe checks from `topics.access_rules`.

    A subscription must be covered by a read pattern (wildcards taken literally), so every message it
    can match is readable: deliveries need no second check (`_HallBroker` skips them), and retained
    messages, which amqtt sends on subscribe without any check, stay protected. Mosquitto is more
    lenient (it accepts any filter and checks each delivery); clients subscribe only to their own
    patterns, which both accept.
    """

    @dataclass
    class Config:
        credentials: Any = None  # CredentialStore
        hall_id: str = ""

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if session is None or not topic:
            return False
        rules = _rules_for(self.config.credentials, self.config.hall_id, session.username)
        if rules is None:
            allowed = False
        elif action == Action.SUBSCRIBE:
            allowed = rules.may_read(topic)
        else:
            allowed = action == Action.PUBLISH and rules.may_write(topic)
        if not allowed:
            log.info("broker: denied %s %s on %s", session.username, action, topic)
        return allowed


# The QoS of the PUBLISH a client task is handling, for `_HallBroker._broadcast_message` (each client
# connection runs in its own asyncio task, so a context variable set in it is seen only there).
_PUBLISH_QOS: contextvars.ContextVar[int | None] = contextvars.ContextVar("publish_qos", default=None)


class _HallBroker(Broker):
    """amqtt's Broker with three faults of 0.12.1 fixed.

    - After CONNECT, amqtt sends the new client the retained messages matching *every* client's
      subscriptions (bypassing the ACL), awaiting while it iterates the subscription table, which
      raises when another client subscribes meanwhile. Only the session's own subscriptions count.
    - The broadcast loop awaits a per-delivery topic check (RECEIVE) while iterating the same table,
      so a concurrent subscribe loses the message. That check is skipped: every subscription was
      checked to be covered by the client's read patterns (TopicAclPlugin).
    - A message is delivered at the QoS of the subscription, not at the lower of the PUBLISH's and
      the subscription's (MQTT 3.1.1 §3.8.4). The daemon publishes replies and events at QoS 0, so a
      client that subscribes at QoS 1 (as stock clients are often written) got them at QoS 1 and
      answered each with a PUBACK; with Nagle's algorithm on (paho's default) its next command then
      waited for the TCP acknowledgement of that PUBACK, which the broker delays up to 40 ms.
    """

    async def _handle_message_delivery(self, client_session: Session, handler: Any, wait_deliver: Any) -> bool:
        message = wait_deliver.result()
        token = _PUBLISH_QOS.set(message.qos if message is not None else None)
        try:
            return await super()._handle_message_delivery(client_session, handler, wait_deliver)
        finally:
            _PUBLISH_QOS.reset(token)

    async def _broadcast_message(self, session: Session | None, topic: str | None, data: Any,
                                 force_qos: int | None = None) -> None:
        qos = _PUBLISH_QOS.get()
        if force_qos is not None or qos is None:   # a will (its own QoS) or an internal message
            await super()._broadcast_message(session, topic, data, force_qos)
            return
        await self._broadcast_queue.put({"session": session, "topic": topic, "data": data, "max_qos": qos})

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Session) -> None:
        mine = self.subscriptions.get(subscription[0], [])
        if any(s.client_id == session.client_id for s, _ in mine):
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        if action == Action.RECEIVE:
            return True
        return await super()._topic_filtering(session, topic, action)

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[Any]]) -> None:
        """amqtt's broadcast step, minus what made it the broker's hot spot: debug strings built even
        with DEBUG off (a repr of every payload, a line per subscription that does not match) and
        an awaited RECEIVE check per delivery (always true here, see above). Deliveries are as in
        amqtt: to connected sessions, and kept for a disconnected persistent session at QoS 1/2."""
        broadcast = await self._broadcast_queue.get()
        topic, data = broadcast["topic"], broadcast["data"]
        for a_filter, subscriptions in list(self._subscriptions.items()):
            if not self._matches(topic, a_filter):
                continue
            for target_session, sub_qos in list(subscriptions):
                qos = broadcast.get("qos", min(sub_qos, broadcast.get("max_qos", sub_qos)))
                if target_session.transitions.state != "connected":
                    if not target_session.clean_session and qos in (QOS_1, QOS_2) and not target_session.is_anonymous:
                        await self._retain_broadcast_message(broadcast, qos, target_session)
                    continue
                handler = self._get_handler(target_session)
                if handler:
                    running_tasks.append(asyncio.ensure_future(handler.mqtt_publish(topic, data, qos, retain=False)))


def _rules_for(store: CredentialStore, hall_id: str, username: str | None) -> AccessRules | None:
    cred = store.get(username) if username else None
    return None if cred is None else _credential_rules(hall_id, cred)


@functools.lru_cache(maxsize=1024)
def _credential_rules(hall_id: str, cred: ClientCredential) -> AccessRules:
    """Every PUBLISH is checked: the rules are built once per credential (a changed role, window or
    password is another key)."""
    return access_rules(HallTopics(hall_id), cred.client_id, cred.role, cred.window)


class EmbeddedBroker:
    """amqtt on its own thread. `start()` returns once listening; `.port` is the real port."""

    def __init__(self, host: str, port: int, credentials: CredentialStore, *, hall_id: str | None = None,
                 max_packet: int | None = None) -> None:
        self.topics = HallTopics(hall_id) if hall_id is not None else None
        self.host = host
        self.port = port
        self.credentials = credentials
        self.max_packet = max_packet   # bytes of one MQTT packet from any client; None: no limit
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        # Only touched on the broker loop:
        self._admitted: dict[Peer, str] = {}
        self._live: dict[str, tuple[asyncio.Task[Any], asyncio.StreamWriter]] = {}

    def start(self, timeout: float = 10.0) -> None:
        """Start listening; raises OSError (e.g. port in use) or TimeoutError."""
        if self._thread is not None:
            raise RuntimeError("broker already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"mqtt-broker-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"embedded broker did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise self._error
        log.info("embedded MQTT broker listening on %s:%d%s%s", self.host, self.port,
                 "" if self.topics is None else f" (ACL for hall {self.topics.hall_id})",
                 "" if self.max_packet is None else f", packets up to {self.max_packet} bytes")

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every connection; safe to call twice."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            log.error("embedded broker thread did not stop within %.1f s", timeout)
        self._thread = None
        log.info("embedded MQTT broker on port %d stopped", self.port)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if self._ready.is_set():
                log.exception("embedded broker failed")
            else:
                self._error = exc  # raised by start()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            self._ready.set()

    def _amqtt_config(self) -> dict[str, Any]:
        plugins: dict[str, Any] = {f"{__name__}.GateAuthPlugin": {"admitted": self._admitted}}
        if self.topics is not None:
            plugins[f"{__name__}.TopicAclPlugin"] = {"credentials": self.credentials, "hall_id": self.topics.hall_id}
        return {"listeners": {_LISTENER: {"type": "external"}}, "plugins": plugins}

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        broker = _HallBroker(self._amqtt_config(), loop=asyncio.get_running_loop())
        await broker.start()
        connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections[task] = writer
            try:
                await self._handle(broker, reader, writer)
            except Exception:  # one broken client must not take the broker down
                log.exception("broker: connection handler failed")
            finally:
                writer.close()
                del connections[task]

        try:
            server = await asyncio.start_server(on_connection, self.host, self.port)
        except BaseException:
            await broker.shutdown()
            raise
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            # Drop the clients first: amqtt's own shutdown can wait seconds for deliveries in flight.
            server.close()
            await asyncio.gather(*(_close_connection(t, w) for t, w in list(connections.items())))
            try:
                await asyncio.wait_for(broker.shutdown(), _SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.warning("embedded broker: amqtt shutdown took over %.0f s", _SHUTDOWN_TIMEOUT)
            await server.wait_closed()

    async def _handle(self, broker: _HallBroker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer: Peer = tuple((writer.get_extra_info("peername") or ("?", 0))[:2])  # type: ignore[assignment]
        packet = _PacketReader(reader)
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                connect = await packet.read_connect()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.info("broker: %s:%s closed before a complete CONNECT (%s)", *peer, type(exc).__name__)
            return
        except _BadConnect as exc:
            log.warning("broker: refused %s:%s: %s", *peer, exc)
            if exc.code is not None:
                await self._connack(writer, exc.code)
            return
        code = await self._admit(connect, peer)
        if code is not None:
            await self._connack(writer, code)
            return
        client_id = connect.client_id
        old = self._live.get(client_id)
        if old is not None:
            log.info("broker: %s reconnected from %s:%s, closing its previous connection", client_id, *peer)
            await _close_connection(*old)
        task = asyncio.current_task()
        assert task is not None
        self._live[client_id] = (task, writer)
        self._admitted[peer] = client_id

        def too_large(exc: PacketTooLarge) -> None:
            # never the payload: only who, how large and the limit
            log.warning("broker: %s sent a packet of %d bytes, over the limit of %d: disconnected", client_id,
                        exc.size, exc.limit)
            writer.transport.abort()

        try:
            await broker.external_connected(_ReplayReader(bytes(packet.raw), reader, self.max_packet, too_large),
                                            StreamWriterAdapter(writer), _LISTENER)
        finally:
            self._admitted.pop(peer, None)
            if self._live.get(client_id, (None,))[0] is task:
                del self._live[client_id]

    async def _admit(self, connect: _Connect, peer: Peer) -> int | None:
        """None to accept, else the CONNACK refusal code. Mirrors Mosquitto: password, then will ACL."""
        username, password = connect.username, connect.password
        if not username or password is None:
            log.warning("broker: refused %s:%s: no username/password", *peer)
            return _NOT_AUTHORIZED
        if connect.client_id != username:
            # Binding the id to the account keeps one client from taking over another's session
            # (Mosquitto: use_username_as_clientid).
            log.warning("broker: refused %s: client id %r must equal the username", username, connect.client_id)
            return _IDENTIFIER_REJECTED
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.credentials.verify, username, password):
            log.warning("broker: refused %s from %s:%s: bad username or password", username, *peer)
            return _NOT_AUTHORIZED
        if connect.will_topic is not None and self.topics is not None:
            rules = _rules_for(self.credentials, self.topics.hall_id, username)
            if rules is None or not rules.may_write(connect.will_topic):
                log.warning("broker: refused %s: last will on %r not allowed", username, connect.will_topic)
                return _NOT_AUTHORIZED
        return None

    @staticmethod
    async def _connack(writer: asyncio.StreamWriter, code: int) -> None:
        writer.write(bytes([0x20, 0x02, 0x00, code]))
        with contextlib.suppress(ConnectionError):
            await writer.drain()


async def _close_connection(task: asyncio.Task[Any], writer: asyncio.StreamWriter) -> None:
    """Close a client's socket and wait for amqtt to let go of it (cancelling it after a grace period)."""
    writer.transport.abort()
    _, pending = await asyncio.wait({task}, timeout=_CLOSE_GRACE)
    if pending:
        task.cancel()
        await asyncio.wait({task})
