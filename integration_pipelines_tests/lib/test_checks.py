"""Data-quality checks: they pass on clean data and each fails on data broken on purpose (both backends)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from integration_pipelines.lib import checks
from integration_pipelines.lib.warehouse import upsert_rows
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES
from integration_pipelines.lib.warehouse.sync_state import record_sync

T = "default"
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def clean_college(conn) -> None:
    """Two students, a class, an enrollment each, a registration, a payment and two grades."""
    stamp = {"tenant_id": T, "source_modified_at": NOW}
    upsert_rows(
        conn,
        "classes",
        [
            {
                **stamp,
                "class_key": "zoho:c1",
                "zoho_id": "c1",
                "name": "IT 1",
                "moodle_course_id": 7,
                "start_date": date(2026, 9, 1),
            }
        ],
    )
    upsert_rows(
        conn,
        "students",
        [
            {
                **stamp,
                "student_key": "zoho:s1",
                "zoho_id": "s1",
                "moodle_user_id": 41,
                "email": "a@x",
                "identity_match": "crm_field",
            },
            {
                **stamp,
                "student_key": "zoho:s2",
                "zoho_id": "s2",
                "moodle_user_id": 42,
                "email": "b@x",
                "identity_match": "email",
            },
        ],
    )
    upsert_rows(
        conn,
        "enrollments",
        [
            {
                **stamp,
                "enrollment_key": f"zoho:e{i}",
                "zoho_id": f"e{i}",
                "student_key": f"zoho:s{i}",
                "class_key": "zoho:c1",
                "status": "active",
            }
            for i in (1, 2)
        ],
    )
    upsert_rows(conn, "registrations", [{**stamp, "registration_key": "zoho:r1", "student_key": "zoho:s1"}])
    upsert_rows(
        conn,
        "payments",
        [{**stamp, "payment_key": "zoho:p1", "student_key": "zoho:s1", "amount": Decimal("950.00"), "currency": "GBP"}],
    )
    upsert_rows(
        conn,
        "grades",
        [
            {
                **stamp,
                "grade_key": "moodle:3:41",
                "source": "moodle",
                "student_key": "zoho:s1",
                "raw_grade": 3.0,
                "grade_max": 4.0,
                "btec_grade": "Merit",
                "btec_equivalent": "Merit",
            },
            {
                **stamp,
                "grade_key": "moodle:4:42",
                "source": "moodle",
                "student_key": "zoho:s2",
                "raw_grade": 65.0,
                "grade_max": 100.0,
                "btec_equivalent": "Merit",
            },
        ],
    )
    record_sync(conn, T, "canonical.students", 2, NOW)


def all_checks(conn, now=NOW) -> dict[str, checks.CheckOutcome]:
    return {
        "unique_source_ids": checks.unique_source_ids(conn, T),
        "unique_enrollments": checks.unique_enrollments(conn, T),
        "enrollment_references": checks.enrollment_references(conn, T),
        "registration_references": checks.student_references(conn, T, KEYED_TABLES["registrations"].table),
        "payment_references": checks.student_references(conn, T, KEYED_TABLES["payments"].table),
        "grade_references": checks.student_references(conn, T, KEYED_TABLES["grades"].table),
        "grade_domain": checks.grade_domain(conn, T),
        "payments_non_negative": checks.payments_non_negative(conn, T),
        "unmatched_identity_share": checks.unmatched_identity_share(conn, T, warn_above=0.10),
        "student_emails": checks.student_emails(conn, T),
        "freshness": checks.freshness(conn, T, "canonical.students", timedelta(hours=26), now=now),
    }


@pytest.fixture
def college(warehouse):
    with warehouse.begin() as conn:
        clean_college(conn)
    return warehouse


def test_every_check_passes_on_clean_data(college):
    with college.connect() as conn:
        outcomes = all_checks(conn)
    assert {name: o.passed for name, o in outcomes.items()} == dict.fromkeys(outcomes, True)


def _set(conn, table: str, key: str, **values) -> None:
    spec = KEYED_TABLES[table]
    key_column = spec.key_columns[1]
    conn.execute(update(spec.table).where(spec.table.c[key_column] == key).values(**values))


BREAKAGES = {
    "unique_source_ids": lambda c: _set(c, "students", "zoho:s2", moodle_user_id=41),
    "unique_enrollments": lambda c: upsert_rows(
        c,
        "enrollments",
        [
            {
                "tenant_id": T,
                "enrollment_key": "moodle:7:41",
                "student_key": "zoho:s1",
                "class_key": "zoho:c1",
                "source_modified_at": NOW,
            }
        ],
    ),
    "enrollment_references": lambda c: _set(c, "enrollments", "zoho:e2", class_key="zoho:nowhere"),
    "registration_references": lambda c: _set(c, "registrations", "zoho:r1", student_key="zoho:ghost"),
    "payment_references": lambda c: _set(c, "payments", "zoho:p1", student_key="zoho:ghost"),
    "grade_references": lambda c: _set(c, "grades", "moodle:3:41", student_key="moodle:999"),
    "grade_domain": lambda c: _set(c, "grades", "moodle:4:42", raw_grade=120.0),
    "payments_non_negative": lambda c: _set(c, "payments", "zoho:p1", amount=Decimal("-5.00")),
    "student_emails": lambda c: _set(c, "students", "zoho:s1", email="not an email"),
    "unmatched_identity_share": lambda c: _set(c, "students", "zoho:s2", identity_match=None),
}


@pytest.mark.parametrize("check", sorted(BREAKAGES))
def test_each_check_fails_on_data_broken_on_purpose(college, check):
    with college.begin() as conn:
        BREAKAGES[check](conn)
    with college.connect() as conn:
        outcomes = all_checks(conn)
    failed = {name for name, o in outcomes.items() if not o.passed}
    assert failed == {check}


def test_a_btec_grade_outside_the_scale_fails_the_domain_check(college):
    with college.begin() as conn:
        _set(conn, "grades", "moodle:3:41", btec_grade="Distinction*")
        assert checks.grade_domain(conn, T).metadata["sample"] == ["moodle:3:41"]


def test_freshness_fails_when_the_last_sync_is_too_old(college):
    with college.connect() as conn:
        stale = checks.freshness(conn, T, "canonical.students", timedelta(hours=26), now=NOW + timedelta(days=2))
        never = checks.freshness(conn, T, "canonical.payments", timedelta(hours=26), now=NOW)
    assert not stale.passed and stale.metadata["age_hours"] == 48.0
    assert not never.passed and never.metadata["last_synced_at"] is None


def test_a_reference_to_a_deleted_parent_is_counted_not_failed(college):
    """A source that deletes a class but keeps its enrollments leaves a tombstone that explains them."""
    with college.begin() as conn:
        _set(conn, "classes", "zoho:c1", deleted_at=NOW)
        outcome = checks.enrollment_references(conn, T)
    assert outcome.passed
    assert (outcome.metadata["missing_classes"], outcome.metadata["deleted_classes"]) == (0, 2)


def test_a_missing_parent_is_counted_and_sampled(college):
    with college.begin() as conn:
        _set(conn, "enrollments", "zoho:e2", class_key="zoho:nowhere")
        _set(conn, "classes", "zoho:c1", deleted_at=NOW)
        outcome = checks.enrollment_references(conn, T)
    assert not outcome.passed
    figures = ("missing_classes", "missing_classes_sample", "deleted_classes", "missing_students")
    assert tuple(outcome.metadata[f] for f in figures) == (1, ["zoho:nowhere"], 1, 0)


def test_a_linked_student_without_an_email_is_a_finding_too(college):
    with college.begin() as conn:
        _set(conn, "students", "zoho:s1", email=None)
        outcome = checks.student_emails(conn, T)
    assert (outcome.passed, outcome.metadata["linked_without_email"]) == (False, 1)


def test_a_large_payment_is_not_negative(college):
    # On SQLite an amount is its decimal text; compared as text, "10.00" < "9.00" and "-0.00" < "0".
    with college.begin() as conn:
        _set(conn, "payments", "zoho:p1", amount=Decimal("1000.00"))
        assert checks.payments_non_negative(conn, T).passed
