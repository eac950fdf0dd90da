"""Seeded fault injection: 429 (Retry-After), 5xx, held responses and dropped connections."""

from __future__ import annotations

import httpx
import pytest

from integration_pipelines.sandbox import SandboxConfig, run_sandbox

from .conftest import ZohoCaller


def _statuses(sb, n: int) -> list:
    url = sb.moodle_url + "/webservice/rest/server.php"
    params = {
        "wstoken": sb.config.moodle_token,
        "wsfunction": "core_webservice_get_site_info",
        "moodlewsrestformat": "json",
    }
    out = []
    with httpx.Client(timeout=5) as http:
        for _ in range(n):
            try:
                resp = http.get(url, params=params)
                out.append((resp.status_code, resp.headers.get("retry-after")))
            except httpx.HTTPError as exc:
                out.append(type(exc).__name__)
    return out


def test_faults_are_seeded_and_cover_every_kind():
    config = SandboxConfig(students=20, seed=3, fault_rate=0.5, fault_delay_seconds=0.05)
    with run_sandbox(config) as sb:
        first = _statuses(sb, 60)
    with run_sandbox(config) as sb:
        second = _statuses(sb, 60)
    assert first == second  # same seed, same request order: same faults
    assert (429, "1") in first
    assert any(s in ((500, None), (502, None), (503, None)) for s in first)
    assert (504, None) in first  # the held ("timeout") fault, answered after fault_delay_seconds
    assert any(isinstance(s, str) for s in first)  # dropped connections surface as transport errors
    assert (200, None) in first


def test_held_response_trips_a_client_timeout():
    config = SandboxConfig(students=20, seed=3, fault_rate=1.0, fault_kinds=("timeout",), fault_delay_seconds=1.0)
    with run_sandbox(config) as sb, httpx.Client(timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.get(
                sb.moodle_url + "/webservice/rest/server.php",
                params={"wstoken": sb.config.moodle_token, "wsfunction": "core_webservice_get_site_info"},
            )


def test_a_faulted_upsert_changes_nothing_and_control_routes_never_fault():
    config = SandboxConfig(students=20, seed=3, fault_rate=1.0, fault_kinds=("5xx", "drop"))
    with run_sandbox(config) as sb, httpx.Client(timeout=5) as http:
        z = ZohoCaller(sb, http)  # OAuth is not a data endpoint: no faults there
        before = len(sb.college.zoho["Programs"].records)
        for _ in range(5):
            try:
                resp = z.post("/crm/v8/Programs/upsert", {"data": [{"Name": "X", "Programme_Code": "X-1"}]})
                assert resp.status_code >= 500
            except httpx.HTTPError:
                pass
        assert len(sb.college.zoho["Programs"].records) == before
        assert http.get(sb.base_url + "/_sandbox/health").json() == {"ok": True}
