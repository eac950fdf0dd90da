"""What a canonical step remembers of the whole college, held so that its memory stays flat.

Linking identities and merging enrolments need something of every student at once: which Zoho
student has which number and email, which Moodle enrolments no Zoho enrollment has claimed yet.
Held in Python, that grows with the college (tens of megabytes at 100,000 students, in the
process that also writes). Here it lives in a `ScratchTable`, a temporary table on the step's
own connection that the database keeps on disk (SQLite's temporary file, PostgreSQL's temporary
buffers). The step then asks about one batch of keys at a time (`with_lookup`), so it holds a
batch's worth of answers, never the college's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from more_itertools import chunked
from sqlalchemy import Column, Connection, Index, MetaData, Table, select, text

from integration_pipelines.lib.warehouse.upsert import load_rows

# Finds what it can for a set of keys: the students of some Moodle users, say.
Lookup = Callable[[set], Mapping]
LOOKUP_BATCH = 2_000
_INSERT_BATCH = 5_000


def with_lookup(items: Iterable, key_of: Callable, lookup: Lookup) -> Iterator[tuple[Any, Any]]:
    """Each item with what `lookup` found for its key (None for none), looked up a batch of
    `LOOKUP_BATCH` items at a time."""
    for batch in chunked(items, LOOKUP_BATCH):
        keys = [key_of(item) for item in batch]
        found = lookup({key for key in keys if key is not None})
        for item, key in zip(batch, keys, strict=True):
            yield item, found.get(key)


_names = itertools.count()


class ScratchTable:
    """A temporary table on one connection: loaded and indexed once, or filled as a step goes,
    and queried a batch at a time.

    Temporary tables belong to the connection and vanish with it; `drop` frees one sooner. On
    SQLite they live in the connection's own temporary database, so a reader's connection can
    fill one while another connection holds the warehouse's write lock.
    """

    def __init__(self, conn: Connection, purpose: str, *columns: Column, indexes: Sequence[Sequence[str]] = ()):
        self.conn = conn
        self.table = Table(f"scratch_{purpose}_{next(_names)}", MetaData(), *columns, prefixes=["TEMPORARY"])
        self.table.create(conn)
        self._indexes = indexes
        self._columns = [column.name for column in columns]
        self._postgres = conn.dialect.name == "postgresql"
        self.c = self.table.c

    def insert(self, rows: Iterable[tuple]) -> None:
        """Insert `rows` (tuples in the table's column order) in bulk, a batch at a time: a batch
        is read whole before it is written, so `rows` may itself read from this connection."""
        cursor = self.conn.connection.driver_connection.cursor()
        try:
            for batch in chunked(rows, _INSERT_BATCH):
                load_rows(cursor, self._postgres, self.table.name, self._columns, batch)
        finally:
            cursor.close()

    def load(self, rows: Iterable[tuple]) -> ScratchTable:
        """Insert `rows`, then build the indexes: once, over the whole load, which costs less than
        keeping them up row by row."""
        self.insert(rows)
        for i, columns in enumerate(self._indexes):
            Index(f"{self.table.name}_{i}", *(self.table.c[c] for c in columns)).create(self.conn)
        if self._postgres:
            # A temporary table has no statistics until analysed, and the planner must know it is
            # large before it chooses how to join against it.
            self.conn.execute(text(f'ANALYZE "{self.table.name}"'))
        return self

    def among(self, column: str, keys: set) -> set:
        """Which of `keys` the table holds in `column`."""
        if not keys:
            return set()
        col = self.table.c[column]
        return set(self.conn.scalars(select(col).where(col.in_(keys)).distinct()))

    def drop(self) -> None:
        self.table.drop(self.conn)
