"""Identity: Zoho students and Moodle accounts linked in SQL, by every rule, on both backends,
whole and by key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from integration_pipelines.lib.mapping import IdentityConfig
from integration_pipelines_tests.lib.canonical.college import (
    MAPPING,
    T0,
    RawCollege,
    enrolment,
    moodle_user,
    zoho_student,
)


@pytest.fixture
def college(warehouse) -> RawCollege:
    return RawCollege(warehouse)


def links(college: RawCollege) -> dict[str, tuple]:
    return {k: (r["moodle_user_id"], r["identity_match"]) for k, r in college.rows("students").items()}


def test_each_rule_links_in_order_of_trust(college):
    college.zoho(
        "Students",
        zoho_student("1", "S1", "one@x.ac.uk"),
        zoho_student("2", "S2", "two@x.ac.uk"),
        zoho_student("3", "S3", "three@x.ac.uk"),
    )
    college.users(
        moodle_user(10, email="other@x.ac.uk", crmid="1"),  # configured key
        moodle_user(11, email="other2@x.ac.uk", idnumber="s2"),  # idnumber, case-insensitive
        moodle_user(12, email="  THREE@x.ac.uk "),  # normalised email
    )
    college.enrolments(*(enrolment(7, uid) for uid in (10, 11, 12)))
    found = college.apply_all("students")["students"].found
    assert links(college) == {"zoho:1": (10, "crm_field"), "zoho:2": (11, "idnumber"), "zoho:3": (12, "email")}
    assert (found["matched_by_crm_field"], found["matched_by_idnumber"], found["matched_by_email"]) == (1, 1, 1)
    assert (found["zoho_only"], found["moodle_only"], found["unmatched_share"]) == (0, 0, 0.0)


def test_a_configured_key_outranks_an_email_naming_another_student(college):
    college.zoho("Students", zoho_student("1", "S1", "one@x.ac.uk"), zoho_student("2", "S2", "two@x.ac.uk"))
    college.users(moodle_user(10, email="two@x.ac.uk", crmid="1"))
    college.apply_all("students")
    assert links(college) == {"zoho:1": (10, "crm_field"), "zoho:2": (None, None)}


def test_zoho_wins_for_profile_fields_and_moodle_supplies_its_id(college):
    college.zoho("Students", zoho_student("1", " S1 ", " Amina.Khan@X.ac.uk", at=T0 + timedelta(hours=1)))
    college.users(moodle_user(10, email="x@y", crmid="1"))
    college.apply_all("students")
    row = college.rows("students")["zoho:1"]
    assert (row["student_number"], row["first_name"], row["email"], row["program_zoho_id"], row["status"]) == (
        "S1",
        "Amina",
        "amina.khan@x.ac.uk",
        "900",
        "active",
    )
    assert (row["moodle_user_id"], row["source_modified_at"]) == (10, T0 + timedelta(hours=1))


def test_unmatched_students_are_kept_and_staff_are_not_students(college):
    college.zoho("Students", zoho_student("1", "S1", "one@x.ac.uk"))
    college.users(moodle_user(20, email="lonely@x.ac.uk", suspended=True), moodle_user(30, email="teacher@x.ac.uk"))
    college.enrolments(enrolment(7, 20), enrolment(7, 30, role="editingteacher"))
    found = college.apply_all("students")["students"].found
    rows = college.rows("students")
    assert set(rows) == {"zoho:1", "moodle:20"}
    assert (rows["moodle:20"]["status"], rows["moodle:20"]["email"]) == ("suspended", "lonely@x.ac.uk")
    assert (found["zoho_only"], found["moodle_only"], found["unmatched_share"]) == (1, 1, 1.0)


def test_an_email_shared_by_two_zoho_students_links_nobody(college):
    college.zoho("Students", zoho_student("1", "S1", "same@x.ac.uk"), zoho_student("2", "S2", "same@x.ac.uk"))
    college.users(moodle_user(10, email="SAME@x.ac.uk"))
    college.enrolments(enrolment(7, 10))
    found = college.apply_all("students")["students"].found
    assert links(college) == {"zoho:1": (None, None), "zoho:2": (None, None), "moodle:10": (10, None)}
    assert found["ambiguous_emails"] == 1


@pytest.mark.parametrize("newer_first", [False, True])
def test_the_oldest_account_keeps_a_contested_student_whatever_order_they_landed_in(college, newer_first):
    older, newer = moodle_user(10, email="a@x", crmid="1"), moodle_user(11, email="One@X.ac.uk ")
    college.zoho("Students", zoho_student("1", "S1", "one@x.ac.uk"))
    college.users(*([newer, older] if newer_first else [older, newer]))
    college.enrolments(enrolment(7, 10), enrolment(7, 11))
    found = college.apply_all("students")["students"].found
    assert links(college) == {"zoho:1": (10, "crm_field"), "moodle:11": (11, None)}
    assert found["identity_conflicts"] == 1


def test_a_student_zoho_deleted_is_a_tombstone_that_keeps_its_moodle_account(college):
    gone_at = T0 + timedelta(days=4)
    college.zoho("Students", zoho_student("8", "S8", "eight@x.ac.uk"))
    college.apply_all("students")  # the warehouse sees student 8 alive first
    college.zoho_deleted("Students", "7", gone_at)  # never seen alive: known by id only
    college.zoho_deleted("Students", "8", gone_at)
    college.users(moodle_user(10, email="gone@x.ac.uk", crmid="7"), moodle_user(11, email="x@y", idnumber="s8"))
    college.enrolments(enrolment(7, 10), enrolment(7, 11))
    found = college.apply_all("students")["students"].found
    assert college.rows("students") == {}, "neither account comes back as a Moodle-only student"
    rows = college.rows("students", live=False)
    assert (rows["zoho:7"]["moodle_user_id"], rows["zoho:7"]["deleted_at"]) == (10, gone_at)
    # A student seen alive before deletion keeps its fields, and matches by number as it did then.
    assert (rows["zoho:8"]["moodle_user_id"], rows["zoho:8"]["identity_match"]) == (11, "idnumber")
    assert (rows["zoho:8"]["email"], rows["zoho:8"]["deleted_at"]) == ("eight@x.ac.uk", gone_at)
    assert found["linked_to_deleted"] == 2


def test_the_configured_key_and_idnumber_rule_can_be_changed(college):
    college.mapping = MAPPING.__class__(
        **{**MAPPING.__dict__, "identity": IdentityConfig(moodle_crm_field="zohoid", match_on_idnumber=False)}
    )
    college.zoho("Students", zoho_student("1", "S1", "one@x.ac.uk"))
    college.users(moodle_user(10, email="x@y", idnumber="S1", crmid="1"))
    college.apply_all("students")
    assert links(college)["zoho:1"] == (None, None)


def test_a_bad_zoho_value_names_the_entity_field_and_record(college):
    from integration_pipelines.lib.mapping import RecordTransformError

    college.zoho("Students", zoho_student("5", ["S5"], "five@x.ac.uk"))
    with pytest.raises(RecordTransformError) as caught:
        college.apply_all("students")
    assert (caught.value.entity, caught.value.record_id) == ("students", "5")
    assert "student_number (from Student_Number)" in str(caught.value) and "['S5']" in str(caught.value)


# -- applied by key: the same answer as a whole recomputation ------------------------------


def test_a_changed_email_links_a_moodle_only_account_by_key_and_retires_its_row(college):
    college.zoho("Students", zoho_student("1", "S1", "old@x.ac.uk"))
    college.users(moodle_user(10, email="new@x.ac.uk"))
    college.enrolments(enrolment(7, 10))
    college.apply_all()
    assert links(college) == {"zoho:1": (None, None), "moodle:10": (10, None)}
    college.landed = []
    college.zoho("Students", zoho_student("1", "S1", "new@x.ac.uk", at=T0 + timedelta(days=1)))
    results = college.apply_landed()
    assert links(college) == {"zoho:1": (10, "email")}
    assert results["students"].counts.deleted == 1  # the Moodle-only row, now linked


def test_an_email_no_longer_shared_links_the_account_that_named_it(college):
    college.zoho("Students", zoho_student("1", "S1", "same@x.ac.uk"), zoho_student("2", "S2", "same@x.ac.uk"))
    college.users(moodle_user(10, email="same@x.ac.uk"))
    college.enrolments(enrolment(7, 10))
    college.apply_all()
    college.landed = []
    # Only student 2 changes; the account it no longer competes for is reached through the old email.
    college.zoho("Students", zoho_student("2", "S2", "two@x.ac.uk", at=T0 + timedelta(days=1)))
    college.apply_landed()
    assert links(college) == {"zoho:1": (10, "email"), "zoho:2": (None, None)}


def test_losing_the_student_role_by_key_removes_a_moodle_only_student(college):
    college.users(moodle_user(10, email="a@x"))
    college.enrolments(enrolment(7, 10))
    college.apply_all()
    assert set(college.rows("students")) == {"moodle:10"}
    college.landed = []
    college.enrolments(enrolment(7, 10, role="teacher"))
    college.apply_landed()
    assert college.rows("students") == {}
