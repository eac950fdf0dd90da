"""Zoho CRM records, landed raw: nightly snapshots of each module, and daily change windows."""

from collections.abc import Iterator

from dagster import AssetExecutionContext, AssetKey, AssetSpec, BackfillPolicy, MaterializeResult, multi_asset

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.partitions import change_windows
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.raw_sync import RawLander
from integration_pipelines.lib.read_ahead import ReadAhead
from integration_pipelines.lib.source_reads import ModuleRead, prepared_raw_records, read_zoho_modules
from integration_pipelines.lib.warehouse.raw import deleted_entity_name
from integration_pipelines.lib.warehouse.upsert import SyncCounts, soft_delete_keys

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
    """A full read of each Zoho module: records no longer returned are soft-deleted (nightly reconciliation).

    The modules are read in a process of their own while this one lands what it read.
    """
    entities = _selected(context, raw_zoho_key)
    for entity, counts, requests in _land_modules(zoho, warehouse, entities, snapshot=True):
        yield MaterializeResult(
            asset_key=raw_zoho_key(entity), metadata={**counts.as_metadata(), "requests": requests, "mode": "snapshot"}
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
    entities = _selected(context, zoho_changes_key)
    for entity, counts, requests in _land_modules(zoho, warehouse, entities, window=window):
        yield MaterializeResult(
            asset_key=zoho_changes_key(entity),
            metadata={
                **counts.as_metadata(),
                "requests": requests,
                "window_start": window.start.isoformat(),
                "window_end": window.end.isoformat(),
            },
        )


def _land_modules(
    zoho: ZohoResource, warehouse: WarehouseResource, entities: list[str], *, snapshot: bool = False, window=None
) -> Iterator[tuple[str, SyncCounts, int]]:
    """Land each entity's module (all its records for a snapshot, else those modified in the
    window) and its deleted list, one transaction per module; yield what each landed and cost.

    A snapshot reads in a process of its own (it reads everything); a window, which reads a day's
    changes, in a thread.
    """
    mappings = [FIELD_MAPPING.zoho.entities[e] for e in entities]
    since, until = (window.start, window.end) if window else (None, None)
    modules = [(m.module, m.source_fields) for m in mappings]
    read = (read_zoho_modules, zoho.client_factory(), modules, since, until)
    reader = ReadAhead(prepared_raw_records, warehouse.resolved_url, warehouse.tenant, "zoho", *read, process=snapshot)
    with reader:
        records = iter(reader)
        for entity, mapping in zip(entities, mappings, strict=True):
            module, deleted_entity = mapping.module, deleted_entity_name(mapping.module)
            with warehouse.begin() as conn:
                lander = RawLander(conn, warehouse.tenant, "zoho", (module, deleted_entity), snapshot=snapshot)
                gone = []
                for record in records:
                    if isinstance(record, ModuleRead):
                        break
                    landed_entity, record_id, prepared = record
                    lander.land_prepared(landed_entity, prepared)
                    if landed_entity == deleted_entity:
                        gone.append(record_id)
                counts = lander.finish()
                if not snapshot:
                    # A window sees deletions as entries in Zoho's deleted list; the snapshot sees
                    # them as absences.
                    scope = {"tenant_id": warehouse.tenant, "source": "zoho", "entity": module}
                    counts[module].deleted += soft_delete_keys(conn, "raw_records", scope, gone)
                else:
                    warehouse.record_sync(conn, f"zoho.{module}", counts[module].read)
            yield entity, counts[module], record.requests
