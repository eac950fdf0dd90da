"""The events jobs: `process_events` (a claimed batch of inbox files, or the events due for
another attempt), `requeue_events` (dead events back in line) and `events_retention`.

The logic is in `lib/events/`; these ops build it from the run's resources and report what it
did. `process_events` ends by rebuilding the marts of the students its events changed (dbt's
incremental models over the mart refresh queue), so a change reaches the profile API without a sync.
"""

import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import (
    AssetKey,
    AssetMaterialization,
    Config,
    In,
    OpExecutionContext,
    Out,
    Output,
    in_process_executor,
    job,
    op,
)
from pydantic import Field
from sqlalchemy import inspect

from integration_pipelines.dagster_home import area_tag
from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.marts.assets import (
    DbtStepInvocation,
    claimed_refresh,
    mapping_vars,
)
from integration_pipelines.defs.marts.project import get_dbt_project
from integration_pipelines.defs.moodle.resources import MoodleResource
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.events import log
from integration_pipelines.lib.events.inbox import EventsInbox
from integration_pipelines.lib.events.process import BatchResult, EventProcessor, RetryPolicy
from integration_pipelines.lib.events.retention import remove_expired
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.settings import get_settings

# The events' jobs run their steps in the run's own process on every backend: their steps follow
# one another, and a step process of its own (PostgreSQL's executor) would first import the code
# location again, seconds on the path from an event to the profile.
EVENTS_JOB_OPTIONS = {"tags": area_tag("events"), "executor_def": in_process_executor}


def events_inbox() -> EventsInbox:
    settings = get_settings()
    assert settings.events_inbox_dir is not None  # derived by the settings
    return EventsInbox.at(settings.events_inbox_dir)


def event_processor(warehouse: WarehouseResource, moodle: MoodleResource, zoho: ZohoResource) -> EventProcessor:
    settings = get_settings()
    return EventProcessor(
        warehouse.engine,
        events_inbox(),
        FIELD_MAPPING,
        moodle_client=moodle.client_factory(),
        zoho_client=zoho.client_factory(),
        retry=RetryPolicy(settings.events_max_attempts, settings.events_retry_base_seconds),
    )


class EventBatchConfig(Config):
    batch: str | None = Field(
        default=None, description="The claimed batch (`claimed/<batch>/`) to apply; unset: the events due for a retry."
    )
    retry_limit: int = Field(default=2_000, description="Events a retry pass takes at most.")
    stale_pending_minutes: float = Field(
        default=30.0, description="A retry pass also takes events left pending this long by a run that died."
    )


@op(out={"tables": Out(list)}, tags={"kind": "events"})
def apply_event_batch(
    context: OpExecutionContext,
    config: EventBatchConfig,
    warehouse: WarehouseResource,
    moodle: MoodleResource,
    zoho: ZohoResource,
):
    """Apply one batch of events (or the retries due): raw layer, then the canonical rows they reach."""
    processor = event_processor(warehouse, moodle, zoho)
    if config.batch:
        result: BatchResult = processor.process_batch(config.batch)
    else:
        result = processor.process_due(
            config.retry_limit, stale_pending_after=timedelta(minutes=config.stale_pending_minutes)
        )
    context.add_output_metadata(result.as_metadata(), output_name="tables")
    for table in sorted(result.tables_written):
        # The canonical table changed outside its own step: say so in its history.
        yield AssetMaterialization(
            asset_key=AssetKey(table),
            description="Changed by webhook events (process_events).",
            metadata={"rows_written": result.canonical_written[table], "run_batch": config.batch or "retries"},
        )
    yield Output(sorted(result.tables_written), output_name="tables")


@functools.cache
def _manifest(manifest_path: str) -> dict:
    return json.loads(Path(manifest_path).read_text())


def dbt_models(manifest_path: str) -> frozenset[str]:
    """The tables the dbt project builds (its models)."""
    nodes = _manifest(manifest_path).get("nodes", {}).values()
    return frozenset(n["name"] for n in nodes if n.get("resource_type") == "model")


