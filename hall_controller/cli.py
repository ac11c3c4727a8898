"""`hallctl`: set up, run and operate a hall."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, HallConfig, hash_pin, load_config, sample_config_text
from .logsetup import setup_logging

log = logging.getLogger("hallctl")

DEFAULT_CONFIG = os.environ.get("HALL_CONFIG", "hall.yaml")


def passwords_path(config: HallConfig) -> Path:
    """Clear passwords for provisioning the hall's own apps (0600, next to the credential store)."""
    return Path(config.credentials_path).with_name("client-passwords.yaml")


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _save_password(config: HallConfig, client_id: str, password: str) -> None:
    path = passwords_path(config)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    data = data or {}
    data[client_id] = password
    _write_private(path, yaml.safe_dump(data, allow_unicode=True, sort_keys=True))


def client_password(config: HallConfig, client_id: str) -> str | None:
    path = passwords_path(config)
    if not path.exists():
        return None
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(client_id)


# ---------------------------------------------------------------------- commands
def cmd_sample_config(args: argparse.Namespace) -> int:
    sys.stdout.write(sample_config_text())
    return 0


def cmd_hash_pin(args: argparse.Namespace) -> int:
    print(hash_pin(args.pin))
    return 0


def init_hall(config_path: Path, *, quiet: bool = False) -> HallConfig:
    """Create config (from the sample if missing), hall secret, client credentials and the database."""
    from .bus.credentials import CredentialStore
    from .daemon import load_or_create_secret
    from .store import upgrade

    if not config_path.exists():
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(sample_config_text(), encoding="utf-8")
        if not quiet:
            print(f"wrote sample hall config {config_path}")
    config = load_config(config_path)
    load_or_create_secret(config.secret_path)
    creds = CredentialStore(config.credentials_path)
    for client in config.clients:
        if creds.get(client.id) is None or client_password(config, client.id) is None:
            password = creds.add_or_reset(client.id, client.role, client.window)
            _save_password(config, client.id, password)
    upgrade(config.database)
    if not quiet:
        print(f"database ready: {config.database}")
        print(f"MQTT client credentials: {config.credentials_path} (hashes), {passwords_path(config)} (passwords, 0600)")
    return config


