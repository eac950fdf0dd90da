"""The mart refresh queue: the students whose marts an application made stale.

An event batch changes a handful of students; rebuilding the marts whole after it took as long
as the college is large (41 s at 100,000 students on SQLite). Each canonical application now
queues the students it changed, found by the rows it stamped (`updated_at`, indexed here), and
the marts rebuild those students only (dbt incremental models, lib/warehouse/mart_refresh.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from integration_pipelines.lib.warehouse.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

STAMPED = ("enrollments", "registrations", "payments", "grades")


def upgrade() -> None:
    op.create_table(
        "mart_refresh_queue",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("student_key", sa.String(96), nullable=False),
        sa.Column("queued_at", UTCDateTime(), nullable=False),
        sa.Column("claim", sa.String(64), nullable=True),
    )
    op.create_index("ix_mart_refresh_queue_claim", "mart_refresh_queue", ["claim", "tenant_id", "student_key"])
    for table in STAMPED:
        op.create_index(f"ix_{table}_updated_at", table, ["tenant_id", "updated_at"])


def downgrade() -> None:
    for table in STAMPED:
        op.drop_index(f"ix_{table}_updated_at", table_name=table)
    op.drop_table("mart_refresh_queue")
