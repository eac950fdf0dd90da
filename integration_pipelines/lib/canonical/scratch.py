"""Scratch tables: temporary tables on a step's connection holding the sets a canonical statement
joins (the raw keys applied, the students a change reaches, the candidates of identity).

They belong to the transaction's connection and go with it. PostgreSQL plans a temporary table
as empty until it is analysed, so `fill` analyses what it filled: a join against a few thousand
rows must not be planned as a nested loop over "nothing".
"""

from __future__ import annotations

import itertools

from sqlalchemy import Column, ColumnElement, Connection, Index, MetaData, Table, func, insert, text
from sqlalchemy.dialects import postgresql, sqlite

_names = itertools.count()


def scratch_table(conn: Connection, purpose: str, *columns: Column, index: tuple[str, ...] = ()) -> Table:
    """A new temporary table on `conn`, with an index on `index` if given."""
    table = Table(f"{purpose}_{next(_names)}", MetaData(), *columns, prefixes=["TEMPORARY"])
    table.create(conn)
    if index:
        Index(f"{table.name}_ix", *(table.c[c] for c in index)).create(conn)
    return table


def present(column) -> ColumnElement:
    """`column IS NOT NULL`, put so that no index serves it. Beside an `IN` over a scratch table
    (the few keys a change reaches), SQLite, planning without statistics, would otherwise walk the
    column's index over every non-null value rather than look each key up."""
    return func.coalesce(column, None).is_not(None)


def fill(conn: Connection, table: Table, rows, *, ignore_repeats: bool = False) -> int:
    """Insert what `rows` selects (the table's columns, in order); with `ignore_repeats`, rows
    whose key is there already are skipped. Returns how many were inserted."""
    names = [c.name for c in table.c][: len(rows.selected_columns)]
    if ignore_repeats:
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = dialect_insert(table).from_select(names, rows).on_conflict_do_nothing()
    else:
        stmt = insert(table).from_select(names, rows)
    count = conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount
    if conn.dialect.name == "postgresql":
        conn.execute(text(f'ANALYZE "{table.name}"'))
    return count


def drop_scratch(conn: Connection, *tables: Table | None) -> None:
    """Drop a step's temporary tables once it is done with them. (Should the step fail, they go
    with its transaction: never drop them in a `finally` on a connection whose transaction
    failed, which PostgreSQL refuses, hiding the first error.)"""
    for table in tables:
        if table is not None:
            table.drop(conn)
