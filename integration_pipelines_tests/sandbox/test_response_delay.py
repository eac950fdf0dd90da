"""``sandbox serve --response-delay SECONDS``: the option reaches the config, and the app holds
data requests (Moodle WS, Zoho CRM) for that long, but not the token endpoint or ``/_sandbox``.

No upper bounds on time: which requests were held is read from the app's counter, and a held
request is only checked to have taken at least the delay.
"""

from __future__ import annotations

import time

import httpx
import pytest
from click.testing import CliRunner

from integration_pipelines.sandbox import SandboxConfig, run_sandbox
from integration_pipelines.sandbox import server as sandbox_server
from integration_pipelines.sandbox.cli import sandbox_group

DELAY = 0.2


@pytest.fixture
def served_configs(monkeypatch):
    """Run ``sandbox serve`` without serving: each config it would serve is recorded."""
    configs: list[SandboxConfig] = []
    monkeypatch.setattr(sandbox_server, "serve", lambda config, on_ready=None: configs.append(config))
    return configs


def test_serve_passes_response_delay_to_the_config(served_configs):
    result = CliRunner().invoke(sandbox_group, ["serve", "--students", "3", "--response-delay", "0.25"])
    assert result.exit_code == 0, result.output
    assert [c.response_delay_seconds for c in served_configs] == [0.25]


def test_serve_has_no_response_delay_by_default_and_refuses_a_negative_one(served_configs):
    assert CliRunner().invoke(sandbox_group, ["serve", "--students", "3"]).exit_code == 0
    assert served_configs[0].response_delay_seconds == 0
    refused = CliRunner().invoke(sandbox_group, ["serve", "--students", "3", "--response-delay", "-1"])
    assert refused.exit_code == 2
    assert "--response-delay" in refused.output
    assert len(served_configs) == 1


def test_serve_help_documents_response_delay():
    result = CliRunner().invoke(sandbox_group, ["serve", "--help"])
    assert "--response-delay SECONDS" in result.output


def test_only_data_requests_are_held():
    config = SandboxConfig(students=5, seed=3, response_delay_seconds=DELAY)
    with run_sandbox(config) as sb, httpx.Client(base_url=sb.base_url, timeout=10) as http:
        app = sb.app

        def timed(method: str, path: str, **kw) -> tuple[httpx.Response, float, int]:
            before, started = app.delayed_count, time.monotonic()
            resp = http.request(method, path, **kw)
            return resp, time.monotonic() - started, app.delayed_count - before

        # Not held: the control routes and the Zoho token endpoint.
        resp, _, held = timed("GET", "/_sandbox/health")
        assert (resp.status_code, held) == (200, 0)
        resp, _, held = timed("GET", "/_sandbox/state")
        assert (resp.status_code, held) == (200, 0)
        resp, _, held = timed(
            "POST",
            "/oauth/v2/token",
            params={
                "grant_type": "refresh_token",
                "refresh_token": config.zoho_refresh_token,
                "client_id": config.zoho_client_id,
                "client_secret": config.zoho_client_secret,
            },
        )
        assert (resp.status_code, held) == (200, 0)
        token = resp.json()["access_token"]

        # Held: a Moodle WS call and a Zoho CRM call, each at least the delay.
        resp, elapsed, held = timed(
            "GET",
            "/webservice/rest/server.php",
            params={
                "wstoken": config.moodle_token,
                "wsfunction": "core_webservice_get_site_info",
                "moodlewsrestformat": "json",
            },
        )
        assert (resp.status_code, held) == (200, 1)
        assert "sitename" in resp.json()
        assert elapsed >= DELAY
        resp, elapsed, held = timed("GET", "/crm/v8/org", headers={"Authorization": f"Zoho-oauthtoken {token}"})
        assert (resp.status_code, held) == (200, 1)
        assert elapsed >= DELAY


def test_no_request_is_held_without_a_delay(sandbox, moodle):
    moodle("wsfunction=core_webservice_get_site_info")
    assert sandbox.config.response_delay_seconds == 0
    assert sandbox.app.delayed_count == 0
