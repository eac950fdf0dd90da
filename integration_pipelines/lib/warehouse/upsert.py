"""The one write path into canonical tables, shared by batch syncs and webhook events.

`upsert_rows` is an `INSERT … ON CONFLICT (key) DO UPDATE … WHERE` statement whose WHERE
clause carries both rules of the canonical model:
- a row whose content fingerprint is unchanged is not written at all;
- a row whose `source_modified_at` is older than the stored one never overwrites it.

A soft delete is a change of its own: the deletion state is compared apart from the
fingerprint, so deleting a row and bringing it back are both writes. A full snapshot marks what
it did not see as deleted through `Snapshot`.

Rows reach the merge as Python values (`upsert_rows`: raw records as the sources sent them) or
straight from a `SELECT` the database runs (`upsert_select`: canonical rows computed from the raw
layer). Either way the merge computes the fingerprint in SQL, and counts what it inserted and
updated in the database (PostgreSQL counts the statement's own RETURNING in a WITH; SQLite, which
has no writes in a WITH, counts the staged keys the table lacks, then takes the row count), so
nothing comes back row by row.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    CompoundSelect,
    Connection,
    MetaData,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert

from integration_pipelines.lib.warehouse.engine import ANALYZE_MIN_ROWS, rows_written
from integration_pipelines.lib.warehouse.mart_refresh import NAMING_THEIR_STUDENT
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES, KeyedTable
from integration_pipelines.lib.warehouse.schema import mart_refresh_queue as queue
from integration_pipelines.lib.warehouse.sql import row_fingerprint
from integration_pipelines.lib.warehouse.types import UTCDateTime, sqlite_timestamp_text

# Timestamps repeat (every record of a snapshot shares its observation time): convert each once.
_sqlite_timestamp_text = functools.lru_cache(maxsize=1 << 16)(sqlite_timestamp_text)

# Rows staged per set-based upsert: large enough to amortise each statement, small enough that a
# batch of the widest rows stays a few megabytes.
BATCH_SIZE = 5_000


class EncodedJSON(str):
    """JSON text its producer encoded once (`encode_json`): stored as it is, and read back decoded
    like any JSON column."""

    __slots__ = ()


def encode_json(value: Any) -> EncodedJSON:
    """Compact JSON with sorted keys, so the same record always encodes, and so fingerprints, the same."""
    return EncodedJSON(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


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
    prepare = row_preparer(conn.dialect, table_name)
    return upsert_prepared(conn, table_name, map(prepare, rows), now=now, snapshot=snapshot)


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
    """`upsert_rows` for rows already prepared for this connection's backend (`row_preparer`)."""
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


