"""API keys (hashed) and the history of sync runs, for the profile API.

- `api_keys`: one row per key, holding only the SHA-256 of the key, its scope and tenant.
- `sync_runs`: one row per full_sync or incremental_sync run, with rows per table and its error.
- `students` gains the profile fields the dashboard shows: photo, phone, date of birth, address,
  city and country. Their fingerprints change, so the first sync after the upgrade rewrites each
  student once (reported as updated).

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from integration_pipelines.lib.warehouse.types import UTCDateTime

revision = "0005"
down_revision = "0004"  # re-chained after 0004 (events) at the merge of issue-15 into issue-17
branch_labels = None
depends_on = None

STUDENT_PROFILE_COLUMNS = (
    ("photo_url", sa.Text()),
    ("phone", sa.String(length=32)),
    ("date_of_birth", sa.Date()),
    ("address", sa.Text()),
    ("city", sa.Text()),
    ("country", sa.String(length=64)),
)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("student_key", sa.String(length=96), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_table(
        "sync_runs",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("tables", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "run_id"),
    )
    op.create_index("ix_sync_runs_started", "sync_runs", ["tenant_id", "started_at"])
    for name, type_ in STUDENT_PROFILE_COLUMNS:
        op.add_column("students", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("students") as batch:
        for name, _ in STUDENT_PROFILE_COLUMNS:
            batch.drop_column(name)
    op.drop_index("ix_sync_runs_started", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_table("api_keys")
