"""The city alert queue (DESIGN §11): one shape of a row, and what the uplink reads and marks.

A row is added to a command's write set (`WriteSet.add_city_alert`), so it commits with the event that
raised it; the uplink (`hall_controller.uplink`) sends unsent rows in `id` order and marks each sent
only after the city broker's PUBACK; sent rows are purged after `SENT_KEEP`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, select, update

from ..domain.city import CityAlert
from .schema import city_alerts, db_time

SENT_KEEP = timedelta(days=7)


def alert_row(alert: CityAlert, now: datetime) -> dict[str, Any]:
    return {"alert_id": alert.alert_id, "type": alert.type, "created_at": db_time(now),
            "payload": orjson.dumps(alert.payload).decode()}


def unsent(conn: Connection, limit: int = 10) -> list[tuple[int, str, dict[str, Any]]]:
    """The oldest unsent alerts: (row id, type, payload)."""
    rows = conn.execute(select(city_alerts.c.id, city_alerts.c.type, city_alerts.c.payload)
                        .where(city_alerts.c.sent_at.is_(None)).order_by(city_alerts.c.id).limit(limit)).all()
    return [(row_id, type_, orjson.loads(payload)) for row_id, type_, payload in rows]


def mark_sent(conn: Connection, row_id: int, now: datetime) -> None:
    conn.execute(update(city_alerts).where(city_alerts.c.id == row_id).values(sent_at=db_time(now)))


def purge_sent(conn: Connection, now: datetime) -> int:
    return conn.execute(delete(city_alerts).where(city_alerts.c.sent_at.is_not(None),
                                                  city_alerts.c.sent_at < db_time(now - SENT_KEEP))).rowcount


def queued(conn: Connection) -> int:
    """Alerts not yet acknowledged by the city broker (/metrics)."""
    return conn.execute(select(func.count()).select_from(city_alerts).where(city_alerts.c.sent_at.is_(None))
                        ).scalar_one()


def device_alerts(conn: Connection) -> list[tuple[str, dict[str, Any]]]:
    """The kept device alerts in order, (type, payload), for `AlertRules.restore` at start."""
    rows = conn.execute(select(city_alerts.c.type, city_alerts.c.payload)
                        .where(city_alerts.c.type.in_(("device_offline", "device_online")))
                        .order_by(city_alerts.c.id)).all()
    return [(type_, orjson.loads(payload)) for type_, payload in rows]
