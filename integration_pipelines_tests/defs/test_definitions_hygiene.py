"""The code location uses no deprecated Dagster API, carries its freshness policies and declares its sensors."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    TimeWindowPartitionsDefinition,
    build_schedule_context,
)

# dagster-dbt requires `sqlglot[rs]`, whose `sqlglotrs` package warns on import that it is deprecated
# (sqlglot now has `sqlglotc`). Neither is ours to change; that one warning is let through, by module.
THIRD_PARTY_DEPRECATIONS = ["-W", "ignore::DeprecationWarning:sqlglotrs"]

LOAD_AND_RESOLVE = """
from dagster import Definitions
from integration_pipelines.definitions import defs

Definitions.validate_loadable(defs)
defs.resolve_asset_graph()
for job in ("full_sync", "incremental_sync"):
    defs.resolve_job_def(job)
for schedule in defs.schedules:
    defs.resolve_schedule_def(schedule.name)
for sensor in defs.sensors:
    defs.resolve_sensor_def(sensor.name)
print("loaded")
"""


@pytest.fixture(scope="module")
def defs():
    from integration_pipelines.definitions import defs

    return defs


def test_loading_the_definitions_raises_no_deprecation_warning():
    loaded = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", *THIRD_PARTY_DEPRECATIONS, "-c", LOAD_AND_RESOLVE],
        env={**os.environ, "PYTHONWARNINGS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().endswith("loaded")


def test_incremental_sync_takes_its_partitions_from_the_change_window_assets(defs):
    job = defs.resolve_job_def("incremental_sync")
    assert isinstance(job.partitions_def, TimeWindowPartitionsDefinition)
    assert job.partitions_def.start.date() == datetime(2025, 1, 1).date()
    assert defs.resolve_job_def("full_sync").partitions_def is None


def test_the_hourly_schedule_asks_for_yesterdays_and_todays_windows(defs):
    schedule = defs.resolve_schedule_def("incremental_sync_hourly")
    when = datetime(2026, 3, 10, 14, 15, tzinfo=UTC)
    (request,) = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=when)).run_requests or []
    assert request.tags["dagster/asset_partition_range_start"] == "2026-03-09"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-10"
    # Both ends are partitions of the job, so a backfill-style range run can launch.
    keys = defs.resolve_job_def("incremental_sync").partitions_def.get_partition_keys(current_time=when)
    assert {"2026-03-09", "2026-03-10"} <= set(keys)


def test_the_first_window_comes_from_the_settings(monkeypatch):
    monkeypatch.setenv("INCREMENTAL_START_DATE", "2026-02-01")
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "from integration_pipelines.defs.partitions import change_windows; print(change_windows.start.date())",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.stdout.strip() == "2026-02-01", loaded.stderr[-2000:]


def test_canonical_tables_and_marts_carry_the_freshness_policy(defs):
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    fresh = {name for name, group in groups.items() if group in ("canonical", "marts")}
    assert {"students", "grades", "enrollments", "student_profile", "stg_students"} <= fresh
    for key in graph.get_all_asset_keys():
        policy = graph.get(key).freshness_policy
        if key.to_user_string() in fresh:
            assert policy is not None, key
            assert policy.warn_window.to_timedelta() == timedelta(hours=26), key
            assert policy.fail_window.to_timedelta() == timedelta(hours=50), key
        else:
            assert policy is None, key  # raw landings and change windows are judged by their own checks


def test_the_policy_reaches_the_snapshot_the_ui_reads(defs):
    # What the code server sends to the webserver and the daemon (internal API: no public one shows it).
    from dagster._core.remote_representation.external_data import RepositorySnap

    snap = RepositorySnap.from_def(defs.get_repository_def())
    policies = {node.asset_key.to_user_string(): node.freshness_policy for node in snap.asset_nodes}
    assert policies["students"] is not None
    assert policies["student_profile"] is not None
    assert policies["raw_zoho_students"] is None


def test_an_asset_that_declares_its_own_policy_keeps_it():
    from dagster import AssetSpec, FreshnessPolicy, asset

    from integration_pipelines.defs.freshness import sync_freshness_policy, with_freshness
    from integration_pipelines.settings import Settings

    own = FreshnessPolicy.time_window(fail_window=timedelta(hours=3))

    @asset(group_name="canonical", freshness_policy=own)
    def hourly_table() -> None: ...

    @asset(group_name="canonical")
    def nightly_table() -> None: ...

    @asset(group_name="zoho")
    def raw_table() -> None: ...

    mapped = with_freshness([hourly_table, nightly_table, raw_table], sync_freshness_policy(Settings()))
    policies: dict[str, object] = {}
    for assets_def in mapped:
        for spec in assets_def.specs:
            assert isinstance(spec, AssetSpec)
            policies[spec.key.to_user_string()] = spec.freshness_policy
    assert policies["hourly_table"] == own
    assert policies["nightly_table"] == sync_freshness_policy(Settings())
    assert policies["raw_table"] is None


def test_the_freshness_windows_are_settings(monkeypatch):
    from integration_pipelines.settings import Settings

    monkeypatch.setenv("FRESHNESS_MAX_AGE_HOURS", "30")
    monkeypatch.setenv("FRESHNESS_FAIL_HOURS", "74")
    assert (Settings().freshness_warn_hours, Settings().freshness_fail_hours) == (30, 74)
    monkeypatch.setenv("FRESHNESS_FAIL_HOURS", "20")
    with pytest.raises(ValueError, match="FRESHNESS_FAIL_HOURS"):
        Settings()


def test_the_automation_sensor_is_declared_and_stopped(defs):
    sensors = {sensor.name: sensor for sensor in defs.sensors}
    automation = sensors["automation_conditions"]
    assert isinstance(automation, AutomationConditionSensorDefinition)
    assert automation.default_status == DefaultSensorStatus.STOPPED
    assert automation.description
    # Declared for every asset, so Dagster adds no default automation sensor of its own.
    names = {s.name for s in defs.get_repository_def().sensor_defs}
    assert "default_automation_condition_sensor" not in names


def test_the_change_window_sensor_watches_full_sync(defs):
    sensors = {sensor.name: sensor for sensor in defs.sensors}
    coverage = sensors["full_sync_covers_change_windows"]
    assert coverage.default_status == DefaultSensorStatus.RUNNING
    assert coverage.description
