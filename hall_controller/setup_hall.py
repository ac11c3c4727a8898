"""Setting a hall up on disk: config, per-hall secret, MQTT client credentials, database.

`hallctl init`, `hallctl client add`, `hallctl demo` and the daemon share these helpers; they live
here, not in the CLI, so that neither the demo nor the daemon has to import the command line.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import yaml

from .bus.connect import passwords_path  # the apps read the file too: defined on the bus's client side
from .bus.credentials import CredentialStore, write_private
from .config import ClientConfig, HallConfig, load_config, sample_config_text
from .redact import register_secret


def load_or_create_secret(path: str) -> bytes:
    """Per-hall key for hashing ID numbers; created once, readable by the daemon only."""
    p = Path(path)
    if p.exists():
        key = bytes.fromhex(p.read_text().strip())
        register_secret(key)   # never in this process's log, raw or as hex
        return key
    p.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    register_secret(key)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key


def save_password(config: HallConfig, client_id: str, password: str) -> None:
    """Remember a client's clear password in the hall's client-passwords file."""
    path = passwords_path(config)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    data = data or {}
    data[client_id] = password
    write_private(path, yaml.safe_dump(data, allow_unicode=True, sort_keys=True))


def client_password(config: HallConfig, client_id: str) -> str | None:
    path = passwords_path(config)
    if not path.exists():
        return None
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(client_id)


def provision_clients(config: HallConfig, clients: Iterable[ClientConfig]) -> list[str]:
    """Credentials and a saved password for each client that lacks either; the ids given new ones."""
    creds = CredentialStore(config.credentials_path)
    made = []
    for client in clients:
        if creds.get(client.id) is None or client_password(config, client.id) is None:
            password = creds.add_or_reset(client.id, client.role, client.window)
            save_password(config, client.id, password)
            made.append(client.id)
    return made


def init_hall(config_path: Path, *, db_url: str | None = None, quiet: bool = False) -> HallConfig:
    """Create config (from the sample if missing), hall secret, client credentials and the database
    (`db_url`, else the config's)."""
    from .store import upgrade

    if not config_path.exists():
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(sample_config_text(), encoding="utf-8")
        if not quiet:
            print(f"wrote sample hall config {config_path}")
    config = load_config(config_path)
    load_or_create_secret(config.secret_path)
    provision_clients(config, config.clients)
    database = db_url or config.database
    upgrade(database)
    if not quiet:
        print(f"database ready: {database}")
        print(f"MQTT client credentials: {config.credentials_path} (hashes), {passwords_path(config)} (passwords, 0600)")
    return config
