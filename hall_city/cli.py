"""`hall-city`: the city's 大屏 of every hall (issue 20).

    hall-city --mqtt-url mqtts://hall-city@city-broker:8883 --ca city-ca.crt --password-file FILE \
              --db postgresql+psycopg://hall_city@db/hall_city [--listen 0.0.0.0:8090]
    hall-city --demo                 # a city broker, three demo halls and the page on this PC

The password comes from --password-file, else the credential systemd hands the service
(`LoadCredential=mqtt-password`) — never from the command line. Without --db there is no history
(the page says so). It prints and logs the URL it serves, then `ready`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hall_controller.bus.url import MqttUrlError, parse_mqtt_url, password_from_files
from hall_controller.logsetup import setup_logging

from .app import DEFAULT_LISTEN, Options, UsageError, serve, split_hostport

log = logging.getLogger(__name__)

DEFAULT_USER = "hall-city"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hall-city", description="全市大厅实时监控大屏 / the city's view of every hall")
    parser.add_argument("--mqtt-url", help="mqtt[s]://hall-city@HOST:PORT: the city broker (account hall-city)")
    parser.add_argument("--ca", metavar="FILE", help="the CA the city broker's certificate must chain to (mqtts://)")
    parser.add_argument("--password-file", metavar="FILE",
                        help="the MQTT password is this file's first line (default: $CREDENTIALS_DIRECTORY/"
                             "mqtt-password from systemd)")
    parser.add_argument("--db", help="history database: postgresql+psycopg://USER@HOST/DB or sqlite:///FILE "
                                     "(default: none, the page says history is off)")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT to serve on (default %(default)s; "
                                                                 "port 0: any free one)")
    parser.add_argument("--timezone", default="Asia/Shanghai", help="the city's time zone (default %(default)s)")
    parser.add_argument("--title", default="", help="the page title (default 全市公共法律服务大厅 实时监控)")
    parser.add_argument("--demo", action="store_true", help="run a city broker, three demo halls and the page")
    parser.add_argument("--simulated-halls", action="store_true",
                        help="with --demo: simulated halls (MQTT clients) instead of three real hall daemons")
    parser.add_argument("--demo-dir", default="city-demo", help="where --demo keeps its files (default %(default)s)")
    parser.add_argument("--log-level", default=os.environ.get("HALL_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def options_from_args(args: argparse.Namespace) -> Options:
    """Resolve the broker, the account and where we serve; UsageError says what is wrong."""
    if not args.mqtt_url:
        raise UsageError("请指定 --mqtt-url mqtts://hall-city@主机:8883 --password-file 文件，或用 --demo 试运行")
    try:
        endpoint = parse_mqtt_url(args.mqtt_url, ca=args.ca)
        if endpoint.password is not None:
            raise UsageError("密码不要写在命令行里（ps 可见）：请用 --password-file")
        password = password_from_files(args.password_file)
    except (MqttUrlError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    endpoint = endpoint.with_login(endpoint.username or DEFAULT_USER, password)
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"未知时区 {args.timezone!r}，例如 Asia/Shanghai") from None
    return Options(endpoint, split_hostport(args.listen), args.db, args.timezone, args.title)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.demo:
        from .demo import run_demo
        return run_demo(args)
    try:
        options = options_from_args(args)
    except UsageError as exc:
        print(f"hall-city: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(options))


if __name__ == "__main__":
    raise SystemExit(main())
