"""The Qt side of HallClient, shared by every Qt app (kiosk, display, tablet, window terminal).

paho runs HallClient's callbacks on its network thread; widgets may only be touched from the UI
thread. `QtHallBus` turns every callback into a Qt signal (delivered queued to the UI thread, since
the bus object lives there), runs requests on a small worker pool and hands their outcome back to
the UI thread by signal, and tracks whether the hall is reachable: the broker connection AND the
daemon's retained `hall/{h}/status`. Nothing here blocks the UI thread on the network.

`AppOptions` / `add_common_arguments` / `options_from_args` are the common command line of DESIGN §9:
`APP --mqtt-url mqtt://CLIENT_ID:PASSWORD@HOST:PORT --hall HALL_ID` or
`APP --config hall.yaml --client CLIENT_ID` (password from the hall's client-passwords file). On an app
PC of a production hall: `APP --mqtt-url mqtts://CLIENT_ID@HALL-PC:8883 --ca ca.crt --password-file FILE
--hall HALL_ID` (TLS, the broker's certificate checked against the hall CA; the password read from a
root-only file, or from systemd's credential `mqtt-password`, never from the command line).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from hall_controller.bus import connect
from hall_controller.bus.client import (
    AuthenticationFailed,
    BusError,
    BusUnavailable,
    CommandError,
    HallClient,
    RequestTimeout,
)
from hall_controller.bus.connect import UsageError
from hall_controller.bus.url import MqttEndpoint
from hall_controller.config import HallConfig
from hall_controller.faults import AUTH_REFUSED_TEXT, TLS_REFUSED_TEXT
from hall_controller.redact import redact_url

log = logging.getLogger(__name__)

ReplyCallback = Callable[[dict[str, Any]], None]
ErrorCallback = Callable[["RequestFailure"], None]


# ------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class AppOptions:
    """Who the app is on the bus and how it shows itself."""

    client_id: str
    password: str
    host: str
    port: int
    hall_id: str
    windowed: bool = False
    screen: int | None = None
    config: HallConfig | None = None   # only with --config: services, opening hours, display notice …
    role: str | None = None            # from the config's clients list when known
    tls: bool = False                  # mqtts://: TLS, the broker's certificate checked against `ca`
    ca: str | None = None              # the hall CA (--ca, else the config's mqtt.ca); None: the system's CAs


def add_common_arguments(parser: argparse.ArgumentParser, default_client: str | None = None) -> None:
    """The options every Qt app takes (DESIGN §9); apps add their own after these."""
    parser.add_argument("--mqtt-url", help="mqtt://CLIENT_ID:PASSWORD@HOST:PORT, or mqtts://CLIENT_ID@HOST:8883 "
                                           "(TLS) with the password from --password-file")
    parser.add_argument("--ca", metavar="FILE", help="the hall CA certificate an mqtts:// broker must show "
                                                     "(default: the config's mqtt.ca)")
    parser.add_argument("--password-file", metavar="FILE",
                        help="the MQTT password is this file's first line (default: $CREDENTIALS_DIRECTORY/"
                             "mqtt-password when systemd passes that credential)")
    parser.add_argument("--hall", help="hall id (with --mqtt-url)")
    parser.add_argument("--config", help="the hall's config file (hall.yaml)")
    parser.add_argument("--client", default=default_client,
                        help=f"client id with --config (default {default_client})" if default_client else "client id")
    parser.add_argument("--windowed", action="store_true", help="a normal window instead of full screen")
    parser.add_argument("--screen", type=int, default=None, help="show on screen N (0 = first)")


def _options_from_url(endpoint: MqttEndpoint, args: argparse.Namespace) -> AppOptions:
    """`--mqtt-url mqtt[s]://CLIENT_ID[:PASSWORD]@HOST:PORT --hall HALL_ID`."""
    if not endpoint.username:
        raise UsageError("MQTT 地址格式应为 mqtt://客户端ID:密码@主机:端口 或 mqtts://客户端ID@主机:端口，"
                         f"而不是 {redact_url(args.mqtt_url)!r}")
    password = endpoint.password if endpoint.password is not None else connect.file_password(getattr(args, "password_file", None))
    if password is None:
        raise UsageError("缺少 MQTT 密码：请用 --password-file 文件（第一行为密码）或在 --mqtt-url 中给出")
    if not args.hall:
        raise UsageError("使用 --mqtt-url 时必须指定 --hall (the hall id)")
    ca = connect.checked_ca(endpoint, getattr(args, "ca", None))
    return AppOptions(endpoint.username, password, endpoint.host, endpoint.port, args.hall, args.windowed,
                      args.screen, tls=endpoint.tls, ca=ca)


def options_from_args(args: argparse.Namespace) -> AppOptions:
    """Resolve the connection from either form of the command line; UsageError says what is wrong."""
    endpoint = connect.endpoint_of(args.mqtt_url) if args.mqtt_url else None
    if endpoint is not None and args.config and (endpoint.username or endpoint.password is not None):
        raise UsageError("与 --config 同用时 --mqtt-url 只能给出 mqtt://主机:端口（密码取自密码文件）")
    if endpoint is not None and not args.config:
        return _options_from_url(endpoint, args)
    if not args.config:
        raise UsageError("请指定 --mqtt-url mqtt://ID:密码@主机:端口 --hall 大厅 或 --config hall.yaml --client ID")
    config = connect.load_hall_config(args.config)
    if not args.client:
        raise UsageError("使用 --config 时必须指定 --client (client id)")
    password = connect.file_password(getattr(args, "password_file", None)) or connect.config_password(config, args.client)
    # the broker somewhere else than the config says (e.g. `hallctl demo` on a free port), else the config's
    broker = endpoint or connect.config_broker(config)
    ca = connect.checked_ca(broker, getattr(args, "ca", None) or config.mqtt_ca)
    role = next((c.role for c in config.clients if c.id == args.client), None)
    return AppOptions(args.client, password, broker.host, broker.port, config.hall_id, args.windowed, args.screen,
                      config, role, tls=broker.tls, ca=ca)


# ------------------------------------------------------------------------------------------- the bus


@dataclass(frozen=True)
class RequestFailure:
    """Why a request failed, for the UI: `code` is the daemon's error code or one of
    `offline` (no broker connection), `timeout` (the daemon did not answer) or `error`."""

    code: str
    message: str

    @classmethod
    def from_error(cls, exc: BaseException) -> RequestFailure:
        if isinstance(exc, CommandError):
            return cls(exc.code, exc.message)
        if isinstance(exc, BusUnavailable):
            return cls("offline", str(exc))
        if isinstance(exc, RequestTimeout):
            return cls("timeout", str(exc))
        return cls("error", str(exc))


class QtHallBus(QObject):
    """HallClient behind Qt signals. Create it in the UI thread, then call `start()`.

    Signals (all delivered in the UI thread):
    - `event(dict)`: every new event (duplicates already dropped by HallClient);
    - `state_changed(section, key, value)`: retained state (sections of HallClient.add_state_listener);
    - `card(dict)`: a card read at this kiosk;
    - `connection_changed(broker_online, daemon_online)`: whenever either changes;
    - `online_changed(bool)`: broker and daemon both reachable;
    - `fatal(str)`: the broker refused our credentials (the client stops retrying); the text is
      AUTH_REFUSED_TEXT, what the app shows, also kept in `refused`. Or the broker's TLS certificate
      was refused: TLS_REFUSED_TEXT (the client goes on trying with its backoff);
    - `recovered()`: connected after all once the certificate was put right (the text is taken back).
    """

    event = Signal(dict)
    state_changed = Signal(str, object, object)
    card = Signal(dict)
    connection_changed = Signal(bool, bool)
    online_changed = Signal(bool)
    fatal = Signal(str)
    recovered = Signal()
    _request_done = Signal(int, object, object)   # token, result, error

    def __init__(self, client: HallClient, parent: QObject | None = None, *, poll_ms: int = 200,
                 workers: int = 4) -> None:
        super().__init__(parent)
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"bus-{client.client_id}")
        self._callbacks: dict[int, tuple[ReplyCallback | None, ErrorCallback | None]] = {}
        self._tokens = itertools.count(1)
        self._broker = False
        self._daemon = False
        self._closed = False
        self.refused: str | None = None      # what to show once the broker refused our password
        self._unsubscribe: list[Callable[[], None]] = []
        self._request_done.connect(self._deliver)
        self.state_changed.connect(self._track_status)
        # HallClient has no connect/disconnect callback: poll its flag (a lock and a bool, cheap).
        self._poll = QTimer(self)
        self._poll.setInterval(poll_ms)
        self._poll.timeout.connect(self._check_connection)

    @classmethod
    def from_options(cls, options: AppOptions, *, role: str, window: int | None = None,
                     events: str | list[str] | tuple[str, ...] | None = None,
                     parent: QObject | None = None) -> QtHallBus:
        client = HallClient(options.client_id, options.password, options.host, options.port, options.hall_id,
                            role=options.role or role, window=window, events=events, tls=options.tls, ca=options.ca)
        return cls(client, parent)

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> None:
        """Connect in the background (HallClient keeps retrying on its own after the first try)."""
        self._unsubscribe = [
            self.client.subscribe_events(self.event.emit),
            self.client.add_state_listener(self._on_state),
            self.client.subscribe_cards(self.card.emit),
        ]
        # A client that was already connected has the daemon's status already: start from it.
        status = self.client.state.hall
        self._set_connection(self.client.connected, isinstance(status, dict) and status.get("state") == "online")
        self._poll.start()
        threading.Thread(target=self._connect, args=(timeout,), name=f"connect-{self.client.client_id}",
                         daemon=True).start()

    def _connect(self, timeout: float) -> None:
        try:
            self.client.connect(timeout=timeout)
        except AuthenticationFailed as exc:
            log.error("%s: check this client's password (hallctl client add %s)", exc, self.client.client_id)
            # the UI thread reports it (_check_connection): a signal from here would race the app's slots
        except BusUnavailable as exc:
            log.warning("%s (still trying)", exc)

    def close(self) -> None:
        """Stop polling, drop callbacks, publish our offline status and disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._poll.stop()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._callbacks.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # ------------------------------------------------------------------ connection state

    @property
    def broker_online(self) -> bool:
        return self._broker

    @property
    def daemon_online(self) -> bool:
        return self._daemon

    @property
    def online(self) -> bool:
        """True when a request can be answered: connected to the broker and the daemon says online."""
        return self._broker and self._daemon

    @Slot()
    def _check_connection(self) -> None:
        self._set_connection(self.client.connected, self._daemon)
        if self.refused is None and self.client.refused is not None:
            # refused at the first try or on a later reconnect (the broker was not up yet at start)
            self.refused = AUTH_REFUSED_TEXT
            self.fatal.emit(self.refused)
        elif self.refused is None and self.client.tls_failure is not None:
            self.refused = TLS_REFUSED_TEXT      # the raw error is in the log (HallClient)
            self.fatal.emit(self.refused)
        elif self.refused == TLS_REFUSED_TEXT and self._broker:
            self.refused = None                 # the broker's certificate was put right
            self.recovered.emit()

    def _on_state(self, section: str, key: Any, value: Any) -> None:
        """paho's thread: forward as a signal; the slot that updates `_daemon` runs in the UI thread."""
        self.state_changed.emit(section, key, value)

    def _set_connection(self, broker: bool, daemon: bool) -> None:
        if (broker, daemon) == (self._broker, self._daemon):
            return
        was = self.online
        self._broker, self._daemon = broker, daemon
        self.connection_changed.emit(broker, daemon)
        if was != self.online:
            self.online_changed.emit(self.online)

    @Slot(str, object, object)
    def _track_status(self, section: str, key: Any, value: Any) -> None:
        """The daemon's retained status (its last will says offline when it dies)."""
        if section == "hall":
            self._set_connection(self._broker, isinstance(value, dict) and value.get("state") == "online")

    def retained(self) -> list[tuple[str, Any, Any]]:
        """The retained state received so far as (section, key, value), in `state_changed`'s form: a model
        created after the bus started seeds itself from this, then follows `state_changed`."""
        state = self.client.state
        items: list[tuple[str, Any, Any]] = [("hall", None, state.hall), ("queues", None, state.queues),
                                             ("calls", None, state.calls)]
        items += [("window", n, v) for n, v in sorted(state.windows.items())]
        items += [("device", k, v) for k, v in sorted(state.devices.items())]
        return [(section, key, value) for section, key, value in items if value is not None]

    # ------------------------------------------------------------------ requests

    def request(self, op: str, on_reply: ReplyCallback | None = None, on_error: ErrorCallback | None = None,
                *, timeout: float = 5.0, **args: Any) -> int:
        """Send `op` on a worker thread; `on_reply(result)` or `on_error(RequestFailure)` run later in the
        UI thread. Returns a token. Never blocks: while offline `on_error` gets code `offline`."""
        token = next(self._tokens)
        self._callbacks[token] = (on_reply, on_error)
        if self._closed:
            self._deliver(token, None, BusUnavailable("closed"))
            return token
        self._pool.submit(self._run_request, token, op, timeout, args)
        return token

    def _run_request(self, token: int, op: str, timeout: float, args: dict[str, Any]) -> None:
        try:
            result = self.client.request(op, timeout=timeout, **args)
        except BusError as exc:
            self._request_done.emit(token, None, exc)
        except Exception as exc:   # a bug must still reach the UI as a failure, not vanish in the pool
            log.exception("request %s failed", op)
            self._request_done.emit(token, None, exc)
        else:
            self._request_done.emit(token, result, None)

    @Slot(int, object, object)
    def _deliver(self, token: int, result: Any, error: Any) -> None:
        on_reply, on_error = self._callbacks.pop(token, (None, None))
        if error is not None:
            failure = RequestFailure.from_error(error)
            log.info("%s: request failed: %s %s", self.client.client_id, failure.code, failure.message)
            if on_error is not None:
                on_error(failure)
        elif on_reply is not None:
            on_reply(result or {})
