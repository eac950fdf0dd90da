"""Records a Zoho read landed that point at records it did not land, fetched by id.

Zoho's modules are read side by side, and each takes its time: a student enrolled while the sync
reads comes with the Payments, Registrations and Enrollments read after its creation, but not
with a Students read that had already passed. Its payments would then name no student, and the
sync's blocking reference checks would fail a sound college for what changed while it read. So
once the modules are landed, the records they point at that the raw layer lacks (a deleted one
keeps its tombstone, and counts as present) are asked by id and landed like any read record.
A fetched class or unit may point at a programme made meanwhile: a second round fetches those.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, String, and_, cast, exists, select

from integration_pipelines.lib.canonical.zoho_records import map_record
from integration_pipelines.lib.mapping import FieldMapping
from integration_pipelines.lib.raw_sync import RawLander
from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.warehouse.upsert import encode_json
from integration_pipelines.lib.zoho.client import ZohoClient
from integration_pipelines.lib.zoho.times import parse_zoho_datetime

# A mapped column that names another Zoho record, and the entity (of the mapping) it names.
REFERENCES = {
    "student_zoho_id": "students",
    "class_zoho_id": "classes",
    "unit_zoho_id": "units",
    "program_zoho_id": "programs",
}
ROUNDS = 3  # a grade names a unit, which names a programme


def missing_references(conn: Connection, tenant_id: str, mapping: FieldMapping) -> dict[str, list[str]]:
    """The ids of the records that live Zoho raw records point at and the raw layer lacks, by
    the referenced entity's module."""
    entities = mapping.zoho.entities
    named = raw_records.alias("named")
    missing: dict[str, set[str]] = {}
    for entity in entities.values():
        columns = map_record(entity).columns
        r = raw_records.c
        for column, target in REFERENCES.items():
            if column not in columns or target not in entities:
                continue
            module = entities[target].module
            reference = cast(columns[column], String)
            present = exists().where(
                named.c.tenant_id == tenant_id,
                named.c.source == "zoho",
                named.c.entity == module,
                named.c.record_id == reference,
            )
            rows = conn.execute(
                select(reference)
                .distinct()
                .where(
                    and_(r.tenant_id == tenant_id, r.source == "zoho", r.entity == entity.module),
                    r.deleted_at.is_(None),
                    reference.is_not(None),
                    ~present,
                )
            ).scalars()
            missing.setdefault(module, set()).update(rows)
    return {module: sorted(ids) for module, ids in missing.items() if ids}


def land_missing_references(
    conn: Connection, tenant_id: str, mapping: FieldMapping, make_client: Callable[[], ZohoClient]
) -> dict[str, int]:
    """Fetch by id and land the records the landed ones point at and the raw layer lacks (see the
    module's docstring). Returns how many records each module gained; a module Zoho no longer has
    them in (deleted meanwhile) gains none, and the reference checks then say so."""
    fields = {m.module: m.source_fields for m in mapping.zoho.entities.values()}
    landed: dict[str, int] = {}
    asked: set[tuple[str, str]] = set()
    with make_client() as client:
        for _ in range(ROUNDS):
            wanted = {
                module: [i for i in ids if (module, i) not in asked]
                for module, ids in missing_references(conn, tenant_id, mapping).items()
            }
            wanted = {module: ids for module, ids in wanted.items() if ids}
            if not wanted:
                break
            lander = RawLander(conn, tenant_id, "zoho", wanted, snapshot=False)
            for module, ids in wanted.items():
                asked.update((module, i) for i in ids)
                for record in client.iter_records_by_id(module, ids, fields[module]):
                    modified = parse_zoho_datetime(record["Modified_Time"])
                    lander.land(module, str(record["id"]), encode_json(record), modified)
                    landed[module] = landed.get(module, 0) + 1
            lander.finish()
    return landed
