"""Raw landing: source records kept as the APIs returned them, one row per record."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from integration_pipelines.lib.warehouse.schema import raw_records

# Rows fetched per round trip when reading raw records back; keeps memory flat on large entities.
READ_CHUNK = 5_000


def raw_row(
    tenant_id: str,
    source: str,
    entity: str,
    record_id: Any,
    payload: Mapping[str, Any],
    source_modified_at: datetime,
) -> dict[str, Any]:
    """A `raw_records` row, ready for `upsert_rows(conn, "raw_records", ...)`."""
    return {
        "tenant_id": tenant_id,
        "source": source,
        "entity": entity,
        "record_id": str(record_id),
        "payload": dict(payload),
        "source_modified_at": source_modified_at,
    }


def iter_raw_payloads(conn: Connection, tenant_id: str, source: str, entity: str) -> Iterator[dict[str, Any]]:
    """The payloads of the live (not deleted) raw records of one entity, streamed."""
    stmt = (
        select(raw_records.c.payload)
        .where(
            raw_records.c.tenant_id == tenant_id,
            raw_records.c.source == source,
            raw_records.c.entity == entity,
            raw_records.c.deleted_at.is_(None),
        )
        .execution_options(yield_per=READ_CHUNK)
    )
    for (payload,) in conn.execute(stmt):
        yield payload
