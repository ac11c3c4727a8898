"""How a hall client app (the Qt apps, hall-web) resolves its connection from a command line or the
hall's config: the broker, the CA, and the password — one place, so every app means the same thing by
`--mqtt-url`, `--ca`, `--password-file`, systemd's `mqtt-password` credential and the hall's
client-passwords file.

Each app keeps its own policy (which forms it accepts, its defaults); what it cannot resolve is raised
as `UsageError` with a Chinese message saying what to do, which the app shows and exits on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from ..config import ConfigError, HallConfig, load_config
from ..redact import register_secret
from .tls import TlsSetupError, client_context
from .url import MqttEndpoint, MqttUrlError, config_endpoint, parse_mqtt_url, password_from_files

log = logging.getLogger(__name__)

DEFAULT_BROKER = "127.0.0.1:1883"


class UsageError(ValueError):
    """A bad command line or config; the message is shown to the person starting the app."""


def passwords_path(config: HallConfig) -> Path:
    """Clear passwords for provisioning the hall's own apps (0600, next to the credential store)."""
    return Path(config.credentials_path).with_name("client-passwords.yaml")


def split_hostport(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[V6]:PORT`) -> (host, port); an empty host is loopback."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"地址格式应为 主机:端口，而不是 {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def endpoint_of(url: str) -> MqttEndpoint:
    """`--mqtt-url` parsed; the message of a bad one never holds its password."""
    try:
        return parse_mqtt_url(url)
    except MqttUrlError as exc:
        raise UsageError(str(exc)) from None


def load_hall_config(path: str | os.PathLike[str]) -> HallConfig:
    """`--config`, loaded; what is wrong with it said as a UsageError."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def config_broker(config: HallConfig) -> MqttEndpoint:
    """Where the hall's broker is: the config's mqtt.url (without its credentials: they are the
    daemon's) or mqtt.listen (a wildcard address reached on loopback)."""
    try:
        configured = config_endpoint(config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if configured is not None:
        return MqttEndpoint(configured.host, configured.port, tls=configured.tls, ca=configured.ca)
    host, port = split_hostport(config.mqtt_listen or DEFAULT_BROKER)
    return MqttEndpoint("127.0.0.1" if host in ("0.0.0.0", "::") else host, port)


def config_password(config: HallConfig, client_id: str, role: str | None = None) -> str:
    """The client's password from the hall's client-passwords file (`hallctl init` / `client add`);
    `role` completes the `hallctl client add` hint when the app knows it."""
    path = passwords_path(config)
    try:
        passwords = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        log.debug("client passwords %s: %s", path, exc)
        raise UsageError(f"无法读取客户端密码文件 {path}（{type(exc).__name__}）") from None
    password = passwords.get(client_id) if isinstance(passwords, dict) else None
    if not isinstance(password, str):
        hint = f"hallctl client add {client_id} --role {role}" if role else "hallctl client add"
        raise UsageError(f"密码文件 {path} 中没有客户端 {client_id}（请先运行 {hint}）")
    register_secret(password)
    return password


def file_password(password_file: str | os.PathLike[str] | None) -> str | None:
    """--password-file, else systemd's credential `mqtt-password`, else None."""
    try:
        return password_from_files(password_file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def checked_ca(endpoint: MqttEndpoint, ca: str | None) -> str | None:
    """The CA file for an mqtts:// broker (None for plain MQTT), checked now so that a wrong path is said
    at start, not at each retry."""
    if not endpoint.tls:
        return None
    try:
        client_context(ca)
    except TlsSetupError as exc:
        raise UsageError(str(exc)) from None
    return ca
