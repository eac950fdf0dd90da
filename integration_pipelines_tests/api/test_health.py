"""`GET /v1/health` says what is true and creates nothing (both backends where a database applies)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from integration_pipelines.api import create_app
from integration_pipelines.settings import Settings


def _client(url: str, directory) -> TestClient:
    return TestClient(create_app(Settings(WAREHOUSE_URL=url, INTEGRATION_DATA_DIR=str(directory))))


def test_a_fresh_data_directory_is_reported_missing_and_left_empty(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    with _client(url, tmp_path) as client:
        answer = client.get("/v1/health")
        assert client.get("/v1/students/search", params={"q": "a"}).status_code == 401
        assert (
            client.get(
                "/v1/students/profile",
                params={"moodle_user_id": 1},
                headers={"Authorization": "Bearer ipk_000000000000_secret"},
            ).status_code
            == 503
        )
    assert answer.status_code == 503
    body = answer.json()
    assert body["reachable"] is False and body["schema_ready"] is False and body["status"] == "degraded"
    assert list(tmp_path.iterdir()) == []  # no database file, no lock file, nothing


def test_a_database_without_schema_is_reachable_and_says_so(warehouse_url, tmp_path):
    if warehouse_url.startswith("sqlite"):
        create_engine(warehouse_url).connect().close()  # an empty database file
    with _client(warehouse_url, tmp_path) as client:
        answer = client.get("/v1/health")
    assert answer.status_code == 503
    body = answer.json()
    assert body["reachable"] is True and body["schema_ready"] is False
    assert [m["exists"] for m in body["marts"]] == [False] * 5


def test_a_migrated_warehouse_without_marts_is_degraded_until_they_are_built(warehouse, warehouse_url, tmp_path):
    with _client(warehouse_url, tmp_path) as client:
        before = client.get("/v1/health").json()
        assert before["schema_ready"] is True and before["status"] == "degraded"
        assert before["last_full_sync"] is None and before["event_backlog"] == 0
        with warehouse.begin() as conn:
            for mart in (
                "student_profile",
                "student_academics",
                "student_finance",
                "student_classes",
                "student_grades",
            ):
                conn.execute(text(f"CREATE TABLE {mart} (built_at TIMESTAMP)"))
                conn.execute(text(f"INSERT INTO {mart} VALUES ('2026-12-01 02:00:00')"))
        after = client.get("/v1/health")
    assert after.status_code == 200, after.text
    assert after.json()["status"] == "ok"
    assert all(m["built_at"].startswith("2026-12-01T02:00:00") for m in after.json()["marts"])


def test_an_unreachable_postgresql_is_reported(tmp_path):
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    with _client(url, tmp_path) as client:
        answer = client.get("/v1/health")
    assert answer.status_code == 503
    assert answer.json()["reachable"] is False
    assert "secret" not in answer.text


def test_cors_allows_only_the_configured_dashboard_origin(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    settings = Settings(
        WAREHOUSE_URL=url, INTEGRATION_DATA_DIR=str(tmp_path), API_CORS_ORIGINS="https://dash.example.ac.uk"
    )
    with TestClient(create_app(settings)) as client:
        allowed = client.get("/v1/health", headers={"Origin": "https://dash.example.ac.uk"})
        other = client.get("/v1/health", headers={"Origin": "https://evil.example"})
        preflight = client.options(
            "/v1/students/profile",
            headers={
                "Origin": "https://dash.example.ac.uk",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example.ac.uk"
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200 and "authorization" in preflight.headers["access-control-allow-headers"].lower()
    with _client(url, tmp_path) as client:  # no origins configured: no CORS headers at all
        assert (
            "access-control-allow-origin"
            not in client.get("/v1/health", headers={"Origin": "https://dash.example.ac.uk"}).headers
        )
