"""`hallctl`: set up, run and operate a hall."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .admin import AdminUnavailable, admin_call, admin_op, mqtt_url_arg
from .clock import Clock, SystemClock
from .config import ConfigError, hash_pin, load_config, sample_config_text
from .logsetup import setup_logging
from .setup_hall import init_hall, save_password

log = logging.getLogger("hallctl")



def default_config() -> str:
    """$HALL_CONFIG, else ./hall.yaml, else on an installed hall PC /etc/hall/hall.yaml (so an IT person
    types `hallctl doctor` there without --config)."""
    from .operate.paths import HallPaths

    if os.environ.get("HALL_CONFIG"):
        return os.environ["HALL_CONFIG"]
    installed = HallPaths().config
    return str(installed) if not Path("hall.yaml").exists() and installed.exists() else "hall.yaml"


DEFAULT_CONFIG = default_config()
# Commands of packages above this one (`hallctl demo` is hall_demo's): each entry point names a
# `register(subparsers)` that adds its subcommands with `func`; hall_controller never imports them.
COMMANDS_GROUP = "hallctl.commands"


# ---------------------------------------------------------------------- commands
def cmd_sample_config(args: argparse.Namespace) -> int:
    sys.stdout.write(sample_config_text())
    return 0


def cmd_hash_pin(args: argparse.Namespace) -> int:
    """A PIN hash for a `staff:` entry; the PIN is typed at a hidden prompt or piped (--pin-stdin),
    never an argument (`ps` shows argv to everyone)."""
    from .operate.staff import StaffCommandError, read_pin

    try:
        print(hash_pin(read_pin(args.pin_stdin)))
    except StaffCommandError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    init_hall(Path(args.config), db_url=args.db)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .store import upgrade

    url = args.db or load_config(args.config).database
    upgrade(url)
    print(f"database at head: {url}")
    return 0


def _is_hostport(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit())


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import DaemonOptions, run_daemon

    if args.mqtt_listen and args.mqtt_url:
        print("hallctl run: use either --mqtt-listen or --mqtt-url, not both", file=sys.stderr)
        return 2
    if args.emulator and not _is_hostport(args.emulator):
        print(f"hallctl run: --emulator must be HOST:PORT, got {args.emulator!r}", file=sys.stderr)
        return 2
    options = DaemonOptions(db_url=args.db, mqtt_listen=args.mqtt_listen, mqtt_url=args.mqtt_url,
                            upstream_url=args.upstream, emulator_control=args.emulator)
    return run_daemon(args.config, options)


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    snap, reached = admin_call(config, "status", clock=args.clock, db_url=args.db, mqtt_url=args.mqtt_url)
    if args.json:
        print(json.dumps({**snap, "reached": reached}, ensure_ascii=False, indent=2))
        return 0
    print(f"{config.name}  营业日 {snap['day']}（第{snap['epoch'] + 1}轮）  事件序号 {snap['seq']}")
    print(config.calendar_status(args.clock.now()))   # today's hours and why; a warning if holidays run out
    print("排队：" + "，".join(f"{q['name']}({q['prefix']}) {q['waiting']}人" for q in snap["queues"].values()))
    labels = {"closed": "未登录", "idle": "空闲", "calling": "呼叫中", "serving": "办理中", "paused": "暂停服务"}
    for n, w in snap["windows"].items():
        staff = w["staff"]["name"] if w["staff"] else "-"
        ticket = w["ticket"]["number"] if w["ticket"] else "-"
        print(f"  {n}号窗口  {labels.get(w['status'], w['status'])}  {staff}  当前 {ticket}")
    if reached["via"] == "daemon":
        origin = {"runtime_file": "运行时文件", "config": "配置"}.get(reached["address_from"], reached["address_from"])
        print(f"来源：守护进程 {reached['mqtt']}（地址取自{origin}） / from the daemon")
    else:
        print("来源：数据库（未连上守护进程） / from the database")
    return 0


def cmd_reset_day(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    result = admin_op(config, "reset_day", clock=args.clock, db_url=args.db, mqtt_url=args.mqtt_url)
    print(f"已重置：营业日 {result['day']}，第{result['epoch'] + 1}轮，号码从001开始")
    return 0


def cmd_client_add(args: argparse.Namespace) -> int:
    from .bus.credentials import CredentialStore

    config = load_config(args.config)
    password = CredentialStore(config.credentials_path).add_or_reset(args.id, args.role, args.window, args.password)
    save_password(config, args.id, password)
    print(password)
    return 0


def cmd_mqtt_config(args: argparse.Namespace) -> int:
    from .bus.credentials import CredentialStore
    from .bus.mosquitto import LOOPBACK, write_mosquitto_config
    from .bus.tls import tls_files
    from .daemon import split_hostport

    if args.plain_listen and not _is_hostport(args.plain_listen):
        print(f"hallctl mqtt-config: --plain-listen must be HOST:PORT, got {args.plain_listen!r}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    host, port = split_hostport(args.plain_listen) if args.plain_listen else (None, 1883)
    tls = tls_files(Path(args.tls_dir).resolve()) if args.tls_dir else None
    if tls is not None:
        missing = [str(p) for p in (tls.ca_cert, tls.server_cert, tls.server_key) if not p.is_file()]
        if missing:
            print(f"缺少 TLS 文件（请先运行 hallctl tls init --dir {args.tls_dir}）/ missing TLS files: "
                  f"{', '.join(missing)}", file=sys.stderr)
            return 2
        host = host or "127.0.0.1"
        if host not in LOOPBACK:
            print(f"启用 TLS 时明文端口只能监听本机（127.0.0.1），不能是 {host} / with TLS the plain listener is "
                  "loopback-only: the hall LAN uses the TLS port", file=sys.stderr)
            return 2
    paths = write_mosquitto_config(args.dir, config.hall_id, CredentialStore(config.credentials_path),
                                   port=port, bind_address=host, scan_max_bytes=config.scan_max_bytes,
                                   tls=tls, tls_port=args.tls_port)
    for p in (paths.values() if isinstance(paths, dict) else paths):
        print(p)
    return 0


def add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """The commands installed packages add to hallctl (entry point group `hallctl.commands`); one that
    cannot be loaded is logged and left out, the others still work."""
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        try:
            ep.load()(sub)
        except Exception:
            log.warning("hallctl command %s (%s) not available", ep.name, ep.value, exc_info=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hallctl", description="区公共法律服务中心 排队与设备控制")
    p.add_argument("--log-level", default=os.environ.get("HALL_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser, *, db: bool = False, daemon: bool = False) -> argparse.ArgumentParser:
        """--config, with `db` --db for a command that opens the hall database, with `daemon`
        --mqtt-url for one that talks to the running daemon."""
        sp.add_argument("--config", default=DEFAULT_CONFIG, help="hall config YAML (default %(default)s)")
        if db:
            sp.add_argument("--db", metavar="URL", help="database URL (overrides the config's `database`)")
        if daemon:
            sp.add_argument("--mqtt-url", metavar="mqtt[s]://HOST:PORT", type=mqtt_url_arg,
                            help="the running daemon's broker (default: the address it recorded in "
                                 "<state folder>/run/, else the config's)")
            sp.add_argument("--ca", metavar="FILE", help="the hall CA certificate for an mqtts:// --mqtt-url "
                                                         "(default: the config's mqtt.ca)")
        return sp

    sub.add_parser("sample-config", help="print the sample hall config").set_defaults(func=cmd_sample_config)
    sp = sub.add_parser("hash-pin", help="hash a staff PIN for the config (asks for it; or --pin-stdin)")
    sp.add_argument("--pin-stdin", action="store_true", help="read the PIN from one line of stdin")
    sp.set_defaults(func=cmd_hash_pin)
    with_config(sub.add_parser("init", help="create config, secret, credentials, database"), db=True).set_defaults(
        func=cmd_init)
    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    sp = with_config(db.add_parser("upgrade", help="run migrations to the newest schema"), db=True)
    sp.set_defaults(func=cmd_db_upgrade)
    sp = with_config(sub.add_parser("run", help="run the hall daemon"), db=True)
    sp.add_argument("--mqtt-listen", metavar="HOST:PORT", help="start the embedded broker there")
    sp.add_argument("--mqtt-url", metavar="mqtt[s]://USER[:PASS]@HOST:PORT", type=mqtt_url_arg,
                    help="use an external broker (mqtts://: its certificate checked against the config's mqtt.ca; "
                         "without a password in the URL: $CREDENTIALS_DIRECTORY/mqtt-password, else the "
                         "client-passwords file)")
    sp.add_argument("--upstream", metavar="URL", help="management system base URL")
    sp.add_argument("--emulator", metavar="HOST:PORT",
                    help="where `hall-emu run --control` listens, for devices at `url: emulated` "
                         "(overrides emulator.control)")
    sp.set_defaults(func=cmd_run)
    sp = with_config(sub.add_parser("status", help="queues and windows"), db=True, daemon=True)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)
    with_config(sub.add_parser("reset-day", help="cancel waiting tickets and restart numbering"),
                db=True, daemon=True).set_defaults(func=cmd_reset_day)
    client = sub.add_parser("client", help="MQTT clients").add_subparsers(dest="client_command", required=True)
    sp = with_config(client.add_parser("add", help="add or reset a client; prints its password"))
    sp.add_argument("id")
    sp.add_argument("--role", required=True, choices=["kiosk", "window", "tablet", "display", "admin", "web"])
    sp.add_argument("--window", type=int)
    sp.add_argument("--password")
    sp.set_defaults(func=cmd_client_add)
    sp = with_config(sub.add_parser("mqtt-config", help="write a Mosquitto password file and ACL"))
    sp.add_argument("dir")
    sp.add_argument("--tls-dir", metavar="DIR", help="the hall CA and broker certificate (hallctl tls init): adds a "
                                                     "TLS listener and keeps the plain one on the loopback")
    sp.add_argument("--tls-port", type=int, default=8883, help="the TLS listener's port (default %(default)s)")
    sp.add_argument("--plain-listen", metavar="HOST:PORT",
                    help="the plain listener (default: port 1883, on 127.0.0.1 with --tls-dir, else everywhere)")
    sp.set_defaults(func=cmd_mqtt_config)
    from .cli_upstream import add_commands as add_upstream_commands

    add_upstream_commands(sub, with_config)
    from .operate import add_commands as add_operate_commands

    add_operate_commands(sub, with_config)
    add_plugin_commands(sub)
    return p


def main(argv: list[str] | None = None, *, clock: Clock | None = None) -> int:
    """`clock` is the time every command reads (the wall clock by default; tests pass theirs)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "ca", None):    # --ca goes with the --mqtt-url it checks (mqtt.ca is the config's)
        if not args.mqtt_url:
            parser.error("--ca 须与 --mqtt-url mqtts://… 同用（否则用配置的 mqtt.ca）/ --ca needs --mqtt-url")
        from .bus.url import parse_mqtt_url

        args.mqtt_url = parse_mqtt_url(args.mqtt_url, ca=str(Path(args.ca).resolve()))
    args.clock = clock or SystemClock()
    setup_logging(args.log_level)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except AdminUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
