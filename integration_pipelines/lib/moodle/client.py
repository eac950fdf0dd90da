"""The Moodle Web Services (REST) client.

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
  whole site without N+1 calls (``crawl.py`` has the request budget).
- :attr:`MoodleClient.counter` counts every HTTP request sent, per ``wsfunction``.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr

from integration_pipelines.lib.http import (
    HttpSession,
    Redactor,
    RequestCounter,
    RetryPolicy,
    call_with_retries,
    decode_json,
    parse_retry_after,
    secret_value,
)
from integration_pipelines.lib.moodle import crawl
from integration_pipelines.lib.moodle.capabilities import CAPABILITY_OF_FUNCTION, capabilities_for
from integration_pipelines.lib.moodle.errors import (
    _RETRYABLE_ERRORCODES,
    MoodleAccessError,
    MoodleAuthError,
    MoodleHTTPError,
    MoodleInvalidParameter,
    MoodleNotFound,
    MoodlePermissionError,
    MoodleResponseError,
    MoodleServerError,
    MoodleTransportError,
    MoodleWSError,
)
from integration_pipelines.lib.moodle.params import _chunks, _int_or_none, _to_epoch, encode_params, parse_assign_grade
from integration_pipelines.lib.moodle.records import (
    CompletionMode,
    MoodleAssignGrade,
    MoodleAssignment,
    MoodleCompletion,
    MoodleCourse,
    MoodleEnrolment,
    MoodleGrade,
    MoodleUser,
    MoodleWarning,
    SnapshotRecord,
)

logger = logging.getLogger(__name__)

REST_PATH = "/webservice/rest/server.php"


def _refuse_warning_only(answer: Any, wsfunction: str, rows: str, *, asked: int) -> None:
    """An answer with no rows and a "No access rights" warning (warningcode 1) for every item
    asked is a refusal, not an empty result: raise, naming the capabilities the function needs.
    (One assignment gone among others with no grades is not: those warn "No grades found".)"""
    if not isinstance(answer, Mapping) or answer.get(rows):
        return
    refused = [w for w in answer.get("warnings") or [] if str(w.get("warningcode")) == "1"]
    if refused and len(refused) >= asked:
        needed = " and ".join(CAPABILITY_OF_FUNCTION.get(wsfunction, ()))
        raise MoodlePermissionError(
            f"Moodle {wsfunction} answered no {rows} and {len(refused)} warning(s) "
            f"({refused[0].get('message')!r}): the web service user lacks {needed}",
            wsfunction=wsfunction,
            errorcode="nopermissions",
            exception=None,
            moodle_message=str(refused[0].get("message") or ""),
        )


# What Moodle's delete_user leaves of an account: the email replaced by an md5 of the mangled
# username, which is the old email (or username) with `.<deletion time>` appended.
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_MANGLED_USERNAME = re.compile(r"\.\d{9,}$")


def is_deleted_user(user: Mapping[str, Any]) -> bool:
    """Whether a user of ``core_user_get_users_by_field`` is a deleted account: Moodle answers it
    with no deleted flag, but its email is an md5 and its username ends in ``.<unix time>``."""
    if user.get("deleted"):
        return True
    email, username = str(user.get("email") or ""), str(user.get("username") or "")
    return bool(_MD5.match(email)) and bool(_MANGLED_USERNAME.search(username))


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
        if code in ("nopermissions", "errorcoursecontextnotvalid", "cannotviewreport") or (exc or "").endswith(
            "required_capability_exception"
        ):
            needed = " and ".join(capabilities_for(wsfunction, code)) or "the capability Moodle names"
            return MoodlePermissionError(
                f"Moodle {wsfunction}: the web service user lacks a capability ({code}: {msg}); grant it {needed} "
                "(`integration-pipelines doctor` lists everything missing)",
                **kwargs,
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

        Duplicate ids are fetched once. Ids Moodle does not know are absent from its answer.
        A deleted user is *not* absent: Moodle returns it anonymised, with no deleted flag
        (a mangled username ``<email>.<time>`` and an md5 for email). Such a user is left out
        here (:func:`is_deleted_user`), so a snapshot soft-deletes it as it should.
        """
        size = batch_size or self.user_batch_size
        unique = list(dict.fromkeys(int(i) for i in ids))
        for batch in _chunks(unique, size):
            yield from self._users_batch(batch)

    def _users_batch(self, batch: Sequence[int]) -> Iterator[MoodleUser]:
        for user in self.call("core_user_get_users_by_field", field="id", values=list(batch)) or []:
            if is_deleted_user(user):
                logger.debug("Moodle user %s is deleted (anonymised in the answer): left out", user.get("id"))
                continue
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
        (``notenroled`` when the user asked about is the service user itself, as a real 5.1 site
        answers) or ``cannotviewreport`` as Moodle does.
        """
        answer = self.call("core_completion_get_course_completion_status", courseid=int(course_id), userid=int(user_id))
        return answer.get("completionstatus") or {}

    def iter_user_courses(self, user_id: int) -> Iterator[dict[str, Any]]:
        """``core_enrol_get_users_courses``: a user's courses with ``completed`` and ``progress``.

        Moodle lists the user's *active* enrolments only (a suspended enrolment, or one out of its
        dates, is left out; a suspended account's enrolments are not), and of those the courses
        the service user may enter and see the participants of. ``completed`` and ``progress`` are
        null, and ``completionusertracked`` false, where the course tracks no completion or the
        service user may not view other users' completion (``report/completion:view``)."""
        yield from self.call("core_enrol_get_users_courses", userid=int(user_id), returnusercount=False) or []

    def iter_user_completions(
        self, user_id: int, course_ids: Collection[int] | None = None
    ) -> Iterator[MoodleCompletion]:
        """Course completion of one user in all their courses (of ``course_ids``, when given)
        with **one** request; ``data`` keeps the answer's completion flags."""
        for course in self.iter_user_courses(user_id):
            cid = int(course["id"])
            if course_ids is not None and cid not in course_ids:
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
            _refuse_warning_only(answer, "mod_assign_get_grades", "assignments", asked=len(batch))
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
        known_completed: Collection[tuple[int, int]] = (),
        known_open: Collection[tuple[int, int]] = (),
    ) -> Iterator[SnapshotRecord]:
        """The whole site, streamed record by record: see :func:`crawl.crawl_snapshot`."""
        return crawl.crawl_snapshot(
            self,
            course_ids,
            grades=grades,
            users=users,
            enrolment_status=enrolment_status,
            completions=completions,
            skip_missing_courses=skip_missing_courses,
            concurrency=concurrency,
            known_completed=known_completed,
            known_open=known_open,
        )
