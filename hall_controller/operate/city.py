"""`hallctl city-credentials`: the city broker's accounts and its Mosquitto files (DESIGN §11), run on
the CITY side by its IT staff, not on a hall PC.

    hallctl city-credentials add demo --district 310101 [--password-out city-password] [--url mqtts://…]
    hallctl city-credentials add-service [hall-city] [--password-out FILE]
    hallctl city-credentials list
    hallctl city-credentials remove demo [--district 310101]
    hallctl city-credentials mosquitto /etc/mosquitto/city [--tls-dir /etc/mosquitto/city-tls] [--port 1883]

A password is shown once (or written to a 0600 file) and never logged or taken from argv; the store
keeps hashes only (bus.city_accounts). After `add` or `remove`, write the Mosquitto files again and
reload Mosquitto (`systemctl reload mosquitto`): it re-reads the password file and ACL on SIGHUP.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..bus.city_accounts import HALL_CITY, CityAccount, CityCredentialStore, write_city_mosquitto_config
from ..bus.credentials import CredentialError, write_private
from ..bus.mosquitto import LOOPBACK
from ..bus.tls import tls_files

STORE_ENV = "HALL_CITY_ACCOUNTS"
SERVICE_PASSWORD_FILE = "hall-city-password"   # where `mosquitto` puts the password of a hall-city it made


def _store(args: argparse.Namespace) -> CityCredentialStore:
    return CityCredentialStore(args.store)


def _give_password(password: str, out: str | None) -> str:
    """Write the password to `out` (0600, first line) and say where; else the line that shows it once."""
    if out:
        write_private(Path(out), password + "\n")
        return f"密码已写入 {out}（权限 0600，只显示在此文件中）/ password written to {out} (mode 0600)"
    return f"密码（只显示这一次，请立即保存）/ password (shown once): {password}"


def cmd_add(args: argparse.Namespace) -> int:
    store = _store(args)
    existed = any(a.kind == "hall" and a.district == args.district for a in store.find(args.hall, args.district))
    account, password = store.add_hall(args.hall, args.district)
    if existed:
        print("注意：该大厅已有账号，旧密码现已作废，须把新密码交给该大厅 / the hall had an account: its old password "
              "no longer works once Mosquitto is reloaded")
    print(f"已签发城市账号 {account.username}（区 {account.district}，大厅 {account.hall}；只能发布到 "
          f"{account.prefix}/#）/ city account issued")
    print(_give_password(password, args.password_out))
    print(f"\n大厅配置 hall.yaml 中加入 / in the hall's hall.yaml:\n{hall_config_snippet(account, args.url)}")
    print("把密码放到大厅 PC 上 hall.yaml 旁的 city-password 文件（第一行，仅 root 可读：chmod 600）；")
    print("城市 CA 证书放到 tls/city-ca.crt。然后在城市服务器上重写 Mosquitto 配置并重新加载：")
    print("  hallctl city-credentials mosquitto DIR && systemctl reload mosquitto\n"
          "Put the password in city-password next to hall.yaml on the hall PC (root-only), then rewrite the "
          "city broker's files and reload Mosquitto.")
    return 0


def hall_config_snippet(account: CityAccount, url: str) -> str:
    return "\n".join(["city:", f"  url: {url}", "  ca: tls/city-ca.crt", f"  district: '{account.district}'",
                      f"  username: {account.username}", "  password_file: city-password"])


def cmd_add_service(args: argparse.Namespace) -> int:
    account, password = _store(args).add_service(args.name)
    print(f"已签发服务账号 {account.username}（只读 city/#，不能发布）/ service account issued (reads city/#)")
    print(_give_password(password, args.password_out))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    accounts = _store(args).accounts()
    if not accounts:
        print(f"{args.store} 中还没有账号（hallctl city-credentials add HALL --district D）/ no accounts yet")
        return 0
    print(f"{'账号 / account':<36} {'类型 / kind':<12} {'区 / district':<14} {'权限 / rights'}")
    for a in accounts:
        rights = f"写 write {a.prefix}/#" if a.kind == "hall" else "读 read city/#"
        kind = "大厅 hall" if a.kind == "hall" else "服务 service"
        print(f"{a.username:<36} {kind:<12} {a.district or '-':<14} {rights}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    found = store.find(args.name, args.district)
    if len(found) != 1:
        which = ", ".join(a.username for a in found)
        print(f"没有名为 {args.name} 的账号 / no such account" if not found else
              f"大厅 {args.name} 在多个区有账号（{which}），请加 --district / several districts: add --district",
              file=sys.stderr)
        return 1
    store.remove(found[0].username)
    print(f"已删除 {found[0].username}；请重写 Mosquitto 配置并重新加载 / removed: rewrite the Mosquitto files "
          "and reload")
    return 0


def cmd_mosquitto(args: argparse.Namespace) -> int:
    tls = tls_files(Path(args.tls_dir).resolve()) if args.tls_dir else None
    bind = args.bind
    if tls is not None:
        missing = [str(p) for p in (tls.ca_cert, tls.server_cert, tls.server_key) if not p.is_file()]
        if missing:
            print(f"缺少 TLS 文件（ca.crt、server.crt、server.key）/ missing TLS files: {', '.join(missing)}",
                  file=sys.stderr)
            return 2
        bind = bind or "127.0.0.1"
        if bind not in LOOPBACK:
            print(f"启用 TLS 时明文端口只能监听本机，不能是 {bind} / with TLS the plain listener is loopback-only",
                  file=sys.stderr)
            return 2
    store = _store(args)
    made = None
    if not any(a.kind == "service" for a in store.accounts()):
        _, password = store.add_service(HALL_CITY)
        made = Path(args.dir).resolve() / SERVICE_PASSWORD_FILE
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        write_private(made, password + "\n")
    files = write_city_mosquitto_config(args.dir, store, port=args.port, bind_address=bind, tls=tls,
                                        tls_port=args.tls_port)
    for path in files:
        print(path)
    if made is not None:
        print(f"已创建只读服务账号 {HALL_CITY}，密码在 {made}（0600）/ made the {HALL_CITY} account; its password "
              f"is in {made}")
    print("请让 Mosquitto 用户可读这些文件并重新加载（systemctl reload mosquitto）/ make them readable by "
          "Mosquitto's user and reload it")
    return 0


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except CredentialError as exc:
            print(f"城市账号操作失败 / failed: {exc}", file=sys.stderr)
            return 2
    return run


def add_commands(sub: argparse._SubParsersAction, with_config: Any) -> None:
    """Adds `hallctl city-credentials …` (no hall config: this runs on the city's server)."""
    parser = sub.add_parser("city-credentials", help="the city broker's accounts (one per hall) and its Mosquitto "
                                                     "files; run on the city side")
    parser.add_argument("--store", default=os.environ.get(STORE_ENV, "city-accounts.yaml"),
                        help=f"the city account file (default ${STORE_ENV}, else %(default)s)")
    city = parser.add_subparsers(dest="city_command", required=True)
    sp = city.add_parser("add", help="issue (or reset) a hall's account; shows its password once", allow_abbrev=False)
    sp.add_argument("hall", metavar="HALL_ID", help="the hall's hall_id")
    sp.add_argument("--district", required=True, help="the district code, e.g. 310101")
    sp.add_argument("--password-out", metavar="FILE", help="write the password there (0600) instead of showing it")
    sp.add_argument("--url", default="mqtts://city-broker.example:8883", help="the city broker, for the config "
                                                                              "snippet (default %(default)s)")
    sp.set_defaults(func=_run(cmd_add))
    sp = city.add_parser("add-service", help="issue (or reset) a read-only service account (default hall-city)",
                         allow_abbrev=False)
    sp.add_argument("name", nargs="?", default=HALL_CITY)
    sp.add_argument("--password-out", metavar="FILE", help="write the password there (0600) instead of showing it")
    sp.set_defaults(func=_run(cmd_add_service))
    city.add_parser("list", help="the accounts and what each may do").set_defaults(func=_run(cmd_list))
    sp = city.add_parser("remove", help="remove an account (a hall id or an account name)")
    sp.add_argument("name")
    sp.add_argument("--district", help="the district, when the hall id is in several")
    sp.set_defaults(func=_run(cmd_remove))
    sp = city.add_parser("mosquitto", help="write the city Mosquitto's passwd, acl and city.conf into DIR")
    sp.add_argument("dir")
    sp.add_argument("--tls-dir", metavar="DIR", help="ca.crt, server.crt, server.key: adds a TLS listener for the "
                                                     "halls and keeps the plain one on the loopback")
    sp.add_argument("--port", type=int, default=1883, help="the plain listener's port (default %(default)s)")
    sp.add_argument("--bind", metavar="HOST", help="the plain listener's address (default: all; 127.0.0.1 with TLS)")
    sp.add_argument("--tls-port", type=int, default=8883, help="the TLS listener's port (default %(default)s)")
    sp.set_defaults(func=_run(cmd_mosquitto))
