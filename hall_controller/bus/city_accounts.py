"""The city broker's accounts (DESIGN §11): one per hall, plus read-only service accounts (`hall-city`).

Kept on the CITY side, in a file like the hall's credential store (credentials.HashFileStore: the same
`$7$` hashes, so the Mosquitto password file is these lines verbatim and an embedded broker can verify
the same strings). What each account may do is decided here once (`account_rules`), for the Mosquitto
ACL written by `write_city_mosquitto_config` and for any broker that checks topics in Python:

- a hall account `hall-{district}-{hall}` (also the MQTT client id the hall uses) may write only
  `city/{district}/{hall}/#` — its summary, alerts and its last will — and read nothing, not even
  its own topics, so a hall learns nothing about the others;
- a service account (`hall-city`, or another reader such as a second hall-city or a bench) may read
  `city/#` and write nothing.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .credentials import (
    CredentialError,
    HashFileStore,
    check_hash_field,
    check_password_text,
    generate_password,
    hash_password,
    write_private,
)
from .mosquitto import MosquittoFiles, acl_user_block, conf_text, password_lines
from .tls import TlsFiles
from .topics import check_segment

log = logging.getLogger(__name__)

CITY_ROOT = "city"
HALL_CITY = "hall-city"          # the service account hall-city logs in with
KINDS = ("hall", "service")
_DISTRICT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")   # the contract's district: [A-Za-z0-9_-]{1,32}
# The largest message a hall sends (a summary with many services and devices is a few KiB).
CITY_MAX_PACKET = 256 * 1024
# Messages Mosquitto keeps for a service account with a persistent session while it is away (alerts
# and summaries at QoS 1); beyond that it drops new ones. 500 halls at one summary a second fill
# 100 000 in a few minutes: hall-city should keep summaries on a clean session (they are retained)
# and only alerts on a persistent one.
CITY_MAX_QUEUED = 100_000


@dataclass(frozen=True)
class CityAccount:
    username: str
    kind: str                   # "hall" or "service"
    district: str | None        # a hall's district and hall id; None for a service
    hall: str | None
    password_hash: str

    @property
    def prefix(self) -> str | None:
        """The topics a hall account owns (`city/{district}/{hall}`); None for a service."""
        return None if self.hall is None else hall_prefix(str(self.district), self.hall)


def check_district(value: object) -> str:
    """A district code as one topic level: 1-32 of A-Z a-z 0-9 _ - (e.g. the 6-digit 行政区划代码)."""
    if not isinstance(value, str) or not _DISTRICT_RE.fullmatch(value):
        raise CredentialError(f"invalid district {value!r}: use 1-32 of A-Z a-z 0-9 _ - (e.g. 310101)")
    return value


def _segment(value: object, what: str) -> str:
    try:
        return check_segment(value, what)
    except ValueError as exc:
        raise CredentialError(str(exc)) from None


def hall_username(district: str, hall: str) -> str:
    """`hall-{district}-{hall}`: the account and MQTT client id of a hall (unique in the city)."""
    return _segment(f"hall-{check_district(district)}-{_segment(hall, 'hall id')}", "hall account name (too long)")


def hall_prefix(district: str, hall: str) -> str:
    return f"{CITY_ROOT}/{check_district(district)}/{_segment(hall, 'hall id')}"


def account_rules(account: CityAccount) -> tuple[list[str], list[str]]:
    """(read, write) topic filters of an account: the one place the city's access rules live."""
    if account.kind == "hall":
        return [], [f"{account.prefix}/#"]
    return [f"{CITY_ROOT}/#"], []


