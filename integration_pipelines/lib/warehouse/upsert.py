"""The one write path into canonical tables, shared by batch syncs and webhook events.

`upsert_rows` is an `INSERT … ON CONFLICT (key) DO UPDATE … WHERE` statement whose WHERE
clause carries both rules of the canonical model:
- a row whose content fingerprint is unchanged is not written at all;
- a row whose `source_modified_at` is older than the stored one never overwrites it.

A soft delete is a change of its own: the deletion state is compared apart from the
fingerprint, so deleting a row and bringing it back are both writes. A full snapshot marks what
it did not see as deleted through `Snapshot`.

The statement returns the rows it actually wrote; comparing their `created_at` with this call's
timestamp tells inserts from updates without a second query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Column, Connection, MetaData, Table, and_, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from integration_pipelines.lib.warehouse.schema import KEYED_TABLES, KeyedTable

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


@dataclass
class SyncCounts:
    """What one sync step read, and what writing it did (run metadata of every asset)."""

    read: int = 0
    written: UpsertCounts = field(default_factory=UpsertCounts)
    deleted: int = 0

    def as_metadata(self) -> dict[str, int]:
        return {"rows_read": self.read, **self.written.as_metadata(), "deleted": self.deleted}


def fingerprint(row: Mapping[str, Any], columns: Iterable[str]) -> str:
    """A stable hash of a row's business content (not its timestamps, not its deletion)."""
    content = {c: _jsonable(row.get(c)) for c in columns}
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
    spec = KEYED_TABLES[table_name]
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


