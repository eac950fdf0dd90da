"""The Zoho CRM v8 client, split by concern.

- ``client``: :class:`ZohoClient`, the one request path (auth header, retries, the
  concurrency cap, typed errors), metadata, the streaming readers and upserts;
- ``auth``: the OAuth refresh-token flow and the accounts server of each data centre;
- ``bulk``: Bulk Read (a job, polled, its zip streamed to CSV rows);
- ``fields``: a mapping's fields checked against the module's, before a read;
- ``errors``: the typed errors; ``times``: Zoho's datetimes.
"""

from integration_pipelines.lib.zoho.auth import ZOHO_ACCOUNTS_BY_DC, accounts_url_for
from integration_pipelines.lib.zoho.client import (
    DISCRETE_PAGE_LIMIT,
    MAX_FIELDS_PER_CALL,
    MAX_PER_PAGE,
    ZOHO_CONCURRENCY_BY_EDITION,
    UpsertResult,
    ZohoClient,
    concurrency_for_edition,
)
from integration_pipelines.lib.zoho.errors import (
    ZohoAPIError,
    ZohoAuthError,
    ZohoBulkReadError,
    ZohoClientCredentialsError,
    ZohoError,
    ZohoFieldError,
    ZohoNotFound,
    ZohoPaginationLimit,
    ZohoPermissionError,
    ZohoRateLimited,
    ZohoRecordError,
    ZohoRefreshLimitReached,
    ZohoRefreshThrottled,
    ZohoRefreshTokenError,
    ZohoResponseError,
    ZohoScopeError,
    ZohoServerError,
    ZohoTokenRefreshError,
    ZohoTransportError,
)
from integration_pipelines.lib.zoho.fields import check_mapped_fields
from integration_pipelines.lib.zoho.times import format_if_modified_since, parse_zoho_datetime

__all__ = [
    "DISCRETE_PAGE_LIMIT",
    "MAX_FIELDS_PER_CALL",
    "MAX_PER_PAGE",
    "ZOHO_ACCOUNTS_BY_DC",
    "ZOHO_CONCURRENCY_BY_EDITION",
    "UpsertResult",
    "ZohoAPIError",
    "ZohoAuthError",
    "ZohoBulkReadError",
    "ZohoClient",
    "ZohoClientCredentialsError",
    "ZohoError",
    "ZohoFieldError",
    "ZohoNotFound",
    "ZohoPaginationLimit",
    "ZohoPermissionError",
    "ZohoRateLimited",
    "ZohoRecordError",
    "ZohoRefreshLimitReached",
    "ZohoRefreshThrottled",
    "ZohoRefreshTokenError",
    "ZohoResponseError",
    "ZohoScopeError",
    "ZohoServerError",
    "ZohoTokenRefreshError",
    "ZohoTransportError",
    "accounts_url_for",
    "check_mapped_fields",
    "concurrency_for_edition",
    "format_if_modified_since",
    "parse_zoho_datetime",
]
