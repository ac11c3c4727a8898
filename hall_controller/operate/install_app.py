"""`hallctl install --app kiosk|display|tablet|window`: an app PC that boots into its app.

Kiosk, display and rating tablet: public screens with nobody logged in. `hall-app.service` runs the
app as the `hallapp` user in its own login session on tty7 (an X server without root, through
logind): xinit starts X with no screen saver, no DPMS and, on touch screens, no cursor, and the
`hall-session` script, which starts no window manager (no desktop, no task bar, nothing for Alt-Tab
to reach), switches blanking off once more and starts the app again whenever it exits. The Xorg
snippet refuses Ctrl-Alt-F-keys and Ctrl-Alt-Backspace. The PC boots to `multi-user.target`, so a
desktop's display manager does not start.

Window PC: the clerk keeps the desktop; an XDG autostart entry starts `hall-window` at login. The
clerk's account cannot read a root-only file, so on this PC the password file is root:hallclerk 0640
and the clerks' accounts go into group `hallclerk` (our choice: the password is the window's, not the
clerk's, and every clerk at that window uses it).

The password is never on a command line (`ps` shows every process's argv to every user): it is read
from `--password-file`, stdin or a prompt and written to /etc/hall/app-password (root:root 0600);
systemd hands the kiosk's app a private copy (`LoadCredential=mqtt-password:…`).
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import ipaddress
import re
import sys
from pathlib import Path
from string import Template
from typing import Any

import yaml

from ..bus.topics import is_segment
from .installer import (
    PUBLIC,
    PUBLIC_DIR,
    ROOT_ONLY,
    Installer,
    InstallError,
    Owner,
    bin_dir,
    hidden_by_sandbox,
    template,
    why_not_live,
)
from .paths import APP_CA, APP_PASSWORD, SESSION_SCRIPT

ROLES = ("kiosk", "display", "tablet", "window")
PROGRAMS = {"kiosk": "hall-kiosk", "display": "hall-display", "tablet": "hall-tablet", "window": "hall-window"}
TITLES = {"kiosk": "自助取号机 ticket kiosk", "display": "叫号显示屏 hall display",
          "tablet": "服务评价屏 rating tablet", "window": "窗口呼叫软件 window terminal"}
BOOTED = ("kiosk", "display", "tablet")     # boot into the app; the window PC keeps its desktop
APP_USER = "hallapp"
APP_USER_GROUPS = ["video", "input", "render"]
CLERK_GROUP = "hallclerk"
# X without a desktop: the server, its input driver (touch screens, keyboards), xinit, xset; Chinese font.
APP_PACKAGES = ("xserver-xorg-core", "xserver-xorg-input-libinput", "xinit", "x11-xserver-utils", "fonts-wqy-microhei")
WINDOW_PACKAGES = ("fonts-wqy-microhei",)
DEFAULT_PORT = 8883
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_HALL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+/-]+$")   # nothing systemd or a .desktop Exec line would expand


@dataclasses.dataclass(frozen=True)
class AppOptions:
    role: str
    client: str | None = None
    server: str | None = None
    port: int | None = None
    hall_id: str | None = None
    window: int | None = None
    ca: Path | None = None
    password_file: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AppOptions:
        return cls(args.app, args.client, args.server, args.port, args.hall_id, args.window,
                   Path(args.app_ca) if args.app_ca else None, Path(args.password_file) if args.password_file else None)


def app_settings(options: AppOptions, installed: dict[str, Any]) -> dict[str, Any]:
    """What /etc/hall/app.yaml holds: the options, missing ones from the installed app.yaml."""
    given = {"role": options.role, "client": options.client, "server": options.server, "port": options.port,
             "hall": options.hall_id, "window": options.window}
    settings = {key: value if value is not None else installed.get(key) for key, value in given.items()}
    settings["port"] = settings["port"] or DEFAULT_PORT
    settings["ca"] = APP_CA
    missing = [f"--{name}" for name, key in (("client", "client"), ("server", "server"), ("hall", "hall"))
               if not settings[key]]
    if missing:
        raise InstallError(f"请给出 {' '.join(missing)} / missing {' '.join(missing)}")
    _check_settings(settings)
    return {key: value for key, value in settings.items() if value is not None}


def _check_settings(settings: dict[str, Any]) -> None:
    """Every value ends up on the app's command line: only plain names and numbers get there."""
    if not is_segment(settings["client"]):
        raise InstallError(f"客户端 ID 无效 / bad client id: {settings['client']!r}")
    server = str(settings["server"])
    try:
        ipaddress.ip_address(server.strip("[]"))
    except ValueError:
        if not _HOST.match(server):
            raise InstallError(f"大厅主机名无效 / bad server name: {server!r}") from None
    if not _HALL.match(str(settings["hall"])):
        raise InstallError(f"大厅 ID 无效（小写字母、数字、- 和 _） / bad hall id: {settings['hall']!r}")
    if not 0 < int(settings["port"]) < 65536:
        raise InstallError(f"端口无效 / bad port: {settings['port']}")
    if settings.get("window") is not None and int(settings["window"]) < 1:
        raise InstallError(f"窗口号无效 / bad window number: {settings['window']}")


