"""The Zoho client's typed errors, and reading Zoho's error envelope
``{"code", "details", "message", "status"}``."""

from __future__ import annotations

from typing import Any

import httpx

from integration_pipelines.lib.http import ClientError, TransportFailure, decode_json


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


class ZohoRecordError(ZohoError):
    """A record Zoho answered that cannot be landed as it is (an id missing or not an exact
    integer or text), named by its module and position (page, index on the page)."""

    def __init__(self, message: str, *, module: str, page: int, index: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.module, self.page, self.index = module, page, index


class ZohoFieldError(ZohoError):
    """The mapping names a field the Zoho module does not have (checked before reading it)."""

    def __init__(self, message: str, *, entity: str, module: str, unknown: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.entity, self.module, self.unknown = entity, module, unknown


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


def describe_details(details: Any) -> str:
    """Zoho's ``details`` as text for an error message: what names the culprit (``api_name``,
    ``param_name``, ``limit``...), e.g. ``api_name=Emial, param_name=fields``; '' when empty."""
    if details is None or details == {} or details == []:
        return ""
    if isinstance(details, dict):
        return ", ".join(f"{k}={describe_details(v) if isinstance(v, (dict, list)) else v}" for k, v in details.items())
    if isinstance(details, list):
        return "[" + "; ".join(describe_details(d) if isinstance(d, (dict, list)) else str(d) for d in details) + "]"
    return str(details)


def json_or_none(response: httpx.Response) -> Any:
    try:
        return decode_json(response)
    except ValueError:
        return None


def error_envelope(body: Any) -> dict[str, Any]:
    """``{"code","message","details"}`` from a top-level envelope or ``{"data":[{...}]}``."""
    if isinstance(body, dict):
        if "code" in body or "message" in body:
            return body
        data = body.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return data[0]
    return {}


def error_code(response: httpx.Response) -> str | None:
    code = error_envelope(json_or_none(response)).get("code")
    return None if code is None else str(code)
