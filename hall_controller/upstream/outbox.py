"""The durable outbox: rows waiting to be sent upstream and the scan images they reference.

The tables live in the hall's database. The store adds them to its own metadata with
`define_outbox_tables(store_metadata)` (and its Alembic migration creates them); the module-level
`outbox_table` / `scans_table` are the same definitions on a private MetaData, which is all SQLAlchemy
Core needs to build statements against any engine that has the tables.

Times are stored as UTC ISO-8601 text with microseconds (`db_time`) so that string order is time
order on SQLite and PostgreSQL alike; write them only through `db_time`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    insert,
    select,
)

KINDS = ("service_record", "monthly_report")
STATUSES = ("pending", "delivered", "dead")


def define_outbox_tables(metadata: MetaData) -> tuple[Table, Table]:
    """Define `outbox` and `scans` on `metadata` and return them."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("record_key", Text, nullable=False, unique=True),
        Column("kind", Text, nullable=False),
        Column("created_at", Text),
        Column("payload", Text),
        Column("status", Text, nullable=False, default="pending"),
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", Text),
        Column("last_error", Text),
        Column("delivered_at", Text),
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        sqlite_autoincrement=True,  # ids are never reused, so id order stays creation order
    )
    scans = Table(
        "scans",
        metadata,
        Column("sha256", Text, primary_key=True),
        Column("ticket_id", Text),
        Column("content_type", Text),
        Column("size", Integer),
        Column("data", LargeBinary),
        Column("created_at", Text),
        Column("uploaded_at", Text),
    )
    return outbox, scans


metadata = MetaData()
outbox_table, scans_table = define_outbox_tables(metadata)


def db_time(moment: datetime) -> str:
    """The stored form of a time: UTC, fixed width, so text comparison orders correctly."""
    if moment.tzinfo is None:
        raise ValueError("outbox times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def enqueue(
    conn: Connection,
    *,
    record_key: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    table: Table = outbox_table,
) -> bool:
    """Add a row in the caller's transaction (commit it with the ticket change that caused it).

    Idempotent by `record_key`: returns False when the row exists already, so a replayed command
    cannot queue a second copy.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    if conn.execute(select(table.c.id).where(table.c.record_key == record_key)).first() is not None:
        return False
    stamp = db_time(now)
    conn.execute(
        insert(table).values(
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
    table: Table = scans_table,
) -> dict[str, Any]:
    """Keep a scan image for upload and return its reference for the record's `scans` list.

    Keyed by content hash, so attaching the same image twice stores it once.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    if conn.execute(select(table.c.sha256).where(table.c.sha256 == sha256)).first() is None:
        conn.execute(
            insert(table).values(
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
