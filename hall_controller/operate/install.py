"""`hallctl install` and `hallctl uninstall`: a hall PC's services, or an app PC that boots into its app.

The hall PC (DESIGN §12): a `hall` system user in `dialout` and `lp`; the config in /etc/hall
(root:hall 0640: the daemon reads it, nobody else), state in /var/lib/hall (owned by `hall`);
secret, MQTT credentials and the database schema made as `hallctl init` makes them; Debian's
Mosquitto as the broker with the password file and ACL `hallctl mqtt-config` writes, over TLS when
the hall has its CA (`bus.tls`); nftables rules keeping the broker and /metrics to the staff LAN;
`hall-daemon.service` (Type=notify, watchdog, Restart=always, hardened, only its configured devices)
and a nightly `hall-backup.timer`. App PCs: `install_app`.

Everything is written under `--root` (default `/`): a test installs into a temporary folder, and the
files written there name the production paths (/etc/hall/…), as a package's files do. Running the
install again changes nothing unless the config or the options changed; it is also how a changed
config is applied (new clients get passwords and Mosquitto entries, devices their DeviceAllow).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import re
import socket
import sys
from pathlib import Path
from string import Template
from typing import Any

import yaml

from ..config import ClientConfig, ConfigError, HallConfig, parse_config, sample_config_text
from .install_app import ROLES, AppOptions, install_app, remove_app_files
from .installer import (
    PUBLIC,
    PUBLIC_DIR,
    ROOT_ONLY,
    Installer,
    InstallError,
    Owner,
    hidden_by_sandbox,
    program,
    template,
    why_not_live,
)
from .paths import CONFIG, DAEMON_PASSWORD, ETC, STATE, WEB_PASSWORD, HallPaths

log = logging.getLogger(__name__)

USER = "hall"
GROUPS = ("dialout", "lp")             # serial devices (card readers, controllers), USB printers
DAEMON_URL = "mqtt://hall-daemon@127.0.0.1:1883"   # its password: /etc/hall/daemon-password, via systemd
METRICS_LISTEN = "0.0.0.0:9108"        # the staff LAN's Prometheus scrapes it; nftables keeps others out
BROKER_PLAIN_PORT = 1883
BROKER_TLS_PORT = 8883
WEB_PORT = 8080                        # the phone page's port (DESIGN §10), opened to the visitor LAN
WEB_LISTEN = f"0.0.0.0:{WEB_PORT}"
WEB_CLIENT = "web-1"                   # hall-web's MQTT client (role web; the sample config has it)
BACKUP_KEEP = 14

# The hall PC's units (templates/<name>) and what is enabled, in that order.
HALL_UNITS = ("hall-daemon.service", "hall-web.service", "hall-backup.service", "hall-backup.timer")
HALL_ENABLE = ("mosquitto.service", "hall-daemon.service", "hall-web.service", "hall-backup.timer")
APP_UNITS = ("hall-app.service",)
HALL_PACKAGES = ("mosquitto",)
FIREWALL_PACKAGES = ("nftables",)

CONFIG_FILE = Owner("root", USER, 0o640)
CONFIG_DIR = Owner("root", USER, 0o750)
STATE_DIR = Owner(USER, USER, 0o750)
BROKER_FILE = Owner("root", "mosquitto", 0o640)
BROKER_DIR = Owner("root", "mosquitto", 0o750)


# ============================================================================ the installed config
def set_top_level(text: str, key: str, value: Any, mark: str = "hallctl install") -> str:
    """`text` with the top-level `key` set to `value` (the rest of the file, comments too, as it was);
    a line comment names who set it (`mark`: the install's, or `hallctl demo`)."""
    block = yaml.safe_dump({key: value}, allow_unicode=True, default_flow_style=False, sort_keys=False)
    first, _, rest = block.partition("\n")
    new = [f"{first}   # {mark}\n", *(line + "\n" for line in rest.splitlines())]
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(rf"{re.escape(key)}\s*:", line)), None)
    if start is None:
        return text + ("" if text.endswith("\n") or not text else "\n") + "".join(new)
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():    # blank lines before the next key stay
        end -= 1
    return "".join([*lines[:start], *new, *lines[end:]])


