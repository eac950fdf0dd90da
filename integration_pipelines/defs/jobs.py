"""The jobs users and schedules launch by name."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

# The nightly reconciliation: a snapshot of both sources, every canonical table, every mart.
# It detects deletes, which incremental reads cannot.
full_sync = define_asset_job(
    "full_sync",
    selection=AssetSelection.all(),
    description="Snapshot both sources, rebuild the canonical tables and the marts, detect deletes.",
)
