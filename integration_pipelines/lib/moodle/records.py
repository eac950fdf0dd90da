"""What the Moodle client yields: one frozen dataclass per kind of record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal


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
    ``data`` is the raw completion payload of whichever function produced it (``source``):
    its completion flags, or ``core_completion_get_course_completion_status``'s status with
    each criterion and its time.
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

CompletionMode = Literal["none", "per_user"]
