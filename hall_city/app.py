"""hall-city's service: the hub, the city broker connection, the history writer and the page server,
run until stopped (`hall-city` and `hall-city --demo` alike)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web

from hall_controller.bus.tls import TlsSetupError
from hall_controller.bus.url import MqttEndpoint
from hall_controller.clock import Clock, SystemClock
from hall_controller.redact import redact_url

from .citybus import CityBus
from .history import History
from .hub import CityHub
from .server import RUNNER_OPTIONS, create_app

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8090"


class UsageError(ValueError):
    """A bad command line; said to the person starting hall-city."""


@dataclass(frozen=True)
class Options:
    endpoint: MqttEndpoint = field(repr=False)
    listen: tuple[str, int]
    db: str | None = None
    tz: str = "Asia/Shanghai"
    title: str = ""


def split_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--listen 须为 主机:端口，例如 {DEFAULT_LISTEN}")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(options: Options, *, clock: Clock | None = None, stop: asyncio.Event | None = None,
                on_ready: Callable[[str], None] | None = None) -> int:
    """Connect to the city broker, serve the page until `stop` (or SIGTERM/SIGINT)."""
    clock = clock or SystemClock()
    hub: CityHub | None = None
    history = None
    if options.db:
        history = History(options.db, clock, on_change=lambda ok: hub.history_changed(ok) if hub else None)
    hub = CityHub(clock, tz=ZoneInfo(options.tz), history=history, title=options.title)
    await hub.start()
    if history is not None:
        try:
            hub.restore(await asyncio.get_running_loop().run_in_executor(None, history.load_open_ratings))
        except sa.exc.SQLAlchemyError as exc:
            log.warning("hall-city: the open 差评 could not be read from the database (%s); they show again "
                        "as their halls' summaries count them", type(exc).__name__)
        history.start()
    try:
        bus = CityBus(options.endpoint, hub.from_thread, hub.set_connected)
    except TlsSetupError as exc:
        print(f"hall-city: {exc}", file=sys.stderr)
        return 2
    bus.start()
    runner = web.AppRunner(create_app(hub), shutdown_timeout=3.0, **RUNNER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, options.listen[0], options.listen[1])
    try:
        await site.start()
    except OSError as exc:
        log.error("hall-city cannot listen on %s:%d: %s", *options.listen, exc)
        print(f"hall-city: 无法在 {options.listen[0]}:{options.listen[1]} 上提供服务（端口被占用？）", file=sys.stderr)
        await _close(hub, runner, bus, history)
        return 1
    sockets = getattr(site._server, "sockets", None) or []
    host, port = sockets[0].getsockname()[:2] if sockets else options.listen
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    print(f"hall-city serving {url}", flush=True)
    log.info("hall-city: serving %s; city broker %s; history %s", url, options.endpoint,
             redact_url(options.db) if options.db else "off")
    log.info("ready")
    if on_ready:
        on_ready(url)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        log.info("hall-city: stopping")
        await _close(hub, runner, bus, history)
    return 0


async def _close(hub: CityHub, runner: web.AppRunner, bus: CityBus, history: History | None) -> None:
    await runner.cleanup()
    await hub.stop()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, bus.stop)
    if history is not None:
        await loop.run_in_executor(None, history.stop)
