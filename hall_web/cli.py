"""`hall-web`: the visitor's phone page server (DESIGN §10).

    hall-web --config hall.yaml [--client web-1] [--listen HOST:PORT]
    hall-web --mqtt-url mqtts://web-1@HOST:8883 --ca ca.crt --hall demo --password-file FILE [--listen …]

The password comes from --password-file, else the credential systemd hands the service
(`LoadCredential=mqtt-password`), else (with --config) the hall's client-passwords file — never from
the command line. The broker (mqtt.url with mqtt.ca, or mqtt.listen) and `web.listen` come from the
config; --mqtt-url HOST:PORT moves the broker (the demo's free port). `--listen …:0` takes a free
port. It prints and logs the URL it serves, then `ready`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from hall_controller.bus import connect
from hall_controller.bus.client import AuthenticationFailed, BusUnavailable, HallClient
from hall_controller.bus.connect import UsageError
from hall_controller.clock import Clock, SystemClock
from hall_controller.config import HallConfig
from hall_controller.logsetup import setup_logging

from .hub import EVENTS, Hub
from .server import RUNNER_OPTIONS, Limiter, create_app

log = logging.getLogger(__name__)

DEFAULT_CLIENT = "web-1"
DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True)
class Options:
    client_id: str
    password: str = field(repr=False)
    host: str
    port: int
    hall_id: str
    listen: tuple[str, int]
    config: HallConfig | None = None
    tls: bool = False
    ca: str | None = None
    lookup_rate: float = 20.0
    lookup_burst: int = 10
    max_streams_per_address: int = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hall-web", description="访客手机排队页面服务 / the visitor's phone page")
    parser.add_argument("--config", help="the hall's config file (hall.yaml)")
    parser.add_argument("--client", default=DEFAULT_CLIENT, help="client id (default %(default)s)")
    parser.add_argument("--mqtt-url", help="mqtt[s]://CLIENT_ID@HOST:PORT, or mqtt[s]://HOST:PORT with --config "
                                           "(the broker elsewhere than the config says)")
    parser.add_argument("--ca", metavar="FILE", help="the hall CA an mqtts:// broker must show (default: mqtt.ca)")
    parser.add_argument("--hall", help="hall id (with --mqtt-url and no --config)")
    parser.add_argument("--password-file", metavar="FILE",
                        help="the MQTT password is this file's first line (default: $CREDENTIALS_DIRECTORY/"
                             "mqtt-password from systemd, else the config's client-passwords file)")
    parser.add_argument("--listen", help=f"HOST:PORT to serve on (default web.listen or {DEFAULT_LISTEN}; port 0: "
                                         "any free one)")
    parser.add_argument("--lookup-rate", type=float, default=20.0,
                        help="token lookups per minute per client address (default %(default)s)")
    parser.add_argument("--lookup-burst", type=int, default=10, help="lookups at once per address (default %(default)s)")
    parser.add_argument("--max-streams-per-address", type=int, default=64,
                        help="open pages per client address (default %(default)s)")
    parser.add_argument("--log-level", default=os.environ.get("HALL_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def _password(args: argparse.Namespace, config: HallConfig | None, client_id: str) -> str:
    """--password-file, else systemd's credential, else the config's client-passwords file."""
    password = connect.file_password(args.password_file)
    if password is None and config is not None:
        password = connect.config_password(config, client_id, role="web")
    if password is None:
        raise UsageError("缺少 MQTT 密码：请用 --password-file 文件（第一行为密码）")
    return password     # registered as a secret where it was read


def options_from_args(args: argparse.Namespace) -> Options:
    """Resolve who we are on the bus and where we serve; UsageError says what is wrong."""
    endpoint = connect.endpoint_of(args.mqtt_url) if args.mqtt_url else None
    if endpoint is not None and endpoint.password is not None:
        raise UsageError("密码不要写在命令行里（ps 可见）：请用 --password-file 或 --config 的密码文件")
    config = connect.load_hall_config(args.config) if args.config else None
    if config is None and endpoint is None:
        raise UsageError("请指定 --config hall.yaml，或 --mqtt-url mqtt://ID@主机:端口 --hall 大厅 --password-file 文件")
    client_id = endpoint.username if endpoint is not None and endpoint.username else args.client
    password = _password(args, config, client_id)
    broker = endpoint or connect.config_broker(config)      # type: ignore[arg-type]
    ca = connect.checked_ca(broker, args.ca or (config.mqtt_ca if config is not None else None))
    hall_id = config.hall_id if config is not None else args.hall
    if not hall_id:
        raise UsageError("使用 --mqtt-url 时必须指定 --hall（大厅编号）")
    listen = args.listen or (config.web_listen if config is not None else None) or DEFAULT_LISTEN
    return Options(client_id, password, broker.host, broker.port, hall_id, connect.split_hostport(listen), config,
                   broker.tls, ca, args.lookup_rate, args.lookup_burst, args.max_streams_per_address)


def raise_open_files() -> int:
    """Every open page holds a socket: take the hard limit on open files, not the soft 1024 a service
    usually starts with (2,000 pages need more). Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
        except (ValueError, OSError) as exc:
            log.warning("hall-web: open files stay limited to %d (%s)", soft, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def hours_of(config: HallConfig | None) -> Callable[[datetime], str] | None:
    """Today's opening hours from the config, for when the daemon does not say (`hall_page`)."""
    if config is None:
        return None
    return lambda now: config.day_plan(now.astimezone(config.tz).date()).hours_text


async def serve(options: Options, *, clock: Clock | None = None, stop: asyncio.Event | None = None,
                on_ready: Callable[[str], None] | None = None) -> int:
    """Connect to the hall, serve until `stop` (or SIGTERM/SIGINT), then leave cleanly."""
    log.info("hall-web: up to %d open files (each open page holds one)", raise_open_files())
    bus = HallClient(options.client_id, options.password, options.host, options.port, options.hall_id,
                     role="web", events=list(EVENTS), reconnect_max_delay=3.0, tls=options.tls, ca=options.ca)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, bus.connect, 10.0)
    except AuthenticationFailed as exc:
        log.error("hall-web: the broker refused %s: %s", options.client_id, exc)
        print(f"hall-web: 消息服务器拒绝了账号 {options.client_id}，请检查密码（hallctl client add "
              f"{options.client_id} --role web）", file=sys.stderr)
        return 1
    except BusUnavailable:
        log.warning("hall-web: the hall bus at %s:%d is not up yet; serving, pages show it offline",
                    options.host, options.port)
    config = options.config
    hub = Hub(bus, clock or SystemClock(), hall_name=config.name if config else "",
              timezone=config.timezone if config else None, hours=hours_of(config))
    await hub.start()
    app = create_app(hub, limiter=Limiter(options.lookup_rate, options.lookup_burst),
                     max_streams_per_address=options.max_streams_per_address)
    runner = web.AppRunner(app, **RUNNER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, options.listen[0], options.listen[1], backlog=2048, shutdown_timeout=3.0)
    try:
        await site.start()
    except OSError as exc:
        log.error("hall-web cannot listen on %s:%d: %s", *options.listen, exc)
        print(f"hall-web: 无法在 {options.listen[0]}:{options.listen[1]} 上提供服务（端口被占用？）", file=sys.stderr)
        await hub.stop()
        await runner.cleanup()
        bus.close()
        return 1
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    host, port = sockets[0].getsockname()[:2] if sockets else options.listen
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    print(f"hall-web serving {url}", flush=True)
    log.info("hall-web: serving %s as %s on %s:%d (hall %s)", url, options.client_id, options.host, options.port,
             options.hall_id)
    log.info("ready")
    if on_ready:
        on_ready(url)
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        log.info("hall-web: stopping")
        await runner.cleanup()
        await hub.stop()
        await loop.run_in_executor(None, bus.close)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        options = options_from_args(args)
    except UsageError as exc:
        print(f"hall-web: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(options))
    return uvloop.run(serve(options))


if __name__ == "__main__":
    raise SystemExit(main())
