"""Zoho OAuth: the accounts server of each data centre, and the access token, refreshed from the
refresh token under a lock and within Zoho's refresh limit (10 per 10 minutes)."""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections import deque
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from integration_pipelines.lib.http import ClientError, call_with_retries, decode_json, parse_retry_after, secret_value
from integration_pipelines.lib.zoho.errors import (
    ZohoClientCredentialsError,
    ZohoRateLimited,
    ZohoRefreshLimitReached,
    ZohoRefreshThrottled,
    ZohoRefreshTokenError,
    ZohoServerError,
    ZohoTokenRefreshError,
)

if TYPE_CHECKING:
    from integration_pipelines.lib.zoho.client import ZohoClient

logger = logging.getLogger(__name__)

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


class TokenManager:
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
            return self._parse_response(response)

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

    def _parse_response(self, response: httpx.Response) -> tuple[SecretStr, float]:
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
                f"Zoho token refresh at {self.owner.token_url} answered HTTP {status} without JSON",
                endpoint=endpoint,
                status_code=status,
            )
        error = str(body.get("error") or "")
        description = self.owner._redact(body.get("error_description") or "")
        if error == "invalid_code":
            raise ZohoRefreshTokenError(
                "ZOHO_REFRESH_TOKEN was rejected by Zoho (invalid_code): it is wrong, revoked or was "
                f"issued by another data centre than {self.owner.accounts_url}. Generate a new refresh token "
                "and set ZOHO_REFRESH_TOKEN.",
                endpoint=endpoint,
                status_code=status,
                code=error,
            )
        if error == "invalid_client":
            raise ZohoClientCredentialsError(
                f"ZOHO_CLIENT_ID/ZOHO_CLIENT_SECRET were rejected by {self.owner.accounts_url} (invalid_client): "
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
            f"Zoho token refresh at {self.owner.token_url} failed (HTTP {status}, error={error or 'none'}"
            f"{': ' + description if description else ''})",
            endpoint=endpoint,
            status_code=status,
            code=error or None,
        )