def _prepare(spec: KeyedTable, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    modified = row.get("source_modified_at")
    if not isinstance(modified, datetime) or modified.tzinfo is None:
        raise ValueError(f"{spec.table.name}: source_modified_at must be a timezone-aware datetime, got {modified!r}")
    missing = [c for c in spec.key_columns if row.get(c) is None]
    if missing:
        raise ValueError(f"{spec.table.name}: key column(s) {', '.join(missing)} missing from row")
    prepared = {c: row.get(c) for c in (*spec.key_columns, *spec.business_columns)}
    prepared["fingerprint"] = fingerprint(row, spec.business_columns)
    prepared["source_modified_at"] = modified
    prepared["deleted_at"] = row.get("deleted_at")
    prepared["created_at"] = now
    prepared["updated_at"] = now
    return prepared


def _insert_for(conn: Connection):
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _write_batch(conn: Connection, spec: KeyedTable, batch: list[dict], now: datetime) -> UpsertCounts:
    columns = list(batch[0])
    if conn.dialect.name == "postgresql":
        # COPY the batch into a staging table and upsert it in one set-based statement: binding
        # thousands of parameters into a multi-row VALUES costs more client time than the write.
        stage = _staged(conn, spec.table, columns, batch)
        insert = postgresql.insert(spec.table).from_select(columns, select(*(stage.c[c] for c in columns)))
        written = conn.execute(_upsert(insert, spec, columns)).all()
    else:
        written = conn.execute(_upsert(sqlite.insert(spec.table), spec, columns), batch).all()
    inserted = sum(1 for (created_at,) in written if created_at == now)
    return UpsertCounts(inserted=inserted, updated=len(written) - inserted, unchanged=len(batch) - len(written))


def _upsert(insert, spec: KeyedTable, columns: list[str]):
    """ON CONFLICT DO UPDATE, only where the content or the deletion state changed, and never
    with an older source timestamp; RETURNING what it wrote."""
    table = spec.table
    changing = [c for c in columns if c not in spec.key_columns and c != "created_at"]
    return insert.on_conflict_do_update(
        index_elements=list(spec.key_columns),
        set_={c: insert.excluded[c] for c in changing},
        where=and_(
            or_(
                table.c.fingerprint != insert.excluded.fingerprint,
                and_(table.c.deleted_at.is_(None), insert.excluded.deleted_at.is_not(None)),
                and_(table.c.deleted_at.is_not(None), insert.excluded.deleted_at.is_(None)),
            ),
            table.c.source_modified_at <= insert.excluded.source_modified_at,
        ),
    ).returning(table.c.created_at)


def _staged(conn: Connection, table: Table, columns: list[str], batch: list[dict]) -> Table:
    """A session-local copy of `table` holding exactly `batch`, loaded with COPY."""
    stage = Table(f"stage_{table.name}", MetaData(), *(Column(c.name, c.type) for c in table.columns))
    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(f'CREATE TEMPORARY TABLE IF NOT EXISTS "{stage.name}" (LIKE "{table.name}")')
    cursor.execute(f'TRUNCATE "{stage.name}"')
    as_json = {c.name for c in table.columns if isinstance(c.type, JSON)}
    quoted = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{stage.name}" ({quoted}) FROM STDIN') as copy:
        for row in batch:
            copy.write_row([Jsonb(row[c]) if c in as_json else row[c] for c in columns])
    return stage


def soft_delete_keys(
    conn: Connection, table_name: str, scope: Mapping[str, Any], keys: Iterable[Any], *, now: datetime | None = None
) -> int:
    """Soft-delete the live rows of `scope` with these keys (the one key column `scope` leaves free)."""
    spec = KEYED_TABLES[table_name]
    (free,) = (c for c in spec.key_columns if c not in scope)
    table, now = spec.table, now or datetime.now(UTC)
    in_scope = [table.c[c] == v for c, v in scope.items()]
    deleted, keys = 0, list(keys)
    for start in range(0, len(keys), BATCH_SIZE):
        stmt = (
            update(table)
            .where(*in_scope, table.c[free].in_(keys[start : start + BATCH_SIZE]), table.c.deleted_at.is_(None))
            .values(deleted_at=now, updated_at=now)
        )
        deleted += conn.execute(stmt).rowcount
    return deleted


class Snapshot:
    """The keys a full snapshot saw, so that what it did not see can be soft-deleted.

    A snapshot covers a *scope* of a table (for example the Moodle users of one tenant). The
    keys seen go into a temporary table on the sync's own connection as the crawl streams, so
    memory stays flat however large the source; `delete_missing` then marks every live row of
    the scope that the snapshot never saw. Use it only for complete reads: a partial read would
    delete what it skipped.
    """

    def __init__(self, conn: Connection, table_name: str, scope: Mapping[str, Any]):
        spec = KEYED_TABLES[table_name]
        free = [c for c in spec.key_columns if c not in scope]
        if len(free) != 1:
            raise ValueError(f"{table_name}: a snapshot scope must fix all key columns but one, not {free}")
        self._conn, self._table, self._scope = conn, spec.table, dict(scope)
        self._key: Column = spec.table.c[free[0]]
        self._postgres = conn.dialect.name == "postgresql"
        # On PostgreSQL keys arrive by COPY, which cannot skip duplicates; a repeated key is
        # harmless to the anti-join, so the table there needs no key at all.
        self._seen = Table(
            f"snapshot_seen_{id(self):x}",
            _SNAPSHOT_METADATA,
            Column("k", self._key.type, primary_key=not self._postgres),
            prefixes=["TEMPORARY"],
        )
        self._seen.create(conn)
        self._pending: set = set()
        self.seen = 0

    def saw(self, key: Any) -> None:
        self._pending.add(key)
        if len(self._pending) >= BATCH_SIZE:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._postgres:
            with self._conn.connection.driver_connection.cursor().copy(
                f'COPY "{self._seen.name}" (k) FROM STDIN'
            ) as copy:
                for key in self._pending:
                    copy.write_row((key,))
        else:
            insert = sqlite.insert(self._seen).on_conflict_do_nothing()
            self._conn.execute(insert, [{"k": k} for k in self._pending])
        self.seen += len(self._pending)
        self._pending.clear()

    def delete_missing(self, now: datetime | None = None) -> int:
        """Soft-delete the live rows of the scope that the snapshot did not see; return how many."""
        self._flush()
        if self._postgres:
            # Index the keys once they are all in: a table loaded in this same transaction has no
            # statistics yet, the planner may well choose a nested loop, and it must not be one
            # that scans every seen key for every row.
            self._conn.execute(text(f'CREATE INDEX ON "{self._seen.name}" (k)'))
            self._conn.execute(text(f'ANALYZE "{self._seen.name}"'))  # a temp table has no statistics
        now = now or datetime.now(UTC)
        table = self._table
        in_scope = [table.c[c] == v for c, v in self._scope.items()]
        # NOT EXISTS, not NOT IN: PostgreSQL can only hash a NOT IN subquery that fits in work_mem,
        # and otherwise rescans it for every row (minutes for a snapshot of a few hundred thousand
        # keys). NOT EXISTS plans as an anti-join on both backends.
        seen = select(self._seen.c.k).where(self._seen.c.k == self._key).exists()
        stmt = (
            update(table).where(*in_scope, table.c.deleted_at.is_(None), ~seen).values(deleted_at=now, updated_at=now)
        )
        deleted = self._conn.execute(stmt).rowcount
        self._seen.drop(self._conn)
        _SNAPSHOT_METADATA.remove(self._seen)
        return deleted


_SNAPSHOT_METADATA = MetaData()
