"""Units and programs looked up by their Zoho id.

The marts join every grade and registration to its unit, and every student to their programme,
by the Zoho id the canonical rows carry (`unit_zoho_id`, `program_zoho_id`). Without an index on
it SQLite walked every unit of the tenant for each grade: the dbt build took 234 s at 100,000
students, ten times its time at 25,000.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("units", "programs")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_zoho_id", table, ["tenant_id", "zoho_id"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_zoho_id", table_name=table)
