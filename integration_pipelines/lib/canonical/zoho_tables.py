"""The canonical tables filled one to one from a Zoho module: programs, units, classes,
registrations and payments. Each row is its record mapped (`zoho_records`); rows pointing at a
student carry its key, `zoho:<student id>`, so that checks and marts join on one column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement

from integration_pipelines.lib.canonical import key_column
from integration_pipelines.lib.canonical.apply import Scope, TableResult
from integration_pipelines.lib.canonical.raw_keys import Entity
from integration_pipelines.lib.canonical.zoho_records import ZOHO_KEY_PREFIX, raise_for_problem, zoho_key, zoho_select
from integration_pipelines.lib.mapping import FieldMapping
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES
from integration_pipelines.lib.warehouse.upsert import SyncCounts, soft_delete_unstaged, upsert_select

# A column computed from the mapped ones (given them and the tenant), or a plain expression.
Derived = Callable[[Mapping[str, ColumnElement], str], ColumnElement] | ColumnElement


def student_key(columns: Mapping[str, ColumnElement], tenant_id: str) -> ColumnElement:
    return zoho_key(columns["student_zoho_id"])


@dataclass(frozen=True)
class ZohoTable:
    """A canonical table whose rows are the records of one Zoho module (the mapping's `entity`),
    with `derived` columns computed from the mapped ones. `reach` narrows the rows it owns when
    the table also holds rows from elsewhere (grades: Moodle's too); `keep`, when given, is what
    a record must meet to make a row (a function of the mapped columns and the tenant)."""

    name: str
    entity: str
    derived: Mapping[str, Derived] = field(default_factory=dict)
    reach: Callable[[], list[ColumnElement]] = list
    keep: Callable[[Mapping[str, ColumnElement], str], ColumnElement] | None = None

    def inputs(self, mapping: FieldMapping) -> list[Entity]:
        return [("zoho", mapping.zoho.entities[self.entity].module)]

    def apply(self, scope: Scope) -> TableResult:
        conn, keys = scope.conn, scope.keys
        mapping = scope.mapping.zoho.entities[self.entity]
        key = key_column(self.name)
        rows = zoho_select(mapping, scope.tenant_id, keys, key, keep=self.keep, **self.derived)
        written = upsert_select(conn, self.name, rows, now=scope.now)
        raise_for_problem(conn, scope.tenant_id, mapping, written)
        table = KEYED_TABLES[self.name].table
        owned = [table.c.tenant_id == scope.tenant_id, *self.reach()]
        if not keys.all:
            owned.append(table.c[key].in_(keys.ids("zoho", mapping.module, ZOHO_KEY_PREFIX)))
        # A record Zoho deleted (its raw record soft-deleted) no longer makes a row.
        deleted = soft_delete_unstaged(conn, written, *owned, now=scope.now)
        return TableResult(SyncCounts(read=written.staged + deleted, written=written.counts, deleted=deleted))


TABLES = (
    ZohoTable("programs", "programs"),
    ZohoTable("units", "units"),
    ZohoTable("classes", "classes"),
    ZohoTable("registrations", "registrations", {"student_key": student_key}),
    ZohoTable("payments", "payments", {"student_key": student_key}),
)
"""Programmes, their BTEC units (with credits), the taught classes (each linked to its Moodle
course), then students' unit registrations and their fees and instalments."""
