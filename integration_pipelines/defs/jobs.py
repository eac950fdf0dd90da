"""The jobs users and schedules launch by name: `full_sync` and `incremental_sync`."""

from dagster import AssetsDefinition, AssetSelection, define_asset_job

from integration_pipelines.dagster_home import area_tag
from integration_pipelines.defs.canonical.assets import CANONICAL_ASSETS
from integration_pipelines.defs.moodle.assets import moodle_grade_changes, moodle_snapshot
from integration_pipelines.defs.zoho.assets import zoho_changes, zoho_snapshot

SNAPSHOTS = AssetSelection.assets(moodle_snapshot, zoho_snapshot)
CHANGE_WINDOWS = AssetSelection.assets(moodle_grade_changes, zoho_changes)
# Writing to Zoho is not part of a sync: the write-back follows the grades on its own (issue 18).
OUTBOUND = AssetSelection.groups("outbound")


def _op_name(asset: object) -> str:
    if not isinstance(asset, AssetsDefinition):
        raise TypeError(f"CANONICAL_ASSETS holds {asset!r}, not an asset definition")
    return asset.op.name


# Apply every raw record: each canonical table is reconciled whole.
_FULL_CONFIG = {"ops": {_op_name(asset): {"config": {"full": True}} for asset in CANONICAL_ASSETS}}

full_sync = define_asset_job(
    "full_sync",
    selection=AssetSelection.all() - CHANGE_WINDOWS - OUTBOUND,
    config=_FULL_CONFIG,
    tags=area_tag("sync"),
    description="Nightly reconciliation: snapshot both sources, apply every raw record to the canonical "
    "tables, rebuild the marts. The only path that sees records deleted without a trace.",
)

incremental_sync = define_asset_job(
    "incremental_sync",
    selection=AssetSelection.all() - SNAPSHOTS - OUTBOUND,
    tags=area_tag("sync"),
    # Partitioned by the change windows: Dagster takes the partitioning from the selected assets.
    description="What changed in a window: Zoho records by modification time, Moodle assignment grades by "
    "`since`; then the canonical tables apply just those changes, and the marts rebuild.",
)
