"""The one write path into canonical tables, shared by batch syncs and webhook events.

`upsert_rows` is an `INSERT … ON CONFLICT (key) DO UPDATE … WHERE` statement whose WHERE
clause carries both rules of the canonical model:
- a row whose content fingerprint is unchanged is not written at all;
- a row whose `source_modified_at` is older than the stored one never overwrites it.

A soft delete is a change of its own: the deletion state is compared apart from the
fingerprint, so deleting a row and bringing it back are both writes. A full snapshot marks what
it did not see as deleted through `Snapshot`.

The statement returns the rows it actually wrote, each saying whether it was new (a row it
inserted has `created_at` equal to `updated_at`), so inserts and updates are told apart without a
second query.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, Column, Connection, MetaData, Table, and_, bindparam, or_, select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from integration_pipelines.lib.warehouse.schema import KEYED_TABLES, KeyedTable
from integration_pipelines.lib.warehouse.types import UTCDateTime, sqlite_timestamp_text

# Timestamps repeat (every record of a snapshot shares its observation time): convert each once.
_sqlite_timestamp_text = functools.lru_cache(maxsize=1 << 16)(sqlite_timestamp_text)

# Rows staged per set-based upsert: large enough to amortise each statement, small enough that a
# batch of the widest rows stays a few megabytes.
BATCH_SIZE = 5_000


class EncodedJSON(str):
    """JSON text its producer encoded once (`encode_json`): stored as it is, and read back decoded
    like any JSON column. It carries the digest of its text, taken where it was encoded (a
    snapshot's reader process), which fingerprints a row whose business content it is."""

    __slots__ = ("digest",)
    digest: str

    def __reduce__(self):
        # Pickled as its text and digest: a snapshot's reader sends millions of these to the
        # landing process, and a str subclass's default pickling (its class, then its state)
        # costs three times as much each way.
        return _encoded_json, (str(self), self.digest)


def _encoded_json(text: str, digest: str) -> EncodedJSON:
    encoded = EncodedJSON(text)
    encoded.digest = digest
    return encoded


def encode_json(value: Any) -> EncodedJSON:
    """Compact JSON with sorted keys, so the same record always encodes, and so fingerprints, the same."""
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return _encoded_json(data.decode(), _digest(data))


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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


def rows_written(conn: Connection) -> Counter[str]:
    """Rows written per table on this connection since the count was last cleared (`clear()` it
    when a transaction begins): what tells a sync which tables' statistics are worth refreshing."""
    return conn.info.setdefault("integration_pipelines.rows_written", Counter())


def fingerprint(business_values: tuple) -> str:
    """A stable hash of a row's business content (not its timestamps, not its deletion).

    The content is hashed as the `repr` of its values, which is exact and stable for every type
    a row holds (text, numbers, Decimal, dates, `EncodedJSON`) and far cheaper than encoding it.
    A row whose one business value is encoded JSON (a raw record) is its text's digest.
    """
    if len(business_values) == 1 and isinstance(business_values[0], EncodedJSON):
        return business_values[0].digest
    return _digest(repr(business_values).encode())


def upsert_rows(
    conn: Connection,
    table_name: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    now: datetime | None = None,
    snapshot: Snapshot | None = None,
) -> UpsertCounts:
    """Write canonical rows; return how many were inserted, updated and left unchanged.

    Each row holds the table's key and business columns and `source_modified_at`
    (timezone-aware); `deleted_at` is optional. Rows may be any iterable: they are written in
    batches, so a sync can stream millions of rows through in constant memory. A `snapshot`
    notes the key of every row written (changed or not) as seen; the rows must lie in its scope.
    """
    prepared = prepare_rows(conn.dialect, table_name, rows)
    return upsert_prepared(conn, table_name, prepared, now=now, snapshot=snapshot)


def prepare_rows(dialect: Dialect, table_name: str, rows: Iterable[Mapping[str, Any]]) -> Generator[tuple, None, Any]:
    """Rows as `upsert_prepared` writes them to `table_name` on `dialect`'s backend: validated,
    fingerprinted and converted. Needs no connection, so it can run where the rows are made (a
    reader process, say); returns what `rows` returns, if it is a generator."""
    values = row_preparer(dialect, table_name)
    rows = iter(rows)
    while True:
        try:
            row = next(rows)
        except StopIteration as end:
            return end.value
        yield values(row)


def row_preparer(dialect: Dialect, table_name: str) -> Callable[[Mapping[str, Any]], tuple]:
    """What prepares one row of `table_name` for `upsert_prepared` on `dialect`'s backend."""
    return _TableWriter.of(dialect, table_name).values


def upsert_prepared(
    conn: Connection,
    table_name: str,
    prepared: Iterable[tuple],
    *,
    now: datetime | None = None,
    snapshot: Snapshot | None = None,
) -> UpsertCounts:
    """`upsert_rows` for rows `prepare_rows` already prepared for this connection's backend."""
    writer = _TableWriter.of(conn.dialect, table_name)
    now = now or datetime.now(UTC)
    counts = UpsertCounts()
    batch: dict[tuple, tuple] = {}
    width = len(writer.spec.key_columns)
    for values in prepared:
        key = values[:width]
        # Within one batch a key may appear once only (ON CONFLICT cannot touch a row twice):
        # keep the newest version, as the warehouse would.
        previous = batch.get(key)
        if previous is not None:
            counts.unchanged += 1
            if previous[writer.modified_at] > values[writer.modified_at]:
                continue
        batch[key] = values
        if len(batch) >= BATCH_SIZE:
            counts += writer.write(conn, batch.values(), now, snapshot)
            batch.clear()
    if batch:
        counts += writer.write(conn, batch.values(), now, snapshot)
    return counts


def load_rows(cursor, postgres: bool, table_name: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Insert `rows` (tuples in `columns` order) into `table_name` in bulk, on a cursor of the
    driver's own: COPY on PostgreSQL (psycopg), `executemany` on SQLite. Binding thousands of
    rows through SQLAlchemy costs more client time than the write."""
    names = ", ".join(f'"{c}"' for c in columns)
    if postgres:
        with cursor.copy(f'COPY "{table_name}" ({names}) FROM STDIN') as copy:
            for values in rows:
                copy.write_row(values)
    else:
        placeholders = ", ".join("?" for _ in columns)
        cursor.executemany(f'INSERT INTO "{table_name}" ({names}) VALUES ({placeholders})', rows)


class _TableWriter:
    """How rows of one table are written on one backend.

    A batch is staged into a session-local temporary table in bulk (COPY on PostgreSQL, the
    driver's own `executemany` on SQLite) and upserted from there in one set-based statement:
    binding thousands of parameters through SQLAlchemy costs more client time than the write.
    Values are converted to what the database stores exactly as SQLAlchemy's column types would
    convert them, so rows written here read back through SQLAlchemy like any other.
    """

    _cache: dict[tuple[str, str], _TableWriter] = {}

    @classmethod
    def of(cls, dialect: Dialect, table_name: str) -> _TableWriter:
        key = (dialect.name, table_name)
        if key not in cls._cache:
            cls._cache[key] = cls(dialect, KEYED_TABLES[table_name])
        return cls._cache[key]

    def __init__(self, dialect, spec: KeyedTable):
        self.spec, self._postgres = spec, dialect.name == "postgresql"
        self._business = spec.business_columns
        # Column order of a staged row: key, business, bookkeeping. created_at and updated_at are
        # the call's `now` for every row, so the merge supplies them rather than each staged row.
        self.columns = (*spec.key_columns, *self._business, "fingerprint", "source_modified_at", "deleted_at")
        self.modified_at = self.columns.index("source_modified_at")
        table = spec.table
        self._converters = [
            (i, converter)
            for i, name in enumerate(self.columns)
            if (converter := self._converter(table.c[name].type, dialect)) is not None
        ]
        self._stamp = self._converter(table.c.created_at.type, dialect)
        stage = Table(f"stage_{table.name}", MetaData(), *(Column(c, table.c[c].type) for c in self.columns))
        now = bindparam("now")
        # SQLite parses INSERT … SELECT … ON CONFLICT only with a WHERE.
        staged = select(*stage.c, now.label("created_at"), now.label("updated_at")).where(true())
        into = [*self.columns, "created_at", "updated_at"]
        insert = (postgresql.insert if self._postgres else sqlite.insert)(table)
        merge = _upsert(insert.from_select(into, staged), spec, into).compile(dialect=dialect)
        # Compiled once and run on the driver's cursor, like the staging; its one parameter is `now`
        # (named on PostgreSQL, repeated by position on SQLite).
        self._merge = str(merge)
        self._merge_positions = merge.positiontup
        self.stage_name = stage.name
        names = ", ".join(f'"{c}"' for c in self.columns)
        if self._postgres:
            # The target's column types without its constraints (created_at is not staged).
            like_target = f'SELECT {names} FROM "{table.name}" WITH NO DATA'
            self._create_stage = f'CREATE TEMPORARY TABLE IF NOT EXISTS "{stage.name}" AS {like_target}'
            self._clear_stage = f'TRUNCATE "{stage.name}"'
        else:
            # Untyped columns: SQLite stores staged values as given, and the target's own column
            # affinities apply when they are copied across.
            self._create_stage = f'CREATE TEMPORARY TABLE IF NOT EXISTS "{stage.name}" ({names})'
            self._clear_stage = f'DELETE FROM "{stage.name}"'

    def _converter(self, column_type, dialect):
        """The conversion a value of `column_type` needs before staging; None when it passes as it is."""
        if isinstance(column_type, JSON):
            # Payloads encoded by their producer (`encode_json`) pass as they are; others are encoded here.
            return lambda v: v if isinstance(v, str) else encode_json(v)
        if self._postgres:
            # COPY bypasses SQLAlchemy's binds and psycopg adapts Python values itself; timestamps
            # still go through UTCDateTime, which refuses naive values rather than guess their zone.
            if isinstance(column_type, UTCDateTime):
                return lambda v: column_type.process_bind_param(v, dialect)
            return None
        # SQLite: what SQLAlchemy's binds would store. Timestamps are text in a fixed format (which
        # the upsert's comparisons rely on), produced directly: they are the commonest value here.
        if isinstance(column_type, UTCDateTime):
            return _sqlite_timestamp_text
        return column_type.dialect_impl(dialect).bind_processor(dialect)

    def values(self, row: Mapping[str, Any]) -> tuple:
        """One row as the staged values (without created_at/updated_at), validated and converted."""
        spec = self.spec
        modified = row.get("source_modified_at")
        if not isinstance(modified, datetime) or modified.tzinfo is None:
            raise ValueError(
                f"{spec.table.name}: source_modified_at must be a timezone-aware datetime, got {modified!r}"
            )
        key = list(map(row.get, spec.key_columns))
        if None in key:
            missing = [c for c, v in zip(spec.key_columns, key, strict=True) if v is None]
            raise ValueError(f"{spec.table.name}: key column(s) {', '.join(missing)} missing from row")
        business = tuple(map(row.get, self._business))
        values = [*key, *business, fingerprint(business), modified, row.get("deleted_at")]
        for i, convert in self._converters:
            if values[i] is not None:
                values[i] = convert(values[i])
        return tuple(values)

    def write(self, conn: Connection, batch: Iterable[tuple], now: datetime, snapshot: Snapshot | None) -> UpsertCounts:
        batch = list(batch)
        stamp = self._stamp(now)
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(self._create_stage)
        cursor.execute(self._clear_stage)
        load_rows(cursor, self._postgres, self.stage_name, self.columns, batch)
        positions = self._merge_positions
        cursor.execute(self._merge, {"now": stamp} if positions is None else [stamp for _ in positions])
        written = cursor.fetchall()
        if snapshot is not None:
            snapshot.saw_staged(cursor, self.stage_name)
        cursor.close()
        inserted = sum(1 for (is_new,) in written if is_new)
        rows_written(conn)[self.spec.table.name] += len(written)
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
    ).returning(table.c.created_at == table.c.updated_at)  # true for a row this statement inserted


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
    rows_written(conn)[table_name] += deleted
    return deleted


class Snapshot:
    """The keys a full snapshot saw, so that what it did not see can be soft-deleted.

    A snapshot covers a *scope* of a table (for example the Moodle users of one tenant). Pass it
    to `upsert_rows`, which copies the keys of each batch it stages into a temporary table on
    the sync's own connection, in SQL, so memory stays flat however large the source;
    `delete_missing` then marks every live row of the scope that the snapshot never saw. Use it
    only for complete reads: a partial read would delete what it skipped.
    """

    def __init__(self, conn: Connection, table_name: str, scope: Mapping[str, Any]):
        spec = KEYED_TABLES[table_name]
        free = [c for c in spec.key_columns if c not in scope]
        if len(free) != 1:
            raise ValueError(f"{table_name}: a snapshot scope must fix all key columns but one, not {free}")
        self._conn, self._table, self._scope = conn, spec.table, dict(scope)
        self._key: Column = spec.table.c[free[0]]
        self._postgres = conn.dialect.name == "postgresql"
        # On PostgreSQL the table has no key, so copying keys in costs no index upkeep; a
        # repeated key is harmless to the anti-join.
        self._seen = Table(
            f"snapshot_seen_{id(self):x}",
            _SNAPSHOT_METADATA,
            Column("k", self._key.type, primary_key=not self._postgres),
            prefixes=["TEMPORARY"],
        )
        self._seen.create(conn)
        self._copy_staged = (
            f'INSERT INTO "{self._seen.name}" (k) SELECT "{self._key.name}" FROM "{{stage}}"'
            if self._postgres
            else f'INSERT OR IGNORE INTO "{self._seen.name}" (k) SELECT "{self._key.name}" FROM "{{stage}}"'
        )
        self.seen = 0

    def saw_staged(self, cursor, stage_name: str) -> None:
        """Note as seen the keys of the batch staged in `stage_name` (called by `upsert_rows`)."""
        cursor.execute(self._copy_staged.format(stage=stage_name))
        self.seen += cursor.rowcount

    def delete_missing(self, now: datetime | None = None) -> int:
        """Soft-delete the live rows of the scope that the snapshot did not see; return how many."""
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
        rows_written(self._conn)[table.name] += deleted
        self._seen.drop(self._conn)
        _SNAPSHOT_METADATA.remove(self._seen)
        return deleted


_SNAPSHOT_METADATA = MetaData()
