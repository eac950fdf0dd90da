"""Acceptance: after a full sync, 50 random students' profiles equal what the generator's truth
implies, on both backends. The expectations are computed from the truth, never from the marts."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

from integration_pipelines.sandbox.college import BTEC_THRESHOLDS, btec_from_percentage
from integration_pipelines_tests.truth import truth_key, unobservable_users

POINTS = {"Refer": 0, "Pass": 7, "Merit": 8, "Distinction": 9}  # the packaged mapping's


class Truth:
    """The college's truth, indexed by student."""

    def __init__(self, college):
        self.college = college
        t = {
            name: [r for r in college.iter_truth(name) if not r["deleted"]]
            for name in (
                "students",
                "programs",
                "units",
                "classes",
                "enrollments",
                "registrations",
                "payments",
                "grades",
            )
        }
        self.students = t["students"]
        self.programs = {r["zoho_id"]: r for r in t["programs"]}
        self.units = {r["zoho_id"]: r for r in t["units"]}
        self.classes = {r["zoho_id"]: r for r in t["classes"]}
        self.by_zoho, self.by_user = defaultdict(lambda: defaultdict(list)), defaultdict(lambda: defaultdict(list))
        for table in ("enrollments", "registrations", "payments", "grades"):
            for row in t[table]:
                if row.get("student_zoho_id"):
                    self.by_zoho[row["student_zoho_id"]][table].append(row)
                elif row.get("moodle_user_id"):
                    self.by_user[row["moodle_user_id"]][table].append(row)

    def rows(self, student: dict, table: str) -> list[dict]:
        if student["zoho_id"]:
            rows = list(self.by_zoho[student["zoho_id"]][table])
            if table == "grades" and student["moodle_user_id"]:
                # Moodle grades of a linked account carry its Zoho id too; nothing to add.
                pass
            return rows
        return list(self.by_user[student["moodle_user_id"]][table])


def expected_finance(payments: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for currency in {p["currency"] for p in payments}:
        lines = [p for p in payments if p["currency"] == currency]
        due = sum(Decimal(p["amount"]) for p in lines if p["status"] != "refunded")
        paid = sum(Decimal(p["amount"]) for p in lines if p["status"] == "paid")
        paid_on = [p["paid_on"] for p in lines if p["status"] == "paid"]
        out[currency] = {
            "total_fees": f"{due:.2f}",
            "paid": f"{paid:.2f}",
            "outstanding": f"{due - paid:.2f}",
            "last_payment_on": max(paid_on) if paid_on else None,
        }
    return out


def unit_grade(row: dict) -> str | None:
    if row["source"] == "zoho" or row["btec_grade"]:
        return row["btec_grade"]
    return btec_from_percentage(row["raw_grade"] * 100.0 / row["grade_max"], BTEC_THRESHOLDS)


def expected_grade_summary(truth: Truth, grades: list[dict]) -> dict:
    by_unit: dict[str, list[dict]] = defaultdict(list)
    for g in grades:
        if g["unit_zoho_id"]:
            by_unit[g["unit_zoho_id"]].append(g)
    counts = dict.fromkeys(POINTS, 0)
    points = credits = 0
    for unit, rows in by_unit.items():
        chosen = sorted(rows, key=lambda r: (r["source"] != "zoho", -_epoch(r["graded_at"])))[0]
        grade = unit_grade(chosen)
        counts[grade] += 1
        unit_credits = truth.units[unit]["credits"]
        points += POINTS[grade] * unit_credits
        credits += unit_credits
    return {
        "distinction": counts["Distinction"],
        "merit": counts["Merit"],
        "pass": counts["Pass"],
        "refer": counts["Refer"],
        "graded_units": sum(counts.values()),
        "credits": credits,
        "average_points_per_credit": round(points / credits, 4) if credits else None,
    }


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def test_fifty_random_profiles_equal_the_truth(synced):
    truth = Truth(synced.college)
    hidden = unobservable_users(synced.college, synced.engine)
    candidates = [s for s in truth.students if not hidden.covers(s)]
    chosen = random.Random(16).sample(candidates, 50)
    problems = []
    for student in chosen:
        lookup = (
            {"zoho_id": student["zoho_id"]} if student["zoho_id"] else {"moodle_user_id": student["moodle_user_id"]}
        )
        answer = synced.get("/v1/students/profile", synced.admin_key, **lookup)
        assert answer.status_code == 200, (lookup, answer.text)
        got = answer.json()
        key = truth_key("students", student)
        problems += _compare(truth, synced, student, key, got)
    assert not problems, problems[:15]


def _compare(truth: Truth, synced, student: dict, key: str, got: dict) -> list[str]:
    problems = []

    def check(what, want, have):
        if want != have:
            problems.append(f"{key} {what}: got {have!r}, truth {want!r}")

    s = got["student"]
    check("student_key", key, s["student_key"])
    for field in (
        "moodle_user_id",
        "zoho_id",
        "student_number",
        "first_name",
        "last_name",
        "email",
        "status",
        "phone",
        "date_of_birth",
        "address",
        "city",
        "country",
    ):
        check(field, student[field], s[field])
    photo = f"{synced.moodle_url}/theme/image.php/boost/core/1795611938/u/f1" if student["moodle_user_id"] else None
    check("photo_url", photo, s["photo_url"])

    enrollments = truth.rows(student, "enrollments")
    if student["zoho_id"]:
        program = truth.programs[student["program_zoho_id"]]
        ends = [
            truth.classes[e["class_zoho_id"]]["end_date"]
            for e in enrollments
            if truth.classes[e["class_zoho_id"]]["program_zoho_id"] == program["zoho_id"]
        ]
        check(
            "programs",
            [(program["zoho_id"], program["code"], max(ends) if ends else None)],
            [(p["zoho_id"], p["code"], p["expected_completion_date"]) for p in got["programs"]],
        )
    else:
        check("programs", [], got["programs"])
    registrations = truth.rows(student, "registrations")
    check(
        "registrations",
        sorted((r["zoho_id"], truth.units[r["unit_zoho_id"]]["code"], r["status"]) for r in registrations),
        sorted((r["zoho_id"], r["unit_code"], r["status"]) for r in got["registrations"]),
    )

    payments = truth.rows(student, "payments")
    check(
        "payments",
        sorted((p["zoho_id"], p["amount"], p["currency"], p["status"], p["paid_on"]) for p in payments),
        sorted(
            (p["zoho_id"], p["amount"]["amount"], p["amount"]["currency"], p["status"], p["paid_on"])
            for p in got["payments"]
        ),
    )
    finance = {
        f["currency"]: {
            "total_fees": f["total_fees"]["amount"],
            "paid": f["paid"]["amount"],
            "outstanding": f["outstanding"]["amount"],
            "last_payment_on": f["last_payment_on"],
        }
        for f in got["finance_summary"]
    }
    check("finance_summary", expected_finance(payments), finance)

    college = truth.college
    want_classes = {}
    for e in enrollments:
        zclass = truth.classes[e["class_zoho_id"]]
        course = college.courses[zclass["moodle_course_id"]]
        teacher = college.users[course.teacher_id]
        want_classes[e["class_zoho_id"]] = [f"{teacher.firstname} {teacher.lastname}"]
    check("classes", want_classes, {c["zoho_id"]: [t["full_name"] for t in c["teachers"]] for c in got["classes"]})

    grades = truth.rows(student, "grades")
    check("grade count", len(grades), len(got["grades"]))
    check("grade_summary", expected_grade_summary(truth, grades), got["grade_summary"])
    return problems
