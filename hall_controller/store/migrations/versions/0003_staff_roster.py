"""Staff roster kept in the hall database (`hallctl staff`), laid over the config's `staff:` list.

A row whose id matches a config clerk overrides only the fields it sets (NULL = the config's value),
so a clerk from the YAML can be disabled or given a new PIN without editing the file; a row with no
config clerk behind it is a clerk of its own and carries every field.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_number", sa.String(16)),
        sa.Column("name", sa.String(64)),
        sa.Column("position", sa.String(32)),
        sa.Column("windows", sa.Text),
        sa.Column("active", sa.Boolean),
        sa.Column("pin_hash", sa.Text),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("staff")
