"""Credential store: MQTT client id -> role, window and password hash, in one YAML file.

Hashes are kept in Mosquitto's own PBKDF2-SHA512 format (`$7$iterations$b64salt$b64hash`, what
`mosquitto_passwd` writes), so the Mosquitto password file is these lines verbatim and the embedded
broker verifies the same strings. Clear passwords are never stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import yaml

from ..files import atomic_replace
from .topics import ROLES, WINDOW_ROLES, check_segment

log = logging.getLogger(__name__)

DAEMON_CLIENT_ID = "hall-daemon"
# Mosquitto's default is 101 iterations. Generated passwords carry 144 random bits, so the count
# matters only for operator-chosen passwords; 20 000 costs ~20 ms per CONNECT on the hall PC.
DEFAULT_ITERATIONS = 20_000
_SALT_BYTES = 12  # what mosquitto_passwd uses
_MAX_PASSWORD_CHARS = 256
_MAX_ITERATIONS = 10_000_000
_UNREADABLE = (-1, -1, -1)  # file stamp of a file that cannot even be stat()ed
_NONE_BAD = object()
E = TypeVar("E")


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically and durably with a file only its owner can read (0600): password
    hashes, clear passwords, ACLs. A crash leaves the old file or the new one, never half of one.

    A file that exists keeps its owner, group and group-read bit (never more than 0640): an installed
    hall's credential store is root:hall 0640 so that the daemon can read what `hallctl client add`,
    run as root, rewrites."""
    try:
        before: os.stat_result | None = path.stat()
    except OSError:
        before = None
    with atomic_replace(path, mode=0o600,
                        prepare=(lambda fd: _keep_ownership(fd, before)) if before is not None else None) as fh:
        fh.write(text.encode("utf-8"))


def _keep_ownership(fd: int, before: os.stat_result) -> None:
    """Give the replacement the old file's owner and group (where this process may) and its group
    read bit; the world never gets a bit."""
    try:
        if (before.st_uid, before.st_gid) != (os.getuid(), os.getgid()):
            os.fchown(fd, before.st_uid if os.getuid() == 0 else -1, before.st_gid)
    except PermissionError:
        log.warning("cannot keep the group of a private file (not allowed); it is now owner-only")
        return
    os.fchmod(fd, 0o600 | (before.st_mode & 0o040))


class CredentialError(ValueError):
    """A bad argument, or an unreadable / malformed credential file (the message names the file)."""


@dataclass(frozen=True)
class ClientCredential:
    client_id: str
    role: str
    window: int | None
    password_hash: str


def generate_password() -> str:
    """A strong random password (144 bits, URL-safe, easy to paste into a config screen)."""
    return secrets.token_urlsafe(18)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """Hash in Mosquitto's `$7$` format (PBKDF2-HMAC-SHA512, 64-byte digest)."""
    if not 1 <= iterations <= _MAX_ITERATIONS:
        raise CredentialError(f"iterations out of range: {iterations}")
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _parse_hash(password_hash: str) -> tuple[int, bytes, bytes]:
    parts = password_hash.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        raise CredentialError("not a $7$ (PBKDF2-SHA512) hash")
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        digest = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise CredentialError(f"malformed $7$ hash: {exc}") from None
    if not 1 <= iterations <= _MAX_ITERATIONS or not salt or len(digest) != 64:
        raise CredentialError("malformed $7$ hash: bad iterations, salt or digest length")
    return iterations, salt, digest


def check_password(password: str, password_hash: str) -> bool:
    """Constant-time check of a password against a `$7$` hash; False for malformed hashes."""
    try:
        iterations, salt, digest = _parse_hash(password_hash)
    except CredentialError:
        return False
    try:
        secret = password.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", secret, salt, iterations), digest)


