"""Moodle Web Services (REST) client.

Plain Python (httpx + tenacity), no Dagster. What it does:

- :meth:`MoodleClient.call` sends any ``wsfunction`` as a **POST form body** with PHP
  bracket encoding (``criteria[0][key]=email``, ``options[ids][0]=7``, booleans as 0/1)
  and ``moodlewsrestformat=json``. The token travels in the body, never in a URL, so it
  cannot show up in access logs, httpx's request log or an exception message.
- Moodle answers errors with **HTTP 200** and a JSON object holding ``exception``: any such
  object raises a typed :class:`MoodleWSError` subclass chosen by ``errorcode``.
  ``invalidtoken`` and ``accessexception`` are never retried; transport errors, timeouts,
  5xx/429 and unparseable bodies are retried with exponential backoff and jitter
  (honouring ``Retry-After``).
- Soft failures (``warnings``) are logged, kept in :attr:`MoodleClient.warnings` and passed
  to an optional ``on_warning`` callback.
- Typed helpers stream records as generators; :meth:`MoodleClient.crawl_snapshot` walks a
  whole site without N+1 calls (see its docstring for the request budget).
- :attr:`MoodleClient.counter` counts every HTTP request sent, per ``wsfunction``.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Literal

import httpx
from pydantic import SecretStr

from integration_pipelines.lib.http import (
    ClientError,
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

REST_PATH = "/webservice/rest/server.php"

__all__ = [
    "MoodleAccessError",
    "MoodleAssignGrade",
    "MoodleAssignment",
    "MoodleAuthError",
    "MoodleClient",
    "MoodleCompletion",
    "MoodleCourse",
    "MoodleEnrolment",
    "MoodleError",
    "MoodleGrade",
    "MoodleHTTPError",
    "MoodleInvalidParameter",
    "MoodleNotFound",
    "MoodlePermissionError",
    "MoodleResponseError",
    "MoodleServerError",
    "MoodleTransportError",
    "MoodleUser",
    "MoodleWSError",
    "MoodleWarning",
    "encode_params",
]


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoodleWarning:
    """One entry of a response's ``warnings`` list (a soft failure)."""

    wsfunction: str
    warningcode: str | None
    message: str
    item: str | None = None
    itemid: int | str | None = None


@dataclass(frozen=True, slots=True)
class MoodleCourse:
    kind: ClassVar[str] = "course"
    id: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MoodleEnrolment:
    """A user enrolled in a course (from ``core_enrol_get_enrolled_users``).

    ``data`` is the row as Moodle sent it (user fields, ``roles``, ``groups``,
    ``lastcourseaccess``); Moodle does not expose the enrolment's dates, status or method,
    but a crawl with ``enrolment_status`` learns which enrolments are suspended.
    """

    kind: ClassVar[str] = "enrolment"
    course_id: int
    user_id: int
    roles: tuple[str, ...]
    data: dict[str, Any]
    suspended: bool | None = None  # known only when the crawl asks (``enrolment_status``)


@dataclass(frozen=True, slots=True)
class MoodleUser:
    kind: ClassVar[str] = "user"
    id: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MoodleGrade:
    """One grade item for one user in one course (``gradereport_user_get_grade_items``).

    The course total is the item with ``itemtype == "course"``.
    """

    kind: ClassVar[str] = "grade"
    course_id: int
    user_id: int
    item_id: int | None
    course_idnumber: str | None
    user_idnumber: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MoodleCompletion:
    """Course completion for one user in one course.

    ``progress`` (0-100) is only known from ``core_enrol_get_users_courses``;
    ``data`` is the raw completion payload of whichever function produced it (``source``).
    """

    kind: ClassVar[str] = "completion"
    course_id: int
    user_id: int
    completed: bool | None
    progress: float | None
    source: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MoodleAssignment:
    kind: ClassVar[str] = "assignment"
    id: int
    course_id: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MoodleAssignGrade:
    """One assignment grade (``mod_assign_get_grades``; latest attempt only).

    ``grade`` is parsed from Moodle's 5-decimal string; ``-1`` ("not graded") becomes None.
    For scale-graded assignments (BTEC) it is the scale index (1=Refer .. 4=Distinction).
    """

    kind: ClassVar[str] = "assign_grade"
    assignment_id: int
    user_id: int
    grade: float | None
    timemodified: int | None
    data: dict[str, Any]


