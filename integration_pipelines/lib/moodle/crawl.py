"""The snapshot crawl: the whole site, phase by phase, without N+1 calls."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from integration_pipelines.lib.moodle.capabilities import CAPABILITY_OF_FUNCTION
from integration_pipelines.lib.moodle.errors import MoodleNotFound, MoodlePermissionError, MoodleWSError
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
    known_open: Collection[tuple[int, int]] = (),
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
       - ``"per_user"``: after the courses and the users, ``core_enrol_get_users_courses``
         once per user with an *open* enrolment (one not known suspended, in a course with
         ``enablecompletion``, its (course, user) pair not in ``known_completed``): its answer
         holds each of the user's courses with ``enablecompletion``, ``completionusertracked``,
         ``completed`` and ``progress``. Of the crawled courses it lists, one the user is
         tracked in (``enablecompletion`` and ``completionusertracked``, as Moodle's
         completion report counts users) that is

         - not completed lands a completion record ``completed: false``, at no cost;
         - completed and not in ``known_completed`` is asked
           ``core_completion_get_course_completion_status`` once, for the criteria and their
           times (its completion time is derived from them:
           ``source_reads.completion_record``), and lands what it answers;
         - completed and in ``known_completed`` costs nothing: a completion is for good.

         A user with no open enrolment costs nothing either. Without
         ``report/completion:view`` Moodle answers ``completed`` null for every course: that
         raises :class:`MoodlePermissionError`, as ``cannotviewreport`` does.

         **Suspended enrolments.** Moodle lists a user's *active* enrolments only
         (``enrol_get_all_users_courses($userid, true)``: a suspended enrolment, or one out of
         its dates, is left out; a suspended account is not, its enrolments are). So, with
         ``enrolment_status``, a suspended enrolment of a course with ``enablecompletion``
         whose completion has not landed yet (in neither ``known_completed`` nor
         ``known_open``) is asked ``core_completion_get_course_completion_status`` one by one,
         right after its course's records. Core Moodle answers ``usernotenroled``
         (``completion_info::is_tracked_user`` counts active enrolments only): the enrolment
         then lands ``completed: null`` (Moodle will not say), so it is not asked again. One
         whose completion landed while it was active keeps it (completions land by key, never
         soft-deleted for being absent) and is not asked: on core Moodle that is what asking
         every enrolment each time came to, at one request per suspended enrolment each
         time. A site whose completion report counts suspended enrolments (the sandbox does)
         answers, and the completion lands as for any other enrolment; one completed while
         suspended, after that, shows through its ``course_completed`` event, or once the
         enrolment is active again.

         Cost: **+ one request per user with an open enrolment, + one per newly completed
         enrolment, + one per suspended enrolment whose completion has not landed yet** (of
         courses tracking completion). A course without ``enablecompletion`` costs nothing.

    **Concurrency.** Every request is a task on one pool of ``concurrency`` threads, whatever
    its phase: each course's enrolment pages, then its suspended enrolments and its grade
    report side by side, each batch of users as soon as it fills, each course's suspended
    enrolments' completion statuses as soon as its suspended set is known (not when the
    consumer reaches the course), each user's courses and each newly completed enrolment's
    completion status. The pool's queue is kept ahead of the consumer by up to
    ``2 × concurrency`` courses (then users), so ``concurrency`` requests stay in flight from
    the first course to the last user's completions, not only while courses are read. The
    crawl waits on the site's answers and on its consumer at the same time.

    **Order.** Records arrive in the same order whatever the concurrency: per course, the
    course, its enrolments, its grades, then the user batches its enrolments filled, then its
    suspended enrolments' completions; after the last course, the last (partial) user batch,
    then the completions user by user (ascending id), each user's by course id. Memory stays
    bounded by the window's courses' (or users') answers plus the user ids seen so far and the
    suspended enrolments asked one by one; nothing holds a whole module.
    """
    if completions not in ("none", "per_user"):
        raise ValueError(f"completions must be none or per_user, not {completions!r}")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    window = 2 * concurrency
    seen_users: set[int] = set()
    pending: list[int] = []
    crawled_courses: set[int] = set()
    # For completions: the users with an open enrolment, and the suspended enrolments, whose
    # completion is asked (or known) one by one and which their users' courses must not repeat.
    open_users: set[int] = set()
    by_enrolment: set[tuple[int, int]] = set()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="moodle-crawl") as pool:

        def read_course(course: MoodleCourse) -> _CourseRead:
            """A course's enrolments; its suspended enrolments and grade report are then asked
            side by side, as tasks of their own."""
            enrolments = list(client.iter_enrolled_users(course.id))
            suspended = grade_report = None
            if enrolments and enrolment_status:
                suspended = pool.submit(read_suspended, course, enrolments)
            if enrolments and grades:
                grade_report = pool.submit(lambda: list(client.iter_course_grades(course.id)))
            return _CourseRead(course, enrolments, suspended, grade_report)

        def finish_course(
            read: _CourseRead,
        ) -> tuple[list[MoodleEnrolment], list[MoodleGrade], _SuspendedCompletions | None] | None:
            """The course's enrolments (their suspension set), grades and suspended enrolments'
            completion statuses (asked); None when the course vanished during the crawl and is
            skipped."""
            try:
                enrolments = read.enrolments
                asked = None
                if read.suspended is not None:
                    gone, asked = read.suspended.result()
                    enrolments = [replace(e, suspended=e.user_id in gone) for e in enrolments]
                course_grades = read.grade_report.result() if read.grade_report is not None else []
            except MoodleNotFound as exc:
                if not skip_missing_courses:
                    raise
                logger.warning("Moodle course %s vanished during the crawl: %s", read.course.id, exc)
                return None
            return enrolments, course_grades, asked

        def users_batch(ids: list[int]) -> list[MoodleUser]:
            return list(client._users_batch(ids))

        def status_completions(course_id: int, user_ids: list[int]) -> list[MoodleCompletion]:
            return list(_course_status_completions(client, course_id, user_ids))

        def suspended_completions(course_id: int, user_ids: list[int]) -> list[MoodleCompletion]:
            return list(_course_status_completions(client, course_id, user_ids, unanswered=True))

        def tracks_completions(course: MoodleCourse) -> bool:
            """Whether this crawl reads the course's completions (a course says if it tracks them)."""
            return completions == "per_user" and bool(course.data.get("enablecompletion", 1))

        def read_suspended(
            course: MoodleCourse, enrolments: list[MoodleEnrolment]
        ) -> tuple[set[int], _SuspendedCompletions | None]:
            """A course's suspended enrolments, and the completion statuses of those whose
            completion has not landed yet, asked at once (in a course tracking completion)."""
            gone = {e.user_id for e in client.iter_enrolled_users(course.id, options={"onlysuspended": 1})}
            if not tracks_completions(course):
                return gone, None
            ask = [
                e.user_id
                for e in enrolments
                if e.user_id in gone
                and (course.id, e.user_id) not in known_completed
                and (course.id, e.user_id) not in known_open
            ]
            return gone, _SuspendedCompletions(pool, suspended_completions, course.id, ask) if ask else None

        def user_completions(uid: int) -> list[MoodleCompletion]:
            return list(client.iter_user_completions(uid, crawled_courses))

        courses = iter(client.iter_courses(ids=course_ids))
        reading: deque[tuple[MoodleCourse, Future[_CourseRead]]] = deque()
        # What follows the current course's records, in order.
        after: deque[Future[list] | _SuspendedCompletions] = deque()
        try:
            while True:
                while len(reading) < window and (course := next(courses, None)) is not None:
                    reading.append((course, pool.submit(read_course, course)))
                if after:
                    item = after.popleft()
                    if isinstance(item, _SuspendedCompletions):
                        answered, rest = item.answers()
                        after.extendleft(reversed(rest))
                        yield from answered
                    else:
                        yield from item.result()
                    continue
                if not reading:
                    break
                course, answer = reading.popleft()
                yield course
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
                crawled_courses.add(course.id)
                enrolments, course_grades, suspended_asked = finished
                for enrolment in enrolments:
                    yield enrolment
                    if users and enrolment.user_id not in seen_users:
                        seen_users.add(enrolment.user_id)
                        pending.append(enrolment.user_id)
                        if len(pending) >= client.user_batch_size:
                            after.append(pool.submit(users_batch, pending))
                            pending = []
                yield from course_grades
                if tracks_completions(course):
                    for e in enrolments:
                        pair = (course.id, e.user_id)
                        if e.suspended:
                            by_enrolment.add(pair)  # asked one by one (`read_suspended`)
                        elif pair not in known_completed:
                            open_users.add(e.user_id)
                if suspended_asked is not None:
                    after.append(suspended_asked)
            if users and pending:
                yield from users_batch(pending)
            if completions == "per_user":
                yield from _per_user_completions(
                    pool,
                    window,
                    sorted(open_users),
                    user_completions,
                    status_completions,
                    by_enrolment,
                    known_completed,
                )
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _per_user_completions(
    pool: ThreadPoolExecutor,
    window: int,
    user_ids: Sequence[int],
    user_completions: Callable[[int], list[MoodleCompletion]],
    status_completions: Callable[[int, list[int]], list[MoodleCompletion]],
    by_enrolment: Collection[tuple[int, int]],
    known_completed: Collection[tuple[int, int]],
) -> Iterator[MoodleCompletion]:
    """The completions of each user's courses, in user order: `user_completions` (one
    `core_enrol_get_users_courses` each) kept `window` users ahead, and for each course the
    user completed since the last snapshot, one `status_completions` task, its records in
    their place.

    A user's status tasks are queued as soon as its courses have answered, not when the consumer
    reaches the user: queued only then, they were the only requests left in flight while the
    consumer waited for them (2 of 8 on average, measured with a fake site that answers slowly)."""

    def records_of(courses: list[MoodleCompletion]) -> list[list[MoodleCompletion] | Future[list[MoodleCompletion]]]:
        records: list[list[MoodleCompletion] | Future[list[MoodleCompletion]]] = []
        for completion in sorted(courses, key=lambda c: c.course_id):
            pair = (completion.course_id, completion.user_id)
            data = completion.data
            if pair in by_enrolment or not data.get("enablecompletion"):
                continue
            if completion.completed is None:
                _refuse_hidden_completion(completion)
            if not data.get("completionusertracked"):
                continue  # not in the course's completion report (a teacher, say)
            if not completion.completed:
                records.append([completion])
            elif pair not in known_completed:
                records.append(pool.submit(status_completions, completion.course_id, [completion.user_id]))
        return records

    uids = iter(user_ids)
    # Per user, in order: its courses' task, then (once answered) its records and status tasks.
    ahead: deque[_UserCompletions] = deque()
    while True:
        while len(ahead) < window and (uid := next(uids, None)) is not None:
            ahead.append(_UserCompletions(pool.submit(user_completions, uid)))
        if not ahead:
            return
        for user in ahead:
            if user.records is None and user.courses.done():
                user.records = records_of(user.courses.result())
        user = ahead.popleft()
        for item in user.records if user.records is not None else records_of(user.courses.result()):
            yield from item if isinstance(item, list) else item.result()


