"""Moodle request budget of a full crawl, completions included, at 100,000 students.

    .venv/bin/python bench/bench_moodle_budget.py [--students 5000] [--at 100000]

1. Crawls a sandbox college of `--students` over HTTP twice, as `moodle_snapshot` does (the
   second time not asking the enrolments the first found completed), and counts the requests by
   wsfunction with the client's counter.
2. Computes the same counts from the college itself with the crawl's formula, and checks they
   equal what was counted.
3. Applies the formula to a generated college of `--at` students (generated, not served: a crawl
   of ~450,000 requests is too slow on this shared machine), the figure recorded beside today's
   33,263 requests.
"""

from __future__ import annotations

import argparse
import math
import os
import time

from common import record

from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.lib.source_reads import Reading, read_moodle_snapshot
from integration_pipelines.sandbox import SandboxConfig, run_sandbox
from integration_pipelines.sandbox.college import College, generate_college

PAGE_SIZE = 1000  # MoodleClient.page_size
USER_BATCH = 100  # MoodleClient.user_batch_size
PREFLIGHT = 7  # the doctor's check before a snapshot (site info, one course, a few users, ...)


def predicted(college: College, known_completed: set[tuple[int, int]] = frozenset()) -> dict[str, int]:  # type: ignore[assignment]
    """The crawl's requests by wsfunction, from the college: see lib/moodle/crawl.py."""
    enrolments = pages = suspended = reports = completions = 0
    users: set[int] = set()
    for course in college.courses.values():
        enrolled = {
            e.user_id
            for e in course.enrolments
            if not e.m_deleted and e.user_id in college.users and not college.users[e.user_id].deleted
        }
        teacher = college.users.get(course.teacher_id)
        if teacher is not None and not teacher.deleted:
            enrolled.add(teacher.id)
        n = len(enrolled)
        pages += n // PAGE_SIZE + 1  # a page shorter than the page size ends the course
        if n:
            suspended += 1
            reports += 1
            users |= enrolled
            if course.completion_enabled:
                completions += sum(1 for uid in enrolled if (course.id, uid) not in known_completed)
        enrolments += n
    return {
        "core_course_get_courses": 1,
        "core_enrol_get_enrolled_users": pages + suspended,
        "core_user_get_users_by_field": math.ceil(len(users) / USER_BATCH),
        "gradereport_user_get_grade_items": reports,
        "core_completion_get_course_completion_status": completions,
        "_enrolments": enrolments,
        "_users": len(users),
        "_courses": len(college.courses),
    }


def crawl(sandbox, known: set[tuple[int, int]]) -> tuple[dict[str, int], set[tuple[int, int]], float, int]:
    started = time.perf_counter()
    with MoodleClient(sandbox.moodle_url, sandbox.config.moodle_token) as client:
        reading = Reading(read_moodle_snapshot(lambda: client, 8, known_completed=known))
        completed = set()
        for entity, record_id, payload, _at in reading:
            if entity == "completions" and '"completed":true' in payload:
                course, user = record_id.split(":")
                completed.add((int(course), int(user)))
        assert reading.result is not None
        return dict(reading.result), completed, time.perf_counter() - started, client.counter.retries


def total(figures: dict[str, int]) -> int:
    return sum(v for k, v in figures.items() if not k.startswith("_"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=5000)
    parser.add_argument("--at", type=int, default=100_000)
    args = parser.parse_args()
    load = os.getloadavg()

    with run_sandbox(SandboxConfig(students=args.students, seed=7)) as sandbox:
        first, completed, first_s, first_retries = crawl(sandbox, set())
        again, _, again_s, again_retries = crawl(sandbox, completed)
        college = sandbox.college
        want_first, want_again = predicted(college), predicted(college, completed)
    for counted, want in ((first, want_first), (again, want_again)):
        mismatch = {
            k: (counted.get(k, 0), v) for k, v in want.items() if not k.startswith("_") and counted.get(k, 0) != v
        }
        assert not mismatch, f"the formula disagrees with the counter: {mismatch}"

    big = generate_college(args.at, 7)
    big_completed = {
        (c, u) for (c, u) in big.completions if big.courses[c].completion_enabled and not big.users[u].deleted
    }
    at_first, at_again = predicted(big), predicted(big, big_completed)
    without = total(at_first) - at_first["core_completion_get_course_completion_status"]

    def row(name: str, small: dict[str, int], large: dict[str, int]) -> str:
        return f"| {name} | {small.get(name, 0):,} | {large.get(name, 0):,} |"

    functions = [k for k in want_first if not k.startswith("_")]
    lines = [
        f"Load average while measuring: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (other engineers' runs share "
        "the 2 cores; request counts do not depend on load, times do).",
        "",
        f"Counted at {args.students:,} students with the client's request counter over HTTP (first crawl "
        f"{first_s:.1f} s, second {again_s:.1f} s; {first_retries + again_retries} retried requests, counted too, "
        "left out here); the crawl's formula gives the same counts exactly, and gives "
        f"the {args.at:,}-student figures from a generated college of that size ({at_first['_courses']:,} "
        f"courses, {at_first['_enrolments']:,} enrolments teachers included, {at_first['_users']:,} users).",
        "",
        f"| requests by function | first crawl at {args.students:,} (counted) | first crawl at {args.at:,} |",
        "|---|---|---|",
        *(row(name, want_first, at_first) for name in functions),
        f"| **total** | {total(want_first):,} | {total(at_first):,} |",
        "",
        f"| full crawl at {args.at:,} students | requests |",
        "|---|---|",
        "| recorded 2026-11-25 (no completions, and before each course's `onlysuspended` request) | 33,263 |",
        f"| today's crawl without completions (33,263 + one `onlysuspended` request per course) | {without:,} |",
        f"| with completions, first crawl | {total(at_first):,} |",
        f"| with completions, every later crawl (completed enrolments not asked again) | {total(at_again):,} |",
        f"| the snapshot's capability check before each crawl | +{PREFLIGHT} |",
        "",
        "Budget: `1 + Σ courses (pages + 1 suspended + 1 grade report) + ⌈users / 100⌉ + open enrolments of "
        "courses tracking completion`. Completions dominate: Moodle core has no per-course completion "
        "function, so each enrolment is one `core_completion_get_course_completion_status` call until it is "
        "completed (then never again); a course without completion enabled costs nothing. "
        f"At {args.at:,} students that is {at_again['core_completion_get_course_completion_status']:,} calls a "
        "night once completions are known; `core_enrol_get_users_courses` (one call per user, "
        f"{at_first['_users']:,}) would be cheaper but gives no completion time.",
    ]
    record(f"Moodle request budget at {args.at:,} students, completions included", lines)


if __name__ == "__main__":
    main()
