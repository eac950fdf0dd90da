"""Shared fixtures: one small sandbox per module (real HTTP over 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from integration_pipelines.sandbox import SandboxConfig, run_sandbox

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MOODLE_WS = FIXTURES / "moodle_ws"
ZOHO_OAS = FIXTURES / "zoho_oas"
MOODLE_EVENTS = FIXTURES / "moodle_events"


def load_reference(name: str) -> object:
    return json.loads((MOODLE_WS / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def sandbox():
    with run_sandbox(SandboxConfig(students=60, seed=11)) as sb:
        yield sb


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=10) as client:
        yield client


class MoodleCaller:
    """Calls the sandbox's Moodle REST endpoint with bracket-encoded params."""

    def __init__(self, sandbox, http: httpx.Client):
        self.url = sandbox.moodle_url + "/webservice/rest/server.php"
        self.token = sandbox.config.moodle_token
        self.http = http

    def raw(self, query: str | list, token: str | None = "default", method: str = "GET") -> httpx.Response:
        params = list(httpx.QueryParams(query).multi_items()) if isinstance(query, str) else list(query)
        params.append(("moodlewsrestformat", "json"))
        if token is not None:
            params.append(("wstoken", self.token if token == "default" else token))
        if method == "POST":
            return self.http.post(
                self.url, content=urlencode(params), headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
        return self.http.get(self.url, params=params)

    def __call__(self, query: str | list, **kw) -> object:
        resp = self.raw(query, **kw)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/json")
        return resp.json()


@pytest.fixture(scope="module")
def moodle(sandbox, http):
    return MoodleCaller(sandbox, http)


class ZohoCaller:
    """Refreshes a Zoho token against the sandbox and calls the CRM API with it."""

    def __init__(self, sandbox, http: httpx.Client):
        self.sandbox = sandbox
        self.http = http
        self.token = self.refresh()["access_token"]

    def refresh(self, **overrides: str) -> dict:
        cfg = self.sandbox.config
        params = {
            "grant_type": "refresh_token",
            "refresh_token": cfg.zoho_refresh_token,
            "client_id": cfg.zoho_client_id,
            "client_secret": cfg.zoho_client_secret,
            **overrides,
        }
        resp = self.http.post(self.sandbox.zoho_accounts_url + "/oauth/v2/token", params=params)
        return resp.json() | {"_status": resp.status_code}

    def get(self, path: str, params: dict | None = None, headers: dict | None = None) -> httpx.Response:
        h = {"Authorization": f"Zoho-oauthtoken {self.token}", **(headers or {})}
        return self.http.get(self.sandbox.zoho_api_domain + path, params=params, headers=h)

    def post(self, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
        h = {"Authorization": f"Zoho-oauthtoken {self.token}", **(headers or {})}
        return self.http.post(self.sandbox.zoho_api_domain + path, json=body, headers=h)


@pytest.fixture(scope="module")
def zoho(sandbox, http):
    return ZohoCaller(sandbox, http)
