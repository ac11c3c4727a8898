"""Mosquitto configuration for a hall: password file, ACL file and a listener snippet.

The production broker is Mosquitto 2.0 (DESIGN §3). Everything here is generated from the
credential store and `topics.access_rules`, the same rules the embedded broker enforces.

Message size: Mosquitto 2.0 has no per-user limit, so `max_packet_size` (which disconnects a client
sending a larger packet, any protocol version, before the message reaches a subscriber) is the
largest command any role may send — a window's `attach_scan` of `scans.max_mb` (bus.limits) — and
the daemon's bridge refuses everything else above 16 KiB with a reply. `hallctl mqtt-config`
writes it from the hall's `scans.max_mb`: write the files again when that changes.

TLS (`tls=`, the files of `hallctl tls init`): the app PCs reach the broker on a TLS listener (8883)
with the hall CA's broker certificate; the plain listener stays on the loopback only, for the daemon
and hallctl on the hall PC itself. Clients need no certificate of their own (`require_certificate
false`): they still log in with their password and are held to the same ACL.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from .credentials import CredentialStore, write_private
from .limits import broker_packet_limit
from .tls import TlsFiles
from .topics import HallTopics, access_rules

log = logging.getLogger(__name__)


TLS_PORT = 8883
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class MosquittoFiles(NamedTuple):
    """The written files (a tuple, so callers can also just iterate over the paths)."""

    password_file: Path
    acl_file: Path
    conf_file: Path


def password_file_text(credentials: CredentialStore) -> str:
    """`user:$7$...` lines: the store already holds Mosquitto's hash format."""
    return password_lines((c.client_id, c.password_hash) for c in credentials.clients())


def password_lines(users: Iterable[tuple[str, str]]) -> str:
    """Mosquitto's password file from (user, `$7$` hash) pairs (the hall's clients, the city's accounts)."""
    return "".join(f"{user}:{password_hash}\n" for user, password_hash in users)


def acl_user_block(user: str, comment: str, read: Sequence[str], write: Sequence[str]) -> list[str]:
    """One ACL `user` block: what it may read and write; nothing listed = nothing allowed."""
    both = [p for p in read if p in write]
    return ["", f"# {comment}", f"user {user}",
            *[f"topic readwrite {p}" for p in both],
            *[f"topic read {p}" for p in read if p not in both],
            *[f"topic write {p}" for p in write if p not in both]]


def acl_file_text(hall_id: str, credentials: CredentialStore) -> str:
    """One `user` block per client; anything not granted is denied (Mosquitto's default with an ACL file)."""
    topics = HallTopics(hall_id)
    lines = [f"# Mosquitto ACL for hall {hall_id}: generated from the credential store, do not edit."]
    for cred in credentials.clients():
        rules = access_rules(topics, cred.client_id, cred.role, cred.window)
        window = "" if cred.window is None else f", window {cred.window}"
        lines += acl_user_block(cred.client_id, f"{cred.client_id}: role {cred.role}{window}", rules.read, rules.write)
    return "\n".join(lines) + "\n"


DEFAULT_SCAN_MAX_BYTES = 10 * 1024 * 1024   # scans.max_mb's default


def conf_text(password_file: Path, acl_file: Path, *, port: int, bind_address: str | None = None,
              max_packet_size: int | None = None, tls: TlsFiles | None = None, tls_port: int = TLS_PORT,
              tls_bind: str | None = None, title: str = "Hall MQTT listener",
              tls_note: str = "The hall LAN: MQTT over TLS (mqtts://); clients check this certificate against the "
                              "hall CA.") -> str:
    """A listener with authentication and the ACL; include it from mosquitto.conf or run it as is.
    ``max_packet_size`` defaults to what the default ``scans.max_mb`` needs. With ``tls`` a second
    listener on ``tls_port`` speaks TLS and the plain one is on the loopback only (ValueError otherwise).
    ``title`` and ``tls_note``: the comments that say whose broker this is (the city's uses them)."""
    if tls is not None:
        bind_address = bind_address or "127.0.0.1"
        if bind_address not in LOOPBACK:
            raise ValueError(f"with TLS the plain listener must be on the loopback, not {bind_address}")
    listener = f"listener {port}" if bind_address is None else f"listener {port} {bind_address}"
    packet = max_packet_size or broker_packet_limit(DEFAULT_SCAN_MAX_BYTES)
    return "\n".join([
        f"# {title} (generated). Mosquitto 2.0 reads these files after dropping privileges:",
        "# make them readable by the user it runs as (e.g. chown mosquitto).",
        # Small command/reply messages: without this, Nagle's algorithm adds ~40 ms per round trip.
        "set_tcp_nodelay true",
        # A global option: the largest command any role may send (a window's scan) plus the MQTT
        # header; the daemon refuses other commands above 16 KiB itself (no per-user limit here).
        f"max_packet_size {packet}",
        listener,
        "allow_anonymous false",
        # The client id is forced to the username, so nobody can take over another client's session.
        "use_username_as_clientid true",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        *(_tls_listener(tls, tls_port, tls_bind, tls_note) if tls is not None else []),
        "",
    ])


def _tls_listener(tls: TlsFiles, port: int, bind_address: str | None, note: str) -> list[str]:
    """The listener the app PCs use: TLS 1.2+ with the broker's certificate from the hall CA; logins,
    passwords and the ACL as on the plain one (per_listener_settings is off). Mosquitto reads the key
    after dropping privileges: server.key must be readable by its user (the install makes it so)."""
    return [
        "",
        f"# {note}",
        f"listener {port}" if bind_address is None else f"listener {port} {bind_address}",
        "use_username_as_clientid true",
        f"cafile {tls.ca_cert}",
        f"certfile {tls.server_cert}",
        f"keyfile {tls.server_key}",
        "tls_version tlsv1.2",
        "require_certificate false",
    ]


def write_mosquitto_config(
    directory: str | os.PathLike[str],
    hall_id: str,
    credentials: CredentialStore,
    *,
    port: int = 1883,
    bind_address: str | None = None,
    scan_max_bytes: int = DEFAULT_SCAN_MAX_BYTES,
    tls: TlsFiles | None = None,
    tls_port: int = TLS_PORT,
    tls_bind: str | None = None,
) -> MosquittoFiles:
    """Write `passwd`, `acl` and `hall.conf` into `directory` (mode 0600, replaced atomically);
    the packet limit follows the hall's ``scans.max_mb`` (``scan_max_bytes``); ``tls``: see conf_text."""
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = MosquittoFiles(out / "passwd", out / "acl", out / "hall.conf")
    write_private(files.password_file, password_file_text(credentials))
    write_private(files.acl_file, acl_file_text(hall_id, credentials))
    write_private(files.conf_file, conf_text(files.password_file, files.acl_file, port=port, bind_address=bind_address,
                                             max_packet_size=broker_packet_limit(scan_max_bytes), tls=tls,
                                             tls_port=tls_port, tls_bind=tls_bind))
    log.info("mosquitto config for hall %s written to %s (%d clients)", hall_id, out, len(credentials.clients()))
    return files