def layout_settings(raw: dict[str, Any], public_host: str = "") -> dict[str, Any]:
    """The config keys the installed layout fixes: database (when SQLite), credentials, secret, broker,
    the metrics port (when this version of the config has one) and the phone page (`web`: on the LAN,
    its QR codes naming `public_host`, when the config left them at the demo's loopback)."""
    settings: dict[str, Any] = {}
    database = raw.get("database", "sqlite:///hall.db")
    if isinstance(database, str) and database.startswith("sqlite"):
        settings["database"] = f"sqlite:///{STATE}/hall.db"
    settings["credentials"] = f"{ETC}/credentials.yaml"
    settings["secret_file"] = f"{ETC}/hall.secret"
    settings["mqtt"] = {"url": DAEMON_URL}
    if "metrics_listen" in {f.name for f in dataclasses.fields(HallConfig)}:
        listen = (raw.get("monitoring") or {}).get("listen") if isinstance(raw.get("monitoring"), dict) else None
        if not isinstance(listen, str) or listen.rsplit(":", 1)[-1] == "0":
            settings["monitoring"] = {"listen": METRICS_LISTEN}
    web = raw.get("web") if isinstance(raw.get("web"), dict) else None
    if web is not None and _on_loopback(web.get("listen")):
        settings["web"] = {**web, "listen": WEB_LISTEN,
                           "public_url": web.get("public_url") or f"http://{public_host or 'localhost'}:{WEB_PORT}"}
    return settings


