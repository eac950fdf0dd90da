"""Raw landing: source records kept as the APIs returned them, one row per record."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, cast, func, select, type_coerce
from sqlalchemy.types import NullType

from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.warehouse.types import utc_from_stored
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
) -> dict[str, Any]:
    """A `raw_records` row, ready for `upsert_rows(conn, "raw_records", ...)`: the payload is
    encoded once (here, unless its reader did), and that text is both what is stored and what is
    fingerprinted."""
    return {
        "tenant_id": tenant_id,
        "source": source,
        "entity": entity,
        "record_id": str(record_id),
        "payload": payload if isinstance(payload, EncodedJSON) else encode_json(payload),
        "source_modified_at": source_modified_at,
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


class RawChange:
    """One raw record written (inserted, updated or soft-deleted) after a watermark.

    Its write time is kept as the database returned it and converted only when asked: a canonical
    step needs it for the last change it applied (its new watermark) and for deletions, not for
    each of the millions of records a full sync reads.
    """

    __slots__ = ("record_id", "payload", "deleted", "_updated_at")

    def __init__(self, record_id: str, payload: dict[str, Any], deleted: bool, updated_at: Any):
        self.record_id, self.payload, self.deleted, self._updated_at = record_id, payload, bool(deleted), updated_at

    @property
    def updated_at(self) -> datetime:
        return utc_from_stored(self._updated_at)


def iter_raw_changes(
    conn: Connection, tenant_id: str, source: str, entity: str, since: datetime | None
) -> Iterator[RawChange]:
    """Raw records of one entity written after `since` (all of them when `since` is None), oldest first.

    Our own `updated_at` changes on every insert, update and soft delete, so it is a complete
    change feed of the raw layer, whichever asset wrote the record.
    """
    stmt = select(
        raw_records.c.record_id,
        raw_records.c.payload,
        raw_records.c.deleted_at.is_not(None),
        type_coerce(raw_records.c.updated_at, NullType),  # as stored: converted on demand
    )
    stmt = stmt.where(*_changes(tenant_id, source, entity, since))
    stmt = stmt.order_by(raw_records.c.updated_at).execution_options(yield_per=READ_CHUNK)
    for record_id, payload, deleted, updated_at in conn.execute(stmt):
        yield RawChange(record_id, payload, deleted, updated_at)


def count_raw_changes(conn: Connection, tenant_id: str, source: str, entity: str, since: datetime | None) -> int:
    """How many records `iter_raw_changes` would give (an index count: cheap beside reading them)."""
    return conn.execute(select(func.count()).where(*_changes(tenant_id, source, entity, since))).scalar_one()


def _changes(tenant_id: str, source: str, entity: str, since: datetime | None) -> list:
    where = [raw_records.c.tenant_id == tenant_id, raw_records.c.source == source, raw_records.c.entity == entity]
    if since is not None:
        where.append(raw_records.c.updated_at > since)
    return where
