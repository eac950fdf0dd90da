"""The one write path into canonical tables, shared by batch syncs and webhook events.

`upsert_rows` is an `INSERT … ON CONFLICT (key) DO UPDATE … WHERE` statement whose WHERE
clause carries both rules of the canonical model:
- a row whose content fingerprint is unchanged is not written at all;
- a row whose `source_modified_at` is older than the stored one never overwrites it.

The statement returns the rows it actually wrote; comparing their `created_at` with this call's
timestamp tells inserts from updates without a second query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_
from sqlalchemy.dialects import postgresql, sqlite

from integration_pipelines.lib.warehouse.schema import CANONICAL_TABLES, CanonicalTable

# Rows per statement. Large enough to amortise round trips, small enough that a statement's
# parameters stay under SQLite's and psycopg's limits for the widest table.
BATCH_SIZE = 1_000


@dataclass
class UpsertCounts:
    """What one upsert call did. `unchanged` also counts rows older than what is stored."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def __iadd__(self, other: UpsertCounts) -> UpsertCounts:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self

    def as_metadata(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}


def fingerprint(row: Mapping[str, Any], columns: Iterable[str]) -> str:
    """A stable hash of a row's business content (not its timestamps)."""
    content = {c: _jsonable(row.get(c)) for c in columns}
    # deleted_at is content only as a flag: deleting changes the row, *when* it was seen deleted does not.
    content["deleted_at"] = row.get("deleted_at") is not None
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def upsert_rows(
    conn: Connection,
    table_name: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    now: datetime | None = None,
) -> UpsertCounts:
    """Write canonical rows; return how many were inserted, updated and left unchanged.

    Each row holds the table's key and business columns and `source_modified_at`
    (timezone-aware); `deleted_at` is optional. Rows may be any iterable: they are written in
    batches, so a sync can stream millions of rows through in constant memory.
    """
    spec = CANONICAL_TABLES[table_name]
    now = now or datetime.now(UTC)
    counts = UpsertCounts()
    batch: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        prepared = _prepare(spec, row, now)
        key = tuple(prepared[c] for c in spec.key_columns)
        # Within one batch a key may appear once only (ON CONFLICT cannot touch a row twice):
        # keep the newest version, as the warehouse would.
        previous = batch.get(key)
        if previous is not None:
            counts.unchanged += 1
            if previous["source_modified_at"] > prepared["source_modified_at"]:
                continue
        batch[key] = prepared
        if len(batch) >= BATCH_SIZE:
            counts += _write_batch(conn, spec, list(batch.values()), now)
            batch.clear()
    if batch:
        counts += _write_batch(conn, spec, list(batch.values()), now)
    return counts


def _prepare(spec: CanonicalTable, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    modified = row.get("source_modified_at")
    if not isinstance(modified, datetime) or modified.tzinfo is None:
        raise ValueError(
            f"{spec.table.name}: source_modified_at must be a timezone-aware datetime, got {modified!r}"
        )
    missing = [c for c in spec.key_columns if row.get(c) is None]
    if missing:
        raise ValueError(f"{spec.table.name}: key column(s) {', '.join(missing)} missing from row")
    prepared = {c: row.get(c) for c in (*spec.key_columns, *spec.business_columns)}
    prepared["fingerprint"] = fingerprint(row, (c for c in spec.business_columns if c != "deleted_at"))
    prepared["source_modified_at"] = modified
    prepared["created_at"] = now
    prepared["updated_at"] = now
    return prepared


def _insert_for(conn: Connection):
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _write_batch(conn: Connection, spec: CanonicalTable, batch: list[dict], now: datetime) -> UpsertCounts:
    table = spec.table
    stmt = _insert_for(conn)(table)
    changing = [c for c in batch[0] if c not in spec.key_columns and c != "created_at"]
    stmt = stmt.on_conflict_do_update(
        index_elements=list(spec.key_columns),
        set_={c: stmt.excluded[c] for c in changing},
        where=and_(
            table.c.fingerprint != stmt.excluded.fingerprint,
            table.c.source_modified_at <= stmt.excluded.source_modified_at,
        ),
    ).returning(table.c.created_at)
    written = conn.execute(stmt, batch).all()
    inserted = sum(1 for (created_at,) in written if created_at == now)
    return UpsertCounts(
        inserted=inserted,
        updated=len(written) - inserted,
        unchanged=len(batch) - len(written),
    )