@op(ins={"tables": In(list)}, tags={"kind": "dbt"})
def refresh_marts(context: OpExecutionContext, tables: list, warehouse: WarehouseResource):
    """Rebuild the marts of the students the events changed (the mart refresh queue's): dbt's
    incremental models, which delete and insert those students' rows. A change that reaches every
    student (a class, a unit, a programme), or a warehouse whose models were never all built, gets
    a full build, as a sync's."""
    built = inspect(warehouse.engine)
    complete = all(built.has_table(model) for model in dbt_models(str(get_dbt_project().manifest_path)))
    with claimed_refresh(warehouse.engine, context.run.run_id) as claimed:
        if complete and not claimed.everything and not claimed.students:
            context.log.info("No student's marts are stale: nothing to rebuild.")
            return
        if complete and not claimed.everything:
            # `run`, not `build`: the marts' tests read whole tables, and the syncs' builds run them.
            args = ["run", "--select", "stg_students+", *mapping_vars()]
        else:
            args = ["build", "--full-refresh", *mapping_vars()]
        DbtStepInvocation(warehouse, context.op.name, context.run.run_id).run(args, context.log).raise_on_failure()
    context.log.info(
        f"Rebuilt the marts of {'every student' if args[0] == 'build' else f'{claimed.students} students'} "
        f"(the events wrote {', '.join(tables) or 'nothing'})."
    )


@job(
    description="Apply webhook events: a batch of inbox files claimed by the events_inbox sensor (config "
    "`batch`), or the failed events due for another attempt (no batch); then rebuild the marts of the "
    "students they changed.",
    **EVENTS_JOB_OPTIONS,
)
def process_events():
    refresh_marts(apply_event_batch())


class RequeueConfig(Config):
    event_ids: list[str] = Field(default_factory=list, description="These events (dead or failed); or filters:")
    status: str = Field(default="dead", description="Requeue events of this status (dead or failed).")
    event_type: str | None = Field(default=None, description="Only events of this type, e.g. submission_graded.")
    received_since: str | None = Field(default=None, description="Only events received at or after this (ISO 8601).")
    received_until: str | None = Field(default=None, description="Only events received before this (ISO 8601).")


@op(tags={"kind": "events"})
def requeue_dead_events(context: OpExecutionContext, config: RequeueConfig, warehouse: WarehouseResource) -> int:
    """Give dead (or failed) events a fresh count of attempts, due now: the next retry pass applies them."""
    with begin_write(warehouse.engine) as conn:
        count = log.requeue(
            conn,
            datetime.now(UTC),
            tenant_id=None,  # the deployment's engineer: every tenant's events, as process_events applies them
            event_ids=config.event_ids,
            statuses_=[config.status],
            event_type=config.event_type,
            since=_instant(config.received_since),
            until=_instant(config.received_until),
        )
    context.add_output_metadata({"requeued": count})
    return count


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@job(
    description="Requeue dead events (by ids or filters); the events_retry schedule applies them.",
    **EVENTS_JOB_OPTIONS,
)
def requeue_events():
    requeue_dead_events()


class RetentionConfig(Config):
    days: float | None = Field(default=None, description="Keep this many days. Unset: EVENTS_RETENTION_DAYS (90).")


@op(tags={"kind": "events"})
def remove_expired_events(context: OpExecutionContext, config: RetentionConfig, warehouse: WarehouseResource) -> None:
    """Remove processed and ignored events older than the retention, with their files; never a
    pending, failed or dead one."""
    days = config.days if config.days is not None else get_settings().events_retention_days
    removed = remove_expired(warehouse.engine, events_inbox(), datetime.now(UTC) - timedelta(days=days))
    context.add_output_metadata(removed)


@job(
    description="Remove processed and ignored events older than the retention (log rows, archived files).",
    **EVENTS_JOB_OPTIONS,
)
def events_retention():
    remove_expired_events()
