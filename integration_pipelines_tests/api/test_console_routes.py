"""The routes the pages need beyond the data routes, over real HTTP on both backends:
`GET /v1/session`, `GET /v1/admin/config`, the Moodle and Zoho connection tests against the
sandbox, the sync launcher, and the pages themselves (served from the package, no data in them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from integration_pipelines.api import create_app
from integration_pipelines.api.dagster_runs import DagsterLaunchError, launch_sync
from integration_pipelines.dagster_home import ensure_dagster_home
from integration_pipelines.lib.serving import bind, serve_in_thread
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.api_keys import create_key
from integration_pipelines.lib.warehouse.schema import students
from integration_pipelines.sandbox.config import SandboxConfig
from integration_pipelines.sandbox.server import run_sandbox
from integration_pipelines.settings import Settings

STUDENT = "zoho:5843104000000400040"
PASSWORD = "warehouse-password-never-shown"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def console(warehouse_url, tmp_path, monkeypatch):
    with run_sandbox(SandboxConfig(students=5, seed=3)) as sandbox:
        for name, value in sandbox.client_environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
        monkeypatch.setenv("EVENTS_WEBHOOK_SECRETS", '{"default": "events-webhook-secret"}')
        monkeypatch.delenv("DAGSTER_WEBSERVER_URL", raising=False)
        engine = create_warehouse_engine(warehouse_url)
        ensure_schema(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(students).values(
                    tenant_id="default",
                    student_key=STUDENT,
                    zoho_id=STUDENT.split(":")[1],
                    student_number="S1",
                    email="s1@example.ac.uk",
                    fingerprint="f",
                    source_modified_at=NOW,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            _, admin = create_key(conn, "default", "admin")
            _, student = create_key(conn, "default", "student", student_key=STUDENT)
        engine.dispose()
        with serve_in_thread(create_app(Settings()), name="console-api") as url:
            yield url, admin, student, sandbox


def get(url, path, key, **kwargs):
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, **kwargs)


def post(url, path, key):
    return httpx.post(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_the_session_names_the_keys_scope_and_its_students_lookup(console):
    url, admin, student, _ = console
    mine = get(url, "/v1/session", student).json()
    assert mine["scope"] == "student" and mine["student_key"] == STUDENT
    assert mine["student_lookup"] == {"zoho_id": STUDENT.split(":")[1]}
    assert get(url, "/v1/session", admin).json()["student_lookup"] is None
    assert httpx.get(f"{url}/v1/session").status_code == 401


def test_the_configuration_masks_every_secret_and_lists_the_mapping(console):
    url, admin, student, sandbox = console
    response = get(url, "/v1/admin/config", admin)
    assert response.status_code == 200
    settings = {s["name"]: s for s in response.json()["settings"]}
    for name in ("moodle_token", "zoho_client_secret", "zoho_refresh_token"):
        assert settings[name] == {**settings[name], "value": "********", "secret": True}
    # Which tenants have a webhook secret is configuration; the secrets are not.
    assert settings["events_webhook_secrets"]["value"] == {"default": "********"}
    assert settings["moodle_url"]["value"] == sandbox.moodle_url
    for secret in (sandbox.config.moodle_token, sandbox.config.zoho_client_secret, "events-webhook-secret"):
        assert secret not in response.text
    mapped = {(c["module"], c["source_field"]): c for c in response.json()["field_mapping"]["columns"]}
    assert mapped[("Payments", "Amount")]["canonical_column"] == "amount"
    assert mapped[("Payments", "Amount")]["transform"] == "decimal"
    assert get(url, "/v1/admin/config", student).status_code == 403


def test_a_warehouse_password_never_leaves_the_configuration(console, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", f"postgresql+psycopg://user:{PASSWORD}@db.invalid:5432/warehouse")
    from integration_pipelines.api.console import masked_settings

    shown = {s.name: s.value for s in masked_settings(Settings())}
    assert PASSWORD not in shown["warehouse_url"] and "***" in shown["warehouse_url"]


def test_the_connection_tests_report_what_each_source_said(console):
    url, admin, student, sandbox = console
    moodle = post(url, "/v1/admin/connections/moodle/test", admin).json()
    assert moodle["ok"] is True and moodle["error"] is None
    assert moodle["url"].startswith(sandbox.moodle_url) and moodle["reached"]["functions"] > 0
    zoho = post(url, "/v1/admin/connections/zoho/test", admin).json()
    assert zoho["ok"] is True and zoho["reached"]["edition"]
    assert post(url, "/v1/admin/connections/moodle/test", student).status_code == 403
    assert post(url, "/v1/admin/connections/canvas/test", admin).status_code == 422


def test_a_wrong_token_is_reported_without_the_token(warehouse_url, tmp_path, monkeypatch):
    with run_sandbox(SandboxConfig(students=3, seed=3)) as sandbox:
        for name, value in sandbox.client_environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("MOODLE_TOKEN", "wrong-moodle-token-0123")
        monkeypatch.setenv("ZOHO_REFRESH_TOKEN", "1000.wrong-refresh-token-0123")
        monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
        engine = create_warehouse_engine(warehouse_url)
        ensure_schema(engine)
        with engine.begin() as conn:
            _, admin = create_key(conn, "default", "admin")
        engine.dispose()
        with serve_in_thread(create_app(Settings()), name="console-api") as url:
            for source, secret in (("moodle", "wrong-moodle-token-0123"), ("zoho", "1000.wrong-refresh-token-0123")):
                response = post(url, f"/v1/admin/connections/{source}/test", admin)
                body = response.json()
                assert response.status_code == 200 and body["ok"] is False and body["error"], source
                assert secret not in response.text


def test_the_sync_buttons_say_dagster_is_not_configured(console):
    url, admin, *_ = console
    launcher = get(url, "/v1/admin/syncs", admin).json()
    assert launcher["configured"] is False and "DAGSTER_WEBSERVER_URL" in launcher["detail"]
    response = post(url, "/v1/admin/syncs/full_sync", admin)
    assert response.status_code == 409 and response.headers["content-type"] == "application/problem+json"
    assert post(url, "/v1/admin/syncs/drop_tables", admin).status_code == 422


def test_an_unreachable_dagster_webserver_is_named(console, monkeypatch):
    url, admin, *_ = console
    # A port nothing listens on: the launch fails at once, and the console says where it tried.
    with bind("127.0.0.1", 0) as closed:
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(DagsterLaunchError, match="did not answer"):
        launch_sync(dead_url, "full_sync", today=date(2026, 12, 1))


def test_the_pages_are_served_from_the_package_and_hold_no_data(console):
    url, *_ = console
    for path, title in (("/dashboard", "Student dashboard"), ("/admin", "Admin console")):
        page = httpx.get(f"{url}{path}")
        assert page.status_code == 200 and f"<title>{title}</title>" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "s1@example.ac.uk" not in page.text and STUDENT not in page.text
    for asset in ("common.js", "dashboard.js", "admin.js", "style.css", "theme.js"):
        assert httpx.get(f"{url}/static/{asset}").status_code == 200
    assert "/dashboard" not in httpx.get(f"{url}/openapi.json").json()["paths"]


@pytest.fixture
def dagster_webserver(tmp_path):
    """The real Dagster webserver on this code location, with an instance that queues runs
    (`max_concurrent_runs`, no daemon): a launched run is recorded and waits, nothing executes."""
    home = ensure_dagster_home(tmp_path / "dagster_home")
    with bind("127.0.0.1", 0) as probe:
        port = probe.getsockname()[1]
    # The jobs' resources read the sources' credentials from the environment when a run is
    # submitted; these name no real source (and no run executes).
    credentials = {
        "MOODLE_TOKEN": "unused-moodle-token",
        "ZOHO_CLIENT_ID": "1000.UNUSED",
        "ZOHO_CLIENT_SECRET": "unused-secret",
        "ZOHO_REFRESH_TOKEN": "1000.unused-refresh-token",
    }
    env = {**os.environ, **credentials, "DAGSTER_HOME": str(home), "INTEGRATION_DATA_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml", "-h", "127.0.0.1"]
        + ["-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, "dagster-webserver exited"
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("dagster-webserver did not answer within 120 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.slow
def test_the_sync_buttons_start_runs_on_the_dagster_webserver(dagster_webserver, tmp_path, monkeypatch):
    from dagster_graphql import DagsterGraphQLClient

    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", dagster_webserver)
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        _, admin = create_key(conn, "default", "admin")
    engine.dispose()
    port = int(dagster_webserver.rsplit(":", 1)[1])
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    with serve_in_thread(create_app(Settings()), name="console-api") as url:
        assert get(url, "/v1/admin/syncs", admin).json()["configured"] is True
        for job in ("full_sync", "incremental_sync"):
            response = post(url, f"/v1/admin/syncs/{job}", admin)
            assert response.status_code == 202, response.text
            run = response.json()
            assert run["run_url"] == f"{dagster_webserver}/runs/{run['run_id']}"
            assert client.get_run_status(run["run_id"]).value in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")
