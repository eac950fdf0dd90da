"""Helpers for tests that run whole Dagster jobs against the sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from dagster import DagsterInstance, ExecuteInProcessResult

from integration_pipelines.sandbox.config import SandboxConfig
from integration_pipelines.sandbox.server import Sandbox, run_sandbox


@dataclass
class Pipeline:
    """A sandbox college and a warehouse, with the environment pointing the jobs at both."""

    sandbox: Sandbox
    warehouse_url: str
    instance: DagsterInstance

    def run(
        self, job_name: str, *, partition_key: str | None = None, tags: dict | None = None, marts: bool = True
    ) -> ExecuteInProcessResult:
        """Run a job in process. `marts=False` leaves out the dbt marts (seconds per run), for
        tests that read the canonical tables only."""
        from integration_pipelines.definitions import defs
        from integration_pipelines.defs.marts.assets import dbt_marts

        job = defs.resolve_job_def(job_name)
        selection = None
        if not marts:
            selection = [key for key in job.asset_layer.selected_asset_keys if key not in dbt_marts.keys]
        result = job.execute_in_process(
            instance=self.instance,
            partition_key=partition_key,
            tags=tags,
            raise_on_error=False,
            asset_selection=selection,
        )
        if not result.success:
            failures = [e.message for e in result.all_events if e.is_failure]
            pytest.fail(f"{job_name} failed: {failures}")
        return result

    def run_range(self, job_name: str, first: str, last: str, *, marts: bool = True) -> ExecuteInProcessResult:
        """One run over a range of partitions, as a single-run backfill launches it."""
        return self.run(
            job_name,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            marts=marts,
        )


@contextmanager
def running_pipeline(warehouse_url: str, tmp_path, *, students: int, seed: int = 11) -> Iterator[Pipeline]:
    with pytest.MonkeyPatch.context() as env, run_sandbox(SandboxConfig(students=students, seed=seed)) as sandbox:
        for name, value in sandbox.client_environment().items():
            env.setenv(name, value)
        env.setenv("WAREHOUSE_URL", warehouse_url)
        env.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
        env.delenv("TENANT_ID", raising=False)
        with DagsterInstance.ephemeral() as instance:
            yield Pipeline(sandbox, warehouse_url, instance)


def materializations(result: ExecuteInProcessResult) -> dict[str, dict]:
    """Metadata of each materialization in a run, by asset key."""
    out = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        out[materialization.asset_key.to_user_string()] = {k: v.value for k, v in materialization.metadata.items()}
    return out
