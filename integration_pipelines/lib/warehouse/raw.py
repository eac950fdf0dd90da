"""Raw landing: source records kept as the APIs returned them, one row per record."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, cast, select

from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.warehouse.upsert import EncodedJSON, encode_json

# Rows fetched per round trip when reading raw records back; keeps memory flat on large entities.
READ_CHUNK = 5_000


def deleted_entity_name(entity: str) -> str:
    """The raw entity holding a source's own list of deleted records of `entity` (Zoho `/deleted`)."""
    return f"{entity}.deleted"


def raw_row(
    tenant_id: str,
    source: str,
    entity: str,
    record_id: Any,
    payload: Mapping[str, Any] | EncodedJSON,
    source_modified_at: datetime,
    deleted_at: datetime | None = None,
) -> dict[str, Any]:
    """A `raw_records` row, ready for `upsert_rows(conn, "raw_records", ...)`: the payload is
    encoded once (here, unless its reader did), and that text is both what is stored and what is
    fingerprinted. With `deleted_at`, the row is a tombstone (an event saying the record is gone):
    it obeys the same source-time rule as any other write."""
    return {
        "tenant_id": tenant_id,
        "source": source,
        "entity": entity,
        "record_id": str(record_id),
        "payload": payload if isinstance(payload, EncodedJSON) else encode_json(payload),
        "source_modified_at": source_modified_at,
        "deleted_at": deleted_at,
    }


def iter_raw_payloads(
    conn: Connection, tenant_id: str, source: str, entity: str, *, in_id_order: bool = False
) -> Iterator[dict[str, Any]]:
    """The payloads of the live (not deleted) raw records of one entity, streamed (in ascending
    numeric record id order if asked: ids are stored as text)."""
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
    if in_id_order:
        stmt = stmt.order_by(cast(raw_records.c.record_id, BigInteger))
    for (payload,) in conn.execute(stmt):
        yield payload
