"""Canonical tables: the college as one model, whichever system each fact came from."""


from collections import defaultdict
from datetime import UTC, datetime

from dagster import AssetExecutionContext, MaterializeResult, asset

from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.raw_sync import deleted_entity_name
from integration_pipelines.lib.students import StudentFields, link_students
from integration_pipelines.lib.warehouse.raw import iter_raw_payloads
from integration_pipelines.lib.warehouse.upsert import Snapshot, upsert_rows

STUDENT_FIELDS = StudentFields()


@asset(
    group_name="canonical",
    kinds={"python"},
    deps=["raw_zoho_students", "raw_moodle_users", "raw_moodle_enrolments"],
)
def students(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    """One row per student, linking the Zoho admissions record and the Moodle account.

    Students known to only one system are kept and counted as unmatched; students no source
    holds any more are soft-deleted.
    """
    tenant = warehouse.tenant
    with warehouse.begin() as conn:
        roles: dict[int, set[str]] = defaultdict(set)
        for enrolment in iter_raw_payloads(conn, tenant, "moodle", "enrolments"):
            roles[int(enrolment["userid"])].update(r.get("shortname") for r in enrolment.get("roles") or ())
        deleted_in_zoho = {
            str(record["id"])
            for record in iter_raw_payloads(conn, tenant, "zoho", deleted_entity_name(STUDENT_FIELDS.zoho_module))
        }
        rows, identity = link_students(
            iter_raw_payloads(conn, tenant, "zoho", STUDENT_FIELDS.zoho_module),
            iter_raw_payloads(conn, tenant, "moodle", "users"),
            roles,
            deleted_zoho_ids=deleted_in_zoho,
            tenant_id=tenant,
            observed_at=datetime.now(UTC),
            fields=STUDENT_FIELDS,
        )
        snapshot = Snapshot(conn, "students", {"tenant_id": tenant})
        for row in rows:
            snapshot.saw(row["student_key"])
        counts = upsert_rows(conn, "students", rows)
        deleted = snapshot.delete_missing()
        warehouse.record_sync(conn, "canonical.students", len(rows))
    unmatched_share = identity.unmatched / len(rows) if rows else 0.0
    return MaterializeResult(metadata={
        "rows_read": len(rows),
        **counts.as_metadata(),
        "deleted": deleted,
        **identity.as_metadata(),
        "unmatched_share": round(unmatched_share, 4),
    })
