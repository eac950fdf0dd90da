"""Moodle events as raw records: what an event says, or the current state it points at.

Some events carry their values (`user_graded`'s final grade, what `user_deleted` and
`grade_deleted` remove, completions): those become raw records stamped with the event's time, so
the raw layer's rule (an older source time never overwrites a newer one) keeps the newest of
out-of-order events. The others only say that something changed (`submission_graded` has no
grade, `user_enrolment_updated` no status, `user_created` no profile): for those the current
state is read through the Moodle client, batched over the whole batch of events — users by id
in batches of 100, a course's enrolments once per course, an assignment's grades once per
assignment — and lands exactly as the snapshot lands it, with the snapshot's own source times,
so a later snapshot and a later event both replace it.

Raw records keep the snapshot's shapes (`lib/source_reads.py`): `users` by user id,
`enrolments` by `<course>:<user>`, `grades` by `<grade item>:<user>`, `assign_grades` by
`<assignment>:<user>`. Completions, which no canonical table reads yet, land as
`course_completions` (`<course>:<user>`) and `activity_completions` (`<cm>:<user>`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from integration_pipelines.lib.events.models import MoodleEvent
from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.lib.source_reads import ENROLMENT_KEYS, UNKNOWN_SOURCE_TIME, assign_grade_record
from integration_pipelines.lib.warehouse.schema import raw_records

# How far before an event `mod_assign_get_grades` looks for the grade it announces: Moodle stamps
# the grade when it saves it, a moment before the event fires.
GRADE_LOOKBACK = timedelta(minutes=5)


@dataclass(frozen=True)
class RawChange:
    """One raw record to land: a value, or a tombstone (`deleted_at`)."""

    entity: str
    record_id: str
    payload: Any  # a mapping, or JSON text encoded once by its reader
    modified_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class GradeItem:
    """An assignment's grade item, as the last snapshot landed it (raw `grade_items`)."""

    item_id: int
    assignment_id: int
    course_id: int | None
    cmid: int | None


def grade_items(conn: Connection, tenant_id: str) -> list[GradeItem]:
    """The assignments' grade items the raw layer holds (a few per course)."""
    r = raw_records.c
    rows = conn.execute(
        select(r.record_id, r.payload).where(
            r.tenant_id == tenant_id, r.source == "moodle", r.entity == "grade_items", r.deleted_at.is_(None)
        )
    )
    items = []
    for record_id, payload in rows:
        instance = payload.get("iteminstance")
        if instance is None:
            continue
        course, cmid = payload.get("courseid"), payload.get("cmid")
        items.append(
            GradeItem(
                int(record_id), int(instance), int(course) if course is not None else None, _int(cmid) if cmid else None
            )
        )
    return items


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class MoodleWork:
    """What a batch of Moodle events asks for: records to land as they are, and state to re-read."""

    changes: list[RawChange] = field(default_factory=list)
    users: set[int] = field(default_factory=set)
    deleted_users: dict[int, datetime] = field(default_factory=dict)
    enrolments: dict[int, dict[int, datetime]] = field(default_factory=lambda: defaultdict(dict))
    assignments: dict[int, datetime] = field(default_factory=dict)
    # Why an event had nothing to apply, by event id (the log keeps it as the event's note).
    notes: dict[str, str] = field(default_factory=dict)

    def refetches(self) -> bool:
        return bool(self.users or self.enrolments or self.assignments)


def record_of(event: MoodleEvent) -> tuple[str | None, int | None]:
    """What the log says the event is about: a record id, and the Moodle user concerned."""
    name, other = event.short_name, event.other or {}
    user = event.relateduserid
    if name in ("user_created", "user_updated", "user_deleted"):
        return str(event.objectid), event.objectid
    if name.startswith("user_enrolment"):
        return f"{event.courseid}:{user}", user
    if name in ("user_graded", "grade_deleted"):
        return f"{_int(other.get('itemid'))}:{user}", user
    if name == "submission_graded":
        return f"cm{event.contextinstanceid}:{user}", user
    if name == "course_completed":
        return f"{event.courseid}:{user}", user
    if name == "course_module_completion_updated":
        return f"{event.contextinstanceid}:{user}", user
    return (str(event.objectid) if event.objectid is not None else None), user


