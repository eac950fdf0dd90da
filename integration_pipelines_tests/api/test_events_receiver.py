"""The webhook receiver over real HTTP: every sender's events are stored once, as one file each.

The reference captures of a real Moodle 5.1 site (`fixtures/moodle_events/`) are posted exactly
as the `local_webhooks` plugin sent them; bad secrets, bad bodies and oversized bodies are
refused without writing anything; hypothesis-generated bodies never get a 5xx, nor a file.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_pipelines.api import create_app
from integration_pipelines.lib.events.models import parse_inbox_file
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.settings import Settings

EVENTS = Path(__file__).resolve().parent.parent / "fixtures" / "moodle_events"
SECRET = "sekret-token-123"  # the token the reference site's local_webhooks service was given
TENANT = "college-a"


def reference_posts() -> list[dict]:
    return [json.loads(line) for line in (EVENTS / "webhook_posts.jsonl").read_text().splitlines() if line.strip()]


def reference_events() -> dict[str, dict]:
    """Every reference `<name>.json` (exactly `get_data()`)."""
    out = {}
    for path in sorted(EVENTS.glob("*.json")):
        if path.name.startswith("webhook_"):
            continue
        out[path.stem] = json.loads(path.read_text())
    return out


def plugin_body(data: dict, token: str = SECRET) -> bytes:
    """What local_webhooks POSTs for an event: get_data(), then host, token and extra."""
    return json.dumps({**data, "host": "127.0.0.1", "token": token, "extra": ""}).encode()


def inbox_files(settings: Settings) -> list[Path]:
    assert settings.events_inbox_dir is not None
    return sorted(settings.events_inbox_dir.glob("*.json"))


@pytest.fixture
def receiver(tmp_path, monkeypatch):
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVENTS_WEBHOOK_SECRETS", json.dumps({TENANT: SECRET, "college-b": "other-secret"}))
    monkeypatch.setenv("EVENTS_MAX_BODY_BYTES", "65536")
    settings = Settings()
    with serve_in_thread(create_app(settings), name="api") as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http, settings


def test_every_reference_post_is_accepted_in_the_plugins_exact_request_format(receiver):
    http, settings = receiver
    posts = reference_posts()
    assert len(posts) == 22
    ids = []
    for post in posts:
        headers = {k: v for k, v in post["headers"] if k.lower() not in ("host", "content-length")}
        response = http.post("/v1/events/moodle", content=base64.b64decode(post["body_b64"]), headers=headers)
        assert response.status_code == 202, response.text
        ids.append(response.json()["event_id"])
    assert len(set(ids)) == 22
    files = inbox_files(settings)
    assert len(files) == 22
    stored = [parse_inbox_file(f.read_bytes()) for f in files]
    assert {e.event_id for e in stored} == set(ids)
    assert all(e.tenant_id == TENANT and "token" not in e.body for e in stored)  # the secret is not kept


def test_every_reference_event_and_the_whole_captured_stream_are_accepted(receiver):
    http, settings = receiver
    stream = [json.loads(line)["data"] for line in (EVENTS / "captured.jsonl").read_text().splitlines()]
    assert len(stream) == 83
    events = list(reference_events().values()) + stream
    statuses = [http.post("/v1/events/moodle", content=plugin_body(data)).status_code for data in events]
    assert set(statuses) <= {200, 202}, statuses
    # Each distinct event is one file: the reference files repeat lines of the stream.
    distinct = {json.dumps(data, sort_keys=True) for data in events}
    assert len(inbox_files(settings)) == len(distinct)


def test_a_repeated_event_is_a_duplicate_and_writes_nothing(receiver):
    http, settings = receiver
    body = plugin_body(reference_events()["user_graded"])
    first, second = http.post("/v1/events/moodle", content=body), http.post("/v1/events/moodle", content=body)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    # Still a duplicate once the file has left the inbox (processed and archived).
    (only,) = inbox_files(settings)
    only.rename(settings.data_dir / "moved.json")
    assert http.post("/v1/events/moodle", content=body).status_code == 200
    assert inbox_files(settings) == []


def test_the_seed_contract_with_its_headers(receiver):
    http, settings = receiver
    data = reference_events()["submission_graded"]
    body = {
        "event_id": "evt-0001",
        "event_type": "submission_graded",
        "timestamp": data["timecreated"],
        "source": "moodle",
        "moodle_url": "http://127.0.0.1:8089",
        "tenant_id": TENANT,
        "data": data,
    }
    headers = {"X-Moodle-Token": SECRET, "X-Tenant-ID": TENANT, "X-Event-ID": "evt-0001"}
    response = http.post("/v1/events/moodle/submission_graded", json=body, headers=headers)
    assert response.status_code == 202 and response.json() == {"status": "accepted", "event_id": "evt-0001"}
    assert http.post("/v1/events/moodle/submission_graded", json=body, headers=headers).status_code == 200
    # Another tenant's secret does not open this tenant.
    wrong = {**headers, "X-Moodle-Token": "other-secret", "X-Event-ID": "evt-0002"}
    assert (
        http.post(
            "/v1/events/moodle/submission_graded", json={**body, "event_id": "evt-0002"}, headers=wrong
        ).status_code
        == 401
    )
    mismatch = http.post("/v1/events/moodle/user_graded", json=body, headers=headers)
    assert mismatch.status_code == 422 and mismatch.json()["errors"][0]["field"] == "event_type"
    assert len(inbox_files(settings)) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"token": "wrong"},
        {"token": ""},
        {"token": None},
    ],
)
def test_a_bad_secret_is_a_401_that_says_nothing_more(receiver, change):
    http, settings = receiver
    response = http.post(
        "/v1/events/moodle",
        content=json.dumps({**json.loads(plugin_body(reference_events()["user_created"])), **change}),
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == "The request is not authenticated."
    assert inbox_files(settings) == []


def test_an_unknown_tenant_header_is_the_same_401(receiver):
    http, _ = receiver
    response = http.post(
        "/v1/events/moodle", content=plugin_body(reference_events()["user_created"]), headers={"X-Tenant-ID": "nobody"}
    )
    assert response.status_code == 401 and response.json()["detail"] == "The request is not authenticated."


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("user_graded", {"other": {"overridden": False}}, "needs other.itemid"),
        ("user_graded", {"relateduserid": "fifty"}, "relateduserid"),
        ("user_created", {"timecreated": "yesterday"}, "timecreated"),
        ("user_created", {"crud": "x"}, "crud"),
        ("user_created", {"eventname": "not an event"}, "eventname"),
    ],
)
def test_a_bad_payload_is_a_422_naming_the_field(receiver, name, change, field):
    http, settings = receiver
    data = {**reference_events()[name], **change}
    response = http.post("/v1/events/moodle", content=plugin_body(data))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in json.dumps(response.json()["errors"])
    assert inbox_files(settings) == []


def test_not_json_is_a_400_and_a_body_over_the_cap_is_a_413(receiver):
    http, settings = receiver
    assert http.post("/v1/events/moodle", content=b"{not json").status_code == 400
    big = {**reference_events()["assessable_uploaded"]}
    big["other"] = {**big["other"], "content": "x" * 70_000}
    response = http.post("/v1/events/moodle", content=plugin_body(big))
    assert response.status_code == 413 and response.json()["max_bytes"] == 65536
    assert inbox_files(settings) == []


def test_zoho_notifications_are_accepted_with_the_channel_token(receiver):
    http, settings = receiver
    body = {
        "server_time": 1717236922000,
        "query_params": {},
        "module": "Students",
        "resource_uri": "https://www.zohoapis.com/crm/v8/Students",
        "ids": ["5843104000000412001"],
        "affected_fields": [{"5843104000000412001": ["Email"]}],
        "operation": "update",
        "channel_id": "1000000068001",
        "token": SECRET,
    }
    first = http.post("/v1/events/zoho", json=body, headers={"X-Tenant-ID": TENANT})
    assert first.status_code == 202
    assert http.post("/v1/events/zoho", json=body).status_code == 200  # the token names the tenant too
    assert http.post("/v1/events/zoho", json={**body, "token": "nope"}).status_code == 401
    bad = http.post("/v1/events/zoho", json={**body, "ids": ["abc"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("ids")
    assert len(inbox_files(settings)) == 1


def test_a_thousand_concurrent_posts_are_all_stored_each_exactly_once(receiver):
    """1,000 distinct events and 200 repeats of them, all in flight together."""
    http, settings = receiver
    base = reference_events()["user_graded"]
    bodies = [plugin_body({**base, "objectid": str(10_000 + i)}) for i in range(1000)]
    bodies += bodies[:200]

    async def post_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=120, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/events/moodle", content=b) for b in bodies))

    responses = asyncio.run(post_all())
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 1000 and codes.count(200) == 200, sorted(set(codes))
    files = inbox_files(settings)
    assert len(files) == 1000
    assert {parse_inbox_file(f.read_bytes()).body["objectid"] for f in files} == {str(10_000 + i) for i in range(1000)}


# Bodies of every JSON shape, and event-like objects with wrong values in their fields.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def event_like_bodies(draw) -> dict:
    data = dict(draw(st.sampled_from(sorted(reference_events().items())))[1])
    for key in draw(st.lists(st.sampled_from(sorted(data)), max_size=4, unique=True)):
        if draw(st.booleans()):
            data[key] = draw(json_values)
        else:
            del data[key]
    return {**data, "token": SECRET}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, event_like_bodies(), st.binary(max_size=200)))
def test_fuzzed_bodies_never_get_a_5xx_nor_a_file_when_invalid(receiver, body):
    http, settings_ = receiver
    before = {f.name for f in inbox_files(settings_)}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    for path in ("/v1/events/moodle", "/v1/events/zoho"):
        response = http.post(path, content=content)
        assert response.status_code < 500, response.text
        after = {f.name for f in inbox_files(settings_)}
        if response.status_code >= 400:
            assert after == before  # an invalid body writes nothing
        else:
            assert response.status_code in (200, 202)
            new = after - before
            for name in new:  # what was written is a valid event
                parse_inbox_file((settings_.events_inbox_dir / name).read_bytes())  # type: ignore[operator]
            before = after
