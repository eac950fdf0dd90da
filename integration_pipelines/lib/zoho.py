"""Zoho CRM v8 client.

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

import csv
import io
import json
import logging
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import httpx
from pydantic import SecretStr

from integration_pipelines.lib.http import (
    ClientError,
    ConcurrencyLimiter,
    HttpSession,
    Redactor,
    RequestCounter,
    RetryPolicy,
    TransportFailure,
    call_with_retries,
    decode_json,
    parse_retry_after,
    secret_value,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ZOHO_ACCOUNTS_BY_DC",
    "ZOHO_CONCURRENCY_BY_EDITION",
    "ZohoAPIError",
    "ZohoAuthError",
    "ZohoBulkReadError",
    "ZohoClient",
    "ZohoClientCredentialsError",
    "ZohoError",
    "ZohoNotFound",
    "ZohoPaginationLimit",
    "ZohoPermissionError",
    "ZohoRateLimited",
    "ZohoRefreshLimitReached",
    "ZohoRefreshThrottled",
    "ZohoRefreshTokenError",
    "ZohoResponseError",
    "ZohoScopeError",
    "ZohoServerError",
    "ZohoTokenRefreshError",
    "ZohoTransportError",
    "UpsertResult",
    "accounts_url_for",
    "concurrency_for_edition",
]

MAX_FIELDS_PER_CALL = 50
MAX_PER_PAGE = 200
DISCRETE_PAGE_LIMIT = 2000
UPSERT_BATCH = 100

# Accounts (OAuth) servers per data centre [Zoho SDK dc/*.py]. Canada lives on zohocloud.ca.
ZOHO_ACCOUNTS_BY_DC: dict[str, str] = {
    "com": "https://accounts.zoho.com",
    "us": "https://accounts.zoho.com",
    "eu": "https://accounts.zoho.eu",
    "in": "https://accounts.zoho.in",
    "com.au": "https://accounts.zoho.com.au",
    "au": "https://accounts.zoho.com.au",
    "com.cn": "https://accounts.zoho.com.cn",
    "cn": "https://accounts.zoho.com.cn",
    "jp": "https://accounts.zoho.jp",
    "ca": "https://accounts.zohocloud.ca",
    "sa": "https://accounts.zoho.sa",
}

ZOHO_CONCURRENCY_BY_EDITION: dict[str, int] = {
    "free": 5,
    "standard": 10,
    "professional": 15,
    "enterprise": 20,
    "ultimate": 25,
}


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class ZohoError(ClientError):
    """Base of every Zoho client error."""


class ZohoTransportError(ZohoError, TransportFailure):
    """No HTTP answer (connection error or timeout). Retried."""


class ZohoAPIError(ZohoError):
    """Zoho answered with an error envelope ``{"code", "details", "message", "status"}``."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        zoho_message: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.details = details
        self.zoho_message = zoho_message


class ZohoServerError(ZohoAPIError):
    """HTTP 5xx. Retried."""

    retryable = True


class ZohoRateLimited(ZohoAPIError):
    """HTTP 429 ``TOO_MANY_REQUESTS`` (credits used up or concurrency exceeded). Retried,
    honouring ``Retry-After``."""

    retryable = True


class ZohoResponseError(ZohoError):
    """A success status whose body is not the JSON expected (cut off, proxy page). Retried."""

    retryable = True


class ZohoNotFound(ZohoAPIError):
    """``INVALID_MODULE``, ``NOT_FOUND``, ``INVALID_URL_PATTERN`` or HTTP 404."""


class ZohoPermissionError(ZohoAPIError):
    """``NO_PERMISSION`` / HTTP 403."""


class ZohoPaginationLimit(ZohoAPIError):
    """``DISCRETE_PAGINATION_LIMIT_EXCEEDED``: ``page`` stops at 2,000 records and no
    ``next_page_token`` was offered."""


class ZohoBulkReadError(ZohoError):
    """A Bulk Read job failed, or did not finish in time."""


class ZohoAuthError(ZohoAPIError):
    """Authentication or authorisation failed. Never retried."""


class ZohoScopeError(ZohoAuthError):
    """``OAUTH_SCOPE_MISMATCH``: the refresh token was granted without a needed scope."""


class ZohoTokenRefreshError(ZohoAuthError):
    """The access token could not be refreshed."""


