"""Milestone-1 Zoho behaviour: OAuth refresh and listing records."""

from __future__ import annotations


def test_refresh_returns_token_for_the_sandbox_domain(zoho, sandbox):
    answer = zoho.refresh()
    assert answer["_status"] == 200
    assert answer["api_domain"] == sandbox.zoho_api_domain
    assert answer["token_type"] == "Bearer"
    assert answer["access_token"].startswith("1000.")
    assert answer["expires_in"] == sandbox.config.token_ttl_seconds


def test_refresh_errors(zoho):
    assert zoho.refresh(refresh_token="nope") == {"error": "invalid_code", "_status": 200}
    assert zoho.refresh(client_secret="nope") == {"error": "invalid_client", "_status": 200}
    assert zoho.refresh(client_id="nope") == {"error": "invalid_client", "_status": 200}


def test_list_students_returns_requested_fields_and_info(zoho, sandbox):
    resp = zoho.get("/crm/v8/Students", {"fields": "Student_Number,Email,Programme", "per_page": 5})
    assert resp.status_code == 200
    body = resp.json()
    assert len(body["data"]) == 5
    for rec in body["data"]:
        assert set(rec) == {"id", "Student_Number", "Email", "Programme"}
        assert len(rec["id"]) == 19 and rec["id"].isdigit()
        assert set(rec["Programme"]) == {"name", "id"}
    info = body["info"]
    assert info["per_page"] == 5 and info["count"] == 5 and info["page"] == 1 and info["more_records"] is True
    # default order: id descending
    ids = [int(r["id"]) for r in body["data"]]
    assert ids == sorted(ids, reverse=True)


def test_list_requires_auth(zoho, http, sandbox):
    resp = http.get(
        sandbox.zoho_api_domain + "/crm/v8/Students",
        params={"fields": "Email"},
        headers={"Authorization": "Zoho-oauthtoken 1000.not-a-token"},
    )
    assert resp.status_code == 401
    assert resp.json() == {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}
