"""Zoho records as canonical rows: the field mapping, compiled to SQL over the raw layer.

Each canonical column the mapping names is its transform over the record's field
(`transforms.py`); `zoho_id` is the record id, and `source_modified_at` its `Modified_Time`.
Keys say where a row came from: `zoho:<id>`. A live record whose field its transform cannot
convert stops the step with a `RecordTransformError` naming the entity, the field and the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, literal, select

from integration_pipelines.lib.canonical.raw_keys import RawKeys
from integration_pipelines.lib.canonical.transforms import TRANSFORMS, Field
from integration_pipelines.lib.mapping import MODIFIED_TIME_FIELD, EntityMapping, RecordTransformError
from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.warehouse.upsert import StagedWrite

ZOHO_KEY_PREFIX = "zoho:"


def zoho_key(zoho_id: ColumnElement) -> ColumnElement:
    """The canonical key of what Zoho holds: `zoho:<id>`."""
    return literal(ZOHO_KEY_PREFIX) + zoho_id


@dataclass(frozen=True)
class MappedRecord:
    """One Zoho entity's raw records, mapped: each canonical column as SQL, and what is wrong."""

    columns: Mapping[str, ColumnElement]
    modified_at: ColumnElement
    problem: ColumnElement
    """The first column whose field its transform cannot convert (or `source_modified_at`), else NULL."""


def map_record(mapping: EntityMapping, payload: ColumnElement = raw_records.c.payload) -> MappedRecord:
    columns: dict[str, ColumnElement] = {}
    invalid: list[tuple[ColumnElement, str]] = []
    for column in mapping.columns:
        converted = TRANSFORMS[column.transform](Field(payload, column.source))
        columns[column.column] = converted.value
        invalid.append((~converted.valid, column.column))
    modified = TRANSFORMS["datetime"](Field(payload, MODIFIED_TIME_FIELD))
    invalid.append((~modified.valid | modified.value.is_(None), "source_modified_at"))
    return MappedRecord(columns, modified.value, case(*invalid, else_=None))


def zoho_select(mapping: EntityMapping, tenant_id: str, keys: RawKeys, key_column: str, *, keep=None, **derived):
    """`SELECT` of the canonical rows of the live raw records of `mapping`'s module that `keys`
    covers: tenant, `key_column` (`zoho:<id>`), `zoho_id`, the mapped columns, the source's
    time and the problem. `derived` adds columns computed from the mapped ones (each a function
    of the mapped columns and the tenant, or a plain expression); `keep`, a function of the same,
    is a condition a record must meet to make a row."""
    source, where = keys.raw(tenant_id, "zoho", mapping.module)
    r = raw_records.c
    mapped = map_record(mapping)
    columns = {"zoho_id": r.record_id, **mapped.columns}
    for name, make in derived.items():
        columns[name] = make(columns, tenant_id) if callable(make) else make
    if keep is not None:
        where = [*where, keep(columns, tenant_id)]
    return (
        select(
            literal(tenant_id).label("tenant_id"),
            zoho_key(r.record_id).label(key_column),
            *(value.label(name) for name, value in columns.items()),
            mapped.modified_at.label("source_modified_at"),
            mapped.problem.label("problem"),
        )
        .select_from(source)
        .where(*where)
    )


def raise_for_problem(conn: Connection, tenant_id: str, mapping: EntityMapping, written: StagedWrite) -> None:
    """Stop the step at the first record whose field could not be converted, naming it."""
    if written.problem is None:
        return
    *key, column = written.problem
    record_id = str(key[-1]).removeprefix(ZOHO_KEY_PREFIX)
    payload = conn.execute(
        select(raw_records.c.payload).where(
            raw_records.c.tenant_id == tenant_id,
            raw_records.c.source == "zoho",
            raw_records.c.entity == mapping.module,
            raw_records.c.record_id == record_id,
        )
    ).scalar_one()
    raise problem_error(mapping, column, record_id, payload)


def problem_error(mapping: EntityMapping, column: str, record_id: str, payload: Mapping[str, Any]):
    if column == "source_modified_at":
        field, expected = MODIFIED_TIME_FIELD, TRANSFORMS["datetime"].expected
        name = MODIFIED_TIME_FIELD
    else:
        ref = mapping.column(column)
        assert ref is not None, f"{column} is a column the mapping names"
        field, expected, name = ref.source, TRANSFORMS[ref.transform].expected, f"{column} (from {ref.source})"
    if field not in payload:
        reason = f"the record has no {field}"
    elif payload[field] is None and column == "source_modified_at":
        reason = f"{field} is null"
    else:
        reason = f"expected {expected}, got {payload[field]!r}"
    return RecordTransformError(mapping.name, name, record_id, reason)
