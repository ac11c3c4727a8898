"""The durable outbox: rows waiting to be sent upstream and the scan images they reference.

An outbox row has one shape, `outbox_row`, whichever way it is written: a closed visit's service
record goes into its command's write set (`WriteSet.add_outbox`, written by `Store.write` in the
transaction that closes the visit); a monthly report is added by `enqueue` in the caller's own
transaction. The forwarder (`hall_controller.upstream.forwarder`) reads and updates them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select

from .schema import db_time, outbox, scans

KINDS = ("service_record", "monthly_report")


def outbox_row(record_key: str, kind: str, payload: dict[str, Any], at: datetime | None) -> dict[str, Any]:
    """A pending row, due at once: `at` is when it arose (a visit's close, a report's queueing)."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    stamp = db_time(at) if at else ""
    return {"record_key": record_key, "kind": kind, "created_at": stamp, "payload": orjson.dumps(payload).decode(),
            "status": "pending", "attempts": 0, "next_attempt_at": stamp}


def enqueue(
    conn: Connection,
    *,
    record_key: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Add a row in the caller's transaction (commit it with the ticket change that caused it).

    Idempotent by `record_key`: returns False when the row exists already, so a replayed command
    cannot queue a second copy.
    """
    row = outbox_row(record_key, kind, payload, now)
    if conn.execute(select(outbox.c.id).where(outbox.c.record_key == record_key)).first() is not None:
        return False
    conn.execute(insert(outbox).values(**row))
    return True


def backlog(conn: Connection) -> tuple[int, int, str | None]:
    """(rows waiting to be sent, dead letters, `created_at` of the oldest waiting row or None): what
    /metrics reports, read through the status index without touching the delivered rows."""
    counts = dict(conn.execute(select(outbox.c.status, func.count()).where(outbox.c.status.in_(("pending", "dead")))
                               .group_by(outbox.c.status)).all())
    oldest = conn.execute(select(func.min(outbox.c.created_at)).where(outbox.c.status == "pending")).scalar()
    return counts.get("pending", 0), counts.get("dead", 0), oldest


def store_scan(
    conn: Connection,
    *,
    data: bytes,
    content_type: str,
    ticket_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Keep a scan image for upload and return its reference for the record's `scans` list.

    Keyed by content hash, so attaching the same image twice stores it once.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    if conn.execute(select(scans.c.sha256).where(scans.c.sha256 == sha256)).first() is None:
        conn.execute(
            insert(scans).values(
                sha256=sha256,
                ticket_id=ticket_id,
                content_type=content_type,
                size=len(data),
                data=data,
                created_at=db_time(now),
                uploaded_at=None,
            )
        )
    return {"sha256": sha256, "size": len(data), "type": content_type}