def _on_loopback(listen: Any) -> bool:
    """A `HOST:PORT` that only this PC reaches (the sample's 127.0.0.1:8080), or none."""
    if not isinstance(listen, str):
        return True
    host = listen.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def installed_config_text(source: str, paths: HallPaths, public_host: str = "") -> tuple[str, HallConfig, dict[str, Any]]:
    """The config as installed: `source` with the layout's keys set; (text, config, what was set).
    ConfigError when the result is not a valid hall config (nothing has been written then)."""
    try:
        raw = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise ConfigError(CONFIG, [("(file)", f"not valid YAML: {exc}")]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(CONFIG, [("(top level)", "must be a mapping")])
    settings = layout_settings(raw, public_host)
    text = source
    changed = {}
    for key, value in settings.items():
        if raw.get(key) != value:
            changed[key] = value
        text = set_top_level(text, key, value)
    data = yaml.safe_load(text)
    if any(data.get(key) != value for key, value in settings.items()):
        raise InstallError(f"无法改写配置文件的 {', '.join(settings)} 项，请把它们写成普通的顶层键 / "
                           f"could not set {', '.join(settings)} in the config: write them as plain top-level keys")
    return text, parse_config(data, str(paths.config), paths.etc), changed


def rooted(config: HallConfig, paths: HallPaths) -> HallConfig:
    """`config` with its files under the install root (identical when the root is `/`)."""
    database = config.database
    if database.startswith("sqlite:///"):
        database = f"sqlite:///{paths.at(database[len('sqlite:///'):])}"
    return dataclasses.replace(config, database=database, credentials_path=str(paths.at(config.credentials_path)),
                               secret_path=str(paths.at(config.secret_path)))


# ============================================================================ units
def device_access(config: HallConfig) -> tuple[list[str], list[str]]:
    """(DeviceAllow= lines, supplementary groups) for the devices the daemon opens: each serial device
    path as configured, USB device nodes only with a usb:// device, the sound card only with an
    audio:// speaker. Document cameras are read by the window PCs' app, not here."""
    allow: list[str] = []
    groups = list(GROUPS)
    for dev in config.devices:
        url = dev.url.strip()
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if dev.kind == "camera":
            continue
        if url.startswith("/dev/"):
            allow.append(f"DeviceAllow={url} rw")
        elif scheme == "usb":
            allow.append("DeviceAllow=char-usb_device rw")
        elif scheme == "audio" and url.lower() != "audio://null":
            allow.append("DeviceAllow=char-alsa rw")
            groups.append("audio")
    return list(dict.fromkeys(allow)), list(dict.fromkeys(groups))


def hall_units(config: HallConfig, hallctl: Path) -> dict[str, str]:
    """Unit name -> text for the hall PC."""
    allow, groups = device_access(config)
    values = {"hallctl": str(hallctl), "config": CONFIG, "etc": ETC, "state": STATE,
              "backups": f"{STATE}/backups", "keep": BACKUP_KEEP, "daemon_password": DAEMON_PASSWORD,
              "hall_web": str(hallctl.with_name("hall-web")), "web_client": WEB_CLIENT, "web_password": WEB_PASSWORD,
              "groups": " ".join(groups), "device_allow": "".join(line + "\n" for line in allow)}
    return {name: Template(template(name)).substitute(values) for name in HALL_UNITS}


# ============================================================================ the hall PC
@dataclasses.dataclass
class HallOptions:
    """What `hallctl install` was given; the LANs and host names are kept in /etc/hall/install.yaml so
    that running it again without them keeps them."""

    config: Path | None = None
    staff_lan: list[str] = dataclasses.field(default_factory=list)
    visitor_lan: list[str] = dataclasses.field(default_factory=list)
    hosts: list[str] = dataclasses.field(default_factory=list)

    def merged(self, saved: dict[str, Any]) -> HallOptions:
        return dataclasses.replace(self, **{key: getattr(self, key) or list(saved.get(key) or [])
                                            for key in ("staff_lan", "visitor_lan", "hosts")})

    def saved(self) -> dict[str, list[str]]:
        return {"staff_lan": self.staff_lan, "visitor_lan": self.visitor_lan, "hosts": self.hosts}


def _check_cidrs(values: list[str], option: str) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InstallError(f"{option} {value!r} 不是网段（例如 192.168.10.0/24） / not a network like "
                               f"192.168.10.0/24") from None


def _config_source(inst: Installer, options: HallOptions) -> str:
    if options.config is not None:
        try:
            return options.config.read_text(encoding="utf-8")
        except OSError as exc:
            raise InstallError(f"无法读取 {options.config}：{exc.strerror} / cannot read {options.config}") from None
    if inst.paths.config.exists():
        return inst.paths.config.read_text(encoding="utf-8")
    return sample_config_text()


def write_config(inst: Installer, options: HallOptions) -> HallConfig:
    """/etc/hall/hall.yaml: --config, else the installed one, else the sample; with the layout's keys."""
    paths = inst.paths
    public_host = next((h for h in options.hosts if h != "localhost"), "") or socket.gethostname()
    text, config, changed = installed_config_text(_config_source(inst, options), paths, public_host)
    for key, value in changed.items():
        inst.say("配置 config:", f"{key}: {json.dumps(value, ensure_ascii=False)}")
    inst.directory(paths.etc, CONFIG_DIR)
    old = paths.config.read_bytes() if paths.config.exists() else None
    if old is not None and old != text.encode("utf-8"):
        inst.file(paths.etc / "hall.yaml.bak", old, CONFIG_FILE)
    inst.file(paths.config, text, CONFIG_FILE)
    return config


def prepare_state(inst: Installer, config: HallConfig) -> None:
    """Secret, client credentials (the daemon's too) and the database schema, as `hallctl init` does;
    then owners and modes: the daemon reads the secret and hashes, only root the clear passwords."""
    from ..bus.credentials import DAEMON_CLIENT_ID
    from ..setup_hall import client_password, load_or_create_secret, passwords_path, provision_clients
    from ..store import upgrade

    paths = inst.paths
    for folder in (paths.state, paths.runtime, paths.backups):
        inst.directory(folder, STATE_DIR)
    inst.link(paths.runtime_link, "../../var/lib/hall/run")
    local = rooted(config, paths)
    if inst.dry_run:
        inst.say("将初始化 would init", f"{local.secret_path}, {local.credentials_path}, {local.database}")
        return
    existed = Path(local.secret_path).exists()
    load_or_create_secret(local.secret_path)
    if not existed:
        inst.say("创建 made", local.secret_path)
    web = [] if any(c.id == WEB_CLIENT for c in local.clients) else [ClientConfig(WEB_CLIENT, "web")]
    made = provision_clients(local, [*local.clients, ClientConfig(DAEMON_CLIENT_ID, "daemon"), *web])
    if made:
        inst.say("密码 passwords:", f"{', '.join(made)} → {passwords_path(local)}")
    upgrade(local.database)
    inst.fix(Path(local.secret_path), CONFIG_FILE)
    inst.fix(Path(local.credentials_path), CONFIG_FILE)
    inst.fix(passwords_path(local), ROOT_ONLY)
    inst.file(paths.daemon_password, f"{client_password(local, DAEMON_CLIENT_ID)}\n", ROOT_ONLY)
    inst.file(paths.web_password, f"{client_password(local, WEB_CLIENT)}\n", ROOT_ONLY)
    for path in sorted(paths.state.rglob("*")):
        if not path.is_symlink():
            inst.fix(path, STATE_DIR if path.is_dir() else Owner(USER, USER, path.stat().st_mode & 0o750))


def setup_tls(inst: Installer, config: HallConfig, options: HallOptions) -> Any:
    """The hall CA and the broker's certificate in /etc/hall/tls (bus.tls), and Mosquitto's copies of
    what it reads (it cannot enter /etc/hall); None when this version has no TLS support."""
    try:
        from ..bus.tls import ensure_hall_ca, tls_files
    except ImportError:
        inst.say("跳过 skipped:", "TLS（此版本无 bus.tls / no TLS support in this version）")
        return None
    paths = inst.paths
    inst.directory(paths.tls, Owner("root", "root", 0o755))
    hosts = list(dict.fromkeys([*options.hosts, socket.gethostname(), "localhost"]))
    if inst.dry_run:
        inst.say("将签发 would issue", f"{paths.tls}: CA, broker certificate for {', '.join(hosts)}, 127.0.0.1")
        return tls_files(paths.tls)
    files = ensure_hall_ca(paths.tls, config.name, hosts, ["127.0.0.1"])
    inst.fix(files.ca_key, ROOT_ONLY)
    inst.fix(files.server_key, ROOT_ONLY)
    for cert in (files.ca_cert, files.server_cert):
        inst.fix(cert, PUBLIC)
    broker = paths.mosquitto_files
    inst.directory(broker, BROKER_DIR)
    inst.file(broker / files.ca_cert.name, files.ca_cert.read_bytes(), PUBLIC)
    inst.file(broker / files.server_cert.name, files.server_cert.read_bytes(), PUBLIC)
    inst.file(broker / files.server_key.name, files.server_key.read_bytes(), BROKER_FILE)
    return files


def setup_mosquitto(inst: Installer, config: HallConfig, tls: Any) -> bool:
    """Password file and ACL (`hallctl mqtt-config`'s) beside Mosquitto's config, its listener snippet in
    conf.d: with TLS a plain listener on the loopback for the daemon and 8883 for the app PCs, without
    it 1883 for everyone. True when anything Mosquitto reads changed (it must restart)."""
    from ..bus.credentials import CredentialStore
    from ..bus.mosquitto import write_mosquitto_config

    paths = inst.paths
    folder = paths.mosquitto_files
    inst.directory(folder, BROKER_DIR)
    names = ("passwd", "acl")
    before = {n: (folder / n).read_bytes() if (folder / n).exists() else None for n in names}
    if inst.dry_run:
        for name in names:
            inst.say("将写入 would write", folder / name, str(BROKER_FILE))
        inst.say("将写入 would write", paths.mosquitto_conf, str(PUBLIC))
        return True
    kwargs: dict[str, Any] = {"port": BROKER_PLAIN_PORT, "scan_max_bytes": config.scan_max_bytes}
    if tls is not None:     # Mosquitto's copies of the certificate and key (setup_tls)
        from ..bus.tls import tls_files

        kwargs.update(bind_address="127.0.0.1", tls=tls_files(folder), tls_port=BROKER_TLS_PORT)
    files = write_mosquitto_config(folder, config.hall_id, CredentialStore(rooted(config, paths).credentials_path),
                                   **kwargs)
    changed = False
    for name in names:
        path = folder / name
        if path.read_bytes() != before[name]:
            inst.say("写入 wrote", path, str(BROKER_FILE))
            inst.changed.add(path)
            changed = True
        else:
            inst.say("未改变 unchanged", path)
        inst.fix(path, BROKER_FILE, quiet=True)
    conf = files.conf_file.read_text(encoding="utf-8")
    files.conf_file.unlink()          # the one Mosquitto reads is the conf.d snippet
    changed |= inst.file(paths.mosquitto_conf, conf, PUBLIC)
    return changed


def setup_firewall(inst: Installer, config: HallConfig, options: HallOptions) -> bool | None:
    """nftables rules (operate.firewall) for the staff and visitor LANs; None when not written."""
    if not options.staff_lan:
        inst.say("跳过 skipped:", "防火墙：未给出 --staff-lan 网段 / firewall: no --staff-lan given")
        return None
    try:
        from .firewall import nftables_text
    except ImportError:
        inst.say("跳过 skipped:", "防火墙（此版本无 operate.firewall / no firewall support in this version）")
        return None
    metrics_port = int(config.metrics_listen.rsplit(":", 1)[1]) if getattr(config, "metrics_listen", None) else 9108
    try:
        text = nftables_text(options.staff_lan, options.visitor_lan, broker_port=BROKER_TLS_PORT,
                             metrics_port=metrics_port, web_port=WEB_PORT, device_ports=[], ssh=True)
    except ValueError as exc:
        raise InstallError(str(exc)) from None
    inst.say("注意 note:", f"ssh 只接受员工网段 {', '.join(options.staff_lan)} 的连接 / ssh answers the staff LAN only")
    inst.directory(inst.paths.nftables.parent, PUBLIC_DIR)
    return inst.file(inst.paths.nftables, text, PUBLIC)


def start_hall(inst: Installer, *, units_changed: bool, broker_changed: bool, daemon_changed: bool,
               firewall: bool | None) -> None:
    """On the live system: load the units, (re)start what changed, enable everything."""
    paths = inst.paths
    main = paths.mosquitto_main_conf
    if inst.live and main.exists() and re.search(r"^\s*(listener|port)\s", main.read_text(encoding="utf-8"), re.M):
        inst.say("警告 warning:", f"{main} 已有 listener/port 行，与 conf.d/hall.conf 冲突：请删去这些行后再运行一次 / "
                                  "remove its listener lines (hall.conf has the hall's) and run the install again")
    inst.ensure_line(main, "include_dir /etc/mosquitto/conf.d", r"^\s*include_dir\s+/etc/mosquitto/conf\.d/?\s*$")
    if units_changed:
        inst.run(["systemctl", "daemon-reload"])
    if broker_changed:
        inst.run(["systemctl", "restart", "mosquitto.service"])
    if daemon_changed:
        inst.run(["systemctl", "try-restart", "hall-daemon.service"])
    inst.run(["systemctl", "enable", "--now", *HALL_ENABLE])
    if firewall is not None:
        inst.ensure_line(paths.nftables_conf, 'include "/etc/nftables.d/*.nft"',
                         r'^\s*include\s+"/etc/nftables\.d/\*\.nft"\s*$')
        inst.run(["systemctl", "enable", "nftables.service"])
        if firewall:
            inst.run(["systemctl", "restart", "nftables.service"])


def install_hall(inst: Installer, options: HallOptions) -> int:
    paths = inst.paths
    saved_path = paths.install_options
    saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) if saved_path.exists() else {}
    options = options.merged(saved or {})
    _check_cidrs(options.staff_lan, "--staff-lan")
    _check_cidrs(options.visitor_lan, "--visitor-lan")
    hallctl = program("hallctl")
    hidden = hidden_by_sandbox(hallctl)
    if hidden:
        inst.say("警告 warning:", f"{hallctl} 在 {hidden} 下，hall-daemon 的沙箱看不到它：请把软件装在 /opt 下 / "
                                  f"the hardened units cannot see {hidden}: install the software under /opt")
    inst.ensure_packages([*HALL_PACKAGES, *(FIREWALL_PACKAGES if options.staff_lan else ())])
    inst.ensure_user(USER, list(GROUPS), home=STATE)
    config = write_config(inst, options)
    config_changed = paths.config in inst.changed
    inst.file(saved_path, yaml.safe_dump(options.saved(), allow_unicode=True, sort_keys=True), CONFIG_FILE)
    prepare_state(inst, config)
    tls = setup_tls(inst, config, options)
    broker_changed = setup_mosquitto(inst, config, tls)
    firewall = setup_firewall(inst, config, options)
    units_changed = False
    for name, text in hall_units(config, hallctl).items():
        units_changed |= inst.file(paths.units / name, text, PUBLIC)
    daemon_changed = config_changed or units_changed or broker_changed
    start_hall(inst, units_changed=units_changed, broker_changed=broker_changed, daemon_changed=daemon_changed,
               firewall=firewall)
    inst.summary()
    say_hall_done(inst, config, tls is not None)
    return 0