def driver_cursor(conn: Connection):
    """A cursor of the driver's own, for bulk loads and statements compiled once."""
    driver = conn.connection.driver_connection
    assert driver is not None, "a connection in use has its driver connection"
    return driver.cursor()


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

    Rows are staged into a session-local temporary table in bulk, and merged from there in one
    set-based statement. They reach the stage either as Python values (`stage_rows`: COPY on
    PostgreSQL, the driver's own `executemany` on SQLite, as binding thousands of parameters
    through SQLAlchemy costs more client time than the write) or straight from a `SELECT`
    (`stage_select`: the canonical tables, computed from raw JSON in the database). The merge
    computes each row's fingerprint in SQL from its business columns, so both ways fingerprint
    alike. Python values are converted to what the database stores exactly as SQLAlchemy's column
    types would convert them, so rows written here read back through SQLAlchemy like any other.
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
        table = spec.table
        # Column order of a staged row: key, business, then the source's time and deletion, and
        # what is wrong with the row (a canonical SELECT names the first invalid field there).
        # created_at and updated_at are the merge's `now` for every row, and the fingerprint is
        # computed by the merge.
        self.columns = (*spec.key_columns, *self._business, "source_modified_at", "deleted_at")
        self.modified_at = self.columns.index("source_modified_at")
        self._converters = [
            (i, converter)
            for i, name in enumerate(self.columns)
            if (converter := self._converter(table.c[name].type, dialect)) is not None
        ]
        stamp = self._converter(table.c.created_at.type, dialect)
        assert stamp is not None, "a UTCDateTime is always converted"
        self._stamp = stamp
        self.stage = Table(
            f"stage_{table.name}",
            MetaData(),
            *(Column(c, table.c[c].type) for c in self.columns),
            Column("problem", Text),
        )
        stage = self.stage
        now = bindparam("now")
        staged = select(
            *(stage.c[c] for c in self.columns),
            row_fingerprint(*(stage.c[c] for c in self._business)).label("fingerprint"),
            now.label("created_at"),
            now.label("updated_at"),
        ).where(true())  # SQLite parses INSERT … SELECT … ON CONFLICT only with a WHERE.
        into = [*self.columns, "fingerprint", "created_at", "updated_at"]
        insert = (postgresql.insert if self._postgres else sqlite.insert)(table)
        merge = _upsert(insert.from_select(into, staged), spec, into)
        key = list(spec.key_columns)
        if self._postgres:
            # The rows it wrote are counted where they are written (a row it inserted has
            # created_at equal to updated_at): one statement, and nothing comes back row by row.
            merge = merge.returning((table.c.created_at == table.c.updated_at).label("new"))
            compiled = merge.compile(dialect=dialect)
            self._merge = f"WITH written AS ({compiled}) SELECT count(*), count(*) FILTER (WHERE new) FROM written"
            self._count_new = None
        else:
            # SQLite has no writes in a WITH: the staged keys the table lacks are what it will insert
            # (found through its key, whatever the statistics), and the statement's row count is
            # what it wrote.
            compiled = merge.compile(dialect=dialect)
            self._merge = str(compiled)
            target_has_key = select(literal(1)).where(*(table.c[c] == stage.c[c] for c in key)).exists()
            self._count_new = str(
                select(func.count())
                .select_from(stage)
                .where(~target_has_key)
                .compile(dialect=dialect, compile_kwargs={"literal_binds": True})
            )
        # Compiled once and run on the driver's cursor, like the staging; its one parameter is `now`
        # (named on PostgreSQL, repeated by position on SQLite).
        self._merge_positions = compiled.positiontup
        self._first_problem = str(
            select(*(stage.c[c] for c in key), stage.c.problem)
            .where(stage.c.problem.is_not(None))
            .limit(1)
            .compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        )
        self._queue_former_students = _former_students(spec, stage)
        names = ", ".join(f'"{c}"' for c in self.columns)
        keys = ", ".join(f'"{c}"' for c in key)
        # The stage's key is unique (a batch holds a key once; a canonical SELECT makes each once),
        # and indexed: the merge and the anti-join of soft deletes look staged rows up by it.
        self._index_stage = f'CREATE UNIQUE INDEX IF NOT EXISTS "{stage.name}_key" ON "{stage.name}" ({keys})'
        # The target's column types without its constraints (created_at is not staged): on SQLite
        # its affinities too, so that staged keys compare with the target's through the index.
        like_target = f'SELECT {names}, CAST(NULL AS TEXT) AS problem FROM "{table.name}"'
        if self._postgres:
            self._create_stage = f'CREATE TEMPORARY TABLE IF NOT EXISTS "{stage.name}" AS {like_target} WITH NO DATA'
            self._clear_stage = f'TRUNCATE "{stage.name}"'
        else:
            self._create_stage = f'CREATE TEMPORARY TABLE IF NOT EXISTS "{stage.name}" AS {like_target} LIMIT 0'
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
        values = [*key, *map(row.get, self._business), modified, row.get("deleted_at")]
        for i, convert in self._converters:
            if values[i] is not None:
                values[i] = convert(values[i])
        return tuple(values)

    def _cursor(self, conn: Connection):
        cursor = driver_cursor(conn)
        cursor.execute(self._create_stage)
        cursor.execute(self._index_stage)
        cursor.execute(self._clear_stage)
        return cursor

    def write(self, conn: Connection, batch: Iterable[tuple], now: datetime, snapshot: Snapshot | None) -> UpsertCounts:
        """Stage Python values and merge them."""
        batch = list(batch)
        cursor = self._cursor(conn)
        try:
            load_rows(cursor, self._postgres, self.stage.name, self.columns, batch)
            return self._merge_staged(conn, cursor, now, snapshot, len(batch))
        finally:
            cursor.close()

    def write_select(self, conn: Connection, rows: Select | CompoundSelect, now: datetime) -> StagedWrite:
        """Stage what `rows` selects (the stage's columns, by name, `problem` optional) and merge
        it, unless a row names a problem."""
        cursor = self._cursor(conn)
        try:
            names = [c.name for c in rows.selected_columns]
            fill = insert(self.stage).from_select(names, rows).execution_options(preserve_rowcount=True)
            staged = conn.execute(fill).rowcount
            cursor.execute(self._first_problem)
            problem = cursor.fetchone()
            if problem is not None:
                return StagedWrite(self, staged, UpsertCounts(unchanged=staged), problem=tuple(problem))
            return StagedWrite(self, staged, self._merge_staged(conn, cursor, now, None, staged))
        finally:
            cursor.close()

    def _merge_staged(self, conn, cursor, now: datetime, snapshot: Snapshot | None, staged: int) -> UpsertCounts:
        stamp = self._stamp(now)
        positions = self._merge_positions
        params = {"now": stamp} if positions is None else [stamp for _ in positions]
        if self._queue_former_students is not None:
            conn.execute(self._queue_former_students, {"now": now})
        if self._count_new is None:
            cursor.execute(self._merge, params)
            written, inserted = cursor.fetchone()
        else:
            cursor.execute(self._count_new)
            (inserted,) = cursor.fetchone()
            cursor.execute(self._merge, params)
            written = cursor.rowcount
        if snapshot is not None:
            snapshot.saw_staged(cursor, self.stage.name)
        rows_written(conn)[self.spec.table.name] += written
        return UpsertCounts(inserted=inserted, updated=written - inserted, unchanged=staged - written)