@dataclass
class _UserCompletions:
    """One user's place in `_per_user_completions`: its courses' task, then its records."""

    courses: Future[list[MoodleCompletion]]
    records: list[list[MoodleCompletion] | Future[list[MoodleCompletion]]] | None = None


def _refuse_hidden_completion(completion: MoodleCompletion) -> None:
    """`core_enrol_get_users_courses` answers `completed` null in a course tracking completion
    when the service user may not view other users' completion (`completion_can_view_data`):
    a refusal, not "unknown", like `cannotviewreport` from the completion status."""
    wsfunction = "core_enrol_get_users_courses"
    needed = " and ".join(CAPABILITY_OF_FUNCTION[wsfunction])
    raise MoodlePermissionError(
        f"Moodle {wsfunction} answered no completion for user {completion.user_id} in course "
        f"{completion.course_id}, which tracks completion: the web service user lacks {needed} "
        "(`integration-pipelines doctor` lists everything missing)",
        wsfunction=wsfunction,
        errorcode="nopermissions",
        exception=None,
        moodle_message="completed: null",
    )


# How Moodle says a course tracks no completion, and that a user is not (or no longer) enrolled:
# a real 5.1 site answers `notenroled` for the service user itself, `usernotenroled` elsewhere
# (a suspended enrolment included). `cannotviewreport` is a missing capability
# (report/completion:view): an error, never skipped.
COURSE_WITHOUT_COMPLETION = frozenset({"nocriteriaset", "completionnotenabled"})
NOT_ENROLLED = frozenset({"usernotenroled", "notenroled"})


