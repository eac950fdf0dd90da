"""The dbt marts the profile API serves, built from the canonical tables."""

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AutomationCondition
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, dbt_assets
from sqlalchemy import Engine

from integration_pipelines.defs.marts.launcher import PARENT_PID_VARIABLE
from integration_pipelines.defs.marts.project import PartialParseCache, get_dbt_project, invocation_target_path
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


@contextmanager
def _dbt_environment(extra: Mapping[str, str]) -> Iterator[None]:
    """dbt reads its profile from its environment: this process's, when dbt runs inside it, or a
    copy dagster-dbt takes when it starts dbt. Set the variables for that moment only, then put the
    environment back."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


class DbtInProcessError(RuntimeError):
    """dbt, run inside the step's process, failed: its message names the failed nodes."""


class DbtStepInvocation:
    """A step's dbt invocation: a target directory of its own, seeded with the kept partial parse
    (so dbt does not parse the project again), dbt started with the profile's environment for that
    moment only, and once dbt succeeded the parse kept and the directory removed (a failed build
    keeps its dbt.log and run_results.json; its events are in the run's log)."""

    def __init__(self, warehouse: WarehouseResource, op_name: str, run_id: str):
        self._profile_env = dbt_environment(warehouse.resolved_url)
        self.target_path = invocation_target_path(get_dbt_project(), op_name, run_id)
        self._parses = PartialParseCache(get_dbt_project(), self._profile_env)
        self._parses.seed(self.target_path)

    def start(self, dbt: DbtCliResource, args: list[str], **kwargs: Any) -> DbtCliInvocation:
        with _dbt_environment({**self._profile_env, PARENT_PID_VARIABLE: str(os.getpid())}):
            return dbt.cli(args, target_path=self.target_path, **kwargs)

    def run_in_process(self, dbt: DbtCliResource, args: list[str]) -> list[str]:
        """Run dbt inside this process (dbt's `dbtRunner`), for a small build on the events' path:
        the run's process has already imported dbt with the code location, and a process of dbt's
        own would import it again (about 2 s, most of an incremental refresh). Raises when dbt fails;
        returns one line per node (name, status, seconds) for the run's log."""
        from dbt.cli.main import dbtRunner

        paths = ["--project-dir", dbt.project_dir, "--target-path", str(self.target_path)]
        if dbt.profiles_dir:
            paths += ["--profiles-dir", dbt.profiles_dir]
        if dbt.target:
            paths += ["--target", dbt.target]
        with _dbt_environment(self._profile_env):
            # dbt's own log goes to the invocation's directory, kept when dbt fails.
            outcome = dbtRunner().invoke([*args, *paths, "--log-path", str(self.target_path), "--quiet"])
        nodes = [
            f"{r.node.name}: {r.status} in {r.execution_time:.2f} s" + (f" ({r.message})" if r.message else "")
            for r in getattr(outcome.result, "results", None) or []
        ]
        if not outcome.success:
            failed = "; ".join(n for n in nodes if ": success" not in n) or str(outcome.exception)
            raise DbtInProcessError(f"dbt {args[0]} failed (its log: {self.target_path / 'dbt.log'}): {failed}")
        return nodes

    def succeeded(self) -> None:
        self._parses.keep(self.target_path)
        shutil.rmtree(self.target_path, ignore_errors=True)


@dbt_assets(
    manifest=get_dbt_project().manifest_path,
    project=get_dbt_project(),
    dagster_dbt_translator=WarehouseDbtTranslator(),
)
def dbt_marts(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    """The staging tables and the marts, built whole (and tested) from the warehouse the syncs
    wrote. A whole build leaves no student stale: it empties the mart refresh queue up to its start."""
    step = DbtStepInvocation(warehouse, context.op_execution_context.op.name, context.run.run_id)
    # A build of some of the models leaves the queue to a whole one: the others are still stale.
    claiming = nullcontext() if context.is_subset else claimed_refresh(warehouse.engine, context.run.run_id)
    with claiming:
        yield from step.start(dbt, ["build", "--full-refresh", *mapping_vars()], context=context).stream()
    step.succeeded()
