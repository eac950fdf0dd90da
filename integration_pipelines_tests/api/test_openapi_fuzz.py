"""Fuzzing: schemathesis against the served OpenAPI schema, with an admin key, over a synced
college on both backends. No 5xx, and every answer conforms to the schema (status, content type,
body, headers). The example count is bounded for CI."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 30


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


def test_the_api_answers_every_generated_request_as_its_schema_says(synced):
    schema = schemathesis.openapi.from_asgi("/openapi.json", synced.client.app)
    headers = {"Authorization": f"Bearer {synced.admin_key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def answers_as_documented(case):
            statuses.append(case.call_and_validate(headers=headers, checks=CHECKS).status_code)

        answers_as_documented()
    # It ran: requests the API accepted and requests it refused, none of them a 5xx.
    assert len(statuses) >= 5 * 5 and {200, 422} <= set(statuses), sorted(set(statuses))
    assert max(statuses) < 500


def test_the_served_schema_documents_auth_and_every_error_status(synced):
    document = synced.client.get("/openapi.json").json()
    assert "ApiKey" in document["components"]["securitySchemes"]
    profile = document["paths"]["/v1/students/profile"]["get"]
    assert {"401", "403", "404", "422", "503"} <= set(profile["responses"])
    for status in ("401", "404", "422", "503"):
        assert list(profile["responses"][status]["content"]) == ["application/problem+json"]
    assert profile["security"] == [{"ApiKey": []}]
    # The events routes: webhooks (a sender's secret, not an API key) and the log (an admin key).
    paths = document["paths"]
    documented = {
        ("post", "/v1/events/moodle/{event_type}"): {"200", "202", "400", "401", "413", "422"},
        ("post", "/v1/events/moodle"): {"200", "202", "400", "401", "413", "422"},
        ("post", "/v1/events/zoho"): {"200", "202", "400", "401", "413", "422"},
        ("get", "/v1/events"): {"200", "401", "403", "422", "503"},
        ("post", "/v1/events/{event_id}/retry"): {"202", "401", "403", "404", "409", "422", "503"},
    }
    for (method, path), statuses in documented.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses, (method, path)
        for status in statuses - {"200", "202"}:
            assert list(responses[status]["content"]) == ["application/problem+json"], (path, status)
    assert "secret" in paths["/v1/events/zoho"]["post"]["responses"]["401"]["description"]
    assert paths["/v1/events"]["get"]["security"] == [{"ApiKey": []}]
    assert "security" not in paths["/v1/events/zoho"]["post"]
    assert synced.client.get("/docs").status_code == 200
