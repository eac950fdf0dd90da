"""Moodle request budget of a full crawl, completions included, at 100,000 students.

    .venv/bin/python bench/bench_moodle_budget.py [--students 5000] [--at 100000]

1. Crawls a sandbox college of `--students` over HTTP twice, as `moodle_snapshot` does (the
   second time knowing the completions the first landed), and counts the requests by
   wsfunction with the client's counter.
2. Computes the same counts from the college itself with the crawl's formula, and checks they
   equal what was counted.
3. Applies the formula to a generated college of `--at` students (generated, not served: a crawl
   of that size is too slow on this shared machine), beside what the crawl cost when it asked
   every enrolment its completion (`core_completion_get_course_completion_status` per enrolment
   of a course tracking completion, until completed) and the 33,263 requests recorded without
   completions.
"""

from __future__ import annotations

import argparse
import math
import os
import time

from common import record

from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.lib.source_reads import RecordsWithResult, read_moodle_snapshot
from integration_pipelines.sandbox import SandboxConfig, run_sandbox
from integration_pipelines.sandbox.college import College, generate_college

PAGE_SIZE = 1000  # MoodleClient.page_size
USER_BATCH = 100  # MoodleClient.user_batch_size
PREFLIGHT = 8  # the doctor's check before a snapshot (site info, one course, a few users, ...)
USERS_COURSES = "core_enrol_get_users_courses"
STATUS = "core_completion_get_course_completion_status"


def predicted(
    college: College,
    known_completed: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
    known_open: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
) -> dict[str, int]:
    """The crawl's requests by wsfunction, from the college: see lib/moodle/crawl.py.

    Completions: each user with an open enrolment (active, in a course tracking completion, not
    known completed; teachers too) is asked their courses; each enrolment completed since
    `known_completed` is asked its completion status, as is each suspended enrolment of a course
    tracking completion whose completion has not landed (in neither set: Moodle leaves those out
    of a user's courses). `_per_enrolment` is what the crawl asked before: every enrolment of a
    course tracking completion, suspended ones and teachers included, until completed."""
    enrolments = pages = suspended = reports = statuses = per_enrolment = 0
    users: set[int] = set()
    open_users: set[int] = set()
    for course in college.courses.values():
        status: dict[int, int] = {}  # user -> the enrolment's Moodle status (0 active, 1 suspended)
        for e in course.enrolments:
            if not e.m_deleted and e.user_id in college.users and not college.users[e.user_id].deleted:
                status[e.user_id] = e.m_status
        teacher = college.users.get(course.teacher_id)
        if teacher is not None and not teacher.deleted:
            status[teacher.id] = 0
        n = len(status)
        pages += n // PAGE_SIZE + 1  # a page shorter than the page size ends the course
        if n:
            suspended += 1
            reports += 1
            users |= set(status)
        enrolments += n
        if not course.completion_enabled:
            continue
        for uid, m_status in status.items():
            pair = (course.id, uid)
            if pair in known_completed:
                continue
            per_enrolment += 1
            if m_status:
                statuses += pair not in known_open  # asked one by one until its completion has landed
                continue
            open_users.add(uid)
            if pair in college.completions:
                statuses += 1  # completed since the last crawl: its time
    return {
        "core_course_get_courses": 1,
        "core_enrol_get_enrolled_users": pages + suspended,
        "core_user_get_users_by_field": math.ceil(len(users) / USER_BATCH),
        "gradereport_user_get_grade_items": reports,
        USERS_COURSES: len(open_users),
        STATUS: statuses,
        "_enrolments": enrolments,
        "_users": len(users),
        "_courses": len(college.courses),
        "_per_enrolment": per_enrolment,
    }


Pairs = set[tuple[int, int]]


def crawl(sandbox, completed: Pairs, open_: Pairs) -> tuple[dict[str, int], Pairs, Pairs, float, int]:
    """A snapshot's requests by wsfunction, knowing the completions an earlier one landed; the
    completions it landed (completed, and the others); its time and its retried requests."""
    started = time.perf_counter()
    with MoodleClient(sandbox.moodle_url, sandbox.config.moodle_token) as client:
        reading = RecordsWithResult(
            read_moodle_snapshot(lambda: client, 8, known_completed=completed, known_open=open_)
        )
        landed: dict[bool, Pairs] = {True: set(), False: set()}
        for entity, record_id, payload, _at in reading:
            if entity == "completions":
                course, user = record_id.split(":")
                landed['"completed":true' in payload].add((int(course), int(user)))
        assert reading.result is not None
        elapsed = time.perf_counter() - started
        return dict(reading.result), landed[True], landed[False], elapsed, client.counter.retries


def total(figures: dict[str, int]) -> int:
    return sum(v for k, v in figures.items() if not k.startswith("_"))


def completions(figures: dict[str, int]) -> int:
    return figures[USERS_COURSES] + figures[STATUS]


