"""`hallctl tls init|renew|show`: the hall CA and the broker's certificate (hall_controller.bus.tls).

    hallctl tls init [--dir /etc/hall/tls] [--host hall-pc --host hall-pc.local] [--ip 192.168.10.2] [--days 825]
    hallctl tls renew [--dir …] [--host …] [--ip …]     # a new broker certificate from the same CA
    hallctl tls show [--dir …]

`init` refuses to replace an existing CA without `--force`: every app PC trusts it, and each would have
to be given the new `ca.crt`. `renew` keeps the CA (an app PC notices nothing): for a new address of
the hall PC or a certificate nearing its end.
"""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path
from typing import Any

from ..bus.tls import (
    SERVER_DAYS,
    CertInfo,
    TlsFiles,
    TlsSetupError,
    ensure_hall_ca,
    hall_ca_exists,
    read_cert,
    signed_by,
    tls_files,
)
from ..clock import Clock
from ..config import load_config
from .paths import HallPaths

__all__ = ["TlsFiles", "add_commands", "ensure_hall_ca"]   # ensure_hall_ca: what `hallctl install` calls


def _names(args: argparse.Namespace) -> tuple[list[str] | None, list[str] | None]:
    if not args.host and not args.ip:
        return None, None          # bus.tls.default_names(): this PC's hostname, localhost, 127.0.0.1
    return list(args.host or []), list(args.ip or [])


def cmd_tls_init(args: argparse.Namespace) -> int:
    if hall_ca_exists(args.dir) and not args.force:
        print(f"大厅 CA 已存在：{Path(args.dir) / 'ca.crt'}，未做改动。每台应用 PC 都信任这张 CA 证书：重建后须把新的 "
              "ca.crt 复制到每台应用 PC 并重启应用。只为新地址重签服务器证书请用 hallctl tls renew；确要重建 CA 请加 --force。\n"
              f"A hall CA already exists in {args.dir}; nothing changed. Every app PC trusts it, so a new one means "
              "copying the new ca.crt to each of them: use `hallctl tls renew` for a new broker certificate, "
              "or --force to replace the CA.", file=sys.stderr)
        return 1
    config = load_config(args.config)
    hosts, ips = _names(args)
    try:
        files = ensure_hall_ca(args.dir, config.name, hosts, ips, days=args.days, force=args.force, clock=args.clock)
    except TlsSetupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    _show(files, args.clock)
    print(f"\n下一步 / next: 把 {files.ca_cert} 复制到每台应用 PC（/etc/hall/tls/ca.crt）；"
          f"hallctl mqtt-config DIR --tls-dir {args.dir} 写出 Mosquitto 的 TLS 监听。")
    return 0


def cmd_tls_renew(args: argparse.Namespace) -> int:
    if not hall_ca_exists(args.dir):
        print(f"{args.dir} 中没有大厅 CA，请先运行 hallctl tls init / no hall CA in {args.dir}: run hallctl tls init",
              file=sys.stderr)
        return 1
    hosts, ips = _names(args)
    current = tls_files(args.dir).server_cert
    if hosts is None and current.exists():     # the same names as now, a new validity
        names = read_cert(current).names
        hosts = [n.removeprefix("DNS:") for n in names if n.startswith("DNS:")]
        ips = [n.removeprefix("IP:") for n in names if n.startswith("IP:")]
    try:
        files = ensure_hall_ca(args.dir, "", hosts, ips, days=args.days, renew=True, clock=args.clock)
    except TlsSetupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    _show(files, args.clock)
    print("\n请重新加载 Mosquitto（systemctl reload mosquitto）使新证书生效 / reload Mosquitto to use it.")
    return 0


def cmd_tls_show(args: argparse.Namespace) -> int:
    files = tls_files(args.dir)
    if not files.ca_cert.exists():
        print(f"{args.dir} 中没有大厅 CA（hallctl tls init 创建） / no hall CA in {args.dir}", file=sys.stderr)
        return 1
    return 0 if _show(files, args.clock) else 1