def check_password_text(password: object) -> str:
    """`password` if it can be a password (non-empty, bounded, no NUL or newline); else CredentialError."""
    if not isinstance(password, str) or not password:
        raise CredentialError("password must be a non-empty string")
    if len(password) > _MAX_PASSWORD_CHARS or any(ch in password for ch in "\0\r\n"):
        raise CredentialError(f"password must be at most {_MAX_PASSWORD_CHARS} characters without NUL or newlines")
    return password


def _check_role_window(client_id: str, role: object, window: object) -> None:
    if role not in ROLES:
        raise CredentialError(f"{client_id}: unknown role {role!r} (one of {', '.join(ROLES)})")
    if role in WINDOW_ROLES and (window is not None or role == "tablet"):   # window without one: a supervisor
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise CredentialError(f"{client_id}: role {role} needs a window number >= 1, got {window!r}")
    elif window is not None:
        raise CredentialError(f"{client_id}: role {role} takes no window")
    if (role == "daemon") != (client_id == DAEMON_CLIENT_ID):
        raise CredentialError(f"{client_id}: role daemon belongs to the client {DAEMON_CLIENT_ID!r} only")


def check_hash_field(name: str, password_hash: object) -> str:
    """The `password_hash` of an entry, checked to be a well-formed `$7$` hash."""
    if not isinstance(password_hash, str):
        raise CredentialError(f"{name}: password_hash missing")
    try:
        _parse_hash(password_hash)
    except CredentialError as exc:
        raise CredentialError(f"{name}: {exc}") from None
    return password_hash


def _check_client_id(client_id: object) -> str:
    try:
        return check_segment(client_id, "client id")
    except ValueError as exc:
        raise CredentialError(str(exc)) from None


class HashFileStore(Generic[E]):
    """A YAML file of name -> entry holding a `$7$` hash, re-read when it changes on disk (the CLI may
    edit it while a broker runs). The hall's clients and the city's accounts (bus.city_accounts) are
    both such files; a subclass says what an entry is (`_parse_entry`, `_entry_data`).

    Thread-safe. Writes go to a temporary file in the same directory that is renamed over the old
    one, so a reader never sees half a file; the file is mode 0600 because it holds hashes. A file
    that is broken by hand while it is in use is logged and the last good content stays in use;
    loading it at start, or changing it, raises CredentialError instead.
    """

    HEADER = ""     # the comment line on top of the file
    WHAT = "entries"

    def __init__(self, path: str | os.PathLike[str], *, iterations: int = DEFAULT_ITERATIONS) -> None:
        self.path = Path(path)
        self.iterations = iterations
        self._lock = threading.Lock()
        self._entries: dict[str, E] = {}
        self._stamp: tuple[int, int, int] | None = None  # (inode, mtime, size) of what _entries holds
        self._bad_stamp: object = _NONE_BAD  # stamp of the last version that failed to load
        with self._lock:
            self._refresh(strict=True)

    def _parse_entry(self, name: object, entry: object) -> E:
        raise NotImplementedError

    def _entry_data(self, entry: E) -> dict[str, object]:
        raise NotImplementedError

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CredentialError(f"{self.path}: {exc.strerror}") from None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self, *, strict: bool) -> None:
        stamp: tuple[int, int, int] | None = _UNREADABLE
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp or (stamp == self._bad_stamp and not strict):
                return
            entries = {} if stamp is None else self._read()
        except CredentialError as exc:
            if strict:
                raise
            if stamp != self._bad_stamp:  # report each broken version once
                log.error("%s; keeping the %d %s read before", exc, len(self._entries), self.WHAT)
                self._bad_stamp = stamp
            return
        self._entries, self._stamp = entries, stamp

    def _read(self) -> dict[str, E]:
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CredentialError(f"{self.path}: cannot read credential file: {exc}") from None
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise CredentialError(f"{self.path}: expected a mapping of name -> entry")
        entries: dict[str, E] = {}
        for name, entry in data.items():
            try:
                entries[name] = self._parse_entry(name, entry)
            except CredentialError as exc:
                raise CredentialError(f"{self.path}: {exc}") from None
        return entries

    def _write(self, entries: dict[str, E]) -> None:
        data = {name: self._entry_data(entries[name]) for name in sorted(entries)}
        text = self.HEADER + (yaml.safe_dump(data, sort_keys=False, allow_unicode=True) if data else "")
        write_private(self.path, text)
        self._entries = entries
        self._stamp = self._file_stamp()

    def _lookup(self, name: str) -> E | None:
        with self._lock:
            self._refresh(strict=False)
            return self._entries.get(name)

    def _all(self) -> list[E]:
        with self._lock:
            self._refresh(strict=False)
            return [self._entries[k] for k in sorted(self._entries)]

    def _put(self, name: str, entry: E, check: Callable[[E | None], None] | None = None) -> bool:
        """Store `entry` under `name` (after `check(the current entry)` passes); True if it replaced one."""
        with self._lock:
            self._refresh(strict=True)
            old = self._entries.get(name)
            if check is not None:
                check(old)
            self._write({**self._entries, name: entry})
        return old is not None

    def _delete(self, name: str) -> bool:
        with self._lock:
            self._refresh(strict=True)
            if name not in self._entries:
                return False
            self._write({k: v for k, v in self._entries.items() if k != name})
        return True

    def _verify_hash(self, entry: E | None, password_hash: str | None, password: str) -> bool:
        if entry is None or password_hash is None:
            # Same cost as a real check, so response time does not reveal which names exist.
            hashlib.pbkdf2_hmac("sha512", b"", b"\0" * _SALT_BYTES, self.iterations)
            return False
        return check_password(password, password_hash)


