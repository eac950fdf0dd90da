"""The generator: determinism, consistency between the systems, the deliberate mess, truth I/O."""

from __future__ import annotations

import json

import httpx
from click.testing import CliRunner

from integration_pipelines.sandbox import SandboxConfig, generate_college, run_sandbox
from integration_pipelines.sandbox.cli import sandbox_group
from integration_pipelines.sandbox.college import TABLES

COLUMNS = {
    "students": {
        "zoho_id",
        "moodle_user_id",
        "student_number",
        "first_name",
        "last_name",
        "email",
        "program_zoho_id",
        "status",
        "phone",
        "date_of_birth",
        "address",
        "city",
        "country",
        "deleted",
    },
    "programs": {"zoho_id", "code", "name", "level", "credits", "deleted"},
    "units": {"zoho_id", "program_zoho_id", "code", "name", "credits", "deleted"},
    "classes": {"zoho_id", "program_zoho_id", "name", "moodle_course_id", "start_date", "end_date", "deleted"},
    "enrollments": {
        "zoho_id",
        "student_zoho_id",
        "moodle_user_id",
        "class_zoho_id",
        "moodle_course_id",
        "moodle_user_enrolment_id",
        "status",
        "deleted",
    },
    "registrations": {"zoho_id", "student_zoho_id", "unit_zoho_id", "status", "deleted"},
    "payments": {
        "zoho_id",
        "student_zoho_id",
        "kind",
        "amount",
        "currency",
        "method",
        "status",
        "due_date",
        "paid_on",
        "deleted",
    },
    "grades": {
        "source",
        "student_zoho_id",
        "moodle_user_id",
        "zoho_id",
        "unit_zoho_id",
        "moodle_course_id",
        "moodle_grade_item_id",
        "raw_grade",
        "grade_max",
        "percentage",
        "btec_grade",
        "btec_equivalent",
        "graded_at",
        "deleted",
    },
    "course_results": {
        "student_zoho_id",
        "moodle_user_id",
        "moodle_course_id",
        "final_grade",
        "final_grade_max",
        "final_percentage",
        "completed",
        "completed_at",
        "deleted",
    },
}


def test_same_seed_same_college_other_seed_other_college():
    a, b, c = generate_college(120, 9).truth(), generate_college(120, 9).truth(), generate_college(120, 10).truth()
    assert a == b
    assert a["students"] != c["students"]


def test_truth_columns_and_domains():
    truth = generate_college(200, 2).truth()
    assert set(truth) == set(TABLES)
    for table, rows in truth.items():
        assert rows, table
        assert all(set(r) == COLUMNS[table] for r in rows), table
    assert {r["status"] for r in truth["enrollments"]} <= {"active", "suspended", "withdrawn"}
    assert {r["kind"] for r in truth["payments"]} == {"fee", "instalment"}
    assert all(r["email"] == r["email"].strip().lower() for r in truth["students"])
    assert {g["btec_grade"] for g in truth["grades"] if g["btec_grade"]} <= {"Refer", "Pass", "Merit", "Distinction"}
    assert {g["grade_max"] for g in truth["grades"] if g["source"] == "moodle"} == {100, 20, 10, 4}


def test_the_deliberate_mess_is_there():
    col = generate_college(400, 2)
    students = col.truth()["students"]
    assert any(s["zoho_id"] is None for s in students)  # Moodle-only
    assert any(s["moodle_user_id"] is None for s in students)  # Zoho-only
    assert any(s["deleted"] for s in students)
    users = [u for u in col.users.values() if u.student_zid]
    assert any(not u.crmid and u.idnumber for u in users)  # match by idnumber
    assert any(not u.crmid and not u.idnumber for u in users)  # match by email only
    zoho_emails = [s.email_raw for s in col.zoho["Students"].records.values()]
    assert any(e != e.strip() for e in zoho_emails)
    assert any(u.email != u.email.lower() for u in users)
    assert any(u.suspended for u in users) and any(u.deleted for u in col.users.values())
    # every matched link is consistent on both sides
    for s in col.zoho["Students"].records.values():
        if s.moodle_user_id:
            u = col.users[s.moodle_user_id]
            assert u.crmid in ("", str(s.zid)) and u.email.lower() == s.email_raw.strip().lower()


def test_classes_link_courses_and_grade_items_link_units():
    col = generate_college(100, 2)
    for zc in col.zoho["Classes"].records.values():
        course = col.courses[zc.course_id]
        assert course.class_zid == zc.zid
        linked = {a.unit_zid for a in course.assignments if a.unit_zid}
        assert linked <= set(zc.units)
        for a in course.assignments:
            if a.unit_zid:
                assert a.idnumber == col.zoho["Units"].records[a.unit_zid].code


def test_truth_over_http_and_cli(tmp_path):
    with run_sandbox(SandboxConfig(students=30, seed=6)) as sb:
        doc = httpx.get(sb.base_url + "/_sandbox/truth").json()
        assert doc["tables"] == json.loads(json.dumps(sb.truth()))
        out = tmp_path / "truth.json"
        result = CliRunner().invoke(sandbox_group, ["truth", "--out", str(out), "--url", sb.base_url])
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text())["tables"] == doc["tables"]
        result = CliRunner().invoke(sandbox_group, ["mutate", "--url", sb.base_url, "--moodle-new-grades", "2"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["moodle"]["new_grades"] == 2
    local = tmp_path / "local.json"
    assert (
        CliRunner().invoke(sandbox_group, ["truth", "--out", str(local), "--students", "30", "--seed", "6"]).exit_code
        == 0
    )
    assert json.loads(local.read_text())["tables"] == doc["tables"]