def plan(events: Iterable[tuple[str, MoodleEvent]], items: list[GradeItem]) -> MoodleWork:
    """What the events (applied types only, with their ids) ask for."""
    work = MoodleWork()
    by_item = {i.item_id: i for i in items}
    by_cm = {i.cmid: i for i in items if i.cmid is not None}
    for event_id, event in events:
        name, other, at = event.short_name, event.other or {}, event.time
        user = event.relateduserid
        if name in ("user_created", "user_updated"):
            assert event.objectid is not None  # required by the model for these types
            work.users.add(event.objectid)
        elif name == "user_deleted":
            assert event.objectid is not None
            previous = work.deleted_users.get(event.objectid)
            work.deleted_users[event.objectid] = max(at, previous) if previous else at
            identity = {k: other.get(k) for k in ("username", "email", "idnumber") if k in other}
            identity["timedeleted"] = event.timecreated
            # The user row Moodle keeps is anonymised: the event is the only place its identity survives.
            work.changes.append(
                RawChange("users", str(event.objectid), {"id": event.objectid, "deleted": 1, **identity}, at, at)
            )
        elif name.startswith("user_enrolment_"):
            assert user is not None
            course = work.enrolments[event.courseid]
            course[user] = min(at, course.get(user, at))
        elif name == "user_graded":
            assert user is not None
            item = by_item.get(int(other["itemid"]))
            if item is None:
                work.notes[event_id] = f"grade item {other['itemid']} is no assignment's (course total or manual item)"
                continue
            final = other.get("finalgrade")
            payload = {
                "itemid": item.item_id,
                "iteminstance": item.assignment_id,
                "courseid": item.course_id,
                "userid": user,
                "graderaw": final,
                "gradedategraded": event.timecreated,
            }
            deleted = at if final is None else None  # its gradedategraded tells two such tombstones apart
            work.changes.append(RawChange("grades", f"{item.item_id}:{user}", payload, at, deleted))
        elif name == "grade_deleted":
            assert user is not None
            item = by_item.get(int(other["itemid"]))
            if item is None:
                work.notes[event_id] = f"grade item {other['itemid']} is no assignment's (course total or manual item)"
                continue
            # A tombstone names its time: two deletions of one grade must differ in content, or the
            # merge (which skips unchanged content) would keep the first one's time, and a grade
            # given between the two would then outrank the second.
            gone = {"itemid": item.item_id, "iteminstance": item.assignment_id, "courseid": item.course_id}
            gone |= {"userid": user, "graderaw": None, "gradedategraded": None, "timedeleted": event.timecreated}
            work.changes.append(RawChange("grades", f"{item.item_id}:{user}", gone, at, at))
            assigned = {"assignmentid": item.assignment_id, "userid": user, "grade": None, "timemodified": None}
            assigned["timedeleted"] = event.timecreated
            work.changes.append(RawChange("assign_grades", f"{item.assignment_id}:{user}", assigned, at, at))
        elif name == "submission_graded":
            item = by_cm.get(event.contextinstanceid)
            if item is None:
                work.notes[event_id] = (
                    f"course module {event.contextinstanceid} is no assignment the last snapshot saw: "
                    "the next full_sync reads its grades"
                )
                continue
            since = at - GRADE_LOOKBACK
            work.assignments[item.assignment_id] = min(since, work.assignments.get(item.assignment_id, since))
        elif name == "course_completed":
            payload = {
                "courseid": event.courseid,
                "userid": user,
                "completed": True,
                "timecompleted": event.timecreated,
            }
            work.changes.append(RawChange("course_completions", f"{event.courseid}:{user}", payload, at))
        elif name == "course_module_completion_updated":
            payload = {
                "cmid": event.contextinstanceid,
                "courseid": event.courseid,
                "userid": user,
                "completionstate": _int(other.get("completionstate")),
                "timemodified": event.timecreated,
            }
            work.changes.append(RawChange("activity_completions", f"{event.contextinstanceid}:{user}", payload, at))
    return work


def refetch(make_client: Callable[[], MoodleClient], work: MoodleWork) -> tuple[list[RawChange], int]:
    """Read the current state the work points at; returns the raw records and the requests made.

    Users by id (deleted ones are absent from Moodle's answer and left to their `user_deleted`
    event); per course its enrolled users and its suspended ones (an enrolment named by an event
    and no longer there is a tombstone); per assignment the grades changed since its earliest event.
    """
    changes: list[RawChange] = []
    if not work.refetches():
        return changes, 0
    with make_client() as client:
        wanted = sorted(work.users - set(work.deleted_users))
        for user in client.iter_users_by_id(wanted):
            changes.append(RawChange("users", str(user.id), user.data, UNKNOWN_SOURCE_TIME))
        for course_id, users in sorted(work.enrolments.items()):
            changes.extend(_course_enrolments(client, course_id, users))
        if work.assignments:
            since = min(work.assignments.values())
            for grade in client.iter_assign_grades(sorted(work.assignments), since=since):
                record = assign_grade_record(grade)
                if record is not None:
                    changes.append(RawChange(*record))
        return changes, client.counter.total


def _course_enrolments(client: MoodleClient, course_id: int, users: Mapping[int, datetime]) -> list[RawChange]:
    enrolled = {e.user_id: e for e in client.iter_enrolled_users(course_id)}
    suspended = {e.user_id for e in client.iter_enrolled_users(course_id, options={"onlysuspended": 1})}
    out = []
    for user, at in sorted(users.items()):
        record_id = f"{course_id}:{user}"
        enrolment = enrolled.get(user)
        if enrolment is None:
            gone = {"courseid": course_id, "userid": user, "suspended": None}
            out.append(RawChange("enrolments", record_id, gone, UNKNOWN_SOURCE_TIME, at))
            continue
        payload = {
            "courseid": course_id,
            "userid": user,
            "suspended": user in suspended,
            **{k: enrolment.data[k] for k in ENROLMENT_KEYS if k in enrolment.data},
        }
        out.append(RawChange("enrolments", record_id, payload, UNKNOWN_SOURCE_TIME))
    return out
