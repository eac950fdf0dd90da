"""Scratch tables: temporary tables on a step's connection holding the sets a canonical statement
joins (the raw keys applied, the students a change reaches, the candidates of identity).

They belong to the transaction's connection and go with it. PostgreSQL plans a temporary table
as empty until it is analysed, so `fill` analyses what it filled: a join against a few thousand
rows must not be planned as a nested loop over "nothing".
"""

from __future__ import annotations

from sqlalchemy import Column, ColumnElement, Connection, Index, MetaData, Table, delete, func, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

# One Table object per scratch table's name, made once per process. SQLAlchemy caches a compiled
# statement by the Table objects in it: with a new Table per step (as there once was), every
# statement over a scratch table, and so every statement of an event batch's application, was
# compiled again for each batch (a fifth of its client time).
_tables: dict[str, tuple[Table, tuple]] = {}
_IN_USE = "integration_pipelines.scratch_in_use"


def scratch_table(conn: Connection, purpose: str, *columns: Column, index: tuple[str, ...] = ()) -> Table:
    """An empty temporary table on `conn`, with an index on `index` if given. Named after its
    purpose; a second one of the same purpose in use on the same transaction gets a numbered name."""
    transaction = conn.get_transaction()
    in_use: dict[str, object] = conn.info.setdefault(_IN_USE, {})
    for name, holder in list(in_use.items()):
        if holder is not transaction:
            del in_use[name]  # dropped with a transaction that ended (committed or rolled back)
    name, number = purpose, 1
    while name in in_use:
        number += 1
        name = f"{purpose}_{number}"
    in_use[name] = transaction
    shape = (tuple((c.name, repr(c.type), c.primary_key, c.nullable, c.index) for c in columns), index)
    if name not in _tables:
        table = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])
        if index:
            Index(f"{name}_ix", *(table.c[c] for c in index))
        _tables[name] = (table, shape)
    table, made_as = _tables[name]
    assert made_as == shape, f"scratch table {name!r} is made with two different shapes"
    # A table left on the connection by a committed step that did not drop it is emptied, never
    # mistaken for this one's rows.
    conn.execute(CreateTable(table, if_not_exists=True))
    for table_index in table.indexes:
        conn.execute(CreateIndex(table_index, if_not_exists=True))
    conn.execute(delete(table))
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
    in_use: dict[str, object] = conn.info.get(_IN_USE, {})
    for table in tables:
        if table is not None:
            table.drop(conn)
            in_use.pop(table.name, None)
