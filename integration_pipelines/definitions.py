"""The Dagster code location `integration_pipelines`: one `Definitions` for the whole project.

Secrets reach resources only as `EnvVar`s, so Dagster stores the variable's name, never its value,
in run configuration. Locations (warehouse URL, Moodle URL, Zoho domains) are read from the
same environment through the project settings when a run starts, with the embedded SQLite
warehouse under the data directory as the default.
"""

from __future__ import annotations

from dagster import Definitions, EnvVar, ExecutorDefinition, in_process_executor, multiprocess_executor

from integration_pipelines.defs.canonical.assets import CANONICAL_ASSETS
from integration_pipelines.defs.canonical.checks import CANONICAL_CHECKS
from integration_pipelines.defs.events.jobs import events_retention, process_events, requeue_events
from integration_pipelines.defs.events.schedules import events_retention_daily, events_retry
from integration_pipelines.defs.events.sensors import events_inbox_sensor
from integration_pipelines.defs.freshness import automation_sensor, sync_freshness_policy, with_freshness
from integration_pipelines.defs.jobs import full_sync, incremental_sync
from integration_pipelines.defs.marts.assets import dbt_marts
from integration_pipelines.defs.moodle.assets import moodle_grade_changes, moodle_snapshot
from integration_pipelines.defs.moodle.resources import MoodleResource
from integration_pipelines.defs.outbound.assets import OUTBOUND_ASSETS
from integration_pipelines.defs.outbound.jobs import grade_writeback, resolve_grade_conflicts
from integration_pipelines.defs.outbound.schedules import grade_writeback_retries
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.schedules import full_sync_nightly, incremental_sync_hourly
from integration_pipelines.defs.sync.sensors import (
    full_sync_covers_change_windows,
    sync_history_failure,
    sync_history_success,
)
from integration_pipelines.defs.zoho.assets import zoho_changes, zoho_snapshot
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.warehouse.engine import SCHEMA_CHECK_MODULES
from integration_pipelines.settings import get_settings


def run_executor(warehouse_backend: str) -> ExecutorDefinition:
    """How a run executes its steps, chosen by the warehouse it writes.

    SQLite has one writer, so a run's steps take turns in one process, which also spares each
    step the seconds it takes a new process to import the code location. On PostgreSQL steps run
    side by side (the Moodle and Zoho snapshots, then the canonical tables), each in a process
    forked from a server that has already imported the code location, and a step starts as soon
    as the assets it reads are materialized rather than when the whole upstream step ends. At
    scale, configure Dagster's own run launchers and executors instead.
    """
    if warehouse_backend == "sqlite":
        return in_process_executor
    return multiprocess_executor.configured(
        {
            # Dagster preloads the job's module only for some launch paths; name it for all of them,
            # with what each step's warehouse resource imports to check the schema (alembic, which
            # the warehouse modules import lazily), so that each step's process starts warm.
            "start_method": {"forkserver": {"preload_modules": [__name__, *SCHEMA_CHECK_MODULES]}},
            "step_dependency_config": {"require_upstream_step_success": False},
        }
    )


_settings = get_settings()

defs = Definitions(
    # The canonical tables and the marts carry the freshness policy, by group.
    assets=with_freshness(
        [
            moodle_snapshot,
            moodle_grade_changes,
            zoho_snapshot,
            zoho_changes,
            *CANONICAL_ASSETS,
            dbt_marts,
            *OUTBOUND_ASSETS,
        ],
        sync_freshness_policy(_settings),
    ),
    asset_checks=CANONICAL_CHECKS,
    jobs=[
        full_sync,
        incremental_sync,
        process_events,
        requeue_events,
        events_retention,
        grade_writeback,
        resolve_grade_conflicts,
    ],
    schedules=[
        full_sync_nightly,
        incremental_sync_hourly,
        events_retry,
        events_retention_daily,
        grade_writeback_retries,
    ],
    sensors=[
        automation_sensor,
        full_sync_covers_change_windows,
        sync_history_success,
        sync_history_failure,
        events_inbox_sensor,
    ],
    executor=run_executor(_settings.warehouse_backend),
    resources={
        "warehouse": WarehouseResource(),
        "moodle": MoodleResource(token=EnvVar("MOODLE_TOKEN")),
        "zoho": ZohoResource(
            client_id=EnvVar("ZOHO_CLIENT_ID"),
            client_secret=EnvVar("ZOHO_CLIENT_SECRET"),
            refresh_token=EnvVar("ZOHO_REFRESH_TOKEN"),
        ),
    },
)