def say_hall_done(inst: Installer, config: HallConfig, tls: bool) -> None:
    out = inst.out
    out("")
    out("大厅主机安装完成 / hall PC installed." if not inst.dry_run else "以上为安装计划，未做任何改动 / the plan above; nothing changed.")
    out("  配置 config: /etc/hall/hall.yaml（修改后再运行一次 sudo hallctl install / run the install again after editing）")
    out("  数据 state: /var/lib/hall（数据库、每晚 02:30 的备份 backups/）")
    out("  应用电脑密码 app passwords: sudo grep '^客户端ID:' /etc/hall/client-passwords.yaml")
    if tls:
        out("  应用电脑要的 CA 证书 the app PCs' CA: /etc/hall/tls/ca.crt")
    out("  状态 status: systemctl status hall-daemon mosquitto; journalctl -u hall-daemon")
    if not inst.live:
        out(f"  系统改动已跳过 system steps skipped: {why_not_live(inst.paths.root)}")


# ============================================================================ uninstall
def uninstall(inst: Installer) -> int:
    """Stop and remove what the install wrote for services; the config and data stay."""
    paths = inst.paths
    present = [name for name in (*HALL_UNITS, *APP_UNITS) if (paths.units / name).exists()]
    if present:
        inst.run(["systemctl", "disable", "--now", *present], check=False)
    for name in (*HALL_UNITS, *APP_UNITS):
        inst.remove(paths.units / name)
    inst.remove(paths.mosquitto_conf)
    inst.remove(paths.mosquitto_files)
    firewall = inst.remove(paths.nftables)
    remove_app_files(inst)
    if present:
        inst.run(["systemctl", "daemon-reload"])
        if "hall-daemon.service" in present:
            inst.run(["systemctl", "try-restart", "mosquitto.service"], check=False)
    if firewall:
        inst.run(["systemctl", "try-restart", "nftables.service"], check=False)
    out = inst.out
    out("")
    out("已卸载服务 / services removed." if not inst.dry_run else "以上为卸载计划，未做任何改动 / the plan above; nothing changed.")
    kept = [str(p) for p in (paths.etc, paths.state) if p.exists()]
    if kept:
        out(f"  保留 kept: {', '.join(kept)}（配置、密码、数据库、备份 / config, passwords, database, backups）；"
            "系统用户 hall、hallapp 也保留 / the system users stay")
        out(f"  大厅不再使用时可手工删除 / remove by hand when no longer needed: sudo rm -r {' '.join(kept)}")
    if "hall-app.service" in present:
        out("  恢复图形登录（如本机装有桌面） / the desktop back, if this PC has one: "
            "sudo systemctl set-default graphical.target")
    return 0


