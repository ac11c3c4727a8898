"""Admin ops for operator commands: through the running daemon when it is reachable, else directly
on the hall database (`hallctl status`, `reset-day`, `appointment add`, …).

The offline path builds a HallService on the caller's clock: the command line passes the clock it
was given (the wall clock in production, a test's clock in tests), so a CLI run never judges "today"
or "due" by another clock than the daemon it stands in for.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from .clock import SystemClock
from .config import HallConfig
from .setup_hall import client_password, load_or_create_secret

log = logging.getLogger(__name__)


def admin_client(config: HallConfig, timeout: float = 3.0) -> Any:
    """Connect to the running daemon's broker as `admin`; None if it cannot be reached."""
    from .bus.client import HallClient
    from .daemon import split_hostport

    password = client_password(config, "admin")
    if password is None or not config.mqtt_listen:
        return None
    host, port = split_hostport(config.mqtt_listen)
    try:  # nothing listening: say so now, not after the client's connect timeout
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        log.info("daemon not reachable over MQTT at %s:%d: %s", host, port, exc)
        return None
    client = HallClient("admin", password, host, port, config.hall_id, role="admin")
    try:
        client.connect(timeout=timeout)
    except Exception as exc:  # the daemon (or its broker) is not running
        log.info("daemon not reachable over MQTT: %s", exc)
        client.close()
        return None
    return client


def offline_service(config: HallConfig, *, clock: Any = None, db_url: str | None = None) -> Any:
    """A HallService on the hall database itself (`db_url`, else the config's), for when no daemon runs."""
    from .service import HallService
    from .store import Store

    return HallService(config, Store(db_url or config.database), clock or SystemClock(),
                       secret=load_or_create_secret(config.secret_path))


def admin_op(config: HallConfig, op: str, args: dict[str, Any] | None = None, *, clock: Any = None,
             db_url: str | None = None) -> dict[str, Any]:
    """Run an admin op through the daemon when it runs, else directly on the database."""
    from .service import Actor

    client = admin_client(config)
    if client is not None:
        try:
            return client.request(op, **(args or {}))
        finally:
            client.close()
    print("(daemon not reachable: using the database directly)", file=sys.stderr)
    service = offline_service(config, clock=clock, db_url=db_url)
    try:
        return service.execute(Actor("hallctl", "admin"), op, args or {})
    finally:
        service.store.close()