def before(figures: dict[str, int]) -> int:
    """The same crawl when completions cost one request per enrolment not known completed."""
    return total(figures) - completions(figures) + figures["_per_enrolment"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=5000)
    parser.add_argument("--at", type=int, default=100_000)
    args = parser.parse_args()
    load = os.getloadavg()

    with run_sandbox(SandboxConfig(students=args.students, seed=7)) as sandbox:
        first, completed, open_, first_s, first_retries = crawl(sandbox, set(), set())
        again, _, _, again_s, again_retries = crawl(sandbox, completed, open_)
        college = sandbox.college
        want_first, want_again = predicted(college), predicted(college, completed, open_)
    for counted, want in ((first, want_first), (again, want_again)):
        mismatch = {
            k: (counted.get(k, 0), v) for k, v in want.items() if not k.startswith("_") and counted.get(k, 0) != v
        }
        assert not mismatch, f"the formula disagrees with the counter: {mismatch}"

    big = generate_college(args.at, 7)
    # What a first crawl lands, as the sandbox answers: every enrolment of a course tracking
    # completion, a teacher's excepted (not in the completion report), suspended ones included.
    big_landed = {
        (c.id, e.user_id)
        for c in big.courses.values()
        if c.completion_enabled
        for e in c.enrolments
        if not e.m_deleted and e.user_id in big.users and not big.users[e.user_id].deleted
    }
    big_completed = {pair for pair in big_landed if pair in big.completions}
    at_first, at_again = predicted(big), predicted(big, big_completed, big_landed - big_completed)
    without = total(at_first) - completions(at_first)

    def row(name: str, *figures: dict[str, int]) -> str:
        return f"| {name} | " + " | ".join(f"{f.get(name, 0):,}" for f in figures) + " |"

    functions = [k for k in want_first if not k.startswith("_")]
    small, large = f"{args.students:,}", f"{args.at:,}"
    lines = [
        f"Load average while measuring: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (other engineers' runs share "
        "the 2 cores; request counts do not depend on load, times do).",
        "",
        f"Counted at {small} students with the client's request counter over HTTP (first crawl "
        f"{first_s:.1f} s, second {again_s:.1f} s; {first_retries + again_retries} retried requests, counted too, "
        "left out here); the crawl's formula gives the same counts exactly, and gives "
        f"the {large}-student figures from a generated college of that size ({at_first['_courses']:,} "
        f"courses, {at_first['_enrolments']:,} enrolments teachers included, {at_first['_users']:,} users). "
        "The second crawl knows the completions the first landed, as `moodle_snapshot` does.",
        "",
        f"| requests by function | first crawl at {small} (counted) | second at {small} (counted) "
        f"| first crawl at {large} | second at {large} |",
        "|---|---|---|---|---|",
        *(row(name, want_first, want_again, at_first, at_again) for name in functions),
        f"| **total** | {total(want_first):,} | {total(want_again):,} | {total(at_first):,} | {total(at_again):,} |",
        f"| completions when asked per enrolment (before) | {want_first['_per_enrolment']:,} "
        f"| {want_again['_per_enrolment']:,} | {at_first['_per_enrolment']:,} | {at_again['_per_enrolment']:,} |",
        f"| total when asked per enrolment (before) | {before(want_first):,} | {before(want_again):,} "
        f"| {before(at_first):,} | {before(at_again):,} |",
        "",
        f"| full crawl at {large} students | requests |",
        "|---|---|",
        "| recorded 2026-11-25 (no completions, and before each course's `onlysuspended` request) | 33,263 |",
        f"| today's crawl without completions (33,263 + one `onlysuspended` request per course) | {without:,} |",
        f"| with completions, first crawl | {total(at_first):,} (per enrolment: {before(at_first):,}) |",
        f"| with completions, every later crawl (landed completions not asked again) | {total(at_again):,} "
        f"(per enrolment: {before(at_again):,}) |",
        f"| the snapshot's capability check before each crawl | +{PREFLIGHT} |",
        "",
        "Budget: `1 + Σ courses (pages + 1 suspended + 1 grade report) + ⌈users / 100⌉ + users with an open "
        "enrolment + enrolments completed since the last crawl + suspended enrolments whose completion has not "
        "landed`, the last three of courses tracking completion. An open enrolment is an active one not known "
        f"completed: its user is asked `{USERS_COURSES}` once, which says which of the user's courses are "
        f"completed; each one completed since the last crawl is asked `{STATUS}` once, for its time (the latest "
        "criterion's), and never again. Moodle lists a user's active enrolments only, so a suspended enrolment "
        f"is asked `{STATUS}` until its completion has landed (the sandbox answers; core Moodle answers "
        "`usernotenroled`, landed as unknown, and one landed while the enrolment was active stays). A course "
        f"without completion enabled costs nothing. At {large} students completions cost "
        f"{completions(at_first):,} requests on the first crawl and {completions(at_again):,} on a later one "
        f"that finds nothing new ({at_again[USERS_COURSES]:,} users' courses), plus one per enrolment "
        f"completed and per suspended enrolment created since; against {at_first['_per_enrolment']:,} and "
        f"{at_again['_per_enrolment']:,} asked per enrolment.",
    ]
    record(f"Moodle request budget at {large} students, completions included", lines)


if __name__ == "__main__":
    main()
