"""Index raw records by when we wrote them, the order canonical steps read changes in.

Canonical assets read the raw records written since their watermark (`updated_at`), oldest
first. The index on the source's own modification time served no query; this one lets an
incremental run read its changes without scanning the whole entity.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_raw_records_modified", table_name="raw_records")
    op.create_index("ix_raw_records_changes", "raw_records", ["tenant_id", "source", "entity", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_raw_records_changes", table_name="raw_records")
    op.create_index("ix_raw_records_modified", "raw_records", ["tenant_id", "source", "entity", "source_modified_at"])
