"""The dbt marts the profile API serves, built from the canonical tables."""

import json
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AutomationCondition, DagsterLogManager
from dagster_dbt import DagsterDbtTranslator, dbt_assets
from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from sqlalchemy import Engine

from integration_pipelines.defs.marts.project import (
    DbtOutcome,
    PartialParseCache,
    get_dbt_project,
    invocation_target_path,
    run_dbt,
)
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.warehouse.dbt_env import dbt_environment
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.mart_refresh import Claim, claim, release


class WarehouseDbtTranslator(DagsterDbtTranslator):
    """dbt sources named `canonical` are the canonical assets themselves (`students`, ...), and
    those named `raw` the snapshot assets that land them (`raw_moodle_users`, ...)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        # Sources `raw` (raw_moodle_users, ...: views of raw_records) are the snapshot assets.
        if dbt_resource_props["resource_type"] == "source" and dbt_resource_props["source_name"] in (
            "canonical",
            "raw",
        ):
            return AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "marts"

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> AutomationCondition | None:
        # Marts follow the canonical tables when the automation sensor is on.
        return AutomationCondition.eager()


TRANSLATOR = WarehouseDbtTranslator()


@contextmanager
def claimed_refresh(engine: Engine, claim_id: str) -> Iterator[Claim]:
    """Claim the mart refresh queue for one build, and delete the claim when the build succeeded
    (an exception leaves it for the next build to take over)."""
    with begin_write(engine) as conn:
        claimed = claim(conn, claim_id)
    yield claimed
    with begin_write(engine) as conn:
        release(conn, claim_id)


def mapping_vars() -> list[str]:
    """`--vars` with the mapping's BTEC points per credit, when they differ from the project's
    defaults (the packaged mapping's): passing vars that never change would cost a re-parse."""
    from integration_pipelines.defs.mapping import FIELD_MAPPING
    from integration_pipelines.lib.mapping import DEFAULT_POINTS_PER_CREDIT

    points = FIELD_MAPPING.btec.points_per_credit
    if points == DEFAULT_POINTS_PER_CREDIT:
        return []
    return ["--vars", json.dumps({"btec_points_per_credit": points.model_dump()})]


class DbtStepInvocation:
    """A step's dbt invocation, inside the step's process: a target directory of its own, seeded
    with the kept partial parse (so dbt does not parse the project again), and once dbt succeeded
    the parse kept and the directory removed (a failed build keeps its dbt.log and
    run_results.json)."""

    def __init__(self, warehouse: WarehouseResource, op_name: str, run_id: str):
        self._profile_env = dbt_environment(warehouse.resolved_url)
        self.target_path = invocation_target_path(get_dbt_project(), op_name, run_id)
        self._parses = PartialParseCache(get_dbt_project(), self._profile_env)
        self._parses.seed(self.target_path)

    def run(self, args: list[str], log: DagsterLogManager) -> DbtOutcome:
        """Run dbt, and write to the step's log a line per node, and a warning when dbt could not
        reuse its last parse."""
        outcome = run_dbt(get_dbt_project(), args, self.target_path, self._profile_env)
        if outcome.reparsed:
            log.warning("dbt could not reuse its last parse of the project, and parsed it whole.")
        for node in outcome.nodes:
            log.info(node)
        if outcome.error is None:
            self._parses.keep(self.target_path)
            shutil.rmtree(self.target_path, ignore_errors=True)
        return outcome


@dbt_assets(
    manifest=get_dbt_project().manifest_path,
    project=get_dbt_project(),
    dagster_dbt_translator=TRANSLATOR,
)
def dbt_marts(context: AssetExecutionContext, warehouse: WarehouseResource):
    """The staging tables and the marts, built whole (and tested) from the warehouse the syncs
    wrote. A whole build leaves no student stale: it empties the mart refresh queue up to its start."""
    # The nodes this step was asked for (all, unless a subset was selected) and how their results
    # become Dagster events: dagster-dbt's own, as its `DbtCliResource.cli` computes them. Given the
    # step's context it reads the manifest and translator from this asset definition.
    selected = get_updated_cli_invocation_params_for_context(
        context=context, manifest={}, dagster_dbt_translator=TRANSLATOR
    )
    args = ["build", "--full-refresh", *mapping_vars(), *selected.selection_args]
    if selected.indirect_selection:
        args += ["--indirect-selection", selected.indirect_selection]
    step = DbtStepInvocation(warehouse, context.op_execution_context.op.name, context.run.run_id)
    # A build of some of the models leaves the queue to a whole one: the others are still stale.
    claiming = nullcontext() if context.is_subset else claimed_refresh(warehouse.engine, context.run.run_id)
    with claiming:
        outcome = step.run(args, context.log)
        # What dbt built before it failed, if it did, is materialized all the same.
        for result in outcome.results:
            yield from DbtCoreCliEventMessage(raw_event=result, event_history_metadata={}).to_default_asset_events(
                manifest=selected.manifest,
                dagster_dbt_translator=selected.dagster_dbt_translator,
                context=context,
                target_path=step.target_path,
                project=selected.dbt_project,
            )
        outcome.raise_on_failure()