class ZohoRefreshTokenError(ZohoTokenRefreshError):
    """``invalid_code``: the refresh token is wrong, revoked or from another data centre."""


class ZohoClientCredentialsError(ZohoTokenRefreshError):
    """``invalid_client``: the client id/secret are unknown to this accounts server."""


class ZohoRefreshThrottled(ZohoTokenRefreshError):
    """Zoho's ``Access Denied`` refresh throttle. Retried with backoff inside the refresh."""

    retryable = True


class ZohoRefreshLimitReached(ZohoTokenRefreshError):
    """The local record shows the refresh limit (10 per 10 minutes) is used up and the wait
    for a free slot is longer than ``max_refresh_wait``."""


# --------------------------------------------------------------------------------------
# Data centres and editions
# --------------------------------------------------------------------------------------


def accounts_url_for(
    api_domain: str | None = None,
    *,
    data_centre: str | None = None,
    explicit: str | None = None,
) -> str:
    """The accounts (OAuth) server for a Zoho data centre.

    An ``explicit`` URL always wins (the sandbox, or an unusual deployment). Otherwise the
    data centre name (``com|eu|in|com.au|com.cn|jp|ca|sa``) or the api domain's suffix
    (``https://www.zohoapis.eu`` -> ``https://accounts.zoho.eu``) picks it.
    """
    if explicit:
        return explicit.rstrip("/")
    if data_centre:
        dc = data_centre.lower().lstrip(".")
        if dc not in ZOHO_ACCOUNTS_BY_DC:
            raise ValueError(
                f"unknown Zoho data centre {data_centre!r}; expected one of "
                f"{', '.join(sorted(ZOHO_ACCOUNTS_BY_DC))} (or set ZOHO_ACCOUNTS_URL)"
            )
        return ZOHO_ACCOUNTS_BY_DC[dc]
    if api_domain:
        host = urllib.parse.urlsplit(api_domain if "//" in api_domain else "//" + api_domain).hostname or ""
        marker = "zohoapis."
        if marker in host:
            return accounts_url_for(data_centre=host.split(marker, 1)[1])
    raise ValueError(f"cannot tell the Zoho data centre from api domain {api_domain!r}; set ZOHO_ACCOUNTS_URL")


def concurrency_for_edition(edition: str | None, default: int = 5) -> int:
    """Concurrent-call limit per org and app for an edition name (case-insensitive)."""
    if not edition:
        return default
    return ZOHO_CONCURRENCY_BY_EDITION.get(str(edition).strip().lower(), default)


def parse_zoho_datetime(value: str) -> datetime:
    """Zoho datetimes are ISO 8601 with an offset, e.g. 2024-06-01T10:15:22+01:00."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"Zoho datetime without an offset: {value!r}")
    return parsed


def _as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else parse_zoho_datetime(value)


def format_if_modified_since(value: datetime | str) -> str:
    """ISO 8601 with an offset, as Zoho expects (``2019-07-25T15:26:49+05:30``); naive = UTC."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Token management
# --------------------------------------------------------------------------------------


