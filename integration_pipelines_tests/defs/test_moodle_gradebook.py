"""Moodle grades as a real site means them, end to end against the sandbox over HTTP, on both backends.

The sandbox answers as the real Moodle 5.1 site of issue 14 did: scale items with `scaleid` null
(known by their range), a negative assignment grade for a scale assignment, gradebook overrides,
manual items, and grades as JSON integers in the grade report but 5-decimal strings from
`mod_assign_get_grades`. One college is synced: full_sync (every grade equal to the truth, BTEC
word, percentage and equivalent included), full_sync again (writes nothing), a mutation that
overrides grades in the gradebook then regrades their assignments, incremental_sync of that
window (the gradebook's value is kept), and incremental_sync again (writes nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.schema import grades
from integration_pipelines_tests.conftest import BACKENDS, empty_warehouse_url
from integration_pipelines_tests.e2e import materializations, running_pipeline
from integration_pipelines_tests.truth import differences, unobservable_users

pytestmark = pytest.mark.slow

STUDENTS = 120
OVERRIDES = 6


def completion_asks(college) -> tuple[int, int]:
    """What the completion phase of a full crawl must cost, the first time and the next (knowing the
    first one's completions): one `core_enrol_get_users_courses` per user (teachers included) with
    an open enrolment (active, in a course tracking completion, not known completed), one
    `core_completion_get_course_completion_status` per enrolment completed since, and one per
    suspended enrolment whose completion has not landed yet (Moodle leaves those out of a user's
    courses; the sandbox answers them the first time); nothing for a course without completion."""
    users: dict[bool, set[int]] = {False: set(), True: set()}  # by "the first crawl's completions known"
    statuses = {False: 0, True: 0}
    for course in college.courses.values():
        if not course.completion_enabled:
            continue
        status = {
            e.user_id: e.m_status for e in course.enrolments if not e.m_deleted and not college.users[e.user_id].deleted
        }
        teacher = college.users.get(course.teacher_id)
        status |= {teacher.id: 0} if teacher and not teacher.deleted else {}
        for uid, suspended in status.items():
            done = (course.id, uid) in college.completions
            if suspended:
                statuses[False] += 1
                continue
            users[False].add(uid)
            statuses[False] += done
            if not done:
                users[True].add(uid)
    return len(users[False]) + statuses[False], len(users[True]) + statuses[True]


def written(metadata: dict[str, dict]) -> dict[str, tuple[int, int, int]]:
    return {key: (m["inserted"], m["updated"], m["deleted"]) for key, m in metadata.items() if "inserted" in m}


@pytest.fixture(scope="module", params=BACKENDS)
def synced(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"gradebook-{request.param}")
    with (
        empty_warehouse_url(request.param, request, directory) as url,
        running_pipeline(url, directory, students=STUDENTS, seed=14) as pipeline,
    ):
        engine = create_warehouse_engine(url)
        sandbox, state = pipeline.sandbox, {"college": pipeline.sandbox.college}

        def grade_diffs() -> list[str]:
            hidden = unobservable_users(sandbox.college, engine)
            return [
                problem
                for table in ("grades", "course_results")
                for problem in differences(engine, table, sandbox.college.iter_truth(table), unobservable=hidden)
            ]

        with sandbox.app.lock:
            state["asked"] = completion_asks(sandbox.college)
        state["full"] = materializations(pipeline.run("full_sync", marts=False))
        state["full_diffs"] = grade_diffs()
        state["full_again"] = materializations(pipeline.run("full_sync", marts=False))

        change = sandbox.mutate(moodle_overrides=OVERRIDES, zoho_change_share=0.0)
        state["mutation"] = change
        window = datetime.fromisoformat(change["now_iso"]).astimezone(UTC).strftime("%Y-%m-%d")
        state["incremental"] = materializations(pipeline.run("incremental_sync", partition_key=window, marts=False))
        state["incremental_diffs"] = grade_diffs()
        state["incremental_again"] = materializations(
            pipeline.run("incremental_sync", partition_key=window, marts=False)
        )
        with engine.connect() as conn:
            state["rows"] = {
                (r.moodle_grade_item_id, r.moodle_user_id): r
                for r in conn.execute(select(grades).where(grades.c.source == "moodle", grades.c.deleted_at.is_(None)))
            }
        engine.dispose()
        yield state


def test_the_sandbox_answers_like_the_real_site(synced):
    college = synced["college"]
    scale_items = [a for a in college.assignments.values() if a.scale]
    assert scale_items and any(c.manual_items for c in college.courses.values())
    assert any(g.override is not None for a in college.assignments.values() for g in a.grades.values())


def test_full_sync_lands_every_grade_as_the_truth_has_it(synced):
    assert synced["full_diffs"] == []
    rows = synced["rows"]
    college = synced["college"]
    # Scale grades carry their BTEC word and Moodle's percentage: Merit, 3 of 1..4, is 66.67 %.
    merit = next(r for r in rows.values() if r.btec_grade == "Merit")
    assert merit.percentage == pytest.approx(66.6667, abs=1e-4)
    manual_ids = {m.item_id for c in college.courses.values() for m in c.manual_items}
    assert manual_ids & {item for item, _ in rows}, "manual items' grades landed"


def test_completions_cost_one_request_per_user_and_one_per_newly_completed_enrolment(synced):
    first, again = synced["asked"]
    college = synced["college"]
    assert any(not c.completion_enabled for c in college.courses.values()), "some courses track no completion"
    assert synced["full"]["raw_moodle_completions"]["requests"] == first
    # A completion is for good: the next crawl asks no completed enrolment again.
    assert synced["full_again"]["raw_moodle_completions"]["requests"] == again < first
    results = synced["full"]["course_results"]
    assert results["inserted"] > 0


def test_a_second_full_sync_writes_nothing(synced):
    assert {k: v for k, v in written(synced["full_again"]).items() if v != (0, 0, 0)} == {}


def test_incremental_sync_after_an_override_and_a_regrade_keeps_the_gradebooks_value(synced):
    assert synced["mutation"]["moodle"]["overrides"] == OVERRIDES
    assert synced["incremental_diffs"] == []
    college, rows = synced["college"], synced["rows"]
    overridden = [
        (a, g) for a in college.assignments.values() for g in a.grades.values() if g.overridden_at and g.raw != g.final
    ]
    assert overridden
    for a, g in overridden:
        row = rows[(a.item_id, g.user_id)]
        assert row.raw_grade == pytest.approx(g.override), (a.id, g.user_id)
    # The changed assignment grades were read, and their gradebooks re-read.
    changes = synced["incremental"]["moodle_grade_changes"]
    assert changes["assign_grades_read"] >= OVERRIDES and changes["rows_read"] > 0


def test_a_second_incremental_sync_writes_nothing(synced):
    assert {k: v for k, v in written(synced["incremental_again"]).items() if v != (0, 0, 0)} == {}