def app_command(settings: dict[str, Any]) -> list[str]:
    """The app's command line from app.yaml's settings: the broker as an mqtts:// URL with the client
    id and no password, the hall, the CA; the window PC names its password file (the kiosks' comes
    from systemd's credential)."""
    from ..bus.url import MqttEndpoint

    exe = bin_dir() / PROGRAMS[settings["role"]]
    if not exe.exists():
        raise InstallError(f"找不到 {exe}：请在装有界面程序（ui）的 Python 环境中运行 / {exe} not found: run the "
                           "hallctl of the environment with the apps (the ui extra)")
    if not _SAFE_PATH.match(str(exe)):
        raise InstallError(f"程序路径含有空格或特殊字符，请装到 /opt/hall 之类的路径 / {exe}: use a plain path like /opt/hall")
    server = str(settings["server"])
    url = MqttEndpoint(server.strip("[]"), int(settings["port"]), settings["client"], None, tls=True).url()
    argv = [str(exe), "--mqtt-url", url, "--hall", settings["hall"], "--ca", settings["ca"]]
    if settings.get("window") is not None and settings["role"] in ("tablet", "window"):
        argv += ["--window", str(settings["window"])]
    if settings["role"] == "window":
        argv += ["--password-file", APP_PASSWORD]
    return argv


def read_password(options: AppOptions, client: str) -> str | None:
    """The client's password from --password-file, else stdin (piped) or a prompt; None if left empty."""
    from ..bus.url import read_password_file
    from ..redact import register_secret

    if options.password_file is not None:
        try:
            return read_password_file(options.password_file)
        except ValueError as exc:
            raise InstallError(str(exc)) from None
    if sys.stdin is None:
        return None
    if sys.stdin.isatty():
        text = getpass.getpass(f"{client} 的 MQTT 密码（在大厅主机上：sudo grep '^{client}:' "
                               "/etc/hall/client-passwords.yaml；直接回车则保留已装的密码）: ")
    else:
        text = sys.stdin.readline()
    text = text.strip()
    if text:
        register_secret(text)
    return text or None


