"""Adding to the durable outbox: rows waiting to be sent upstream and the scan images they reference.

The tables are the store's (`hall_controller.store.schema.outbox` / `scans`, created by its Alembic
migration); these helpers write them in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from hall_controller.store.schema import db_time, outbox, scans

KINDS = ("service_record", "monthly_report")


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
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    if conn.execute(select(outbox.c.id).where(outbox.c.record_key == record_key)).first() is not None:
        return False
    stamp = db_time(now)
    conn.execute(
        insert(outbox).values(
            record_key=record_key,
            kind=kind,
            created_at=stamp,
            payload=json.dumps(payload, ensure_ascii=False),
            status="pending",
            attempts=0,
            next_attempt_at=stamp,
        )
    )
    return True


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
