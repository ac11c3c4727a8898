"""Where a hall's broker is: the one parser of `mqtt://` and `mqtts://` URLs, and where a client's
password comes from when it is not in the URL.

`mqtt://[USER[:PASSWORD]@]HOST[:PORT]` is plain MQTT (port 1883), `mqtts://…` MQTT over TLS (port
8883) with the broker's certificate checked against `ca` (the hall CA, `hallctl tls init`) and its
name against HOST. A bare `HOST:PORT` is `mqtt://HOST:PORT` (`tcp://` too, as older commands wrote).
The daemon, hallctl and the Qt apps all parse through `parse_mqtt_url`, so a URL means the same thing
everywhere and no error message echoes its password.

A password on a command line is visible to every user of the PC (`ps`): the apps read it from
`--password-file`, else from the credential systemd hands the service (`LoadCredential=mqtt-password`,
found in `$CREDENTIALS_DIRECTORY`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..config import ConfigError, HallConfig
from ..redact import MASK, redact_url, register_secret

log = logging.getLogger(__name__)

PLAIN_PORT = 1883
TLS_PORT = 8883
SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True}   # scheme -> TLS
CREDENTIAL_NAME = "mqtt-password"   # LoadCredential=mqtt-password:/etc/hall/app-password


class MqttUrlError(ValueError):
    """A malformed broker URL; the message (Chinese / English) never holds the URL's password."""


@dataclass(frozen=True)
class MqttEndpoint:
    """A broker and how to log in to it. `repr`/`str` show the URL with the password as `***`."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: str | None = None          # the CA file the broker's certificate must chain to (mqtts; None = system CAs)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self) -> str:
        """The URL without the password (`***` in its place when there is one)."""
        user = ""
        if self.username is not None:
            user = quote(self.username, safe="") + (f":{MASK}" if self.password is not None else "") + "@"
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.address}"

    def with_login(self, username: str, password: str | None) -> MqttEndpoint:
        if password is not None:
            register_secret(password)
        return replace(self, username=username, password=password)

    def __str__(self) -> str:
        return self.url()

    def __repr__(self) -> str:
        ca = f", ca={self.ca!r}" if self.ca else ""
        return f"MqttEndpoint({self.url()!r}{ca})"


def parse_mqtt_url(text: str, *, ca: str | None = None) -> MqttEndpoint:
    """`mqtt://`, `mqtts://` or `HOST:PORT` -> MqttEndpoint; MqttUrlError says what is wrong.

    `ca` is kept for an `mqtts://` URL only (a plain connection has no certificate to check)."""
    shown = redact_url(text)
    parts = urlsplit(text if "://" in text else f"mqtt://{text}")
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise MqttUrlError(f"MQTT 地址须为 mqtt://主机:端口 或 mqtts://主机:端口 / must be mqtt://HOST:PORT "
                           f"or mqtts://HOST:PORT, got {shown!r}")
    tls = SCHEMES[scheme]
    try:
        port = parts.port or (TLS_PORT if tls else PLAIN_PORT)
    except ValueError:
        raise MqttUrlError(f"MQTT 地址端口无效 / bad port in {shown!r}") from None   # no chained echo of the URL
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None:
        register_secret(password)   # never in this process's log from now on
    username = unquote(parts.username) if parts.username else None
    return MqttEndpoint(parts.hostname, port, username, password, tls, ca if tls else None)


def config_endpoint(config: HallConfig) -> MqttEndpoint | None:
    """The config's `mqtt.url` with its `mqtt.ca`, None without one; ConfigError when it is malformed."""
    if not config.mqtt_url:
        return None
    try:
        return parse_mqtt_url(config.mqtt_url, ca=config.mqtt_ca)
    except MqttUrlError as exc:
        raise ConfigError(config.source, [("mqtt.url", str(exc))]) from None


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The first line of `path` (its line break dropped); ValueError in Chinese when unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as fh:
            line = fh.readline().rstrip("\r\n")
    except OSError as exc:
        log.debug("password file %s: %s", path, exc)
        raise ValueError(f"无法读取密码文件 {path}（{exc.strerror or type(exc).__name__}）") from None
    if not line:
        raise ValueError(f"密码文件 {path} 的第一行是空的")
    register_secret(line)
    return line


def credential_file(name: str = CREDENTIAL_NAME) -> Path | None:
    """The systemd credential `name` of this service (LoadCredential), when systemd handed one."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    path = Path(folder) / name
    return path if path.is_file() else None


def password_from_files(password_file: str | os.PathLike[str] | None = None) -> str | None:
    """`password_file` when given, else the systemd credential `mqtt-password`, else None."""
    if password_file:
        return read_password_file(password_file)
    credential = credential_file()
    return read_password_file(credential) if credential is not None else None