def install_ca(inst: Installer, options: AppOptions) -> None:
    paths = inst.paths
    if options.ca is None:
        if not paths.app_ca.exists():
            raise InstallError("请用 --ca 给出大厅的 CA 证书（大厅主机上的 /etc/hall/tls/ca.crt） / give the hall's CA "
                               "certificate with --ca (the hall PC's /etc/hall/tls/ca.crt)")
        return
    try:
        data = options.ca.read_bytes()
    except OSError as exc:
        raise InstallError(f"无法读取 {options.ca}：{exc.strerror} / cannot read {options.ca}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InstallError(f"{options.ca} 不是 PEM 证书 / not a PEM certificate")
    inst.directory(paths.tls, PUBLIC_DIR)
    inst.file(paths.app_ca, data, PUBLIC)


def install_password(inst: Installer, options: AppOptions, client: str, owner: Owner) -> bool:
    """/etc/hall/app-password with `owner`; True when it changed."""
    path = inst.paths.app_password
    if inst.dry_run:
        inst.say("将写入 would write", path, str(owner))
        return True
    password = read_password(options, client)
    if password is None:
        if not path.exists():
            raise InstallError(f"没有得到 {client} 的密码 / no password given for {client}")
        return inst.fix(path, owner)
    return inst.file(path, password + "\n", owner)


def remove_app_files(inst: Installer) -> None:
    """The files of both kinds of app PC outside /etc/hall (uninstall, or a PC changing kind)."""
    paths = inst.paths
    for path in (paths.session_script, paths.xorg_snippet, paths.autostart):
        inst.remove(path)


def _booted_files(inst: Installer, settings: dict[str, Any]) -> bool:
    """Unit, session script and Xorg snippet of a kiosk, display or tablet; True if the unit changed."""
    paths = inst.paths
    inst.remove(paths.autostart)
    inst.directory(paths.session_script.parent, PUBLIC_DIR)
    inst.file(paths.session_script, template("hall-session"), Owner("root", "root", 0o755))
    inst.directory(paths.xorg_snippet.parent, PUBLIC_DIR)
    inst.file(paths.xorg_snippet, template("50-hall-kiosk.conf"), PUBLIC)
    unit = Template(template("hall-app.service")).substitute(
        title=TITLES[settings["role"]], role=settings["role"], app_password=APP_PASSWORD, session=SESSION_SCRIPT,
        app_command=" ".join(app_command(settings)))
    return inst.file(paths.units / "hall-app.service", unit, PUBLIC)


def _start_booted(inst: Installer, unit_changed: bool) -> None:
    inst.ensure_user(APP_USER, APP_USER_GROUPS, home=f"/var/lib/{APP_USER}", create_home=True)
    if unit_changed:
        inst.run(["systemctl", "daemon-reload"])
        inst.run(["systemctl", "try-restart", "hall-app.service"])
    inst.run(["systemctl", "enable", "hall-app.service"])
    if inst.query(["systemctl", "get-default"]) != "multi-user.target":
        inst.run(["systemctl", "set-default", "multi-user.target"])


def _window_files(inst: Installer, settings: dict[str, Any]) -> None:
    paths = inst.paths
    unit = paths.units / "hall-app.service"
    if unit.exists():
        inst.run(["systemctl", "disable", "hall-app.service"], check=False)
        inst.remove(unit)
        inst.run(["systemctl", "daemon-reload"])
    inst.remove(paths.session_script)
    inst.remove(paths.xorg_snippet)
    inst.directory(paths.autostart.parent, PUBLIC_DIR)
    entry = Template(template("hall-window.desktop")).substitute(app_command=" ".join(app_command(settings)))
    inst.file(paths.autostart, entry, PUBLIC)


def install_app(inst: Installer, options: AppOptions) -> int:
    paths = inst.paths
    installed = yaml.safe_load(paths.app_config.read_text(encoding="utf-8")) if paths.app_config.exists() else {}
    settings = app_settings(options, installed or {})
    role = settings["role"]
    app_command(settings)       # the program is there before anything is written
    hidden = hidden_by_sandbox(bin_dir())
    if hidden and role in BOOTED:
        inst.say("警告 warning:", f"{bin_dir()} 在 {hidden} 下，hallapp 用户读不到：请把软件装在 /opt 下 / "
                                  f"user hallapp cannot read {hidden}: install the software under /opt")
    inst.ensure_packages(APP_PACKAGES if role in BOOTED else WINDOW_PACKAGES)
    if role == "window":
        if not inst.query(["getent", "group", CLERK_GROUP]):
            inst.run(["groupadd", "--system", CLERK_GROUP])
    if not paths.etc.exists():
        inst.directory(paths.etc, PUBLIC_DIR)
    install_ca(inst, options)
    owner = Owner("root", CLERK_GROUP, 0o640) if role == "window" else ROOT_ONLY
    password_changed = install_password(inst, options, settings["client"], owner)
    settings_changed = inst.file(paths.app_config, yaml.safe_dump(settings, allow_unicode=True, sort_keys=False),
                                 PUBLIC)
    if role in BOOTED:
        unit_changed = _booted_files(inst, settings)
        _start_booted(inst, unit_changed or password_changed or settings_changed)
    else:
        _window_files(inst, settings)
    inst.summary()
    say_app_done(inst, settings)
    return 0


def say_app_done(inst: Installer, settings: dict[str, Any]) -> None:
    out = inst.out
    role = settings["role"]
    out("")
    out(f"{TITLES[role]} 安装完成 / installed." if not inst.dry_run else "以上为安装计划，未做任何改动 / the plan above; nothing changed.")
    out(f"  设置 settings: {inst.paths.app_config}；修改后再运行 sudo hallctl install --app {role} / run it again after a change")
    if role in BOOTED:
        out("  重启后直接进入应用 / reboot into the app: sudo reboot")
        out("  日志 log: journalctl -u hall-app")
    else:
        out(f"  把窗口工作人员的账号加入 {CLERK_GROUP} 组，重新登录后窗口软件自动启动 / add the clerks' accounts to "
            f"group {CLERK_GROUP}; the terminal starts at their next login:")
        out(f"    sudo gpasswd -a 用户名 {CLERK_GROUP}")
    if not inst.live:
        out(f"  系统改动已跳过 system steps skipped: {why_not_live(inst.paths.root)}")