SnapshotRecord = MoodleCourse | MoodleEnrolment | MoodleUser | MoodleGrade | MoodleCompletion

CompletionMode = Literal["none", "per_user", "per_enrolment"]


# --------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Enum):
        return _scalar(value.value)
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    return str(value)


def encode_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """PHP bracket encoding, as Moodle's REST server expects.

    ``{"options": {"ids": [7]}}`` -> ``[("options[ids][0]", "7")]``;
    ``{"options": [{"name": "limitnumber", "value": 100}]}`` ->
    ``[("options[0][name]", "limitnumber"), ("options[0][value]", "100")]``.
    Booleans become ``1``/``0``; ``None`` values are left out (Moodle treats a missing
    optional parameter as its default); datetimes become epoch seconds.
    """

    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}[{k}]", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        elif isinstance(value, (set, frozenset)):
            for i, v in enumerate(sorted(value)):
                walk(f"{prefix}[{i}]", v)
        else:
            out.append((prefix, _scalar(value)))

    for key, value in params.items():
        walk(str(key), value)
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _to_epoch(value: int | float | datetime | None) -> int:
    if value is None:
        return 0
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def parse_assign_grade(value: Any) -> float | None:
    """``"3.00000"`` -> 3.0; ``"-1.00000"`` (not graded), ``""`` or None -> None."""
    if value is None or value == "":
        return None
    try:
        grade = float(value)
    except (TypeError, ValueError):
        return None
    return None if grade < 0 else grade


# --------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------