class _TokenManager:
    """Caches the access token and refreshes it under a lock, within the refresh limit."""

    def __init__(self, owner: ZohoClient) -> None:
        self.owner = owner
        self.lock = threading.RLock()
        self.token: SecretStr | None = None
        self.expires_at = 0.0
        self.refresh_log: deque[float] = deque()  # monotonic times of refresh requests sent
        self.refreshes = 0  # refresh requests sent (successful or not)

    def get(self) -> SecretStr:
        with self.lock:
            now = self.owner._clock()
            if self.token is not None and now < self.expires_at - self.owner.refresh_margin:
                return self.token
            return self._refresh()

    def invalidate(self, used: SecretStr) -> None:
        """Forget ``used`` if it is still the cached token (another thread may have refreshed)."""
        with self.lock:
            if self.token is not None and self.token.get_secret_value() == used.get_secret_value():
                self.token = None

    def _await_slot(self) -> None:
        o = self.owner
        while True:
            now = o._clock()
            while self.refresh_log and self.refresh_log[0] <= now - o.refresh_window:
                self.refresh_log.popleft()
            if len(self.refresh_log) < o.refresh_limit:
                return
            wait = self.refresh_log[0] + o.refresh_window - now
            if wait > o.max_refresh_wait:
                raise ZohoRefreshLimitReached(
                    f"Zoho allows {o.refresh_limit} access-token refreshes per {o.refresh_window:.0f}s per "
                    f"refresh token; this client used them all and the next slot is {wait:.0f}s away. "
                    "Another process may be refreshing with the same ZOHO_REFRESH_TOKEN.",
                    endpoint="POST /oauth/v2/token",
                )
            logger.warning("Zoho refresh limit reached locally; waiting %.1fs for a free slot", wait)
            o._sleep(wait)

    def _refresh(self) -> SecretStr:
        o = self.owner

        def attempt() -> tuple[SecretStr, float]:
            self._await_slot()
            self.refresh_log.append(o._clock())
            self.refreshes += 1
            response = o._session.request(
                "POST",
                o.token_url,
                endpoint="POST /oauth/v2/token",
                limited=False,
                content=urllib.parse.urlencode(
                    {
                        "refresh_token": secret_value(o._refresh_token),
                        "client_id": o.client_id,
                        "client_secret": secret_value(o._client_secret),
                        "grant_type": "refresh_token",
                    }
                ).encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            )
            return o._parse_token_response(response)

        try:
            token, expires_in = call_with_retries(
                attempt,
                policy=o.retry,
                sleep=o._sleep,
                logger=logger,
                counter=o.counter,
                what="Zoho token refresh",
            )
        except ZohoTokenRefreshError as exc:
            if exc.retryable:  # throttled every time: stop here, not in an outer retry loop
                raise ZohoTokenRefreshError(
                    f"could not refresh the Zoho access token: {exc}", endpoint=exc.endpoint, retryable=False
                ) from None
            raise
        except ClientError as exc:
            raise ZohoTokenRefreshError(
                f"could not refresh the Zoho access token at {o.token_url}: {exc}",
                endpoint="POST /oauth/v2/token",
                status_code=exc.status_code,
                retryable=False,
            ) from None
        o._redact.add(token)
        self.token = token
        self.expires_at = o._clock() + expires_in
        logger.debug("Zoho access token refreshed; valid for %ss", expires_in)
        return token