class CityCredentialStore(HashFileStore[CityAccount]):
    """The city's account file (mode 0600, hashes only), re-read when it changes on disk."""

    HEADER = "# City MQTT accounts: hashes only (hallctl city-credentials add HALL --district D).\n"
    WHAT = "city accounts"

    def _parse_entry(self, name: object, entry: object) -> CityAccount:
        username = _segment(name, "account name")
        if not isinstance(entry, Mapping):
            raise CredentialError(f"{username}: entry must be a mapping")
        unknown = set(entry) - {"kind", "district", "hall", "password_hash"}
        if unknown:
            raise CredentialError(f"{username}: unknown keys {sorted(map(str, unknown))}")
        kind, district, hall = entry.get("kind"), entry.get("district"), entry.get("hall")
        password_hash = check_hash_field(username, entry.get("password_hash"))
        if kind == "hall":
            if hall_username(str(district), str(hall)) != username:
                raise CredentialError(f"{username}: a hall account is named hall-{{district}}-{{hall}}")
            return CityAccount(username, "hall", str(district), str(hall), password_hash)
        if kind == "service" and district is None and hall is None:
            return CityAccount(username, "service", None, None, password_hash)
        raise CredentialError(f"{username}: kind must be hall (with district and hall) or service (without)")

    def _entry_data(self, account: CityAccount) -> dict[str, object]:
        entry: dict[str, object] = {"kind": account.kind}
        if account.kind == "hall":
            entry.update(district=account.district, hall=account.hall)
        entry["password_hash"] = account.password_hash
        return entry

    def accounts(self) -> list[CityAccount]:
        """All accounts, sorted by name."""
        return self._all()

    def get(self, username: str) -> CityAccount | None:
        return self._lookup(username)

    def add_hall(self, hall: str, district: str, password: str | None = None) -> tuple[CityAccount, str]:
        """Add a hall's account or give it a new password; returns it and the clear password (shown once)."""
        username = hall_username(district, hall)
        return self._add(CityAccount(username, "hall", district, hall, ""), password)

    def add_service(self, name: str = HALL_CITY, password: str | None = None) -> tuple[CityAccount, str]:
        """Add a read-only service account (default `hall-city`) or give it a new password."""
        username = _segment(name, "service account name")
        return self._add(CityAccount(username, "service", None, None, ""), password)

    def _add(self, account: CityAccount, password: str | None) -> tuple[CityAccount, str]:
        password = generate_password() if password is None else check_password_text(password)
        account = CityAccount(account.username, account.kind, account.district, account.hall,
                              hash_password(password, iterations=self.iterations))

        def same_kind(old: CityAccount | None) -> None:
            if old is not None and (old.kind, old.district, old.hall) != (account.kind, account.district, account.hall):
                what = "a service" if old.hall is None else f"hall {old.hall} of district {old.district}"
                raise CredentialError(f"{account.username} is already the account of {what}: remove it first")

        action = "reset" if self._put(account.username, account, same_kind) else "added"
        log.info("city credentials: %s %s account %s", action, account.kind, account.username)
        return account, password

    def find(self, name: str, district: str | None = None) -> list[CityAccount]:
        """Accounts called `name`, or the hall accounts of hall `name` (in `district` if given)."""
        return [a for a in self.accounts() if (a.username == name and district is None)
                or (a.hall == name and district in (None, a.district))]

    def remove(self, username: str) -> bool:
        if not self._delete(username):
            return False
        log.info("city credentials: removed account %s", username)
        return True

    def verify(self, username: str, password: str) -> bool:
        """True if the account exists and the password matches (costs one PBKDF2 either way)."""
        account = self.get(username)
        return self._verify_hash(account, None if account is None else account.password_hash, password)


def city_acl_text(store: CityCredentialStore) -> str:
    lines = ["# Mosquitto ACL of the city broker: generated from the city accounts "
             "(hallctl city-credentials mosquitto), do not edit."]
    for account in store.accounts():
        read, write = account_rules(account)
        what = f"hall {account.hall} of district {account.district}" if account.kind == "hall" else "service (reads all)"
        lines += acl_user_block(account.username, f"{account.username}: {what}", read, write)
    return "\n".join(lines) + "\n"


def city_conf_text(files: MosquittoFiles, *, port: int, bind_address: str | None, tls: TlsFiles | None,
                   tls_port: int, max_queued: int = CITY_MAX_QUEUED) -> str:
    base = conf_text(files.password_file, files.acl_file, port=port, bind_address=bind_address,
                     max_packet_size=CITY_MAX_PACKET, tls=tls, tls_port=tls_port, title="City MQTT broker",
                     tls_note="The halls over the WAN: MQTT over TLS (mqtts://); halls check this certificate "
                              "against their city.ca.")
    return base + "\n".join([
        "",
        "# hall-city's persistent session keeps alerts while it is away, up to this many messages.",
        f"max_queued_messages {max_queued}",
        "# Halls' last wills and retained summaries survive a broker restart only with persistence on",
        "# (Debian's /etc/mosquitto/mosquitto.conf has `persistence true`).",
        "",
    ])


def write_city_mosquitto_config(directory: str | os.PathLike[str], store: CityCredentialStore, *,
                                port: int = 1883, bind_address: str | None = None, tls: TlsFiles | None = None,
                                tls_port: int = 8883) -> MosquittoFiles:
    """Write `passwd`, `acl` and `city.conf` into `directory` (mode 0600, replaced atomically); with
    ``tls`` the halls use the TLS listener and the plain one is on the loopback only."""
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = MosquittoFiles(out / "passwd", out / "acl", out / "city.conf")
    text = city_conf_text(files, port=port, bind_address=bind_address, tls=tls, tls_port=tls_port)
    write_private(files.password_file, password_lines((a.username, a.password_hash) for a in store.accounts()))
    write_private(files.acl_file, city_acl_text(store))
    write_private(files.conf_file, text)
    log.info("city mosquitto config written to %s (%d accounts)", out, len(store.accounts()))
    return files