class _SuspendedCompletions:
    """A course's suspended enrolments' completion statuses, asked as soon as the course's
    suspended enrolments are known, not when the crawl's consumer reaches the course: asked only
    then, they were nearly all that was in flight while the consumer waited for them. The first
    is asked alone, since its answer says whether the course tracks completion at all (if not,
    nobody else is asked); the others side by side once it has answered."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        ask: Callable[[int, list[int]], list[MoodleCompletion]],
        course_id: int,
        user_ids: list[int],
    ) -> None:
        self._pool, self._ask, self._course_id, self._others = pool, ask, course_id, user_ids[1:]
        self._rest: list[Future[list[MoodleCompletion]]] = []
        self._rest_queued = threading.Event()
        self.first = pool.submit(ask, course_id, user_ids[:1])
        self.first.add_done_callback(self._ask_the_others)

    def _ask_the_others(self, first: Future[list[MoodleCompletion]]) -> None:
        try:
            if self._others and not first.cancelled() and first.exception() is None and first.result():
                self._rest = [self._pool.submit(self._ask, self._course_id, [uid]) for uid in self._others]
        except RuntimeError:
            pass  # the crawl was closed, and its pool takes no more tasks
        finally:
            self._rest_queued.set()

    def answers(self) -> tuple[list[MoodleCompletion], list[Future[list[MoodleCompletion]]]]:
        """The first one's records, and the others' tasks (none if the course tracks no completion)."""
        answered = self.first.result()
        self._rest_queued.wait()
        return answered, self._rest


@dataclass(frozen=True, slots=True)
class _CourseRead:
    course: MoodleCourse
    enrolments: list[MoodleEnrolment]
    suspended: Future[tuple[set[int], _SuspendedCompletions | None]] | None
    grade_report: Future[list[MoodleGrade]] | None


def _course_status_completions(
    client: MoodleClient, course_id: int, user_ids: Sequence[int], *, unanswered: bool = False
) -> Iterator[MoodleCompletion]:
    """Each user's completion status in a course; a user Moodle says is not enrolled (not in the
    completion report) is skipped, or, with `unanswered`, yields `completed` None: Moodle will
    not say."""
    for uid in user_ids:
        try:
            status = client.course_completion_status(course_id, uid)
        except MoodleWSError as exc:
            if exc.errorcode in COURSE_WITHOUT_COMPLETION:
                return  # the course tracks no completion: no point asking for the others
            if exc.errorcode in NOT_ENROLLED:
                if unanswered:
                    yield MoodleCompletion(
                        course_id=int(course_id),
                        user_id=uid,
                        completed=None,
                        progress=None,
                        source="core_completion_get_course_completion_status",
                        data={},
                    )
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
