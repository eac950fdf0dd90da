"""How fresh the canonical tables and the marts should be, and the sensor that keeps them so.

The policy is applied here, over the assembled definitions by group, rather than in each area's
asset module: whatever assets the `canonical` group holds (and however its module builds them)
carry it, and an asset that declares a policy of its own keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    FreshnessPolicy,
    apply_freshness_policy,
    map_asset_specs,
)

from integration_pipelines.settings import Settings

FRESH_GROUPS = ("canonical", "marts")


def sync_freshness_policy(settings: Settings) -> FreshnessPolicy:
    """Warn when a table is older than a nightly full_sync allows (26 h: a day and the two hours a
    late or slow run may take), fail when two nightly runs have been missed (50 h).

    Hourly incremental syncs refresh the tables more often; the policy asks only for what the
    nightly reconciliation promises, so a college that runs only full_sync is not always late.
    """
    return FreshnessPolicy.time_window(
        fail_window=timedelta(hours=settings.freshness_fail_hours),
        warn_window=timedelta(hours=settings.freshness_warn_hours),
    )


def with_freshness(
    assets: Iterable[object], policy: FreshnessPolicy, groups: Sequence[str] = FRESH_GROUPS
) -> list[AssetsDefinition | AssetSpec]:
    """`assets`, with `policy` on every asset of `groups` that has no freshness policy of its own."""

    def apply(spec: AssetSpec) -> AssetSpec:
        if spec.group_name in groups:
            return apply_freshness_policy(spec, policy, overwrite_existing=False)
        return spec

    checked: list[AssetsDefinition | AssetSpec] = []
    for item in assets:  # typed loosely: asset factories elsewhere are not annotated
        if not isinstance(item, AssetsDefinition | AssetSpec):
            raise TypeError(f"not an asset definition or spec: {item!r}")
        checked.append(item)
    return list(map_asset_specs(apply, checked))


automation_sensor = AutomationConditionSensorDefinition(
    "automation_conditions",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.STOPPED,
    description="Evaluates the assets' automation conditions: the canonical tables and the marts are eager, "
    "so they are brought up to date when what they read is materialized outside the jobs (a backfill "
    "launched from the asset graph, a manual materialization). full_sync and incremental_sync do not "
    "need it. Starts stopped; turn it on in the UI (Automation).",
)
