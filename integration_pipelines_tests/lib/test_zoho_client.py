"""Unit tests for the Zoho CRM v8 client, against an in-process fake (httpx.MockTransport)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import urllib.parse
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from integration_pipelines.lib.http import RetryPolicy
from integration_pipelines.lib.zoho import (
    UpsertResult,
    ZohoAPIError,
    ZohoAuthError,
    ZohoBulkReadError,
    ZohoClient,
    ZohoClientCredentialsError,
    ZohoNotFound,
    ZohoPaginationLimit,
    ZohoRateLimited,
    ZohoRefreshLimitReached,
    ZohoRefreshTokenError,
    ZohoScopeError,
    ZohoServerError,
    ZohoTokenRefreshError,
    ZohoTransportError,
    accounts_url_for,
    concurrency_for_edition,
    format_if_modified_since,
)

API = "https://www.zohoapis.test"
ACCOUNTS = "https://accounts.zoho.test"
CLIENT_ID = "1000.CLIENTID"
CLIENT_SECRET = "client-5ecr3t-abcdef0123456789"
REFRESH_TOKEN = "1000.refresh-5ecr3t-abcdef0123456789"
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps(list):
    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


def pagination_limit_exceeded() -> httpx.Response:
    """Zoho's answer to a `page` past record 2,000 (API_NOTES B2)."""
    return httpx.Response(
        400,
        json={
            "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
            "details": {"limit": 2000},
            "message": "You can only get the first 2000 records without using page_token param",
            "status": "error",
        },
    )


def zoho_time(i: int) -> str:
    return (EPOCH + timedelta(minutes=i)).isoformat()


