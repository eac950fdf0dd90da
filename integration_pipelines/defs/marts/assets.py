"""The dbt marts the profile API serves, built from the canonical tables."""

import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AutomationCondition
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.warehouse.dbt_env import dbt_environment

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_models"

# dbt is installed beside this interpreter, but a venv's bin/ is not on PATH unless activated
# (`.venv/bin/dagster dev`, cron, CI). dagster-dbt's project preparer looks dbt up on PATH.
if shutil.which("dbt") is None and (Path(sys.executable).parent / "dbt").exists():
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# `@dbt_assets` reads the manifest when the definitions load. `dagster dev` re-parses on each
# reload; everywhere else (validate, jobs, tests, CI) parse once if no manifest exists yet.
dbt_project.prepare_if_dev()
if not dbt_project.manifest_path.exists():
    dbt_project.preparer.prepare(dbt_project)


class WarehouseDbtTranslator(DagsterDbtTranslator):
    """dbt sources named `canonical` are the canonical assets themselves (`students`, ...)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source" and dbt_resource_props["source_name"] == "canonical":
            return AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "marts"

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> AutomationCondition | None:
        # Marts follow the canonical tables when the automation sensor is on.
        return AutomationCondition.eager()


@contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    """dbt reads its profile from the environment; set it for this invocation only."""
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


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=WarehouseDbtTranslator())
def dbt_marts(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    """Staging views and the marts, built in the warehouse the syncs wrote."""
    with _environment(dbt_environment(warehouse.resolved_url)):
        yield from dbt.cli(["build"], context=context).stream()
