"""full_sync end to end: sandbox over HTTP → raw → canonical → dbt marts → API, on both backends."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from integration_pipelines.api import create_app
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.api_keys import create_key
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.schema import students
from integration_pipelines.settings import get_settings
from integration_pipelines_tests.conftest import BACKENDS, empty_warehouse_url
from integration_pipelines_tests.e2e import materializations, running_pipeline

pytestmark = pytest.mark.slow

STUDENT_COLUMNS = (
    "zoho_id",
    "moodle_user_id",
    "student_number",
    "first_name",
    "last_name",
    "email",
    "program_zoho_id",
    "status",
)


@pytest.fixture(scope="module", params=BACKENDS)
def synced(request, tmp_path_factory):
    """A sandbox college synced twice with full_sync into an empty warehouse."""
    directory = tmp_path_factory.mktemp(request.param)
    with (
        empty_warehouse_url(request.param, request, directory) as url,
        running_pipeline(url, directory, students=60) as pipeline,
    ):
        first = materializations(pipeline.run("full_sync"))
        second = materializations(pipeline.run("full_sync"))
        engine = create_warehouse_engine(url)
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(students)).mappings()]
        with begin_write(engine) as conn:
            key = create_key(conn, "default", "admin")[1]
        engine.dispose()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("WAREHOUSE_URL", url)
            with TestClient(create_app(get_settings()), headers={"Authorization": f"Bearer {key}"}) as api:
                yield {"pipeline": pipeline, "first": first, "second": second, "rows": rows, "api": api}


def test_full_sync_materializes_every_asset(synced):
    assert set(synced["first"]) >= {
        "raw_moodle_courses",
        "raw_moodle_enrolments",
        "raw_moodle_users",
        "raw_zoho_students",
        "students",
        "stg_students",
        "student_profile",
    }
    assert synced["first"]["students"]["inserted"] > 0
    assert synced["first"]["raw_zoho_students"]["requests"] > 0


def test_canonical_students_equal_the_generators_truth(synced):
    college = synced["pipeline"].sandbox.college
    truth = {
        (f"zoho:{t['zoho_id']}" if t["zoho_id"] else f"moodle:{t['moodle_user_id']}"): t
        for t in college.iter_truth("students")
        if not t["deleted"]
    }
    live = {r["student_key"]: r for r in synced["rows"] if r["deleted_at"] is None}
    assert sorted(live) == sorted(truth)
    for key, expected in truth.items():
        assert {c: live[key][c] for c in STUDENT_COLUMNS} == {c: expected[c] for c in STUDENT_COLUMNS}, key


def test_unmatched_students_are_kept_and_counted(synced):
    first = synced["first"]["students"]
    unmatched = [r for r in synced["rows"] if r["deleted_at"] is None and r["identity_match"] is None]
    assert unmatched, "the sandbox college has students known to one system only"
    assert first["zoho_only"] + first["moodle_only"] == len(unmatched)


def test_second_full_sync_writes_nothing(synced):
    for asset, metadata in synced["second"].items():
        if "inserted" in metadata:
            assert (metadata["inserted"], metadata["updated"], metadata["deleted"]) == (0, 0, 0), asset
    assert synced["second"]["students"]["unchanged"] == synced["first"]["students"]["inserted"]


def test_profile_api_answers_from_the_mart(synced):
    api = synced["api"]
    linked = next(r for r in synced["rows"] if r["identity_match"] == "crm_field" and r["deleted_at"] is None)
    response = api.get("/v1/students/profile", params={"moodle_user_id": linked["moodle_user_id"]})
    assert response.status_code == 200
    body = response.json()["student"]
    assert body["student_key"] == linked["student_key"]
    assert body["email"] == linked["email"]
    assert body["full_name"] == f"{linked['first_name']} {linked['last_name']}"
    # Timestamps read the same on both backends: ISO 8601 in UTC.
    assert body["updated_at"].endswith("Z")


def test_profile_api_unknown_student_is_a_404_problem(synced):
    response = synced["api"].get("/v1/students/profile", params={"moodle_user_id": 987654321})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


@pytest.mark.parametrize("params", [{"moodle_user_id": "abc"}, {"moodle_user_id": "0"}, {}])
def test_profile_api_bad_parameter_is_a_422_naming_it(synced, params):
    response = synced["api"].get("/v1/students/profile", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert "moodle_user_id" in body["detail"]
    assert body["parameter"].startswith("moodle_user_id")


def test_health_reports_the_warehouse_and_the_last_sync(synced):
    response = synced["api"].get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["reachable"] is True and body["schema_ready"] is True
    assert body["last_sync_at"] is not None


def test_health_is_503_when_the_warehouse_is_unreachable(monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://nobody:wrong@127.0.0.1:1/none")
    with TestClient(create_app(get_settings())) as api:
        response = api.get("/v1/health")
    assert response.status_code == 503
    assert response.json()["reachable"] is False
    assert "wrong" not in response.text


def test_the_sandbox_is_reached_over_real_http(synced):
    sandbox = synced["pipeline"].sandbox
    assert sandbox.base_url.startswith("http://127.0.0.1:")
    assert (
        httpx.get(
            f"{sandbox.moodle_url}/webservice/rest/server.php",
            params={"wsfunction": "core_webservice_get_site_info", "moodlewsrestformat": "json"},
        ).json()["errorcode"]
        == "invalidtoken"
    )
