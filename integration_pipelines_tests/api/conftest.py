"""A synced sandbox college behind the profile API, on each backend (one full_sync per module)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from integration_pipelines.api import create_app
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.api_keys import create_key
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.sandbox.college import College
from integration_pipelines.settings import Settings
from integration_pipelines_tests.conftest import BACKENDS, empty_warehouse_url
from integration_pipelines_tests.e2e import Pipeline, running_pipeline

STUDENTS = 120
SEED = 23


@dataclass
class SyncedCollege:
    college: College
    moodle_url: str
    warehouse_url: str
    engine: Engine
    client: TestClient
    admin_key: str
    pipeline: Pipeline
    full_sync_run_id: str

    def key(self, scope: str, student_key: str | None = None, tenant_id: str = "default") -> str:
        with begin_write(self.engine) as conn:
            return create_key(conn, tenant_id, scope, student_key=student_key)[1]  # type: ignore[arg-type]

    def get(self, path: str, key: str | None = None, **params):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.client.get(path, params=params, headers=headers)


@pytest.fixture(scope="module", params=BACKENDS)
def synced(request, tmp_path_factory) -> Iterator[SyncedCollege]:
    directory = tmp_path_factory.mktemp(f"profile-{request.param}")
    with (
        empty_warehouse_url(request.param, request, directory) as url,
        running_pipeline(url, directory, students=STUDENTS, seed=SEED) as pipeline,
    ):
        run = pipeline.run("full_sync")
        engine = create_warehouse_engine(url)
        settings = Settings(
            WAREHOUSE_URL=url, INTEGRATION_DATA_DIR=str(directory), MOODLE_URL=pipeline.sandbox.moodle_url
        )
        with TestClient(create_app(settings)) as client:
            synced = SyncedCollege(
                pipeline.sandbox.college, pipeline.sandbox.moodle_url, url, engine, client, "", pipeline, run.run_id
            )
            synced.admin_key = synced.key("admin")
            yield synced
        engine.dispose()