class CredentialStore(HashFileStore[ClientCredential]):
    """The hall's MQTT clients: client id -> role, window and password hash (see HashFileStore)."""

    HEADER = "# MQTT clients of this hall: hashes only (hallctl client add ID --role ROLE).\n"
    WHAT = "clients"

    def _parse_entry(self, client_id: object, entry: object) -> ClientCredential:
        cid = _check_client_id(client_id)
        if not isinstance(entry, Mapping):
            raise CredentialError(f"{cid}: entry must be a mapping")
        unknown = set(entry) - {"role", "window", "password_hash"}
        if unknown:
            raise CredentialError(f"{cid}: unknown keys {sorted(map(str, unknown))}")
        role, window, password_hash = entry.get("role"), entry.get("window"), entry.get("password_hash")
        _check_role_window(cid, role, window)
        return ClientCredential(cid, str(role), window, check_hash_field(cid, password_hash))  # type: ignore[arg-type]

    def _entry_data(self, cred: ClientCredential) -> dict[str, object]:
        entry: dict[str, object] = {"role": cred.role}
        if cred.window is not None:
            entry["window"] = cred.window
        entry["password_hash"] = cred.password_hash
        return entry

    def get(self, client_id: str) -> ClientCredential | None:
        return self._lookup(client_id)

    def clients(self) -> list[ClientCredential]:
        """All clients, sorted by id."""
        return self._all()

    def add_or_reset(self, client_id: str, role: str, window: int | None = None, password: str | None = None) -> str:
        """Add a client or replace its role, window and password; returns the (new) clear password."""
        cid = _check_client_id(client_id)
        _check_role_window(cid, role, window)
        password = generate_password() if password is None else check_password_text(password)
        cred = ClientCredential(cid, role, window, hash_password(password, iterations=self.iterations))
        action = "reset" if self._put(cid, cred) else "added"
        log.info("credentials: %s client %s (role %s%s)", action, cid, role, "" if window is None else f", window {window}")
        return password

    def remove(self, client_id: str) -> bool:
        """Delete a client; False if it was not there."""
        if not self._delete(client_id):
            return False
        log.info("credentials: removed client %s", client_id)
        return True

    def verify(self, client_id: str, password: str) -> bool:
        """True if the client exists and the password matches (costs one PBKDF2 either way)."""
        cred = self.get(client_id)
        return self._verify_hash(cred, None if cred is None else cred.password_hash, password)