class MoodleClient:
    """A Moodle Web Services REST client.

    Args:
        base_url: the site root (``https://lms.example.ac.uk``) or the full
            ``.../webservice/rest/server.php`` endpoint.
        token: the web service token (``MOODLE_TOKEN``); a ``SecretStr`` or a plain string.
        timeout: seconds or an ``httpx.Timeout``.
        max_attempts: attempts per call, the first included (ignored if ``retry`` is given).
        page_size: ``limitnumber`` for ``core_enrol_get_enrolled_users``.
        user_batch_size: ids per ``core_user_get_users_by_field`` call.
        id_batch_size: course or assignment ids per ``mod_assign_*`` call.
        retry: a full :class:`RetryPolicy` (waits, jitter, Retry-After cap).
        sleep: called with the seconds to wait between attempts (tests pass a recorder).
        client / transport: inject an ``httpx.Client`` or a transport (``httpx.MockTransport``).
        on_warning: called with each :class:`MoodleWarning`.
        counter: share a :class:`RequestCounter` between clients if wanted.
    """

    def __init__(
        self,
        base_url: str,
        token: str | SecretStr,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_attempts: int = 5,
        page_size: int = 1000,
        user_batch_size: int = 100,
        id_batch_size: int = 50,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        on_warning: Callable[[MoodleWarning], None] | None = None,
        counter: RequestCounter | None = None,
        max_warnings_kept: int = 1000,
    ) -> None:
        if page_size < 1 or user_batch_size < 1 or id_batch_size < 1:
            raise ValueError("page_size, user_batch_size and id_batch_size must be positive")
        base_url = base_url.rstrip("/")
        self.endpoint_url = base_url if base_url.endswith(".php") else base_url + REST_PATH
        self.base_url = base_url
        self._token = token if isinstance(token, SecretStr) else SecretStr(token or "")
        self.page_size = page_size
        self.user_batch_size = user_batch_size
        self.id_batch_size = id_batch_size
        self.retry = retry or RetryPolicy(max_attempts=max_attempts)
        self._sleep = sleep
        self.on_warning = on_warning
        self.warnings: deque[MoodleWarning] = deque(maxlen=max_warnings_kept)
        self._redact = Redactor([self._token])
        self._session = HttpSession(
            redactor=self._redact,
            counter=counter or RequestCounter(),
            timeout=timeout,
            client=client,
            transport=transport,
            transport_error=MoodleTransportError,
            logger=logger,
        )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def counter(self) -> RequestCounter:
        """HTTP requests sent: ``total`` and ``by_endpoint[wsfunction]`` (retries included)."""
        return self._session.counter

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> MoodleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MoodleClient(endpoint_url={self.endpoint_url!r}, token=SecretStr('**********'))"

    # -- the one call ------------------------------------------------------------------

    def call(self, wsfunction: str, /, **params: Any) -> Any:
        """Call ``wsfunction`` with bracket-encoded ``params``; return the decoded JSON.

        Raises a :class:`MoodleError` subclass. Warnings in an object answer are recorded
        (see :attr:`warnings`) and the answer is returned unchanged. Failed attempts are
        retried, which is right for reads; use :meth:`call_once` for writes that are not
        idempotent (a retry after a lost answer could apply them twice).
        """
        return self._call(wsfunction, params, self.retry)

    def call_once(self, wsfunction: str, /, **params: Any) -> Any:
        """Like :meth:`call`, but a single attempt (for non-idempotent write functions)."""
        return self._call(wsfunction, params, RetryPolicy(max_attempts=1))

    def _call(self, wsfunction: str, params: Mapping[str, Any], policy: RetryPolicy) -> Any:
        form = [
            ("wstoken", secret_value(self._token)),
            ("wsfunction", wsfunction),
            ("moodlewsrestformat", "json"),
            *encode_params(params),
        ]
        body = urllib.parse.urlencode(form).encode("ascii")

        def attempt() -> Any:
            response = self._session.request(
                "POST",
                self.endpoint_url,
                endpoint=wsfunction,
                content=body,
                headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
            )
            return self._decode(wsfunction, response)

        result = call_with_retries(
            attempt,
            policy=policy,
            sleep=self._sleep,
            logger=logger,
            counter=self.counter,
            what=f"Moodle {wsfunction}",
        )
        if isinstance(result, dict):
            self._record_warnings(wsfunction, result.get("warnings"))
        return result

    def _decode(self, wsfunction: str, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 403:
            raise MoodleAccessError(
                f"Moodle refused {wsfunction} with HTTP 403: the REST protocol is probably disabled "
                f"(Site administration > Server > Web services > Manage protocols) at MOODLE_URL {self.base_url}",
                wsfunction=wsfunction,
                errorcode=None,
                exception=None,
                moodle_message=None,
                status_code=status,
            )
        if status == 429 or status >= 500:
            raise MoodleServerError(
                f"Moodle {wsfunction}: HTTP {status}",
                endpoint=wsfunction,
                status_code=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status != 200:
            hint = " (check MOODLE_URL)" if status in (301, 302, 303, 307, 308, 404) else ""
            raise MoodleHTTPError(
                f"Moodle {wsfunction}: unexpected HTTP {status} from {self.endpoint_url}{hint}",
                endpoint=wsfunction,
                status_code=status,
            )
        try:
            payload = decode_json(response)
        except ValueError:
            snippet = self._redact(response.text[:200])
            raise MoodleResponseError(
                f"Moodle {wsfunction}: the answer is not JSON: {snippet!r}",
                endpoint=wsfunction,
                status_code=status,
            ) from None
        if isinstance(payload, dict) and "exception" in payload:
            raise self._ws_error(wsfunction, payload)
        return payload

    def _ws_error(self, wsfunction: str, payload: Mapping[str, Any]) -> MoodleWSError:
        code = payload.get("errorcode")
        exc = payload.get("exception")
        msg = self._redact(payload.get("message") or "")
        debuginfo = payload.get("debuginfo")
        kwargs: dict[str, Any] = {
            "wsfunction": wsfunction,
            "errorcode": code,
            "exception": exc,
            "moodle_message": msg,
            "debuginfo": self._redact(debuginfo) if debuginfo else None,
        }
        if code == "invalidtoken":
            return MoodleAuthError(
                f"MOODLE_TOKEN was rejected by Moodle (invalidtoken: {msg}); "
                f"set MOODLE_TOKEN to a valid web service token for {self.base_url}",
                **kwargs,
            )
        if code == "accessexception":
            return MoodleAccessError(
                f"Moodle denied {wsfunction} (accessexception: {msg}): add {wsfunction} to the external "
                "service of MOODLE_TOKEN, or check the token's expiry and IP restriction",
                **kwargs,
            )
        if code == "nopermissions" or (exc or "").endswith("required_capability_exception"):
            return MoodlePermissionError(
                f"Moodle {wsfunction}: the web service user lacks a capability ({code}: {msg})", **kwargs
            )
        if code == "invalidparameter":
            return MoodleInvalidParameter(f"Moodle {wsfunction}: invalid parameter ({msg})", **kwargs)
        if code in ("invalidrecord", "invalidrecordunknown"):
            return MoodleNotFound(f"Moodle {wsfunction}: record not found ({code}: {msg})", **kwargs)
        err = MoodleWSError(f"Moodle {wsfunction} failed ({code}: {msg})", **kwargs)
        if code in _RETRYABLE_ERRORCODES:
            err.retryable = True
        return err

    def _record_warnings(self, wsfunction: str, warnings: Any) -> None:
        if not warnings or not isinstance(warnings, list):
            return
        for w in warnings:
            if not isinstance(w, Mapping):
                continue
            warning = MoodleWarning(
                wsfunction=wsfunction,
                warningcode=None if w.get("warningcode") is None else str(w.get("warningcode")),
                message=self._redact(w.get("message", "")),
                item=w.get("item"),
                itemid=w.get("itemid"),
            )
            self.warnings.append(warning)
            # "No grades found" for an assignment is routine; everything else is worth a look.
            level = (
                logging.DEBUG
                if (wsfunction, warning.warningcode) == ("mod_assign_get_grades", "3")
                else logging.WARNING
            )
            logger.log(
                level,
                "Moodle %s warning %s on %s %s: %s",
                wsfunction,
                warning.warningcode,
                warning.item,
                warning.itemid,
                warning.message,
            )
            if self.on_warning is not None:
                self.on_warning(warning)

    # -- typed helpers -----------------------------------------------------------------

    def site_info(self) -> dict[str, Any]:
        """``core_webservice_get_site_info`` (also a cheap token check)."""
        return self.call("core_webservice_get_site_info")

    def check(self) -> dict[str, Any]:
        """Validate the URL and token; returns site info or raises :class:`MoodleAuthError` etc."""
        return self.site_info()

    def iter_courses(self, ids: Iterable[int] | None = None, *, include_site: bool = False) -> Iterator[MoodleCourse]:
        """All courses (``core_course_get_courses``; one request), or those with ``ids``.

        The front page (``format == "site"``) is left out unless ``include_site``.
        """
        params: dict[str, Any] = {}
        if ids is not None:
            params["options"] = {"ids": [int(i) for i in ids]}
        for course in self.call("core_course_get_courses", **params) or []:
            if not include_site and course.get("format") == "site":
                continue
            yield MoodleCourse(id=int(course["id"]), data=course)

    def iter_enrolled_users(
        self,
        course_id: int,
        *,
        page_size: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[MoodleEnrolment]:
        """Users enrolled in a course, paged with ``limitfrom``/``limitnumber`` (sorted by id).

        A page shorter than ``page_size`` ends the loop, so a course with fewer users than
        a page costs one request. Extra ``options`` (``onlyactive``, ``groupid``,
        ``withcapability``...) are passed through.
        """
        size = page_size or self.page_size
        offset = 0
        seen: set[int] = set()
        while True:
            opts: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in (options or {}).items()]
            opts += [
                {"name": "sortby", "value": "id"},
                {"name": "sortdirection", "value": "ASC"},
                {"name": "limitfrom", "value": offset},
                {"name": "limitnumber", "value": size},
            ]
            page = self.call("core_enrol_get_enrolled_users", courseid=int(course_id), options=opts) or []
            for row in page:
                uid = int(row["id"])
                if uid in seen:  # a page boundary shifted under us
                    continue
                seen.add(uid)
                roles = tuple(r.get("shortname") or "" for r in row.get("roles") or [])
                yield MoodleEnrolment(course_id=int(course_id), user_id=uid, roles=roles, data=row)
            if len(page) < size:
                return
            offset += size

    def iter_users_by_id(self, ids: Iterable[int], *, batch_size: int | None = None) -> Iterator[MoodleUser]:
        """User details via ``core_user_get_users_by_field`` (``field=id``), in batches.

        Duplicate ids are fetched once. Ids Moodle does not know (deleted users) are
        silently absent from the answer, as Moodle does.
        """
        size = batch_size or self.user_batch_size
        unique = list(dict.fromkeys(int(i) for i in ids))
        for batch in _chunks(unique, size):
            yield from self._users_batch(batch)

    def _users_batch(self, batch: Sequence[int]) -> Iterator[MoodleUser]:
        for user in self.call("core_user_get_users_by_field", field="id", values=list(batch)) or []:
            yield MoodleUser(id=int(user["id"]), data=user)

    def iter_course_grades(self, course_id: int, *, user_id: int = 0) -> Iterator[MoodleGrade]:
        """Grade items of every user in a course in **one** request
        (``gradereport_user_get_grade_items`` with ``userid=0``; needs ``moodle/grade:viewall``).

        Yields one :class:`MoodleGrade` per user and grade item, course total included.
        """
        answer = self.call("gradereport_user_get_grade_items", courseid=int(course_id), userid=int(user_id)) or {}
        for usergrade in answer.get("usergrades") or []:
            uid = int(usergrade["userid"])
            cid = int(usergrade.get("courseid") or course_id)
            for item in usergrade.get("gradeitems") or []:
                yield MoodleGrade(
                    course_id=cid,
                    user_id=uid,
                    item_id=_int_or_none(item.get("id")),
                    course_idnumber=usergrade.get("courseidnumber"),
                    user_idnumber=usergrade.get("useridnumber"),
                    data=item,
                )

    def course_completion_status(self, course_id: int, user_id: int) -> dict[str, Any]:
        """``core_completion_get_course_completion_status`` for one user in one course.

        Raises :class:`MoodleWSError` with errorcode ``nocriteriaset``, ``usernotenroled``
        or ``cannotviewreport`` as Moodle does.
        """
        answer = self.call("core_completion_get_course_completion_status", courseid=int(course_id), userid=int(user_id))
        return answer.get("completionstatus") or {}

    def activities_completion_status(self, course_id: int, user_id: int) -> list[dict[str, Any]]:
        """``core_completion_get_activities_completion_status`` for one user in one course."""
        answer = self.call(
            "core_completion_get_activities_completion_status", courseid=int(course_id), userid=int(user_id)
        )
        return list(answer.get("statuses") or [])

    def iter_user_courses(self, user_id: int) -> Iterator[dict[str, Any]]:
        """``core_enrol_get_users_courses``: a user's courses with ``completed`` and ``progress``."""
        yield from self.call("core_enrol_get_users_courses", userid=int(user_id), returnusercount=False) or []

    def iter_user_completions(
        self, user_id: int, course_ids: Iterable[int] | None = None
    ) -> Iterator[MoodleCompletion]:
        """Course completion of one user in all their courses with **one** request."""
        wanted = None if course_ids is None else {int(c) for c in course_ids}
        for course in self.iter_user_courses(user_id):
            cid = int(course["id"])
            if wanted is not None and cid not in wanted:
                continue
            completed = course.get("completed")
            progress = course.get("progress")
            yield MoodleCompletion(
                course_id=cid,
                user_id=int(user_id),
                completed=None if completed is None else bool(completed),
                progress=None if progress is None else float(progress),
                source="core_enrol_get_users_courses",
                data={
                    k: course.get(k)
                    for k in (
                        "completed",
                        "progress",
                        "completionhascriteria",
                        "completionusertracked",
                        "enablecompletion",
                    )
                    if k in course
                },
            )

    def iter_assignments(
        self, course_ids: Iterable[int], *, batch_size: int | None = None
    ) -> Iterator[MoodleAssignment]:
        """Assignments of the given courses (``mod_assign_get_assignments``), batched by course.

        Sends ``includenotenrolledcourses=1``: the sync account is usually not enrolled,
        and without it Moodle answers an empty list plus a warning.
        """
        size = batch_size or self.id_batch_size
        unique = list(dict.fromkeys(int(c) for c in course_ids))
        for batch in _chunks(unique, size):
            answer = (
                self.call("mod_assign_get_assignments", courseids=list(batch), includenotenrolledcourses=True) or {}
            )
            for course in answer.get("courses") or []:
                cid = int(course["id"])
                for assignment in course.get("assignments") or []:
                    yield MoodleAssignment(id=int(assignment["id"]), course_id=cid, data=assignment)

    def iter_assign_grades(
        self,
        assignment_ids: Iterable[int],
        since: int | float | datetime | None = None,
        *,
        batch_size: int | None = None,
    ) -> Iterator[MoodleAssignGrade]:
        """Assignment grades modified at or after ``since`` (``mod_assign_get_grades``).

        ``since`` is epoch seconds or a datetime; Moodle keeps ``timemodified >= since``.
        "No grades found" warnings are recorded but are routine.
        """
        size = batch_size or self.id_batch_size
        unique = list(dict.fromkeys(int(a) for a in assignment_ids))
        since_epoch = _to_epoch(since)
        for batch in _chunks(unique, size):
            answer = self.call("mod_assign_get_grades", assignmentids=list(batch), since=since_epoch) or {}
            for assignment in answer.get("assignments") or []:
                aid = int(assignment["assignmentid"])
                for grade in assignment.get("grades") or []:
                    yield MoodleAssignGrade(
                        assignment_id=aid,
                        user_id=int(grade["userid"]),
                        grade=parse_assign_grade(grade.get("grade")),
                        timemodified=_int_or_none(grade.get("timemodified")),
                        data=grade,
                    )

    # -- the snapshot crawl ------------------------------------------------------------

    def crawl_snapshot(
        self,
        course_ids: Iterable[int] | None = None,
        *,
        grades: bool = True,
        users: bool = True,
        enrolment_status: bool = False,
        completions: CompletionMode = "none",
        skip_missing_courses: bool = True,
        concurrency: int = 1,
    ) -> Iterator[SnapshotRecord]:
        """Walk the site and stream every record, routed by ``record.kind``.

        Order and cost (C courses with enrolments, U distinct users, page size P):

        1. ``core_course_get_courses`` once -> ``course`` records (1 request);
        2. per course, ``core_enrol_get_enrolled_users`` paged -> ``enrolment`` records
           (``ceil((n+1)/P)`` requests; 1 when the course has fewer than P users);
        3. with ``enrolment_status``, per course once more with ``onlysuspended`` (+C requests):
           the answer has no enrolment status, so each enrolment's ``suspended`` is then set
           from the suspended ones (otherwise it is None, unknown);
        4. each distinct user is fetched **once** with ``core_user_get_users_by_field`` in
           batches of ``user_batch_size`` as soon as a batch fills -> ``user`` records
           (``ceil(U/100)`` requests);
        5. per course with at least one enrolment, ``gradereport_user_get_grade_items`` with
           ``userid=0`` -> ``grade`` records (1 request per course);
        6. completions, by ``completions``:

           - ``"none"`` (default): no completion records. The crawl costs
             ``1 + C·pages + C + ceil(U/100) <= 3·C + U/100`` requests.
           - ``"per_user"``: ``core_enrol_get_users_courses`` once per distinct user gives
             ``completed`` and ``progress`` for all of that user's courses: **+U** requests.
           - ``"per_enrolment"``: ``core_completion_get_course_completion_status`` per
             enrolment in courses with completion enabled, with the criteria detail:
             **+ one request per enrolment** (a course answering ``nocriteriaset`` is
             skipped after its first call).

           Moodle core has no per-course completion function, so completions cannot fit the
           ``3·C + U/100`` budget; the warehouse's canonical model has no completion table,
           so the snapshot leaves them out unless asked. ``per_user`` is the cheapest
           faithful source (U, not U·C).

        ``concurrency`` courses are read at once (their enrolments, status and grade report),
        so the crawl waits on the site's answers and on its own work at the same time. Records
        still arrive in course order. Memory stays bounded by that many courses' answers plus
        the set of user ids seen so far; nothing holds a whole module.
        """
        if completions not in ("none", "per_user", "per_enrolment"):
            raise ValueError(f"completions must be none, per_user or per_enrolment, not {completions!r}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        seen_users: set[int] = set()
        pending: list[int] = []
        crawled_courses: set[int] = set()

        def read_course(course: MoodleCourse) -> tuple[list[MoodleEnrolment], list[MoodleGrade]] | None:
            """A course's enrolments and grades; None when it vanished (and the crawl skips it)."""
            try:
                enrolments = list(self.iter_enrolled_users(course.id))
                if enrolment_status and enrolments:
                    suspended = {e.user_id for e in self.iter_enrolled_users(course.id, options={"onlysuspended": 1})}
                    enrolments = [replace(e, suspended=e.user_id in suspended) for e in enrolments]
                course_grades = list(self.iter_course_grades(course.id)) if grades and enrolments else []
            except MoodleNotFound as exc:
                if not skip_missing_courses:
                    raise
                logger.warning("Moodle course %s vanished during the crawl: %s", course.id, exc)
                return None
            return enrolments, course_grades

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="moodle-crawl") as pool:
            courses = iter(self.iter_courses(ids=course_ids))
            reading: deque[tuple[MoodleCourse, Future]] = deque()
            try:
                while True:
                    while len(reading) < concurrency and (course := next(courses, None)) is not None:
                        reading.append((course, pool.submit(read_course, course)))
                    if not reading:
                        break
                    course, answer = reading.popleft()
                    yield course
                    crawled_courses.add(course.id)
                    read = answer.result()
                    if read is None:
                        continue
                    enrolments, course_grades = read
                    for enrolment in enrolments:
                        yield enrolment
                        if users and enrolment.user_id not in seen_users:
                            seen_users.add(enrolment.user_id)
                            pending.append(enrolment.user_id)
                            if len(pending) >= self.user_batch_size:
                                yield from self._users_batch(pending)
                                pending = []
                    yield from course_grades
                    enrolled = [e.user_id for e in enrolments]
                    if completions == "per_enrolment" and enrolled and course.data.get("enablecompletion", 1):
                        yield from self._course_status_completions(course.id, enrolled)
                    if completions == "per_user" and not users:
                        seen_users.update(enrolled)
            finally:
                for _, answer in reading:
                    answer.cancel()

        if users and pending:
            yield from self._users_batch(pending)
        if completions == "per_user":
            for uid in sorted(seen_users):
                yield from self.iter_user_completions(uid, crawled_courses)

    def _course_status_completions(self, course_id: int, user_ids: Sequence[int]) -> Iterator[MoodleCompletion]:
        for uid in user_ids:
            try:
                status = self.course_completion_status(course_id, uid)
            except MoodleWSError as exc:
                if exc.errorcode == "nocriteriaset":
                    return  # the course tracks no completion: no point asking for the others
                if exc.errorcode in ("usernotenroled", "cannotviewreport"):
                    continue
                raise
            completed = status.get("completed")
            yield MoodleCompletion(
                course_id=int(course_id),
                user_id=uid,
                completed=None if completed is None else bool(completed),
                progress=None,
                source="core_completion_get_course_completion_status",
                data=status,
            )