def _cert_lines(info: CertInfo, clock: Clock) -> list[str]:
    days = (info.not_after - clock.now()).days
    left = f"还有 {days} 天 / {days} days left" if days >= 0 else f"已过期 {-days} 天 / EXPIRED {-days} days ago"
    lines = [f"  主题 / subject:       {info.subject}"]
    if info.issuer != info.subject:
        lines.append(f"  签发者 / issuer:      {info.issuer}")
    if info.names:
        lines.append(f"  名称 / names (SAN):   {', '.join(info.names)}")
    lines += [f"  有效期 / valid:       {info.not_before:%Y-%m-%d} – {info.not_after:%Y-%m-%d} ({left})",
              f"  SHA-256 指纹 / fingerprint: {info.fingerprint}"]
    return lines


def _key_line(path: Path) -> str:
    if not path.exists():
        return f"  私钥 / key:           {path} 缺失 / MISSING"
    mode = stat.S_IMODE(path.stat().st_mode)
    loose = "" if mode & 0o077 == 0 else "  ← 其他用户可读，请 chmod 600 / readable by others"
    return f"  私钥 / key:           {path} ({mode:04o}){loose}"


def _show(files: TlsFiles, clock: Clock) -> bool:
    """Print both certificates; False when something is missing, expired or not from this CA."""
    ok = True
    try:
        ca = read_cert(files.ca_cert)
    except TlsSetupError as exc:
        print(str(exc))
        return False
    print(f"大厅 CA / hall CA: {files.ca_cert}")
    print("\n".join(_cert_lines(ca, clock)))
    print(_key_line(files.ca_key))
    ok = ok and ca.not_after > clock.now()
    if not files.server_cert.exists():
        print(f"服务器证书 / broker certificate: {files.server_cert} 缺失 / MISSING (hallctl tls renew)")
        return False
    server = read_cert(files.server_cert)
    print(f"服务器证书 / broker certificate: {files.server_cert}")
    print("\n".join(_cert_lines(server, clock)))
    print(_key_line(files.server_key))
    mine = signed_by(files.server_cert, files.ca_cert)
    print(f"  由本大厅 CA 签发 / signed by this hall CA: {'是 / yes' if mine else '否 / NO (hallctl tls renew)'}")
    return ok and mine and files.server_key.exists() and server.not_after > clock.now()


def add_commands(sub: argparse._SubParsersAction, with_config: Any) -> None:
    """Adds this module's hallctl subcommands."""
    default_dir = str(HallPaths().tls)
    tls = sub.add_parser("tls", help="the hall CA and the broker's TLS certificate (mqtts://)")
    tls_sub = tls.add_subparsers(dest="tls_command", required=True)

    def names(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--dir", default=default_dir, help="where the CA and certificate live (default %(default)s)")
        sp.add_argument("--host", action="extend", nargs="+", metavar="NAME",
                        help="a name the app PCs use for the hall PC (default: this PC's hostname and localhost)")
        sp.add_argument("--ip", action="extend", nargs="+", metavar="ADDR",
                        help="an address the app PCs use for the hall PC (default: 127.0.0.1)")
        sp.add_argument("--days", type=int, default=SERVER_DAYS,
                        help="the broker certificate's validity in days (default %(default)s; the CA: 10 years)")
        return sp

    sp = names(with_config(tls_sub.add_parser("init", help="create the hall CA and the broker's certificate")))
    sp.add_argument("--force", action="store_true",
                    help="replace an existing CA (every app PC must then be given the new ca.crt)")
    sp.set_defaults(func=cmd_tls_init)
    sp = names(tls_sub.add_parser("renew", help="a new broker certificate from the existing hall CA (default: "
                                                "the names of the current one)"))
    sp.set_defaults(func=cmd_tls_renew)
    sp = tls_sub.add_parser("show", help="subjects, names, expiry and fingerprints")
    sp.add_argument("--dir", default=default_dir, help="(default %(default)s)")
    sp.set_defaults(func=cmd_tls_show)
