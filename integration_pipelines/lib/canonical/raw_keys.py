"""Which raw records a canonical step applies: every one, or a set of raw keys.

A set of raw keys lives in a temporary table on the step's connection, filled in SQL (the
records written since a watermark) or from a list (an event batch), so that a table's `SELECT`
joins it and reads just those records through the raw layer's primary key.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    Column,
    Connection,
    Select,
    String,
    Table,
    cast,
    func,
    literal,
    select,
    text,
    tuple_,
)
from sqlalchemy.sql import FromClause

from integration_pipelines.lib.canonical.scratch import drop_scratch, fill, scratch_table
from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.warehouse.upsert import driver_cursor, load_rows

# (source, entity): a raw entity, e.g. ("zoho", "Students") or ("moodle", "users").
Entity = tuple[str, str]


def moodle_pair_id(first, second):
    """The record id of a raw Moodle record about a pair, `<first>:<second>`: an enrolment or a
    completion (course, user), a grade (item, user). `moodle:` before it makes the canonical key."""
    return cast(first, String) + ":" + cast(second, String)


class RawKeys:
    """The raw records a canonical step applies. `RawKeys.everything()` for all of them; otherwise
    the keys held in `table`, of the tenant the step applies."""

    def __init__(self, table: Table | None, count: int | None = None, newest: datetime | None = None):
        self.table, self.count, self.newest = table, count, newest

    @classmethod
    def everything(cls) -> RawKeys:
        return cls(None)

    @property
    def all(self) -> bool:
        return self.table is None

    @classmethod
    def _create(cls, conn: Connection) -> Table:
        return scratch_table(
            conn,
            "raw_keys",
            Column("source", String(16), primary_key=True),
            Column("entity", String(64), primary_key=True),
            Column("record_id", String(64), primary_key=True),
        )

    @classmethod
    def written_since(
        cls, conn: Connection, tenant_id: str, entities: Iterable[Entity], since: datetime | None
    ) -> RawKeys:
        """The records of `entities` written (inserted, changed or soft-deleted) after `since`
        (everything when None), and the newest write among them: the watermark to apply from next."""
        entities = list(entities)
        r = raw_records.c
        where = [r.tenant_id == tenant_id, tuple_(r.source, r.entity).in_(entities)]
        newest = conn.execute(select(func.max(r.updated_at)).where(*where)).scalar()
        if since is None:
            return cls(None, newest=newest)
        table = cls._create(conn)
        count = fill(conn, table, select(r.source, r.entity, r.record_id).where(*where, r.updated_at > since))
        return cls(table, count, newest if count else since)

    @classmethod
    def of(cls, conn: Connection, keys: Iterable[tuple[str, str, str]]) -> RawKeys:
        """A given set of (source, entity, record id): what an event batch landed, say."""
        table = cls._create(conn)
        unique = sorted(set((s, e, str(i)) for s, e, i in keys))
        cursor = driver_cursor(conn)
        try:
            load_rows(cursor, conn.dialect.name == "postgresql", table.name, ["source", "entity", "record_id"], unique)
        finally:
            cursor.close()
        if conn.dialect.name == "postgresql":
            conn.execute(text(f'ANALYZE "{table.name}"'))  # see scratch.fill
        return cls(table, len(unique))

    def raw(self, tenant_id: str, source: str, entity: str, *, live: bool = True) -> tuple[FromClause, list]:
        """The raw records of one entity this covers, as a FROM clause and its conditions: those
        whose ids the keys hold (each found by the raw layer's primary key), or the whole entity."""
        r = raw_records
        where = [r.c.tenant_id == tenant_id, r.c.source == source, r.c.entity == entity]
        if live:
            where.append(r.c.deleted_at.is_(None))
        if self.table is not None:
            # `record_id IN (…)`, not a join: SQLite, which plans without statistics here, would
            # rather walk the whole entity and probe the keys than the other way round.
            where.append(r.c.record_id.in_(self.ids(source, entity)))
        return r, where

    def ids(self, source: str, entity: str, prefix: str = "", as_type=None) -> Select:
        """The record ids of one entity this covers (not for everything), each after `prefix` (a
        canonical key such as `zoho:<id>`) or cast `as_type`, as a `SELECT` (for `IN`, say)."""
        assert self.table is not None, "a set of keys, not everything"
        k = self.table.c
        value = literal(prefix) + k.record_id if prefix else k.record_id
        if as_type is not None:
            value = cast(value, as_type)
        return select(value).where(k.source == source, k.entity == entity)

    def drop(self, conn: Connection) -> None:
        drop_scratch(conn, self.table)
