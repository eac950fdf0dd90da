"""The Zoho CRM v8 client.

Plain Python (httpx + tenacity), no Dagster. What it does:

- **OAuth refresh-token flow** with a cached access token, refreshed shortly before it
  expires and once on a 401 ``INVALID_TOKEN`` (per request; a second 401 fails). A lock
  makes refresh thread-safe, and a local log of refresh times keeps the client within
  Zoho's limit of 10 refreshes per 10 minutes per refresh token: it waits for a free slot
  (or fails clearly if the wait would be too long) rather than provoke the throttle. The
  ``Access Denied`` throttle itself is retried with backoff. Success is decided by the
  presence of ``access_token``, not the HTTP status (``invalid_client`` comes with 200).
  ``invalid_code`` and ``invalid_client`` raise at once, naming the settings to fix.
- Requests send ``Authorization: Zoho-oauthtoken <token>``; the refresh posts its
  secrets in a form body, so no secret is ever part of a URL.
- Retries (tenacity): exponential backoff with jitter for 429, 5xx, transport errors and
  timeouts, honouring ``Retry-After``. A resizable semaphore caps concurrent requests at
  the org edition's limit (Free 5, Standard 10, Professional 15, Enterprise 20, Ultimate 25).
- Streaming readers: :meth:`ZohoClient.iter_records` (``page`` then ``page_token``, so past
  2,000 records; 204/304; ``If-Modified-Since``; more than 50 fields in batches merged by
  id), :meth:`ZohoClient.iter_deleted`, :meth:`ZohoClient.bulk_read` (zip streamed to a
  temporary file, CSV rows streamed out), and :meth:`ZohoClient.upsert` in batches of 100.
- :attr:`ZohoClient.counter` counts every HTTP request (token refreshes included).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr

from integration_pipelines.lib.http import (
    ConcurrencyLimiter,
    HttpSession,
    Redactor,
    RequestCounter,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
)
from integration_pipelines.lib.zoho import bulk
from integration_pipelines.lib.zoho.auth import TokenManager, accounts_url_for
from integration_pipelines.lib.zoho.errors import (
    ZohoAPIError,
    ZohoAuthError,
    ZohoError,
    ZohoNotFound,
    ZohoPaginationLimit,
    ZohoPermissionError,
    ZohoRateLimited,
    ZohoRecordError,
    ZohoResponseError,
    ZohoScopeError,
    ZohoServerError,
    ZohoTokenRefreshError,
    ZohoTransportError,
    describe_details,
    error_code,
    error_envelope,
    json_or_none,
)
from integration_pipelines.lib.zoho.times import as_datetime, format_if_modified_since, parse_zoho_datetime

logger = logging.getLogger(__name__)

MAX_FIELDS_PER_CALL = 50
MAX_PER_PAGE = 200
MAX_IDS_PER_CALL = 100  # records asked by `ids` in one request
DISCRETE_PAGE_LIMIT = 2000
UPSERT_BATCH = 100


# Concurrent calls allowed per org and app, by edition (API_NOTES B5).
ZOHO_CONCURRENCY_BY_EDITION: dict[str, int] = {
    "free": 5,
    "standard": 10,
    "professional": 15,
    "enterprise": 20,
    "ultimate": 25,
}


def concurrency_for_edition(edition: str | None, default: int = 5) -> int:
    """Concurrent-call limit per org and app for an edition name (case-insensitive)."""
    if not edition:
        return default
    return ZOHO_CONCURRENCY_BY_EDITION.get(str(edition).strip().lower(), default)


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """The outcome for one record of an upsert (in the order the records were given).

    ``action`` is ``insert`` or ``update`` on success. After a retried batch a record
    created by the lost first attempt is reported as ``update``: its effect happened once.
    """

    index: int
    ok: bool
    status: str
    code: str | None
    action: str | None
    id: str | None
    message: str | None
    duplicate_field: str | None
    details: dict[str, Any]


class ZohoClient:
    """A Zoho CRM v8 client.

    Args:
        api_domain: ``https://www.zohoapis.<dc>`` (or the sandbox's URL).
        accounts_url: the accounts server (``https://accounts.zoho.<dc>``) or its full
            ``/oauth/v2/token`` URL; ``None`` derives it from ``data_centre`` or ``api_domain``.
        client_id, client_secret, refresh_token: the self-client credentials
            (``ZOHO_CLIENT_ID``, ``ZOHO_CLIENT_SECRET``, ``ZOHO_REFRESH_TOKEN``).
        max_concurrency: concurrent requests allowed; default from ``edition`` (Free 5 when
            unknown). :meth:`configure_concurrency_from_org` reads the edition from ``/org``.
        timeout, max_attempts / retry, sleep, clock: network and retry behaviour; tests
            pass a recording ``sleep`` and a fake ``clock``.
        client / transport: inject an ``httpx.Client`` or a transport.
        refresh_limit, refresh_window: Zoho's refresh throttle (10 per 600 s).
        refresh_margin: refresh this many seconds before the token expires.
        max_refresh_wait: the longest wait for a free refresh slot before failing.
        bulk_poll_interval, bulk_timeout: Bulk Read job polling.
    """

    def __init__(
        self,
        api_domain: str,
        accounts_url: str | None,
        client_id: str,
        client_secret: str | SecretStr,
        refresh_token: str | SecretStr,
        *,
        max_concurrency: int | None = None,
        edition: str | None = None,
        data_centre: str | None = None,
        api_version: str = "v8",
        timeout: float | httpx.Timeout | None = None,
        max_attempts: int = 5,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        counter: RequestCounter | None = None,
        refresh_limit: int = 10,
        refresh_window: float = 600.0,
        refresh_margin: float = 60.0,
        max_refresh_wait: float = 660.0,
        bulk_poll_interval: float = 5.0,
        bulk_timeout: float = 3600.0,
    ) -> None:
        self.api_domain = api_domain.rstrip("/")
        base = accounts_url_for(self.api_domain, data_centre=data_centre, explicit=accounts_url)
        self.accounts_url = base
        self.token_url = base if base.endswith("/oauth/v2/token") else base + "/oauth/v2/token"
        self.client_id = client_id
        self._client_secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret or "")
        self._refresh_token = refresh_token if isinstance(refresh_token, SecretStr) else SecretStr(refresh_token or "")
        self.api_version = api_version
        self.retry = retry or RetryPolicy(max_attempts=max_attempts)
        self._sleep = sleep
        self._clock = clock
        self.refresh_limit = refresh_limit
        self.refresh_window = refresh_window
        self.refresh_margin = refresh_margin
        self.max_refresh_wait = max_refresh_wait
        self.bulk_poll_interval = bulk_poll_interval
        self.bulk_timeout = bulk_timeout
        self.edition = edition
        limit = max_concurrency or concurrency_for_edition(edition)
        self.limiter = ConcurrencyLimiter(limit)
        self._redact = Redactor([self._client_secret, self._refresh_token])
        self._session = HttpSession(
            redactor=self._redact,
            counter=counter or RequestCounter(),
            timeout=timeout,
            client=client,
            transport=transport,
            limiter=self.limiter,
            transport_error=ZohoTransportError,
            max_connections=max(limit, 10) + 2,
            logger=logger,
        )
        self._tokens = TokenManager(self)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def counter(self) -> RequestCounter:
        """HTTP requests sent (``total``, ``by_endpoint``), retries and refreshes included."""
        return self._session.counter

    @property
    def max_concurrency(self) -> int:
        return self.limiter.limit

    @property
    def token_refreshes(self) -> int:
        """Token refresh requests sent by this client."""
        return self._tokens.refreshes

    @property
    def refresh_times(self) -> list[float]:
        """Clock times of the refresh requests inside the current throttle window."""
        with self._tokens.lock:
            return list(self._tokens.refresh_log)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ZohoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ZohoClient(api_domain={self.api_domain!r}, accounts_url={self.accounts_url!r}, "
            f"client_id={self.client_id!r}, client_secret=SecretStr('**********'), "
            f"refresh_token=SecretStr('**********'), max_concurrency={self.max_concurrency})"
        )

    # -- OAuth -------------------------------------------------------------------------

    def access_token(self) -> SecretStr:
        """The current access token (refreshed if needed). For tests and diagnostics."""
        return self._tokens.get()

    # -- the one request path ----------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.api_domain + path

    def _request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send an authorised API request with retries; return the checked response.

        A 401 ``INVALID_TOKEN`` triggers one refresh and one more try for this request,
        however many retry attempts follow; a second 401 raises :class:`ZohoAuthError`.
        """
        refreshed = False
        content = None
        base_headers = {"Accept": "application/json", **(headers or {})}
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            base_headers["Content-Type"] = "application/json"

        def send(token: SecretStr) -> httpx.Response:
            hdrs = {**base_headers, "Authorization": f"Zoho-oauthtoken {token.get_secret_value()}"}
            return self._session.request(
                method, self._url(path), endpoint=endpoint, params=params, content=content, headers=hdrs
            )

        def attempt() -> httpx.Response:
            nonlocal refreshed
            token = self._tokens.get()
            response = send(token)
            if response.status_code == 401 and not refreshed and error_code(response) == "INVALID_TOKEN":
                refreshed = True
                logger.info("Zoho rejected the access token (INVALID_TOKEN); refreshing once")
                self._tokens.invalidate(token)
                response = send(self._tokens.get())
            return self._check(response, endpoint)

        return call_with_retries(
            attempt, policy=self.retry, sleep=self._sleep, logger=logger, counter=self.counter, what=f"Zoho {endpoint}"
        )

    def _check(self, response: httpx.Response, endpoint: str) -> httpx.Response:
        status = response.status_code
        if status in (200, 201, 202, 204, 207, 304):
            return response
        body = json_or_none(response)
        envelope = error_envelope(body)
        code = envelope.get("code")
        zmsg = self._redact(envelope.get("message") or "")
        details = envelope.get("details")
        kwargs: dict[str, Any] = {
            "endpoint": endpoint,
            "status_code": status,
            "code": code,
            "details": details,
            "zoho_message": zmsg,
        }
        text = f"Zoho {endpoint}: HTTP {status} {code or ''} {zmsg}".rstrip()
        if detail := describe_details(details):
            text += f" ({self._redact(detail)})"
        if status == 429:
            return self._raise(
                ZohoRateLimited(text, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs)
            )
        if status >= 500:
            return self._raise(
                ZohoServerError(text, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs)
            )
        if code == "OAUTH_SCOPE_MISMATCH":
            return self._raise(
                ZohoScopeError(
                    text + " (the ZOHO_REFRESH_TOKEN grant lacks a scope this call needs, e.g. "
                    "ZohoCRM.modules.ALL, ZohoCRM.settings.ALL, ZohoCRM.bulk.read, ZohoCRM.org.READ, "
                    "ZohoCRM.users.READ)",
                    **kwargs,
                )
            )
        if status == 401 or code in ("INVALID_TOKEN", "AUTHENTICATION_FAILURE"):
            return self._raise(ZohoAuthError(text + " (the access token was refused even after a refresh)", **kwargs))
        if code == "DISCRETE_PAGINATION_LIMIT_EXCEEDED":
            return self._raise(ZohoPaginationLimit(text, **kwargs))
        if status == 403 or code == "NO_PERMISSION":
            return self._raise(ZohoPermissionError(text, **kwargs))
        if status == 404 or code in ("INVALID_MODULE", "NOT_FOUND", "INVALID_URL_PATTERN"):
            return self._raise(ZohoNotFound(text, **kwargs))
        return self._raise(ZohoAPIError(text, **kwargs))

    @staticmethod
    def _raise(exc: ZohoError) -> httpx.Response:
        raise exc

    def _get_json(self, path: str, *, endpoint: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = self._request("GET", path, endpoint=endpoint, params=params)
        if response.status_code in (204, 304):
            return {}
        return self._decode(response, endpoint)

    def _decode(self, response: httpx.Response, endpoint: str) -> dict[str, Any]:
        body = json_or_none(response)
        if not isinstance(body, dict):
            raise ZohoResponseError(
                f"Zoho {endpoint}: HTTP {response.status_code} with a body that is not a JSON object",
                endpoint=endpoint,
                status_code=response.status_code,
            )
        return body

    # -- metadata ----------------------------------------------------------------------

    def list_modules(self) -> list[dict[str, Any]]:
        """``GET /settings/modules``."""
        v = self.api_version
        return list(
            self._get_json(f"/crm/{v}/settings/modules", endpoint=f"GET /crm/{v}/settings/modules").get("modules") or []
        )

    def list_fields(self, module: str) -> list[dict[str, Any]]:
        """``GET /settings/fields?module=``."""
        v = self.api_version
        body = self._get_json(
            f"/crm/{v}/settings/fields", endpoint=f"GET /crm/{v}/settings/fields", params={"module": module}
        )
        return list(body.get("fields") or [])

    def current_user(self) -> dict[str, Any]:
        """``GET /users?type=CurrentUser`` (the user the refresh token belongs to)."""
        v = self.api_version
        users = (
            self._get_json(f"/crm/{v}/users", endpoint=f"GET /crm/{v}/users", params={"type": "CurrentUser"}).get(
                "users"
            )
            or []
        )
        return users[0] if users else {}

    def org(self) -> dict[str, Any]:
        """``GET /org``: the organisation, with ``license_details`` (the edition)."""
        v = self.api_version
        orgs = self._get_json(f"/crm/{v}/org", endpoint=f"GET /crm/{v}/org").get("org") or []
        return orgs[0] if orgs else {}

    @staticmethod
    def edition_of(org: Mapping[str, Any]) -> str | None:
        """The edition name from an org record (``license_details.paid_type``), lower-case."""
        lic = org.get("license_details") or {}
        for key in ("paid_type", "edition", "license_type"):
            value = lic.get(key) if isinstance(lic, Mapping) else None
            if value:
                return str(value).strip().lower()
        for key in ("edition", "paid_type"):
            if org.get(key):
                return str(org[key]).strip().lower()
        return None

    def configure_concurrency_from_org(self) -> int:
        """Read the edition from ``/org`` and set the concurrency cap to its limit.

        When the edition cannot be read (no ``ZohoCRM.org.READ`` scope, an error, an edition of
        another name) the cap stays as it is: the Free edition's 5 unless set. Credentials that
        fail still raise: nothing else would work either."""
        try:
            edition = self.edition_of(self.org())
        except ZohoTokenRefreshError:
            raise
        except ZohoError as exc:
            logger.warning(
                "Zoho: could not read the org edition (%s); keeping %d concurrent requests", exc, self.limiter.limit
            )
            return self.limiter.limit
        if edition:
            self.edition = edition
            self.limiter.set_limit(concurrency_for_edition(edition, default=self.limiter.limit))
        return self.limiter.limit

    def record_count(self, module: str) -> int:
        """``GET /crm/v8/{module}/actions/count``: how many records the module holds (one request).
        Zoho's OAS types ``count`` as a string; an integer is accepted too."""
        v = self.api_version
        endpoint = f"GET /crm/{v}/{module}/actions/count"
        body = self._get_json(f"/crm/{v}/{module}/actions/count", endpoint=endpoint)
        count = body.get("count", 0 if not body else None)
        try:
            if isinstance(count, bool):
                raise ValueError
            return int(count)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ZohoResponseError(f"Zoho {endpoint}: no usable count in the answer", endpoint=endpoint) from None

    # -- reading records ---------------------------------------------------------------

    def _iter_pages(
        self,
        path: str,
        *,
        module: str,
        endpoint: str,
        params: Mapping[str, Any],
        per_page: int,
        if_modified_since: str | None,
        page_limit: int | None = DISCRETE_PAGE_LIMIT,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``data``: ``page=1,2,...`` until Zoho offers a ``next_page_token``, then
        ``page_token`` (which reaches past the 2,000-record limit of ``page``).

        ``page_limit`` stops before asking for a page Zoho is known to refuse; None leaves it to
        the server (its refusal raises ZohoPaginationLimit all the same)."""
        headers = {"If-Modified-Since": if_modified_since} if if_modified_since else None
        page = 1
        page_token: str | None = None
        asked = 0  # pages asked for, by page or by page_token: a record's position for errors
        while True:
            asked += 1
            query = {**params, "per_page": per_page}
            if page_token:
                query["page_token"] = page_token
            else:
                query["page"] = page
            response = self._request("GET", path, endpoint=endpoint, params=query, headers=headers)
            if response.status_code in (204, 304):  # empty module / nothing modified since
                return
            body = self._decode(response, endpoint)
            data = body.get("data") or []
            info = body.get("info") or {}
            for index, record in enumerate(data):
                _keep_id_exact(record, module, asked, index)
            yield data
            if not info.get("more_records") or not data:
                return
            next_token = info.get("next_page_token")
            if next_token:
                page_token = str(next_token)
                continue
            if page_token:
                raise ZohoResponseError(f"Zoho {endpoint}: more_records without a next_page_token", endpoint=endpoint)
            page += 1
            if page_limit is not None and (page - 1) * per_page >= page_limit:
                raise ZohoPaginationLimit(
                    f"Zoho {endpoint}: more than {DISCRETE_PAGE_LIMIT} records and no next_page_token "
                    "was offered to continue",
                    endpoint=endpoint,
                    code="DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                )

    def iter_records(
        self,
        module: str,
        fields: Sequence[str],
        *,
        modified_since: datetime | str | None = None,
        sort_by: str = "Modified_Time",
        sort_order: str = "asc",
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[dict[str, Any]]:
        """Stream a module's records (``GET /crm/v8/{module}``), page by page.

        - ``modified_since`` is sent as ``If-Modified-Since``; 304 (nothing changed) and 204
          (empty) end the stream. Zoho filters inclusively-or-after, so a boundary record may
          come again on the next sync; upserts make that harmless (airbyte adds 1 s instead
          and risks missing a record changed in the same second).
        - ``page`` is followed, then ``page_token`` as soon as Zoho offers one.
        - More than 50 fields are requested in batches of 50 (each with ``id`` and
          ``sort_by``), read in lockstep page by page, and merged by ``id``; a record is
          yielded as soon as every batch has delivered it. Stragglers (records that moved
          between pages while reading) are fetched by id at the end.
        """
        if not fields:
            raise ValueError("Zoho requires at least one field")
        per_page = max(1, min(int(per_page), MAX_PER_PAGE))
        batches = field_batches(["id", sort_by] if sort_by else ["id"], fields)
        v = self.api_version
        path = f"/crm/{v}/{module}"
        endpoint = f"GET /crm/{v}/{module}"
        ims = format_if_modified_since(modified_since) if modified_since is not None else None

        def pages(batch: list[str]) -> Iterator[list[dict[str, Any]]]:
            params: dict[str, Any] = {"fields": ",".join(batch), "sort_by": sort_by, "sort_order": sort_order}
            return self._iter_pages(
                path, module=module, endpoint=endpoint, params=params, per_page=per_page, if_modified_since=ims
            )

        if len(batches) == 1:
            for data in pages(batches[0]):
                yield from data
            return
        yield from self._merge_batches(module, batches, [pages(b) for b in batches])

    def _merge_batches(
        self,
        module: str,
        batches: list[list[str]],
        streams: list[Iterator[list[dict[str, Any]]]],
    ) -> Iterator[dict[str, Any]]:
        n = len(streams)
        pending: dict[str, dict[str, Any]] = {}
        have: dict[str, set[int]] = {}
        active = list(range(n))
        while active:
            for i in list(active):
                data = next(streams[i], None)
                if data is None:
                    active.remove(i)
                    continue
                for record in data:
                    rid = str(record.get("id"))
                    merged = pending.setdefault(rid, {})
                    merged.update(record)
                    got = have.setdefault(rid, set())
                    got.add(i)
                    if len(got) == n:
                        del have[rid]
                        yield pending.pop(rid)
        if pending:
            yield from self._complete_stragglers(module, batches, pending, have)

    def _complete_stragglers(
        self,
        module: str,
        batches: list[list[str]],
        pending: dict[str, dict[str, Any]],
        have: dict[str, set[int]],
    ) -> Iterator[dict[str, Any]]:
        logger.info(
            "Zoho %s: %d records arrived in some field batches only; fetching the rest by id", module, len(pending)
        )
        for i, batch in enumerate(batches):
            missing = [rid for rid, got in have.items() if i not in got]
            for record in self._records_with_ids(module, missing, batch):
                rid = str(record.get("id"))
                if rid in pending:
                    pending[rid].update(record)
                    have[rid].add(i)
        for rid, record in pending.items():
            if len(have[rid]) < len(batches):
                logger.warning("Zoho %s record %s is incomplete (deleted while reading?)", module, rid)
            yield record

    def iter_records_by_id(self, module: str, ids: Sequence[str], fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The records of `module` with these ids (``GET /crm/v8/{module}?ids=``, up to 100 ids a
        request, more than 50 fields in batches merged by id), as the pages would give them. An id
        Zoho does not have (deleted meanwhile) is left out."""
        batches = field_batches(["id", "Modified_Time"], fields)
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            chunk = list(ids[start : start + MAX_IDS_PER_CALL])
            merged: dict[str, dict[str, Any]] = {}
            for batch in batches:
                for record in self._records_with_ids(module, chunk, batch):
                    merged.setdefault(str(record.get("id")), {}).update(record)
            yield from merged.values()

    def _records_with_ids(self, module: str, ids: Sequence[str], fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        v = self.api_version
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            body = self._get_json(
                f"/crm/{v}/{module}",
                endpoint=f"GET /crm/{v}/{module}",
                params={"ids": ",".join(ids[start : start + MAX_IDS_PER_CALL]), "fields": ",".join(fields)},
            )
            yield from body.get("data") or []

    def iter_deleted(
        self,
        module: str,
        *,
        since: datetime | str | None = None,
        type: str = "all",  # noqa: A002 - Zoho's own parameter name
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[dict[str, Any]]:
        """Deleted records (``GET /crm/v8/{module}/deleted?type=all|recycle|permanent``),
        newer than ``since`` (sent as ``If-Modified-Since``).

        This endpoint takes ``page`` but no ``page_token``. Whether its ``page`` stops at 2,000
        records as the record lists' does is not documented, so the client keeps paging and lets
        Zoho say. If it refuses, the read goes on from the newest ``deleted_time`` seen, as a new
        ``If-Modified-Since``: the header is inclusive, so the records of that boundary second
        are skipped by id. It does so only while the answers come in ``deleted_time`` order;
        otherwise, or when one second holds all the records a page run can reach, the error stands.
        """
        if type not in ("all", "recycle", "permanent"):
            raise ValueError("type must be all, recycle or permanent")
        v = self.api_version
        cursor = since
        at_cursor: set[str] = set()  # ids already yielded whose deleted_time is the cursor's
        while True:
            newest: str | None = None
            newest_ids: set[str] = set()
            ordered = True
            try:
                for data in self._iter_pages(
                    f"/crm/{v}/{module}/deleted",
                    module=f"{module}/deleted",
                    endpoint=f"GET /crm/{v}/{module}/deleted",
                    params={"type": type},
                    per_page=max(1, min(int(per_page), MAX_PER_PAGE)),
                    if_modified_since=format_if_modified_since(cursor) if cursor is not None else None,
                    page_limit=None,
                ):
                    for record in data:
                        record_id = str(record.get("id"))
                        if record_id in at_cursor:
                            continue
                        deleted_time = record.get("deleted_time")
                        if newest is not None and deleted_time is not None:
                            if parse_zoho_datetime(deleted_time) < parse_zoho_datetime(newest):
                                ordered = False
                        if deleted_time != newest:
                            newest, newest_ids = deleted_time, set()
                        newest_ids.add(record_id)
                        yield record
                return
            except ZohoPaginationLimit:
                moved_on = newest is not None and (cursor is None or parse_zoho_datetime(newest) > as_datetime(cursor))
                if not (ordered and moved_on):
                    raise
                logger.info("Zoho %s/deleted: past %d records, continuing from %s", module, DISCRETE_PAGE_LIMIT, newest)
                assert newest is not None  # moved_on says so
                cursor, at_cursor = parse_zoho_datetime(newest), newest_ids

    # -- writing -----------------------------------------------------------------------

    def iter_upsert(
        self,
        module: str,
        records: Iterable[Mapping[str, Any]],
        duplicate_check_fields: Sequence[str],
        *,
        trigger: Sequence[str] = (),
    ) -> Iterator[UpsertResult]:
        """Upsert in batches of 100 (``POST /crm/v8/{module}/upsert``), yielding one typed
        :class:`UpsertResult` per record, in order.

        **Why retrying is safe.** Every record must carry a value for a
        ``duplicate_check_fields`` field (or its ``id``); this is checked before anything is
        sent. Zoho matches on those fields, so if a batch is sent again after a lost answer
        (timeout, 5xx, dropped connection) the records the first attempt created are found
        and updated with the same values instead of being created twice. ``trigger`` is
        empty by default so workflows, approvals and blueprints do not fire again on a
        repeat; pass e.g. ``("workflow",)`` to opt in.
        """
        dup_fields = list(duplicate_check_fields)
        if not dup_fields:
            raise ValueError("duplicate_check_fields is required: it is what makes a retried upsert idempotent")
        v = self.api_version
        path = f"/crm/{v}/{module}/upsert"
        endpoint = f"POST /crm/{v}/{module}/upsert"
        batch: list[Mapping[str, Any]] = []
        offset = 0

        def flush(rows: list[Mapping[str, Any]], start: int) -> Iterator[UpsertResult]:
            body = {"data": list(rows), "duplicate_check_fields": dup_fields, "trigger": list(trigger)}
            response = self._request("POST", path, endpoint=endpoint, json_body=body)
            answer = self._decode(response, endpoint) if response.status_code != 204 else {}
            results = answer.get("data") or []
            if len(results) != len(rows):
                raise ZohoResponseError(
                    f"Zoho {endpoint}: {len(results)} results for {len(rows)} records", endpoint=endpoint
                )
            for k, item in enumerate(results):
                details = item.get("details") or {}
                yield UpsertResult(
                    index=start + k,
                    ok=item.get("status") == "success",
                    status=str(item.get("status")),
                    code=item.get("code"),
                    action=item.get("action"),
                    id=None if details.get("id") is None else str(details.get("id")),
                    message=item.get("message"),
                    duplicate_field=item.get("duplicate_field"),
                    details=details,
                )

        for n, record in enumerate(records):
            if not record.get("id") and not any(record.get(f) not in (None, "") for f in dup_fields):
                raise ValueError(
                    f"record {n} has no value for any of {dup_fields} and no id: upserting it could "
                    "create a duplicate on retry"
                )
            batch.append(record)
            if len(batch) == UPSERT_BATCH:
                yield from flush(batch, offset)
                offset += len(batch)
                batch = []
        if batch:
            yield from flush(batch, offset)

    def upsert(
        self,
        module: str,
        records: Iterable[Mapping[str, Any]],
        duplicate_check_fields: Sequence[str],
        *,
        trigger: Sequence[str] = (),
    ) -> list[UpsertResult]:
        """:meth:`iter_upsert`, collected."""
        return list(self.iter_upsert(module, records, duplicate_check_fields, trigger=trigger))

    # -- Bulk Read ---------------------------------------------------------------------

    def bulk_read(
        self,
        module: str,
        fields: Sequence[str],
        *,
        criteria: Mapping[str, Any] | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
        backoff: float = 1.0,
    ) -> Iterator[dict[str, str]]:
        """CSV rows of a Bulk Read export: see :func:`bulk.bulk_read`."""
        return bulk.bulk_read(
            self, module, fields, criteria=criteria, poll_interval=poll_interval, timeout=timeout, backoff=backoff
        )


def field_batches(core: list[str], fields: Sequence[str]) -> list[list[str]]:
    """`fields` asked in batches of at most MAX_FIELDS_PER_CALL, each with the `core` fields (the
    id, and the field sorted by) that let the batches' records be merged."""
    core = list(dict.fromkeys(core))
    rest = [f for f in dict.fromkeys(fields) if f not in core]
    room = MAX_FIELDS_PER_CALL - len(core)
    return [core + rest[i : i + room] for i in range(0, len(rest), room)] or [core]


def _keep_id_exact(record: Any, module: str, page: int, index: int) -> None:
    """Check a record's ``id`` and keep it as exact text: Zoho sends 19-digit strings, but an
    integer (decoded exactly, see ``decode_json``) is accepted and turned into its digits.
    Anything else (missing, empty, a bool, a float, an object) cannot be a key: the record is
    rejected before it lands, named by module and position."""
    value = record.get("id", _MISSING) if isinstance(record, dict) else _MISSING
    if isinstance(value, str) and value.strip():
        return
    if isinstance(value, int) and not isinstance(value, bool):
        record["id"] = str(value)
        return
    what = "no id" if value is _MISSING else f"an unusable id {value!r} ({type(value).__name__})"
    if not isinstance(record, dict):
        what = f"a {type(record).__name__}, not a record"
    raise ZohoRecordError(
        f"Zoho {module}: record {index} of page {page} has {what}; an id must be text or an exact "
        "integer, so the record was not landed",
        module=module,
        page=page,
        index=index,
        endpoint=module,
    )


_MISSING = object()
