"""Zoho CRM records, landed raw."""


from dagster import AssetExecutionContext, MaterializeResult, asset

from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.raw_sync import RawLander, deleted_entity_name
from integration_pipelines.lib.students import StudentFields, parse_zoho_datetime

STUDENT_FIELDS = StudentFields()


@asset(group_name="zoho", kinds={"zoho"}, pool="zoho_api")
def raw_zoho_students(context: AssetExecutionContext, zoho: ZohoResource, warehouse: WarehouseResource):
    """Every student admissions holds in Zoho CRM, read in full, and Zoho's list of deleted students.

    What the full read no longer returns is soft-deleted. The deleted list (`/deleted`) lands as
    its own entity, so the identity step knows which Moodle accounts belong to deleted students
    even when this warehouse never saw those students alive.
    """
    module = STUDENT_FIELDS.zoho_module
    deleted_entity = deleted_entity_name(module)
    with zoho.client() as client, warehouse.begin() as conn:
        lander = RawLander(conn, warehouse.tenant, "zoho", (module, deleted_entity), snapshot=True)
        for record in client.iter_records(module, STUDENT_FIELDS.zoho_fields):
            lander.land(module, record["id"], record, parse_zoho_datetime(record[STUDENT_FIELDS.modified_time]))
        for record in client.iter_deleted(module):
            lander.land(deleted_entity, record["id"], record, parse_zoho_datetime(record["deleted_time"]))
        counts = lander.finish()
        warehouse.record_sync(conn, f"zoho.{module}", counts[module].read)
    return MaterializeResult(metadata={
        **counts[module].as_metadata(),
        "deleted_in_zoho": counts[deleted_entity].read,
        "requests": client.counter.total,
        "mode": "full",
    })
