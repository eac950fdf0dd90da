"""The demo: the whole data path, once, on the embedded default, against the sandbox.

1. start the sandbox (a generated college behind fake Moodle and Zoho APIs, on loopback);
2. run `full_sync` on the Dagster instance under DAGSTER_HOME, into the SQLite warehouse;
3. start the profile API and read one student's profile over HTTP;
4. print a summary, stop what it started.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout

import httpx
from sqlalchemy import select

from integration_pipelines.dagster_home import ensure_dagster_home
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.schema import students as students_table
from integration_pipelines.settings import get_settings


def run_demo(*, students: int, seed: int, echo: Callable[[str], None] = print) -> dict:
    from dagster import BetaWarning, DagsterInstance

    # BackfillPolicy is marked beta in Dagster 1.13; the demo's output is for people, not for that.
    warnings.filterwarnings("ignore", category=BetaWarning)

    from integration_pipelines.sandbox import SandboxConfig, run_sandbox

    settings = get_settings()
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(settings.dagster_home))
    echo(f"Data directory: {settings.data_dir}")
    with run_sandbox(SandboxConfig(students=students, seed=seed)) as sandbox:
        echo(f"Sandbox college ({students} students, seed {seed}) at {sandbox.base_url}")
        # Point the resources at the sandbox. Its credentials are fake and public by design.
        os.environ.update(sandbox.client_environment())
        from integration_pipelines.definitions import defs

        log_path = settings.data_dir / "demo-full_sync.log"
        echo(f"Running full_sync (log: {log_path}) ...")
        started = time.monotonic()
        # The run's events are in the Dagster UI (`make dev`); the console gets warnings only, and
        # dbt's own output, which dagster-dbt echoes to stdout, goes to the log file.
        with DagsterInstance.get() as instance, open(log_path, "w") as log, redirect_stdout(log):
            result = defs.resolve_job_def("full_sync").execute_in_process(
                instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
            )
        if not result.success:
            raise RuntimeError(f"full_sync failed (run {result.run_id}); see `dagster dev` for the logs")
        synced = _materialization_metadata(result, "students")
        echo(f"full_sync succeeded in {time.monotonic() - started:.1f}s (run {result.run_id})")

        engine = create_warehouse_engine(settings.warehouse_url)
        with engine.connect() as conn:
            moodle_user_id = conn.execute(
                select(students_table.c.moodle_user_id)
                .where(students_table.c.identity_match.is_not(None), students_table.c.deleted_at.is_(None))
                .order_by(students_table.c.moodle_user_id)
                .limit(1)
            ).scalar_one()
        engine.dispose()

        from integration_pipelines.api import create_app

        with serve_in_thread(create_app(settings)) as api_url:
            response = httpx.get(f"{api_url}/v1/students/profile", params={"moodle_user_id": moodle_user_id})
            response.raise_for_status()
            profile = response.json()

    echo("")
    unmatched = synced.get("zoho_only", 0) + synced.get("moodle_only", 0)
    echo(
        f"Students synced: {synced.get('rows_read')} "
        f"(inserted {synced.get('inserted')}, updated {synced.get('updated')}, "
        f"unchanged {synced.get('unchanged')}; linked by crm field {synced.get('matched_by_crm_field')}, "
        f"idnumber {synced.get('matched_by_idnumber')}, email {synced.get('matched_by_email')}; "
        f"unmatched {unmatched})"
    )
    echo(f"GET /v1/students/profile?moodle_user_id={moodle_user_id}")
    echo(json.dumps(profile, indent=2))
    return {"students": synced, "profile": profile}


def _materialization_metadata(result, asset_key: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset_key:
            return {k: v.value for k, v in materialization.metadata.items()}
    return {}
