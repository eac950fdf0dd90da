"""The canonical warehouse schema, as SQLAlchemy Core tables.

Every canonical table carries the same bookkeeping columns:
- `tenant_id`: one warehouse can hold several colleges;
- the source ids (`zoho_id`, Moodle ids) next to a stable natural key;
- `fingerprint`: a hash of the business columns, so an unchanged record costs no write;
- `source_modified_at`: when the source last changed the record; an older update never
  overwrites a newer one;
- `created_at` / `updated_at`: when *we* first wrote and last changed the row;
- `deleted_at`: soft delete; rows are never removed by a sync.

The schema is applied by the alembic migrations in `migrations/`, never by `create_all`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from integration_pipelines.lib.warehouse.types import UTCDateTime

metadata = MetaData()

BOOKKEEPING_COLUMNS = ("fingerprint", "source_modified_at", "created_at", "updated_at", "deleted_at")


def _bookkeeping_columns() -> list[Column]:
    return [
        Column("fingerprint", String(32), nullable=False),
        Column("source_modified_at", UTCDateTime(), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        Column("deleted_at", UTCDateTime(), nullable=True),
    ]


# Source records as the APIs returned them, one row per record. Raw assets land here and
# canonical assets read from here, so a transform can be re-run without calling the sources again.
raw_records = Table(
    "raw_records",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("source", String(16), primary_key=True),  # moodle | zoho
    Column("entity", String(64), primary_key=True),  # e.g. users, Students
    Column("record_id", String(64), primary_key=True),
    Column("payload", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    *_bookkeeping_columns(),
    Index("ix_raw_records_modified", "tenant_id", "source", "entity", "source_modified_at"),
)

students = Table(
    "students",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    # `zoho:<id>` for anyone admissions knows, `moodle:<id>` for a Moodle-only account.
    Column("student_key", String(64), primary_key=True),
    Column("zoho_id", String(32)),
    Column("moodle_user_id", BigInteger),
    Column("student_number", String(64)),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("email", Text),
    Column("program_zoho_id", String(32)),
    Column("status", String(32)),
    # How the Moodle and Zoho records were linked: crm_field, idnumber, email, or null (one source only).
    Column("identity_match", String(16)),
    *_bookkeeping_columns(),
    Index("ix_students_moodle_user_id", "tenant_id", "moodle_user_id"),
    Index("ix_students_zoho_id", "tenant_id", "zoho_id"),
    Index("ix_students_email", "tenant_id", "email"),
)

# One row per stream and tenant: when it last synced successfully. The health endpoint reads it.
sync_state = Table(
    "sync_state",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("last_synced_at", UTCDateTime(), nullable=False),
    Column("rows_read", Integer, nullable=False, default=0),
)


@dataclass(frozen=True)
class KeyedTable:
    """A table written through the one upsert path, and the natural key its upserts conflict on."""

    table: Table
    key_columns: tuple[str, ...]

    @property
    def business_columns(self) -> tuple[str, ...]:
        """The columns whose content the fingerprint covers: everything but keys and bookkeeping."""
        skip = set(self.key_columns) | set(BOOKKEEPING_COLUMNS)
        return tuple(c.name for c in self.table.columns if c.name not in skip)


KEYED_TABLES: dict[str, KeyedTable] = {
    "raw_records": KeyedTable(raw_records, ("tenant_id", "source", "entity", "record_id")),
    "students": KeyedTable(students, ("tenant_id", "student_key")),
}