def cmd_init(args: argparse.Namespace) -> int:
    init_hall(Path(args.config))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .store import upgrade

    url = args.db or load_config(args.config).database
    upgrade(url)
    print(f"database at head: {url}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import DaemonOptions, run_daemon

    if args.mqtt_listen and args.mqtt_url:
        print("hallctl run: use either --mqtt-listen or --mqtt-url, not both", file=sys.stderr)
        return 2
    options = DaemonOptions(db_url=args.db, mqtt_listen=args.mqtt_listen, mqtt_url=args.mqtt_url,
                            upstream_url=args.upstream)
    return run_daemon(args.config, options)


def _admin_client(config: HallConfig, timeout: float = 3.0):
    """Connect to the running daemon's broker as `admin`; None if it cannot be reached."""
    from .bus.client import HallClient
    from .daemon import split_hostport

    password = client_password(config, "admin")
    if password is None or not config.mqtt_listen:
        return None
    host, port = split_hostport(config.mqtt_listen)
    client = HallClient("admin", password, host, port, config.hall_id, role="admin")
    try:
        client.connect(timeout=timeout)
    except Exception as exc:  # the daemon (or its broker) is not running
        log.info("daemon not reachable over MQTT: %s", exc)
        client.close()
        return None
    return client


def _offline_service(config: HallConfig):
    from .clock import SystemClock
    from .daemon import load_or_create_secret
    from .service import HallService
    from .store import Store

    return HallService(config, Store(config.database), SystemClock(), secret=load_or_create_secret(config.secret_path))


def _admin_op(config: HallConfig, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run an admin op through the daemon when it runs, else directly on the database."""
    from .service import Actor

    client = _admin_client(config)
    if client is not None:
        try:
            return client.request(op, **(args or {}))
        finally:
            client.close()
    print("(daemon not reachable: using the database directly)", file=sys.stderr)
    service = _offline_service(config)
    try:
        return service.execute(Actor("hallctl", "admin"), op, args or {})
    finally:
        service.store.close()


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    snap = _admin_op(config, "status")
    if args.json:
        print(json.dumps(snap, ensure_ascii=False, indent=2))
        return 0
    print(f"{config.name}  营业日 {snap['day']}（第{snap['epoch'] + 1}轮）  事件序号 {snap['seq']}")
    print("排队：" + "，".join(f"{q['name']}({q['prefix']}) {q['waiting']}人" for q in snap["queues"].values()))
    labels = {"closed": "未登录", "idle": "空闲", "calling": "呼叫中", "serving": "办理中", "paused": "暂停服务"}
    for n, w in snap["windows"].items():
        staff = w["staff"]["name"] if w["staff"] else "-"
        ticket = w["ticket"]["number"] if w["ticket"] else "-"
        print(f"  {n}号窗口  {labels.get(w['status'], w['status'])}  {staff}  当前 {ticket}")
    return 0


def cmd_reset_day(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    result = _admin_op(config, "reset_day")
    print(f"已重置：营业日 {result['day']}，第{result['epoch'] + 1}轮，号码从001开始")
    return 0


def cmd_client_add(args: argparse.Namespace) -> int:
    from .bus.credentials import CredentialStore

    config = load_config(args.config)
    password = CredentialStore(config.credentials_path).add_or_reset(args.id, args.role, args.window, args.password)
    _save_password(config, args.id, password)
    print(password)
    return 0


def cmd_mqtt_config(args: argparse.Namespace) -> int:
    from .bus.credentials import CredentialStore
    from .bus.mosquitto import write_mosquitto_config

    config = load_config(args.config)
    paths = write_mosquitto_config(args.dir, config.hall_id, CredentialStore(config.credentials_path))
    for p in (paths.values() if isinstance(paths, dict) else paths):
        print(p)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.dir), ui=not args.no_ui)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hallctl", description="区公共法律服务中心 排队与设备控制")
    p.add_argument("--log-level", default=os.environ.get("HALL_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", default=DEFAULT_CONFIG, help="hall config YAML (default %(default)s)")
        return sp

    sub.add_parser("sample-config", help="print the sample hall config").set_defaults(func=cmd_sample_config)
    sp = sub.add_parser("hash-pin", help="hash a staff PIN for the config")
    sp.add_argument("pin")
    sp.set_defaults(func=cmd_hash_pin)
    with_config(sub.add_parser("init", help="create config, secret, credentials, database")).set_defaults(
        func=cmd_init)
    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    sp = with_config(db.add_parser("upgrade", help="run migrations to the newest schema"))
    sp.add_argument("--db", help="database URL (overrides the config)")
    sp.set_defaults(func=cmd_db_upgrade)
    sp = with_config(sub.add_parser("run", help="run the hall daemon"))
    sp.add_argument("--db")
    sp.add_argument("--mqtt-listen", metavar="HOST:PORT", help="start the embedded broker there")
    sp.add_argument("--mqtt-url", metavar="mqtt://USER:PASS@HOST:PORT", help="use an external broker")
    sp.add_argument("--upstream", metavar="URL", help="management system base URL")
    sp.set_defaults(func=cmd_run)
    sp = with_config(sub.add_parser("status", help="queues and windows"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)
    with_config(sub.add_parser("reset-day", help="cancel waiting tickets and restart numbering")).set_defaults(
        func=cmd_reset_day)
    client = sub.add_parser("client", help="MQTT clients").add_subparsers(dest="client_command", required=True)
    sp = with_config(client.add_parser("add", help="add or reset a client; prints its password"))
    sp.add_argument("id")
    sp.add_argument("--role", required=True, choices=["kiosk", "window", "tablet", "display", "admin"])
    sp.add_argument("--window", type=int)
    sp.add_argument("--password")
    sp.set_defaults(func=cmd_client_add)
    sp = with_config(sub.add_parser("mqtt-config", help="write a Mosquitto password file and ACL"))
    sp.add_argument("dir")
    sp.set_defaults(func=cmd_mqtt_config)
    from .upstream.cli import add_commands as add_upstream_commands

    add_upstream_commands(sub, with_config)
    sp = sub.add_parser("demo", help="run the whole hall on embedded defaults")
    sp.add_argument("--dir", default="hall-demo", help="working folder (default %(default)s)")
    sp.add_argument("--no-ui", action="store_true", help="do not start the Qt apps")
    sp.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
