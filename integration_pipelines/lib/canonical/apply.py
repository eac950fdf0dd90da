"""Applying raw records to the canonical tables: a whole table, its changes since a watermark, or
a given set of raw keys.

A canonical step (one Dagster asset per table) calls `apply_table`: it finds the raw records of
the table's inputs written since the table's watermark (every one, for `full_sync`), applies
them, and moves the watermark. An event batch calls `apply_raw_keys` with the keys it landed,
which every table applies in dependency order. Either way a table's SQL reads the raw records
those keys name and touches the canonical rows they reach, no others, and the students whose
marts that made stale are queued for the next mart build (lib/warehouse/mart_refresh.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection

from integration_pipelines.lib.canonical.raw_keys import Entity, RawKeys
from integration_pipelines.lib.mapping import FieldMapping
from integration_pipelines.lib.warehouse.mart_refresh import queue_changed_students
from integration_pipelines.lib.warehouse.sync_state import record_sync, watermark
from integration_pipelines.lib.warehouse.upsert import SyncCounts


@dataclass(frozen=True)
class Scope:
    """What one application covers: the connection it writes on, the tenant, the field mapping,
    the raw keys to apply, and its time (`now`, stamped on what it writes). With keys,
    `changed_since` is when canonical rows written by the tables applied before count as changed
    (a table that looks up students follows the students this application changed)."""

    conn: Connection
    tenant_id: str
    mapping: FieldMapping
    keys: RawKeys
    now: datetime
    changed_since: datetime | None = None


@dataclass
class TableResult:
    """What applying one table read and wrote, and what else it found (run metadata)."""

    counts: SyncCounts
    found: dict[str, Any] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {**self.counts.as_metadata(), **self.found}


class CanonicalTable(Protocol):
    """A canonical table's module: the raw entities it is made of, and how."""

    name: str

    def inputs(self, mapping: FieldMapping) -> list[Entity]:
        """The raw entities (source, entity) whose records this table is made of."""
        ...

    def apply(self, scope: Scope) -> TableResult:
        """Write the rows the scope's raw keys reach; soft-delete those they no longer make."""
        ...


def canonical_tables() -> dict[str, CanonicalTable]:
    """Every canonical table, in an order in which each follows what it looks up."""
    # Imported here because each table's module imports `Scope` and `TableResult` from this one.
    from integration_pipelines.lib.canonical import course_results, enrollments, grades, students, zoho_tables

    tables = [*zoho_tables.TABLES[:3], students.TABLE, enrollments.TABLE, *zoho_tables.TABLES[3:], grades.TABLE]
    tables.append(course_results.TABLE)  # follows the enrollments it names
    return {t.name: t for t in tables}


def stream_of(table: str) -> str:
    return f"canonical.{table}"


def apply_table(
    conn: Connection, table: str, tenant_id: str, mapping: FieldMapping, *, full: bool, now: datetime | None = None
) -> TableResult:
    """One canonical step: apply the raw records of the table's inputs written since its watermark
    (all of them when `full`), then move the watermark to the newest of them."""
    spec = canonical_tables()[table]
    now = now or datetime.now(UTC)
    since, last_applied = (None, None) if full else watermark(conn, tenant_id, stream_of(table))
    keys = RawKeys.written_since(conn, tenant_id, spec.inputs(mapping), since)
    # Canonical rows count as changed from this table's last application: its watermark is the
    # raw layer's time, and every row the last run wrote was stamped after it.
    result = spec.apply(Scope(conn, tenant_id, mapping, keys, now, changed_since=last_applied))
    keys.drop(conn)
    queue_changed_students(conn, tenant_id, table, now, full=full)
    record_sync(conn, tenant_id, stream_of(table), result.counts.read, now, watermark=keys.newest)
    return result


def apply_raw_keys(
    conn: Connection,
    tenant_id: str,
    mapping: FieldMapping,
    keys: Iterable[tuple[str, str, str]],
    *,
    now: datetime | None = None,
) -> dict[str, TableResult]:
    """Apply a set of raw keys ((source, entity, record id), already landed in the raw layer) to
    every canonical table: what an event batch calls. Touches only the rows those keys reach."""
    now = now or datetime.now(UTC)
    raw = RawKeys.of(conn, keys)
    scope = Scope(conn, tenant_id, mapping, raw, now, changed_since=now)
    results = {name: table.apply(scope) for name, table in canonical_tables().items()}
    raw.drop(conn)
    for name in results:
        queue_changed_students(conn, tenant_id, name, now, full=False)
    return results