def _former_students(spec: KeyedTable, stage: Table) -> Insert | None:
    """For a table whose rows name their student: queue the mart refresh of the student a staged
    row is about to leave (a payment moved to another student, say). The students the merge
    writes are queued by the application that called it; the ones rows leave, only here."""
    table = spec.table
    if table.name not in NAMING_THEIR_STUDENT or "student_key" in spec.key_columns:
        return None
    current, staged = table.c.student_key, stage.c.student_key
    leaving = (
        select(table.c.tenant_id, current, bindparam("now", type_=queue.c.queued_at.type))
        .join_from(stage, table, and_(*(table.c[c] == stage.c[c] for c in spec.key_columns)))
        .where(current.is_not(None), or_(staged.is_(None), staged != current))
    )
    return insert(queue).from_select(["tenant_id", "student_key", "queued_at"], leaving)


@dataclass
class StagedWrite:
    """What `upsert_select` staged and wrote. The stage keeps the rows until the table is staged
    again, so what they did not reach can be soft-deleted (`soft_delete_unstaged`)."""

    writer: _TableWriter
    staged: int
    counts: UpsertCounts
    problem: tuple | None = None
    """The key and the problem of the first row that named one (then nothing was written)."""

    @property
    def stage(self) -> Table:
        return self.writer.stage


def upsert_select(
    conn: Connection, table_name: str, rows: Select | CompoundSelect, *, now: datetime | None = None
) -> StagedWrite:
    """Write the rows a `SELECT` makes (the canonical tables, computed in the database) through
    the one merge: same fingerprint and source-time rules as `upsert_rows`. The select names its
    columns as the table's key and business columns, `source_modified_at` and `deleted_at`, and
    may name a `problem` (text) for a row that must not be written; then nothing is, and the
    result's `problem` says which row and why. Keys must be unique within the select."""
    writer = _TableWriter.of(conn.dialect, table_name)
    written = writer.write_select(conn, rows, now or datetime.now(UTC))
    if conn.dialect.name == "postgresql" and rows_written(conn)[table_name] >= ANALYZE_MIN_ROWS:
        # The next statement of this transaction (a soft delete, the next table's lookups) must not
        # be planned against statistics that predate this write; nothing is left to refresh after.
        conn.execute(text(f'ANALYZE "{table_name}"'))
        rows_written(conn)[table_name] = 0
    return written


def soft_delete_unstaged(
    conn: Connection, written: StagedWrite, *where: ColumnElement, now: datetime | None = None
) -> int:
    """Soft-delete the live rows that satisfy `where` (a tenant, a set of keys the write covered)
    and that the write's stage does not hold: rows no longer made by what they are made of."""
    spec, stage = written.writer.spec, written.stage
    table, now = spec.table, now or datetime.now(UTC)
    if conn.dialect.name == "postgresql" and written.staged >= ANALYZE_MIN_ROWS:
        # A temporary table has no statistics until analysed; the anti-join must know it is large.
        conn.execute(text(f'ANALYZE "{stage.name}"'))
    staged = select(literal(1)).where(*(stage.c[c] == table.c[c] for c in spec.key_columns)).exists()
    stmt = update(table).where(*where, table.c.deleted_at.is_(None), ~staged).values(deleted_at=now, updated_at=now)
    deleted = conn.execute(stmt).rowcount
    rows_written(conn)[table.name] += deleted
    return deleted


def _upsert(insert, spec: KeyedTable, columns: list[str]):
    """ON CONFLICT DO UPDATE, only where the content or the deletion state changed, and never
    with an older source timestamp."""
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
    )


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
        # What another writer lands while the read runs (an event batch beside a sync) is newer
        # than the read, which cannot have seen it: never deleted for its absence.
        self._started = datetime.now(UTC)
        self._key: Column = spec.table.c[free[0]]
        self._postgres = conn.dialect.name == "postgresql"
        # On PostgreSQL the table has no key, so copying keys in costs no index upkeep; a
        # repeated key is harmless to the anti-join.
        # A name never used before in this process, on metadata of its own: an abandoned snapshot
        # (its read failed) leaves its temporary table with its transaction, and nothing behind here.
        self._seen = Table(
            f"snapshot_seen_{next(_snapshot_numbers)}",
            MetaData(),
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
        unseen = (table.c.deleted_at.is_(None), table.c.updated_at < self._started, ~seen)
        stmt = update(table).where(*in_scope, *unseen).values(deleted_at=now, updated_at=now)
        deleted = self._conn.execute(stmt).rowcount
        rows_written(self._conn)[table.name] += deleted
        self._seen.drop(self._conn)
        return deleted


_snapshot_numbers = itertools.count()
