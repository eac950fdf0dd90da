"""Zoho CRM records, landed raw: nightly snapshots of each module, and daily change windows."""

from dagster import AssetExecutionContext, AssetKey, AssetSpec, BackfillPolicy, MaterializeResult, multi_asset

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.partitions import change_windows
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.raw_sync import RawLander, deleted_entity_name
from integration_pipelines.lib.read_ahead import read_ahead
from integration_pipelines.lib.warehouse.upsert import soft_delete_keys
from integration_pipelines.lib.zoho import parse_zoho_datetime

ZOHO_ENTITIES = tuple(FIELD_MAPPING.zoho.entities)


def raw_zoho_key(entity: str) -> AssetKey:
    return AssetKey(f"raw_zoho_{entity}")


def zoho_changes_key(entity: str) -> AssetKey:
    return AssetKey(f"zoho_{entity}_changes")


def _selected(context: AssetExecutionContext, key_of) -> list[str]:
    return [e for e in ZOHO_ENTITIES if key_of(e) in context.selected_asset_keys]


@multi_asset(
    specs=[
        AssetSpec(
            raw_zoho_key(e),
            group_name="zoho",
            kinds={"zoho"},
            description=f"Every record of the Zoho module {FIELD_MAPPING.zoho.entities[e].module}, "
            "read in full, and Zoho's list of its deleted records.",
        )
        for e in ZOHO_ENTITIES
    ],
    can_subset=True,
    pool="zoho_api",
)
def zoho_snapshot(context: AssetExecutionContext, zoho: ZohoResource, warehouse: WarehouseResource):
    """A full read of each Zoho module: records no longer returned are soft-deleted (nightly reconciliation)."""
    with zoho.client() as client:
        for entity in _selected(context, raw_zoho_key):
            mapping = FIELD_MAPPING.zoho.entities[entity]
            before = client.counter.total
            with warehouse.begin() as conn:
                counts = _land_module(client, conn, warehouse.tenant, mapping, snapshot=True)
                warehouse.record_sync(conn, f"zoho.{mapping.module}", counts.read)
            yield MaterializeResult(
                asset_key=raw_zoho_key(entity),
                metadata={
                    **counts.as_metadata(),
                    "requests": client.counter.total - before,
                    "mode": "snapshot",
                },
            )


@multi_asset(
    specs=[
        AssetSpec(
            zoho_changes_key(e),
            group_name="zoho",
            kinds={"zoho"},
            description=f"Records of the Zoho module {FIELD_MAPPING.zoho.entities[e].module} modified "
            "or deleted within the window.",
        )
        for e in ZOHO_ENTITIES
    ],
    partitions_def=change_windows,
    backfill_policy=BackfillPolicy.single_run(),
    can_subset=True,
    pool="zoho_api",
)
def zoho_changes(context: AssetExecutionContext, zoho: ZohoResource, warehouse: WarehouseResource):
    """What changed in Zoho within the window (or range of windows, for a backfill), read with
    If-Modified-Since and sorted by modification time, so a run costs in proportion to the changes."""
    window = context.partition_time_window
    with zoho.client() as client:
        for entity in _selected(context, zoho_changes_key):
            mapping = FIELD_MAPPING.zoho.entities[entity]
            before = client.counter.total
            with warehouse.begin() as conn:
                counts = _land_module(
                    client, conn, warehouse.tenant, mapping, snapshot=False, since=window.start, until=window.end
                )
            yield MaterializeResult(
                asset_key=zoho_changes_key(entity),
                metadata={
                    **counts.as_metadata(),
                    "requests": client.counter.total - before,
                    "window_start": window.start.isoformat(),
                    "window_end": window.end.isoformat(),
                },
            )


def _land_module(client, conn, tenant: str, mapping, *, snapshot: bool, since=None, until=None):
    """Land one module's records (all, or those modified in [since, until)) and its deleted list."""
    module, deleted_entity = mapping.module, deleted_entity_name(mapping.module)
    lander = RawLander(conn, tenant, "zoho", (module, deleted_entity), snapshot=snapshot)
    for record in read_ahead(client.iter_records(module, mapping.source_fields, modified_since=since)):
        modified = parse_zoho_datetime(record["Modified_Time"])
        if until is not None and modified >= until:
            break  # sorted by Modified_Time: the rest belongs to later windows
        lander.land(module, record["id"], record, modified)
    gone = []
    for record in client.iter_deleted(module, since=since):
        deleted_time = parse_zoho_datetime(record["deleted_time"])
        if until is not None and deleted_time >= until:
            continue
        lander.land(deleted_entity, record["id"], record, deleted_time)
        gone.append(str(record["id"]))
    counts = lander.finish()
    if not snapshot:
        # A window sees deletions as entries in Zoho's deleted list; the snapshot sees them as absences.
        scope = {"tenant_id": tenant, "source": "zoho", "entity": module}
        counts[module].deleted += soft_delete_keys(conn, "raw_records", scope, gone)
    return counts[module]
