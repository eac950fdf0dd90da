"""The snapshot crawl: the whole site, phase by phase, without N+1 calls."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from integration_pipelines.lib.moodle.errors import MoodleNotFound, MoodleWSError
from integration_pipelines.lib.moodle.records import (
    CompletionMode,
    MoodleCompletion,
    MoodleCourse,
    MoodleEnrolment,
    MoodleGrade,
    MoodleUser,
    SnapshotRecord,
)

if TYPE_CHECKING:
    from integration_pipelines.lib.moodle.client import MoodleClient

logger = logging.getLogger(__name__)


def crawl_snapshot(
    client: MoodleClient,
    course_ids: Iterable[int] | None = None,
    *,
    grades: bool = True,
    users: bool = True,
    enrolment_status: bool = False,
    completions: CompletionMode = "none",
    skip_missing_courses: bool = True,
    concurrency: int = 1,
    known_completed: Collection[tuple[int, int]] = (),
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
         **+ one request per enrolment** of a course with completion enabled
         (``enablecompletion``; a course without it costs no call, and one answering
         ``nocriteriaset`` or ``completionnotenabled`` is skipped after its first call), less
         the (course, user) pairs in ``known_completed``: a completion is for good, so an
         enrolment known to be completed needs no asking again.

       Moodle core has no per-course completion function, so completions cannot fit the
       ``3·C + U/100`` budget; the warehouse's canonical model has no completion table,
       so the snapshot leaves them out unless asked. ``per_user`` is the cheapest
       faithful source (U, not U·C).

    **Concurrency.** Every request is a task on one pool of ``concurrency`` threads, whatever
    its phase: each course's enrolment pages, then its suspended enrolments and its grade
    report side by side, each batch of users as soon as it fills, each course's or user's
    completions. The pool's queue is kept ahead of the consumer by up to ``2 × concurrency``
    courses, so ``concurrency`` requests stay in flight from the first course to the last
    batch of users, not only while courses are read. The crawl waits on the site's answers and
    on its consumer at the same time.

    **Order.** Records arrive in the same order whatever the concurrency: per course, the
    course, its enrolments, its grades, then the user batches its enrolments filled, then its
    per-enrolment completions; after the last course, the last (partial) user batch and the
    per-user completions. Memory stays bounded by the window's courses' answers plus the set
    of user ids seen so far; nothing holds a whole module.
    """
    if completions not in ("none", "per_user", "per_enrolment"):
        raise ValueError(f"completions must be none, per_user or per_enrolment, not {completions!r}")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    window = 2 * concurrency
    seen_users: set[int] = set()
    pending: list[int] = []
    crawled_courses: set[int] = set()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="moodle-crawl") as pool:

        def read_course(course: MoodleCourse) -> _CourseRead:
            """A course's enrolments; its suspended enrolments and grade report are then asked
            side by side, as tasks of their own."""
            enrolments = list(client.iter_enrolled_users(course.id))
            suspended = grade_report = None
            if enrolments and enrolment_status:
                suspended = pool.submit(
                    lambda: {e.user_id for e in client.iter_enrolled_users(course.id, options={"onlysuspended": 1})}
                )
            if enrolments and grades:
                grade_report = pool.submit(lambda: list(client.iter_course_grades(course.id)))
            return _CourseRead(course, enrolments, suspended, grade_report)

        def finish_course(read: _CourseRead) -> tuple[list[MoodleEnrolment], list[MoodleGrade]] | None:
            """The course's enrolments (their suspension set) and grades; None when the course
            vanished during the crawl and is skipped."""
            try:
                enrolments = read.enrolments
                if read.suspended is not None:
                    gone = read.suspended.result()
                    enrolments = [replace(e, suspended=e.user_id in gone) for e in enrolments]
                course_grades = read.grade_report.result() if read.grade_report is not None else []
            except MoodleNotFound as exc:
                if not skip_missing_courses:
                    raise
                logger.warning("Moodle course %s vanished during the crawl: %s", read.course.id, exc)
                return None
            return enrolments, course_grades

        def users_batch(ids: list[int]) -> list[MoodleUser]:
            return list(client._users_batch(ids))

        def course_completions(course_id: int, enrolled: list[int]) -> list[MoodleCompletion]:
            return list(_course_status_completions(client, course_id, enrolled))

        def user_completions(uid: int) -> list[MoodleCompletion]:
            return list(client.iter_user_completions(uid, crawled_courses))

        courses = iter(client.iter_courses(ids=course_ids))
        reading: deque[tuple[MoodleCourse, Future[_CourseRead]]] = deque()
        after: deque[Future[list]] = deque()  # what follows the current course's records, in order
        try:
            while True:
                while len(reading) < window and (course := next(courses, None)) is not None:
                    reading.append((course, pool.submit(read_course, course)))
                if after:
                    yield from after.popleft().result()
                    continue
                if not reading:
                    break
                course, answer = reading.popleft()
                yield course
                crawled_courses.add(course.id)
                try:
                    read = answer.result()
                except MoodleNotFound as exc:
                    if not skip_missing_courses:
                        raise
                    logger.warning("Moodle course %s vanished during the crawl: %s", course.id, exc)
                    continue
                finished = finish_course(read)
                if finished is None:
                    continue
                enrolments, course_grades = finished
                for enrolment in enrolments:
                    yield enrolment
                    if users and enrolment.user_id not in seen_users:
                        seen_users.add(enrolment.user_id)
                        pending.append(enrolment.user_id)
                        if len(pending) >= client.user_batch_size:
                            after.append(pool.submit(users_batch, pending))
                            pending = []
                yield from course_grades
                enrolled = [e.user_id for e in enrolments]
                if completions == "per_enrolment" and course.data.get("enablecompletion", 1):
                    to_ask = [uid for uid in enrolled if (course.id, uid) not in known_completed]
                    if to_ask:
                        after.append(pool.submit(course_completions, course.id, to_ask))
                if completions == "per_user" and not users:
                    seen_users.update(enrolled)
            if users and pending:
                yield from users_batch(pending)
            if completions == "per_user":
                ahead: deque[Future[list[MoodleCompletion]]] = deque()
                uids = iter(sorted(seen_users))
                while True:
                    while len(ahead) < window and (uid := next(uids, None)) is not None:
                        ahead.append(pool.submit(user_completions, uid))
                    if not ahead:
                        break
                    yield from ahead.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# How Moodle says a course tracks no completion, and that a user is not (or no longer) enrolled:
# a real 5.1 site answers `notenroled` for the service user itself, `usernotenroled` elsewhere.
# `cannotviewreport` is a missing capability (report/completion:view): an error, never skipped.
COURSE_WITHOUT_COMPLETION = frozenset({"nocriteriaset", "completionnotenabled"})
NOT_ENROLLED = frozenset({"usernotenroled", "notenroled"})


@dataclass(frozen=True, slots=True)
class _CourseRead:
    course: MoodleCourse
    enrolments: list[MoodleEnrolment]
    suspended: Future[set[int]] | None
    grade_report: Future[list[MoodleGrade]] | None


def _course_status_completions(
    client: MoodleClient, course_id: int, user_ids: Sequence[int]
) -> Iterator[MoodleCompletion]:
    for uid in user_ids:
        try:
            status = client.course_completion_status(course_id, uid)
        except MoodleWSError as exc:
            if exc.errorcode in COURSE_WITHOUT_COMPLETION:
                return  # the course tracks no completion: no point asking for the others
            if exc.errorcode in NOT_ENROLLED:
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
