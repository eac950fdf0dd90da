"""Token lifetime, refresh throttle, credits, concurrency and page_token over a 5,000+ module."""

from __future__ import annotations

import concurrent.futures

import httpx

from integration_pipelines.sandbox import SandboxConfig, run_sandbox

from .conftest import ZohoCaller
from .oas import errors


def test_access_token_dies_after_configured_calls():
    with run_sandbox(SandboxConfig(students=20, seed=1, token_ttl_calls=3)) as sb, httpx.Client() as http:
        z = ZohoCaller(sb, http)
        codes = [z.get("/crm/v8/Programs", {"fields": "Name"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 401]
        last = z.get("/crm/v8/Programs", {"fields": "Name"})
        assert last.json() == {
            "code": "INVALID_TOKEN",
            "details": {},
            "message": "invalid oauth token",
            "status": "error",
        }
        z.token = z.refresh()["access_token"]
        assert z.get("/crm/v8/Programs", {"fields": "Name"}).status_code == 200


def test_access_token_expires_on_the_sandbox_clock():
    with run_sandbox(SandboxConfig(students=20, seed=1, token_ttl_seconds=600)) as sb, httpx.Client() as http:
        z = ZohoCaller(sb, http)
        assert z.get("/crm/v8/Programs", {"fields": "Name"}).status_code == 200
        sb.mutate(advance_seconds=601)
        assert z.get("/crm/v8/Programs", {"fields": "Name"}).status_code == 401


def test_refresh_throttle_then_window_passes():
    with (
        run_sandbox(SandboxConfig(students=20, seed=1, refresh_limit=3, refresh_window_seconds=60)) as sb,
        httpx.Client() as http,
    ):
        z = ZohoCaller(sb, http)  # refresh 1
        assert "access_token" in z.refresh() and "access_token" in z.refresh()
        denied = z.refresh()
        assert denied == {
            "error": "Access Denied",
            "error_description": "You have made too many requests continuously. Please try again after some time.",
            "status": "failure",
            "_status": 400,
        }
        sb.mutate(advance_seconds=61)
        assert "access_token" in z.refresh()


def test_daily_credits_run_out():
    with run_sandbox(SandboxConfig(students=20, seed=1, zoho_daily_credits=4)) as sb, httpx.Client() as http:
        z = ZohoCaller(sb, http)
        codes = [z.get("/crm/v8/Programs", {"fields": "Name"}).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 200, 429]
        assert (
            errors(
                "record.json",
                "/components/schemas/API_Exception",
                z.get("/crm/v8/Programs", {"fields": "Name"}).json(),
                relax_enums=True,
            )
            == []
        )
        sb.mutate(advance_seconds=86_401)
        z.token = z.refresh()["access_token"]  # the old token expired with the day, too
        assert z.get("/crm/v8/Programs", {"fields": "Name"}).status_code == 200


def test_concurrency_limit_answers_429():
    config = SandboxConfig(students=20, seed=1, zoho_concurrency_limit=2, response_delay_seconds=0.3)
    with run_sandbox(config) as sb, httpx.Client(limits=httpx.Limits(max_connections=10)) as http:
        z = ZohoCaller(sb, http)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = sorted(pool.map(lambda _: z.get("/crm/v8/Programs", {"fields": "Name"}).status_code, range(6)))
        assert codes.count(200) >= 2 and 429 in codes


def test_page_token_walks_a_5000_record_module_past_the_2000_limit():
    with run_sandbox(SandboxConfig(students=700, seed=5)) as sb, httpx.Client(timeout=30) as http:
        z = ZohoCaller(sb, http)
        expected = sb.college.zoho["Registrations"].live_count()
        assert expected > 5000
        ids: list[str] = []
        params = {"fields": "Status", "per_page": 200, "sort_by": "id", "sort_order": "asc"}
        while True:
            body = z.get("/crm/v8/Registrations", params).json()
            ids += [r["id"] for r in body["data"]]
            if not body["info"]["more_records"]:
                break
            params = {"fields": "Status", "per_page": 200, "page_token": body["info"]["next_page_token"]}
        assert len(ids) == expected == len(set(ids))
        assert ids == sorted(ids, key=int)