class FakeZoho:
    """Just enough Zoho CRM v8 + accounts server to exercise the client's edge cases."""

    def __init__(self, *, modules: dict[str, list[dict]] | None = None, token_after_page: int = 1) -> None:
        self.modules = modules or {}
        self.deleted: dict[str, list[dict]] = {}
        self.valid_tokens: set[str] = set()
        self.issued = 0
        self.refresh_requests = 0
        self.api_requests: list[httpx.Request] = []
        self.refresh_mode = "ok"  # ok | invalid_code | invalid_client | access_denied
        self.access_denied_times = 0
        self.token_after_page = token_after_page  # first page whose answer carries next_page_token
        self.faults: list[httpx.Response | Exception] = []
        self.page_tokens: dict[str, tuple[str, int, str | None, str]] = {}
        self.tokens_issued = 0
        self.jobs: dict[str, dict] = {}
        self.bulk_polls_before_done = 2
        self.bulk_page_size = 200_000
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.hold = 0.0

    # -- helpers
    def issue(self) -> str:
        self.issued += 1
        tok = f"1000.access-{self.issued:04d}-ffffffffffff"
        self.valid_tokens.add(tok)
        return tok

    def revoke_all(self) -> None:
        self.valid_tokens.clear()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/v2/token":
            return self.oauth(request)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold:
                time.sleep(self.hold)
            return self.api(request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def oauth(self, request: httpx.Request) -> httpx.Response:
        self.refresh_requests += 1
        assert request.method == "POST"
        assert REFRESH_TOKEN not in str(request.url) and CLIENT_SECRET not in str(request.url)
        body = dict(urllib.parse.parse_qsl(request.content.decode()))
        if self.refresh_mode == "invalid_code" or body.get("refresh_token") != REFRESH_TOKEN:
            return httpx.Response(400, json={"error": "invalid_code"})
        if self.refresh_mode == "invalid_client" or body.get("client_secret") != CLIENT_SECRET:
            return httpx.Response(200, json={"error": "invalid_client"})
        if self.access_denied_times > 0:
            self.access_denied_times -= 1
            return httpx.Response(
                400,
                json={
                    "error": "Access Denied",
                    "status": "failure",
                    "error_description": (
                        "You have made too many requests continuously. Please try again after some time."
                    ),
                },
            )
        return httpx.Response(
            200,
            json={
                "access_token": self.issue(),
                "api_domain": API,
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        )

    def api(self, request: httpx.Request) -> httpx.Response:
        self.api_requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Zoho-oauthtoken ") or auth.split(" ", 1)[1] not in self.valid_tokens:
            return httpx.Response(
                401, json={"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}
            )
        parts = request.url.path.strip("/").split("/")
        if parts[:3] == ["crm", "bulk", "v8"]:
            return self.bulk(request, parts[3:])
        assert parts[:2] == ["crm", "v8"], parts
        rest = parts[2:]
        if rest == ["org"]:
            return httpx.Response(200, json={"org": [{"id": "1", "license_details": {"paid_type": "professional"}}]})
        if rest == ["users"]:
            return httpx.Response(200, json={"users": [{"id": "9", "email": "sync@college.test"}]})
        if rest == ["settings", "modules"]:
            return httpx.Response(200, json={"modules": [{"api_name": m} for m in self.modules]})
        if rest == ["settings", "fields"]:
            return httpx.Response(200, json={"fields": [{"api_name": "Email"}]})
        module = rest[0]
        if module not in self.modules:
            return httpx.Response(
                400,
                json={
                    "code": "INVALID_MODULE",
                    "details": {},
                    "message": "the module name given seems to be invalid",
                    "status": "error",
                },
            )
        if rest[1:] == ["upsert"]:
            return self.upsert(module, json.loads(request.content))
        if rest[1:] == ["deleted"]:
            return self.list(request, self.deleted.get(module, []), "deleted_time")
        return self.list(request, self.modules[module], "Modified_Time")

    def list(self, request: httpx.Request, rows: list[dict], time_key: str) -> httpx.Response:
        q = dict(request.url.params)
        fields = q.get("fields", "").split(",") if "fields" in q else None
        if time_key == "Modified_Time":
            if not fields or fields == [""]:
                return httpx.Response(
                    400,
                    json={
                        "code": "REQUIRED_PARAM_MISSING",
                        "details": {"param": "fields"},
                        "message": "",
                        "status": "error",
                    },
                )
            if len(fields) > 50:
                return httpx.Response(
                    400, json={"code": "LIMIT_EXCEEDED", "details": {"limit": 50}, "message": "", "status": "error"}
                )
        if "ids" in q:
            wanted = set(q["ids"].split(","))
            rows = [r for r in rows if r["id"] in wanted]
        ims = request.headers.get("If-Modified-Since")
        if ims:
            rows = [r for r in rows if r[time_key] > ims]
            if not rows:
                return httpx.Response(304)
        if not rows:
            return httpx.Response(204)
        per_page = int(q.get("per_page", 200))
        if "page_token" in q:
            assert "page" not in q, "page and page_token cannot be combined"
            page = self.page_tokens.pop(q["page_token"])[1]
        else:
            page = int(q.get("page", 1))
            if page * per_page > 2000:
                return pagination_limit_exceeded()
        chunk = rows[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(rows)
        if fields:
            chunk = [{k: v for k, v in r.items() if k in fields or k == "id"} for r in chunk]
        info: dict[str, Any] = {"per_page": per_page, "count": len(chunk), "page": page, "more_records": more}
        if more and page >= self.token_after_page:
            self.tokens_issued += 1
            token = f"pt-{self.tokens_issued}-{page + 1}"
            self.page_tokens[token] = ("", page + 1, None, "")
            info["next_page_token"] = token
        return httpx.Response(200, json={"data": chunk, "info": info})

    def upsert(self, module: str, body: dict) -> httpx.Response:
        dup = body["duplicate_check_fields"]
        out = []
        for rec in body["data"]:
            if rec.get("Last_Name") == "BAD":
                out.append(
                    {
                        "code": "INVALID_DATA",
                        "details": {"api_name": "Last_Name"},
                        "message": "invalid data",
                        "status": "error",
                    }
                )
                continue
            match = next((r for r in self.modules[module] if any(r.get(f) == rec.get(f) for f in dup)), None)
            if match:
                match.update(rec)
                out.append(
                    {
                        "code": "SUCCESS",
                        "duplicate_field": dup[0],
                        "action": "update",
                        "details": {"id": match["id"]},
                        "message": "record updated",
                        "status": "success",
                    }
                )
            else:
                new = {**rec, "id": str(9000000 + len(self.modules[module])), "Modified_Time": zoho_time(99999)}
                self.modules[module].append(new)
                out.append(
                    {
                        "code": "SUCCESS",
                        "duplicate_field": None,
                        "action": "insert",
                        "details": {"id": new["id"]},
                        "message": "record added",
                        "status": "success",
                    }
                )
        return httpx.Response(207 if any(o["status"] == "error" for o in out) else 200, json={"data": out})

    def bulk(self, request: httpx.Request, parts: list[str]) -> httpx.Response:
        if parts == ["read"] and request.method == "POST":
            query = json.loads(request.content)["query"]
            job_id = f"job{len(self.jobs) + 1}"
            self.jobs[job_id] = {"query": query, "polls": 0}
            return httpx.Response(
                201,
                json={
                    "data": [
                        {
                            "status": "success",
                            "code": "ADDED_SUCCESSFULLY",
                            "message": "Added successfully.",
                            "details": {"id": job_id, "operation": "read", "state": "ADDED"},
                        }
                    ],
                    "info": {},
                },
            )
        job_id = parts[1]
        job = self.jobs[job_id]
        module = job["query"]["module"]["api_name"]
        rows = self.modules[module]
        page = job["query"].get("page", 1)
        chunk = rows[(page - 1) * self.bulk_page_size : page * self.bulk_page_size]
        if parts[2:] == ["result"]:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                text = io.StringIO()
                fields = job["query"]["fields"]
                text.write(",".join(["Id", *fields]) + "\n")
                for r in chunk:
                    text.write(",".join([r["id"], *[str(r.get(f, "")) for f in fields]]) + "\n")
                zf.writestr(f"{job_id}.csv", text.getvalue())
            return httpx.Response(200, content=buf.getvalue(), headers={"Content-Type": "application/zip"})
        job["polls"] += 1
        if job["polls"] <= self.bulk_polls_before_done:
            return httpx.Response(200, json={"data": [{"id": job_id, "state": "IN PROGRESS"}]})
        more = page * self.bulk_page_size < len(rows)
        return httpx.Response(
            200,
            json={
                "data": [
                    {
                        "id": job_id,
                        "state": "COMPLETED",
                        "result": {
                            "page": page,
                            "count": len(chunk),
                            "download_url": f"/crm/bulk/v8/read/{job_id}/result",
                            "per_page": self.bulk_page_size,
                            "more_records": more,
                        },
                    }
                ]
            },
        )


def students(n: int, extra_fields: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        row = {
            "id": str(5843104000000000000 + i),
            "Last_Name": f"S{i}",
            "Email": f"s{i}@college.test",
            "Modified_Time": zoho_time(i),
        }
        for f in range(extra_fields):
            row[f"F{f:03d}"] = f"{i}-{f}"
        rows.append(row)
    return rows


def make_client(fake: FakeZoho, **kwargs: Any) -> tuple[ZohoClient, Sleeps, Clock]:
    clock = Clock()
    sleeps = Sleeps(clock)
    kwargs.setdefault(
        "retry", RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.0, max_retry_after=60)
    )
    client = ZohoClient(
        API,
        ACCOUNTS,
        CLIENT_ID,
        CLIENT_SECRET,
        REFRESH_TOKEN,
        transport=httpx.MockTransport(fake),
        sleep=sleeps,
        clock=clock,
        **kwargs,
    )
    return client, sleeps, clock


# --------------------------------------------------------------------------------------
# data centres, editions
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_domain", "expected"),
    [
        ("https://www.zohoapis.com", "https://accounts.zoho.com"),
        ("https://www.zohoapis.eu", "https://accounts.zoho.eu"),
        ("https://www.zohoapis.in", "https://accounts.zoho.in"),
        ("https://www.zohoapis.com.au", "https://accounts.zoho.com.au"),
        ("https://www.zohoapis.com.cn", "https://accounts.zoho.com.cn"),
        ("https://www.zohoapis.jp", "https://accounts.zoho.jp"),
        ("https://www.zohoapis.ca", "https://accounts.zohocloud.ca"),
        ("https://www.zohoapis.sa", "https://accounts.zoho.sa"),
        ("https://sandbox.zohoapis.eu", "https://accounts.zoho.eu"),
    ],
)
def test_accounts_url_from_api_domain(api_domain: str, expected: str) -> None:
    assert accounts_url_for(api_domain) == expected


def test_accounts_url_explicit_wins_and_dc_names() -> None:
    assert (
        accounts_url_for("https://www.zohoapis.eu", explicit="http://127.0.0.1:9/zoho-accounts/")
        == "http://127.0.0.1:9/zoho-accounts"
    )
    assert accounts_url_for(data_centre="com.au") == "https://accounts.zoho.com.au"
    with pytest.raises(ValueError, match="ZOHO_ACCOUNTS_URL"):
        accounts_url_for("http://127.0.0.1:8765")
    with pytest.raises(ValueError, match="data centre"):
        accounts_url_for(data_centre="mars")
    client = ZohoClient("https://www.zohoapis.eu", None, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
    assert client.token_url == "https://accounts.zoho.eu/oauth/v2/token"
    client.close()


def test_edition_concurrency() -> None:
    assert [concurrency_for_edition(e) for e in ("Free", "standard", "PROFESSIONAL", "enterprise", "ultimate")] == [
        5,
        10,
        15,
        20,
        25,
    ]
    assert concurrency_for_edition(None) == 5
    fake = FakeZoho()
    client, _, _ = make_client(fake, edition="enterprise")
    assert client.max_concurrency == 20
    assert client.configure_concurrency_from_org() == 15
    assert client.edition == "professional"


# --------------------------------------------------------------------------------------
# OAuth
# --------------------------------------------------------------------------------------


def test_token_is_cached_and_sent_as_zoho_oauthtoken() -> None:
    fake = FakeZoho(modules={"Contacts": students(3)})
    client, _, _ = make_client(fake)
    for _ in range(3):
        client.current_user()
    assert fake.refresh_requests == 1
    assert all(r.headers["Authorization"].startswith("Zoho-oauthtoken 1000.access-0001") for r in fake.api_requests)
    assert client.counter["POST /oauth/v2/token"] == 1
    assert client.counter["GET /crm/v8/users"] == 3
    assert client.counter.total == 4


def test_token_refreshed_shortly_before_expiry() -> None:
    fake = FakeZoho()
    client, _, clock = make_client(fake, refresh_margin=60)
    client.org()
    clock.now += 3500
    client.org()
    assert fake.refresh_requests == 1
    clock.now += 50  # 3550 s: within the 60 s margin of the 3600 s lifetime
    client.org()
    assert fake.refresh_requests == 2


def test_invalid_token_refreshes_once_and_retries() -> None:
    fake = FakeZoho()
    client, _, _ = make_client(fake)
    client.org()
    fake.revoke_all()
    assert client.org()["id"] == "1"
    assert fake.refresh_requests == 2
    assert client.token_refreshes == 2


def test_invalid_token_twice_fails_without_a_loop() -> None:
    fake = FakeZoho()
    client, _, _ = make_client(fake)
    client.org()
    original = fake.issue
    fake.issue = lambda: "1000.never-valid-token-xxxxxxxx"  # type: ignore[method-assign]
    fake.revoke_all()
    with pytest.raises(ZohoAuthError) as info:
        client.org()
    fake.issue = original  # type: ignore[method-assign]
    assert fake.refresh_requests == 2
    assert len(fake.api_requests) == 3  # first org(), then the rejected call and its one retry
    assert "1000.never-valid-token" not in str(info.value)


def test_concurrent_invalid_token_refreshes_once() -> None:
    fake = FakeZoho()
    client, _, _ = make_client(fake)
    client.org()
    fake.revoke_all()
    errors = []

    def work() -> None:
        try:
            client.org()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Threads that saw the old token rejected after another thread refreshed reuse its token.
    assert fake.refresh_requests <= 1 + 8
    assert fake.refresh_requests >= 2


def test_invalid_code_is_one_clear_error_without_retry() -> None:
    fake = FakeZoho()
    fake.refresh_mode = "invalid_code"
    client, sleeps, _ = make_client(fake)
    with pytest.raises(ZohoRefreshTokenError) as info:
        list(client.iter_records("Contacts", ["Email"]))
    assert "ZOHO_REFRESH_TOKEN" in str(info.value)
    assert REFRESH_TOKEN not in str(info.value)
    assert fake.refresh_requests == 1
    assert fake.api_requests == []
    assert sleeps == []


def test_invalid_client_with_http_200_names_the_settings_and_data_centre() -> None:
    fake = FakeZoho()
    fake.refresh_mode = "invalid_client"
    client, _, _ = make_client(fake)
    with pytest.raises(ZohoClientCredentialsError) as info:
        client.org()
    text = str(info.value)
    assert "ZOHO_CLIENT_ID" in text and "ZOHO_CLIENT_SECRET" in text and ACCOUNTS in text
    assert CLIENT_SECRET not in text
    assert fake.refresh_requests == 1


def test_access_denied_throttle_is_retried_with_backoff() -> None:
    fake = FakeZoho()
    fake.access_denied_times = 2
    client, sleeps, _ = make_client(fake)
    client.org()
    assert fake.refresh_requests == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_access_denied_forever_stops_with_a_refresh_error() -> None:
    fake = FakeZoho()
    fake.access_denied_times = 100
    client, _, _ = make_client(fake)
    with pytest.raises(ZohoTokenRefreshError) as info:
        client.org()
    assert not info.value.retryable
    assert fake.refresh_requests == 4  # max_attempts of the refresh, not multiplied by an outer loop
    assert fake.api_requests == []


def test_refresh_throttle_bookkeeping_never_exceeds_ten_per_window() -> None:
    fake = FakeZoho()
    client, sleeps, clock = make_client(fake)
    for _ in range(10):
        client.org()
        fake.revoke_all()
        clock.now += 1
    assert fake.refresh_requests == 10
    assert len(client.refresh_times) == 10
    # The 11th refresh must wait until the first leaves the 600 s window.
    client.org()
    assert fake.refresh_requests == 11
    assert sleeps and sleeps[-1] == pytest.approx(600 - 10)
    times = sorted(client.refresh_times)
    assert len(times) <= 10 and times[-1] - times[0] < 600


def test_refresh_limit_fails_fast_when_the_wait_is_too_long() -> None:
    fake = FakeZoho()
    client, sleeps, clock = make_client(fake, max_refresh_wait=30)
    for _ in range(10):
        client.org()
        fake.revoke_all()
    with pytest.raises(ZohoRefreshLimitReached, match="10 access-token refreshes per 600s"):
        client.org()
    assert fake.refresh_requests == 10
    assert sleeps == []


# --------------------------------------------------------------------------------------
# retries
# --------------------------------------------------------------------------------------


def test_429_retry_after_is_honoured() -> None:
    fake = FakeZoho()
    fake.faults = [
        httpx.Response(
            429,
            headers={"Retry-After": "3"},
            json={"code": "TOO_MANY_REQUESTS", "message": "", "status": "error", "details": {}},
        )
    ]
    client, sleeps, _ = make_client(fake)
    client.org()
    assert sleeps == [3.0]
    assert client.counter.retries == 1


def test_5xx_transport_and_timeout_are_retried() -> None:
    fake = FakeZoho()
    fake.faults = [httpx.Response(503), httpx.RemoteProtocolError("dropped"), httpx.ReadTimeout("slow")]
    client, sleeps, _ = make_client(fake)
    assert client.org()["id"] == "1"
    assert len(fake.api_requests) == 4 and len(sleeps) == 3


def test_exhausted_retries_raise_typed_errors() -> None:
    fake = FakeZoho()
    fake.faults = [httpx.Response(500)] * 10
    client, _, _ = make_client(fake)
    with pytest.raises(ZohoServerError):
        client.org()
    fake.faults = [httpx.ConnectError("nope")] * 10
    with pytest.raises(ZohoTransportError):
        client.org()
    fake.faults = [httpx.Response(429)] * 10
    with pytest.raises(ZohoRateLimited):
        client.org()


def test_client_errors_are_typed_and_not_retried() -> None:
    fake = FakeZoho(modules={"Contacts": students(1)})
    client, sleeps, _ = make_client(fake)
    with pytest.raises(ZohoNotFound) as info:
        list(client.iter_records("Nope", ["Email"]))
    assert info.value.code == "INVALID_MODULE"
    fake.faults = [
        httpx.Response(
            401,
            json={"code": "OAUTH_SCOPE_MISMATCH", "message": "invalid oauth scope", "status": "error", "details": {}},
        )
    ]
    with pytest.raises(ZohoScopeError, match="scope"):
        client.org()
    fake.faults = [
        httpx.Response(400, json={"code": "INVALID_DATA", "message": "bad", "status": "error", "details": {}})
    ]
    with pytest.raises(ZohoAPIError) as info2:
        client.org()
    assert info2.value.code == "INVALID_DATA" and not info2.value.retryable
    assert sleeps == []


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------


def test_reads_beyond_2000_by_switching_to_page_token() -> None:
    fake = FakeZoho(modules={"Contacts": students(2500)}, token_after_page=3)
    client, _, _ = make_client(fake)
    rows = list(client.iter_records("Contacts", ["Last_Name", "Email"]))
    assert [r["id"] for r in rows] == [s["id"] for s in fake.modules["Contacts"]]
    params = [dict(r.url.params) for r in fake.api_requests]
    assert [p.get("page") for p in params[:3]] == ["1", "2", "3"]
    assert all("page_token" in p and "page" not in p for p in params[3:])
    assert len(params) == 13
    assert all(p["sort_by"] == "Modified_Time" and p["sort_order"] == "asc" for p in params)
    assert client.counter["GET /crm/v8/Contacts"] == 13


def test_page_limit_without_token_is_a_clear_error() -> None:
    fake = FakeZoho(modules={"Contacts": students(2100)}, token_after_page=10**6)
    client, _, _ = make_client(fake)
    got = []
    with pytest.raises(ZohoPaginationLimit):
        for row in client.iter_records("Contacts", ["Email"]):
            got.append(row)
    assert len(got) == 2000


def test_204_empty_and_304_not_modified() -> None:
    fake = FakeZoho(modules={"Empty": [], "Contacts": students(5)})
    client, _, _ = make_client(fake)
    assert list(client.iter_records("Empty", ["Email"])) == []
    since = datetime.fromisoformat(zoho_time(10))
    assert list(client.iter_records("Contacts", ["Email"], modified_since=since)) == []
    assert fake.api_requests[-1].headers["If-Modified-Since"] == "2024-01-01T00:10:00+00:00"
    newer = list(client.iter_records("Contacts", ["Email"], modified_since=datetime.fromisoformat(zoho_time(2))))
    assert [r["Last_Name"] if "Last_Name" in r else r["Email"] for r in newer] == ["s3@college.test", "s4@college.test"]


def test_if_modified_since_format() -> None:
    assert (
        format_if_modified_since(
            datetime(2019, 7, 25, 15, 26, 49, 123, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        )
        == "2019-07-25T15:26:49+05:30"
    )
    assert format_if_modified_since(datetime(2024, 6, 1, 10, 0, 0)) == "2024-06-01T10:00:00+00:00"


def test_more_than_50_fields_are_batched_and_merged_by_id() -> None:
    fake = FakeZoho(modules={"Contacts": students(450, extra_fields=120)})
    client, _, _ = make_client(fake)
    fields = ["Last_Name", "Email"] + [f"F{f:03d}" for f in range(120)]
    rows = list(client.iter_records("Contacts", fields))
    assert len(rows) == 450
    assert {r["id"] for r in rows} == {s["id"] for s in fake.modules["Contacts"]}
    for r in rows:
        assert set(fields) <= set(r), "every requested field merged in"
        i = int(r["id"]) - 5843104000000000000
        assert r["F119"] == f"{i}-119" and r["Last_Name"] == f"S{i}"
    requested = [dict(q.url.params)["fields"].split(",") for q in fake.api_requests]
    assert all(len(f) <= 50 and "id" in f and "Modified_Time" in f for f in requested)
    assert len(requested) == 3 * 3  # 3 field batches x 3 pages


def test_field_batch_stragglers_are_fetched_by_id() -> None:
    fake = FakeZoho(modules={"Contacts": students(5, extra_fields=60)})
    client, _, _ = make_client(fake)
    original = fake.list
    state = {"n": 0}

    def lossy(request: httpx.Request, rows: list[dict], key: str) -> httpx.Response:
        state["n"] += 1
        if state["n"] == 2 and "ids" not in request.url.params:  # the second batch misses record 0
            return original(request, rows[1:], key)
        return original(request, rows, key)

    fake.list = lossy  # type: ignore[method-assign]
    fields = ["Email"] + [f"F{f:03d}" for f in range(60)]
    rows = list(client.iter_records("Contacts", fields))
    assert len(rows) == 5
    assert all("F059" in r and "Email" in r for r in rows)
    assert "ids" in fake.api_requests[-1].url.params


def test_iter_deleted() -> None:
    fake = FakeZoho(modules={"Contacts": []})
    fake.deleted["Contacts"] = [
        {"id": str(i), "type": "recycle", "deleted_time": zoho_time(i), "display_name": f"D{i}"} for i in range(250)
    ]
    client, _, _ = make_client(fake)
    rows = list(client.iter_deleted("Contacts", since=datetime.fromisoformat(zoho_time(49))))
    assert len(rows) == 200
    assert all(dict(r.url.params)["type"] == "all" for r in fake.api_requests)
    assert client.counter["GET /crm/v8/Contacts/deleted"] == 1
    with pytest.raises(ValueError):
        list(client.iter_deleted("Contacts", type="everything"))


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def test_upsert_in_batches_of_100_with_typed_results() -> None:
    fake = FakeZoho(modules={"Contacts": students(10)})
    client, _, _ = make_client(fake)
    records = [{"Email": f"s{i}@college.test", "Last_Name": f"New{i}"} for i in range(250)]
    records[5]["Last_Name"] = "BAD"
    results = client.upsert("Contacts", records, ["Email"])
    assert len(results) == 250 and all(isinstance(r, UpsertResult) for r in results)
    assert [r.index for r in results] == list(range(250))
    assert client.counter["POST /crm/v8/Contacts/upsert"] == 3
    assert sum(r.action == "update" for r in results) == 9
    assert sum(r.action == "insert" for r in results) == 240
    bad = results[5]
    assert not bad.ok and bad.code == "INVALID_DATA" and bad.details == {"api_name": "Last_Name"}
    bodies = [json.loads(r.content) for r in fake.api_requests]
    assert all(b["duplicate_check_fields"] == ["Email"] and b["trigger"] == [] for b in bodies)


def test_upsert_retry_after_a_lost_answer_does_not_duplicate() -> None:
    fake = FakeZoho(modules={"Contacts": []})
    client, _, _ = make_client(fake)
    real_api = fake.api
    state = {"lost": False}

    def lose_first_answer(request: httpx.Request) -> httpx.Response:
        response = real_api(request)
        if request.url.path.endswith("/upsert") and not state["lost"]:
            state["lost"] = True
            raise httpx.ReadTimeout("answer lost after the write")
        return response

    fake.api = lose_first_answer  # type: ignore[method-assign]
    records = [{"Email": f"n{i}@college.test", "Last_Name": f"N{i}"} for i in range(3)]
    results = client.upsert("Contacts", records, ["Email"])
    assert state["lost"]
    assert len(fake.modules["Contacts"]) == 3, "the retried batch must not create duplicates"
    assert all(r.ok for r in results)


def test_upsert_refuses_records_without_a_duplicate_key() -> None:
    fake = FakeZoho(modules={"Contacts": []})
    client, _, _ = make_client(fake)
    with pytest.raises(ValueError, match="duplicate"):
        client.upsert("Contacts", [{"Last_Name": "X"}], ["Email"])
    with pytest.raises(ValueError):
        client.upsert("Contacts", [{"Email": "x@y"}], [])
    assert fake.api_requests == []


# --------------------------------------------------------------------------------------
# Bulk Read
# --------------------------------------------------------------------------------------


def test_bulk_read_polls_downloads_and_streams_csv_pages() -> None:
    fake = FakeZoho(modules={"Contacts": students(25)})
    fake.bulk_page_size = 10
    client, sleeps, _ = make_client(fake, bulk_poll_interval=2.5)
    rows = list(
        client.bulk_read(
            "Contacts",
            ["Last_Name", "Email"],
            criteria={"field": {"api_name": "Email"}, "comparator": "contains", "value": "@"},
        )
    )
    assert len(rows) == 25
    assert rows[0] == {"Id": fake.modules["Contacts"][0]["id"], "Last_Name": "S0", "Email": "s0@college.test"}
    assert len(fake.jobs) == 3
    assert [j["query"]["page"] for j in fake.jobs.values()] == [1, 2, 3]
    assert all(j["query"]["criteria"]["comparator"] == "contains" for j in fake.jobs.values())
    assert sleeps == [2.5] * 6
    assert client.counter["GET /crm/bulk/v8/read/{job_id}/result"] == 3


def test_bulk_read_failure_and_timeout() -> None:
    fake = FakeZoho(modules={"Contacts": students(3)})
    fake.bulk_polls_before_done = 10**6
    client, _, _ = make_client(fake, bulk_poll_interval=10, bulk_timeout=35)
    with pytest.raises(ZohoBulkReadError, match="after the timeout"):
        list(client.bulk_read("Contacts", ["Email"]))


# --------------------------------------------------------------------------------------
# secrets, concurrency, metadata
# --------------------------------------------------------------------------------------


def test_secrets_absent_from_repr_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeZoho(modules={"Contacts": students(3)})
    fake.faults = [
        httpx.ConnectError(
            f"boom Authorization: Zoho-oauthtoken 1000.access-0001-ffffffffffff refresh_token={REFRESH_TOKEN}"
        ),
        httpx.Response(503),
    ]
    client, _, _ = make_client(fake)
    list(client.iter_records("Contacts", ["Email"]))
    fake.revoke_all()
    list(client.iter_records("Contacts", ["Email"]))
    fake.refresh_mode = "invalid_code"
    fake.revoke_all()
    with pytest.raises(ZohoRefreshTokenError) as info:
        client.org()
    secrets = [CLIENT_SECRET, REFRESH_TOKEN, "1000.access-0001-ffffffffffff", "1000.access-0002-ffffffffffff"]
    texts = [repr(client), str(info.value), repr(info.value)] + [r.getMessage() for r in caplog.records]
    assert any("retrying" in t for t in texts)
    for text in texts:
        for s in secrets:
            assert s not in text, text


def test_concurrency_is_capped() -> None:
    fake = FakeZoho()
    fake.hold = 0.01
    client, _, _ = make_client(fake, max_concurrency=2)
    client.org()
    threads = [threading.Thread(target=client.org) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.api_requests) == 9
    assert fake.max_in_flight <= 2
    assert client.limiter.peak <= 2


def test_metadata_calls() -> None:
    fake = FakeZoho(modules={"Contacts": [], "Registrations": []})
    client, _, _ = make_client(fake)
    assert [m["api_name"] for m in client.list_modules()] == ["Contacts", "Registrations"]
    assert client.list_fields("Contacts") == [{"api_name": "Email"}]
    assert client.current_user()["email"] == "sync@college.test"
    assert ZohoClient.edition_of(client.org()) == "professional"
    assert dict(fake.api_requests[1].url.params) == {"module": "Contacts"}
    assert dict(fake.api_requests[2].url.params) == {"type": "CurrentUser"}


def test_deleted_list_continues_by_deleted_time_when_zoho_refuses_a_page() -> None:
    """/deleted has no page_token: when Zoho refuses page 11, the read moves If-Modified-Since on."""
    deleted = [{"id": str(7000 + i), "type": "recycle", "deleted_time": zoho_time(i // 3)} for i in range(2600)]
    asked: list[str | None] = []

    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.a", "api_domain": API, "expires_in": 3600})
        since = request.headers.get("If-Modified-Since")
        asked.append(since)
        rows = [d for d in deleted if since is None or d["deleted_time"] >= since]
        page, per_page = int(request.url.params["page"]), int(request.url.params["per_page"])
        if (page - 1) * per_page >= 2000:
            return pagination_limit_exceeded()
        chunk = rows[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(rows)
        return httpx.Response(
            200,
            json={
                "data": chunk,
                "info": {"per_page": per_page, "page": page, "count": len(chunk), "more_records": more},
            },
        )

    client, _, _ = make_client(zoho)
    with client:
        got = [r["id"] for r in client.iter_deleted("Students")]
    assert got == [d["id"] for d in deleted], "every deleted record once, in order, across the continuation"
    assert any(since is not None for since in asked)
