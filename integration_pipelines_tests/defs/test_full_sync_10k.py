"""The acceptance-size comparison: full_sync of a 10,000-student college equals the truth, on both backends."""

from __future__ import annotations

import os

import pytest

from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.sandbox.college import TABLES
from integration_pipelines_tests.conftest import BACKENDS, empty_warehouse_url
from integration_pipelines_tests.e2e import running_pipeline
from integration_pipelines_tests.truth import differences, unobservable_users

pytestmark = pytest.mark.slow

STUDENTS = int(os.environ.get("E2E_LARGE_STUDENTS", "10000"))


@pytest.fixture(scope="module", params=BACKENDS)
def large_college(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"large-{request.param}")
    with (
        empty_warehouse_url(request.param, request, directory) as url,
        running_pipeline(url, directory, students=STUDENTS, seed=42) as pipeline,
    ):
        pipeline.run("full_sync", marts=False)
        engine = create_warehouse_engine(url)
        hidden = unobservable_users(pipeline.sandbox.college, engine)
        yield {t: differences(engine, t, pipeline.sandbox.college.iter_truth(t), unobservable=hidden) for t in TABLES}
        engine.dispose()


@pytest.mark.parametrize("table", TABLES)
def test_every_canonical_table_equals_the_truth(large_college, table):
    assert large_college[table] == []