# ============================================================================ commands
def cmd_install(args: argparse.Namespace) -> int:
    inst = Installer(Path(args.root), dry_run=args.dry_run)
    app_only = [f"--{name.replace('_', '-')}" for name in ("client", "server", "port", "hall_id", "window", "app_ca",
                                                             "password_file") if getattr(args, name) is not None]
    if app_only and not args.app:
        print(f"{', '.join(app_only)} 只用于应用电脑（--app） / only with --app", file=sys.stderr)
        return 2
    try:
        if args.app:
            return install_app(inst, AppOptions.from_args(args))
        return install_hall(inst, HallOptions(Path(args.config) if args.config else None, args.staff_lan or [],
                                              args.visitor_lan or [], args.host or []))
    except InstallError as exc:
        print(str(exc), file=sys.stderr)
        return 1


def cmd_uninstall(args: argparse.Namespace) -> int:
    try:
        return uninstall(Installer(Path(args.root), dry_run=args.dry_run))
    except InstallError as exc:
        print(str(exc), file=sys.stderr)
        return 1


def add_commands(sub: argparse._SubParsersAction, with_config: Any) -> None:
    """`hallctl install` (hall PC, or an app PC with --app) and `hallctl uninstall`."""
    sp = sub.add_parser("install", help="install the hall PC's services, or an app PC (--app)",
                        description="安装大厅主机（守护进程、Mosquitto、备份），或用 --app 安装应用电脑 / "
                                    "install the hall PC, or an app PC with --app")
    sp.add_argument("--root", default="/", help="install under this folder (default /; tests use a temporary one)")
    sp.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    hall = sp.add_argument_group("hall PC")
    hall.add_argument("--config", help="hall config to install (default: the installed one, else the sample)")
    hall.add_argument("--staff-lan", action="append", metavar="CIDR",
                      help="staff network(s): the broker and /metrics answer only these (nftables)")
    hall.add_argument("--visitor-lan", action="append", metavar="CIDR",
                      help="visitors' Wi-Fi: reaches only the phone page's port")
    hall.add_argument("--host", action="append", metavar="NAME",
                      help="a name or address the app PCs use for this PC (in the broker's certificate)")
    app = sp.add_argument_group("app PC")
    app.add_argument("--app", choices=ROLES, help="install an app PC of this kind instead of the hall PC")
    app.add_argument("--client", help="this PC's MQTT client id (e.g. kiosk-1)")
    app.add_argument("--server", help="the hall PC's name or address (as in its certificate)")
    app.add_argument("--port", type=int, help="the hall broker's TLS port (default 8883)")
    app.add_argument("--hall", dest="hall_id", help="the hall id (hall.id in the hall's config)")
    app.add_argument("--window", type=int, help="window number of a window terminal or rating tablet "
                                                "(default: from the client id, window-N / tablet-N)")
    app.add_argument("--ca", dest="app_ca", metavar="FILE",
                     help="the hall CA certificate (ca.crt from the hall PC's /etc/hall/tls)")
    app.add_argument("--password-file", help="file holding the client's password (else read from stdin or asked)")
    sp.set_defaults(func=cmd_install)
    sp = sub.add_parser("uninstall", help="stop and remove the hall's services (config and data stay)")
    sp.add_argument("--root", default="/", help="uninstall under this folder (default /)")
    sp.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    sp.set_defaults(func=cmd_uninstall)
