"""The Moodle client's typed errors, chosen from the answer's ``errorcode``."""

from __future__ import annotations

from typing import Any

from integration_pipelines.lib.http import ClientError, TransportFailure


class MoodleError(ClientError):
    """Base of every Moodle client error."""


class MoodleTransportError(MoodleError, TransportFailure):
    """No HTTP answer (connection error or timeout). Retried."""


class MoodleHTTPError(MoodleError):
    """An HTTP status Moodle itself never sends for a WS call (404, 401, other 4xx)."""


class MoodleServerError(MoodleHTTPError):
    """5xx or 429 from the web server or a proxy in front of Moodle. Retried."""

    retryable = True


class MoodleResponseError(MoodleError):
    """HTTP 200 whose body is not JSON (a PHP notice, a proxy page, a cut-off body). Retried."""

    retryable = True


class MoodleWSError(MoodleError):
    """Moodle answered ``{"exception", "errorcode", "message"}`` (with HTTP 200)."""

    def __init__(
        self,
        message: str,
        *,
        wsfunction: str,
        errorcode: str | None,
        exception: str | None,
        moodle_message: str | None,
        debuginfo: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, endpoint=wsfunction, **kwargs)
        self.wsfunction = wsfunction
        self.errorcode = errorcode
        self.exception = exception
        self.moodle_message = moodle_message
        self.debuginfo = debuginfo


class MoodleAuthError(MoodleWSError):
    """``invalidtoken``: the token is wrong or missing. Never retried: fix ``MOODLE_TOKEN``."""


class MoodleAccessError(MoodleWSError):
    """``accessexception`` (function not in the token's service, expired token, IP
    restriction) or HTTP 403 (REST protocol disabled). Never retried."""


class MoodlePermissionError(MoodleAccessError):
    """``nopermissions`` / ``required_capability_exception``: the WS user lacks a capability."""


class MoodleInvalidParameter(MoodleWSError):
    """``invalidparameter``: a bad or missing argument."""


class MoodleNotFound(MoodleWSError):
    """``invalidrecord`` / ``invalidrecordunknown``: unknown function, course or record."""


# Transient database errors are worth another try on a read.
_RETRYABLE_ERRORCODES = frozenset({"dbconnectionfailed", "dmlreadexception"})
