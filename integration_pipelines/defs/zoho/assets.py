"""Zoho CRM records, landed raw."""


from dagster import AssetExecutionContext, MaterializeResult, asset

from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.raw_sync import RawLander
from integration_pipelines.lib.students import StudentFields, parse_zoho_datetime

STUDENT_FIELDS = StudentFields()


@asset(group_name="zoho", kinds={"zoho"}, pool="zoho_api")
def raw_zoho_students(context: AssetExecutionContext, zoho: ZohoResource, warehouse: WarehouseResource):
    """Every student admissions holds in Zoho CRM, read in full; what Zoho no longer has is soft-deleted."""
    module = STUDENT_FIELDS.zoho_module
    with zoho.client() as client, warehouse.begin() as conn:
        lander = RawLander(conn, warehouse.tenant, "zoho", (module,), snapshot=True)
        for record in client.iter_records(module, STUDENT_FIELDS.zoho_fields):
            lander.land(module, record["id"], record, parse_zoho_datetime(record[STUDENT_FIELDS.modified_time]))
        counts = lander.finish()[module]
        warehouse.record_sync(conn, f"zoho.{module}", counts.read)
    return MaterializeResult(metadata={**counts.as_metadata(), "requests": client.counter.total, "mode": "full"})
