"""Identity keys kept by key, and money exact on SQLite.

- `identity_zoho_students` and `identity_moodle_users` hold what identity matches on, indexed,
  so that the students a change reaches are linked by a few index lookups.
- `raw_records` gains an index of Moodle records (enrolments, grades) by user, and `students` one by `updated_at`.
- `payments.amount` becomes a `Money` column: still NUMERIC(12, 2) on PostgreSQL; on SQLite, whose
  NUMERIC is a float (123456789012345.67 read back as 123456789012346.0), the exact decimal text.

Canonical fingerprints are now computed in SQL by the merge. Rows written before this revision
carry the old Python fingerprints, so the first sync after the upgrade rewrites each canonical row
once (reported as updated), and then writes only what changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

# The index's expressions as the schema declares them: a query finds the index only through the
# very same expression.
from integration_pipelines.lib.warehouse.schema import moodle_user_of
from integration_pipelines.lib.warehouse.types import Money, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _bookkeeping() -> list[sa.Column]:
    return [
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "identity_zoho_students",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("zoho_id", sa.String(length=32), nullable=False),
        sa.Column("number_key", sa.String(length=64), nullable=True),
        sa.Column("email_key", sa.Text(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        *_bookkeeping(),
        sa.PrimaryKeyConstraint("tenant_id", "zoho_id"),
    )
    for column in ("number_key", "email_key"):
        op.create_index(f"ix_identity_zoho_students_{column}", "identity_zoho_students", ["tenant_id", column])
    op.create_table(
        "identity_moodle_users",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("moodle_user_id", sa.BigInteger(), nullable=False),
        sa.Column("crm_key", sa.String(length=64), nullable=True),
        sa.Column("number_key", sa.String(length=64), nullable=True),
        sa.Column("email_key", sa.Text(), nullable=True),
        sa.Column("is_student", sa.Boolean(), nullable=False),
        *_bookkeeping(),
        sa.PrimaryKeyConstraint("tenant_id", "moodle_user_id"),
    )
    for column in ("crm_key", "number_key", "email_key"):
        op.create_index(f"ix_identity_moodle_users_{column}", "identity_moodle_users", ["tenant_id", column])
    op.create_index(
        "ix_raw_records_moodle_user",
        "raw_records",
        [sa.column("tenant_id"), sa.column("source"), sa.column("entity"), moodle_user_of()],
        sqlite_where=sa.column("source") == "moodle",
        postgresql_where=sa.column("source") == "moodle",
    )
    op.create_index("ix_students_updated_at", "students", ["tenant_id", "updated_at"])
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("payments") as batch:
            batch.alter_column("amount", type_=Money(), existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("payments") as batch:
            batch.alter_column("amount", type_=sa.Numeric(12, 2), existing_nullable=True)
    op.drop_index("ix_students_updated_at", table_name="students")
    op.drop_index("ix_raw_records_moodle_user", table_name="raw_records")
    op.drop_table("identity_moodle_users")
    op.drop_table("identity_zoho_students")
