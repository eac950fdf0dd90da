"""Zoho CRM records, landed raw: nightly snapshots of each module, and daily change windows."""

from collections.abc import Iterator

from dagster import AssetExecutionContext, AssetKey, AssetSpec, BackfillPolicy, MaterializeResult, multi_asset

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.partitions import change_windows
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.raw_sync import land_modules
from integration_pipelines.lib.source_reads import ModuleRead, ZohoModule, read_zoho_modules
from integration_pipelines.lib.warehouse.upsert import SyncCounts
from integration_pipelines.lib.zoho.references import land_missing_references

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

    The modules are read side by side, up to the org's concurrency limit, in threads that wait
    on Zoho while this one lands what they read. Each module reports the requests reading it
    cost (`requests`), once, on its own asset.
    """
    entities = _selected(context, raw_zoho_key)
    read_by: dict[str, str] = {}
    for entity, counts, requests, fetched in _land_modules(zoho, warehouse, entities, snapshot=True, read_by=read_by):
        yield MaterializeResult(
            asset_key=raw_zoho_key(entity),
            metadata={
                **counts.as_metadata(),
                "requests": requests,
                "fetched_by_id": fetched,
                "mode": "snapshot",
                "read_by": read_by.get(entity, "pages"),
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
    entities = _selected(context, zoho_changes_key)
    for entity, counts, requests, fetched in _land_modules(zoho, warehouse, entities, window=window):
        yield MaterializeResult(
            asset_key=zoho_changes_key(entity),
            metadata={
                **counts.as_metadata(),
                "requests": requests,
                "fetched_by_id": fetched,
                "window_start": window.start.isoformat(),
                "window_end": window.end.isoformat(),
            },
        )


def _land_modules(
    zoho: ZohoResource,
    warehouse: WarehouseResource,
    entities: list[str],
    *,
    snapshot: bool = False,
    window=None,
    read_by: dict[str, str] | None = None,
) -> Iterator[tuple[str, SyncCounts, int, int]]:
    """Read each entity's module (all its records for a snapshot, else those modified in the
    window) and its deleted list, modules side by side (`read_zoho_modules`), and land them in
    one transaction; once it commits, yield what each module landed and the requests reading it
    cost (its field check, pages, deleted list, and any token refresh it waited for), once each,
    and how many of its records were then fetched by id because landed records named them
    (`land_missing_references`).
    The edition lookup that sets the concurrency is one request per run, in no module's figure.
    A snapshot reads a module over `ZohoResource.bulk_read_threshold` records by Bulk Read; how
    each entity's module was read (`"bulk"` or `"pages"`) goes into `read_by`.
    """
    mappings = {e: FIELD_MAPPING.zoho.entities[e] for e in entities}
    since, until = (window.start, window.end) if window else (None, None)
    modules = [ZohoModule(e, m.module, tuple(m.source_fields)) for e, m in mappings.items()]
    entity_of = {m.module: m.entity for m in modules}
    reader = read_zoho_modules(
        zoho.client_factory(),
        modules,
        since,
        until,
        concurrency=zoho.max_concurrency,
        bulk_threshold=zoho.bulk_read_threshold if snapshot else 0,
    )
    if read_by is not None:
        reader = _noting_read_by(reader, entity_of, read_by)
    landed = []
    # Committed batch by batch as the modules land: an event batch need not wait for the whole read.
    with warehouse.write_in_steps() as conn:
        for module, counts, requests in land_modules(
            conn, warehouse.tenant, "zoho", entity_of, reader, snapshot=snapshot
        ):
            if snapshot:
                warehouse.record_sync(conn, f"zoho.{module}", counts.read)
            landed.append((module, counts, requests))
        # What changed while the modules were read: records pointing at ones created after their
        # module's read had passed.
        fetched = land_missing_references(conn, warehouse.tenant, FIELD_MAPPING, zoho.client_factory())
    for module, counts, requests in landed:
        yield entity_of[module], counts, requests, fetched.get(module, 0)


def _noting_read_by(reader, entity_of: dict[str, str], read_by: dict[str, str]):
    """The reader's items, unchanged, noting how each module was read as its `ModuleRead` passes."""
    for item in reader:
        if isinstance(item, ModuleRead):
            read_by[entity_of[item.module]] = item.read_by
        yield item