# --------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------


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
        self._tokens = _TokenManager(self)

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

    def _parse_token_response(self, response: httpx.Response) -> tuple[SecretStr, float]:
        endpoint = "POST /oauth/v2/token"
        try:
            body = decode_json(response)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("access_token"):
            try:
                expires_in = float(body.get("expires_in") or body.get("expires_in_sec") or 3600)
            except (TypeError, ValueError):
                expires_in = 3600.0
            return SecretStr(str(body["access_token"])), expires_in
        status = response.status_code
        if status == 429 or status >= 500:
            err_cls = ZohoRateLimited if status == 429 else ZohoServerError
            raise err_cls(
                f"Zoho accounts server answered HTTP {status} to the token refresh",
                endpoint=endpoint,
                status_code=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if not isinstance(body, dict):
            raise ZohoTokenRefreshError(
                f"Zoho token refresh at {self.token_url} answered HTTP {status} without JSON",
                endpoint=endpoint,
                status_code=status,
            )
        error = str(body.get("error") or "")
        description = self._redact(body.get("error_description") or "")
        if error == "invalid_code":
            raise ZohoRefreshTokenError(
                "ZOHO_REFRESH_TOKEN was rejected by Zoho (invalid_code): it is wrong, revoked or was "
                f"issued by another data centre than {self.accounts_url}. Generate a new refresh token "
                "and set ZOHO_REFRESH_TOKEN.",
                endpoint=endpoint,
                status_code=status,
                code=error,
            )
        if error == "invalid_client":
            raise ZohoClientCredentialsError(
                f"ZOHO_CLIENT_ID/ZOHO_CLIENT_SECRET were rejected by {self.accounts_url} (invalid_client): "
                "check the credentials, and that ZOHO_ACCOUNTS_URL / the data centre matches the one "
                "the client was registered in (accounts.zoho.com, .eu, .in, .com.au, .com.cn, .jp, .sa "
                "or zohocloud.ca).",
                endpoint=endpoint,
                status_code=status,
                code=error,
            )
        if error.lower() == "access denied" or "too many requests" in description.lower():
            raise ZohoRefreshThrottled(
                f"Zoho throttled the token refresh (Access Denied: {description})",
                endpoint=endpoint,
                status_code=status,
                code=error,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        raise ZohoTokenRefreshError(
            f"Zoho token refresh at {self.token_url} failed (HTTP {status}, error={error or 'none'}"
            f"{': ' + description if description else ''})",
            endpoint=endpoint,
            status_code=status,
            code=error or None,
        )

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
            if response.status_code == 401 and not refreshed and _error_code(response) == "INVALID_TOKEN":
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
        body = _json_or_none(response)
        envelope = _error_envelope(body)
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
        body = _json_or_none(response)
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
        """Read the edition from ``/org`` and set the concurrency cap to its limit."""
        edition = self.edition_of(self.org())
        if edition:
            self.edition = edition
            self.limiter.set_limit(concurrency_for_edition(edition, default=self.limiter.limit))
        return self.limiter.limit

    # -- reading records ---------------------------------------------------------------

    def _iter_pages(
        self,
        path: str,
        *,
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
        while True:
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
        cvid: str | None = None,
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
        core = list(dict.fromkeys(["id", sort_by] if sort_by and sort_by != "id" else ["id"]))
        rest = [f for f in dict.fromkeys(fields) if f not in core]
        room = MAX_FIELDS_PER_CALL - len(core)
        batches = [core + rest[i : i + room] for i in range(0, len(rest), room)] or [core]
        v = self.api_version
        path = f"/crm/{v}/{module}"
        endpoint = f"GET /crm/{v}/{module}"
        ims = format_if_modified_since(modified_since) if modified_since is not None else None

        def pages(batch: list[str]) -> Iterator[list[dict[str, Any]]]:
            params: dict[str, Any] = {"fields": ",".join(batch), "sort_by": sort_by, "sort_order": sort_order}
            if cvid:
                params["cvid"] = cvid
            return self._iter_pages(path, endpoint=endpoint, params=params, per_page=per_page, if_modified_since=ims)

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
        v = self.api_version
        logger.info(
            "Zoho %s: %d records arrived in some field batches only; fetching the rest by id", module, len(pending)
        )
        for i, batch in enumerate(batches):
            missing = [rid for rid, got in have.items() if i not in got]
            for start in range(0, len(missing), 100):
                ids = missing[start : start + 100]
                body = self._get_json(
                    f"/crm/{v}/{module}",
                    endpoint=f"GET /crm/{v}/{module}",
                    params={"ids": ",".join(ids), "fields": ",".join(batch)},
                )
                for record in body.get("data") or []:
                    rid = str(record.get("id"))
                    if rid in pending:
                        pending[rid].update(record)
                        have[rid].add(i)
        for rid, record in pending.items():
            if len(have[rid]) < len(batches):
                logger.warning("Zoho %s record %s is incomplete (deleted while reading?)", module, rid)
            yield record

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
                moved_on = newest is not None and (cursor is None or parse_zoho_datetime(newest) > _as_datetime(cursor))
                if not (ordered and moved_on):
                    raise
                logger.info("Zoho %s/deleted: past %d records, continuing from %s", module, DISCRETE_PAGE_LIMIT, newest)
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
    ) -> Iterator[dict[str, str]]:
        """Stream CSV rows of a Bulk Read export (scope ``ZohoCRM.bulk.read``).

        Creates a job (``POST /crm/bulk/v8/read``), polls it every ``poll_interval`` seconds
        until ``COMPLETED``, downloads the zip to a temporary file (streamed, not in memory)
        and yields its CSV rows as dicts. A job returns at most 200,000 records; while
        ``more_records`` is true the next page (``page_token`` if given, else ``page+1``) is
        requested as a new job.
        """
        page = 1
        page_token: str | None = None
        while True:
            query: dict[str, Any] = {"module": {"api_name": module}, "fields": list(fields)}
            if criteria:
                query["criteria"] = dict(criteria)
            if page_token:
                query["page_token"] = page_token
            else:
                query["page"] = page
            job_id = self._create_bulk_job(query)
            result = self._wait_bulk_job(job_id, poll_interval, timeout)
            yield from self._download_bulk_result(job_id, result)
            if not result.get("more_records"):
                return
            if result.get("next_page_token"):
                page_token = str(result["next_page_token"])
            else:
                page += 1

    def _create_bulk_job(self, query: dict[str, Any]) -> str:
        endpoint = "POST /crm/bulk/v8/read"
        response = self._request("POST", "/crm/bulk/v8/read", endpoint=endpoint, json_body={"query": query})
        body = self._decode(response, endpoint)
        items = body.get("data") or []
        if not items or items[0].get("status") != "success":
            item = items[0] if items else body
            raise ZohoAPIError(
                f"Zoho {endpoint}: job not created ({item.get('code')}: {self._redact(item.get('message') or '')})",
                endpoint=endpoint,
                code=item.get("code"),
                details=item.get("details"),
                status_code=response.status_code,
            )
        return str(items[0]["details"]["id"])

    def _wait_bulk_job(self, job_id: str, poll_interval: float | None, timeout: float | None) -> dict[str, Any]:
        endpoint = "GET /crm/bulk/v8/read/{job_id}"
        interval = self.bulk_poll_interval if poll_interval is None else poll_interval
        deadline = self._clock() + (self.bulk_timeout if timeout is None else timeout)
        while True:
            body = self._get_json(f"/crm/bulk/v8/read/{job_id}", endpoint=endpoint)
            job = (body.get("data") or [{}])[0]
            state = str(job.get("state") or "").upper()
            if state == "COMPLETED":
                return job.get("result") or {}
            if state == "FAILURE":
                raise ZohoBulkReadError(f"Zoho Bulk Read job {job_id} failed", endpoint=endpoint)
            if self._clock() >= deadline:
                raise ZohoBulkReadError(
                    f"Zoho Bulk Read job {job_id} still {state or 'unknown'} after the timeout", endpoint=endpoint
                )
            self._sleep(interval)

    def _download_bulk_result(self, job_id: str, result: Mapping[str, Any]) -> Iterator[dict[str, str]]:
        endpoint = "GET /crm/bulk/v8/read/{job_id}/result"
        url = result.get("download_url") or f"/crm/bulk/v8/read/{job_id}/result"
        if url.startswith("/"):
            url = self._url(url)
        elif not url.startswith(self.api_domain):
            raise ZohoResponseError(f"Zoho Bulk Read job {job_id}: download URL off the API domain", endpoint=endpoint)
        refreshed = False

        def attempt() -> IO[bytes]:
            nonlocal refreshed
            token = self._tokens.get()
            spool = tempfile.TemporaryFile()
            try:
                with self._session.stream(
                    "GET",
                    url,
                    endpoint=endpoint,
                    headers={"Authorization": f"Zoho-oauthtoken {token.get_secret_value()}"},
                ) as response:
                    if response.status_code == 200:
                        for chunk in response.iter_bytes(64 * 1024):
                            spool.write(chunk)
                        spool.seek(0)
                        return spool
                    response.read()
                if response.status_code == 401 and not refreshed and _error_code(response) == "INVALID_TOKEN":
                    refreshed = True
                    self._tokens.invalidate(token)
                    raise ZohoServerError(
                        "access token expired during download; refreshed", endpoint=endpoint, retryable=True
                    )
                self._check(response, endpoint)
                raise ZohoResponseError(f"Zoho {endpoint}: HTTP {response.status_code}", endpoint=endpoint)
            except BaseException:
                spool.close()
                raise

        spool = call_with_retries(
            attempt, policy=self.retry, sleep=self._sleep, logger=logger, counter=self.counter, what=f"Zoho {endpoint}"
        )
        with spool:
            try:
                archive = zipfile.ZipFile(spool)
            except zipfile.BadZipFile:
                raise ZohoBulkReadError(
                    f"Zoho Bulk Read job {job_id}: the result is not a zip file", endpoint=endpoint
                ) from None
            with archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
                if not members:
                    raise ZohoBulkReadError(f"Zoho Bulk Read job {job_id}: no CSV in the result", endpoint=endpoint)
                for member in members:
                    with archive.open(member) as raw:
                        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                        yield from csv.DictReader(text)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return decode_json(response)
    except ValueError:
        return None


def _error_envelope(body: Any) -> dict[str, Any]:
    """``{"code","message","details"}`` from a top-level envelope or ``{"data":[{...}]}``."""
    if isinstance(body, dict):
        if "code" in body or "message" in body:
            return body
        data = body.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return data[0]
    return {}


def _error_code(response: httpx.Response) -> str | None:
    code = _error_envelope(_json_or_none(response)).get("code")
    return None if code is None else str(code)
