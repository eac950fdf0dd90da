"""`GET /v1/students/profile`: one student's whole picture, read from the five marts.

A read is one indexed lookup of the student (by the identifier given) and one indexed read per
mart by `(tenant_id, student_key)`. Every statement names the key's tenant.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection, text

from integration_pipelines.api import models as m
from integration_pipelines.api.auth import Reader, ensure_may_read
from integration_pipelines.api.problems import Problem, problem_responses
from integration_pipelines.api.threads import run_read
from integration_pipelines.api.warehouse import Warehouse
from integration_pipelines.lib.warehouse.api_keys import ApiKey

router = APIRouter(tags=["students"])

MAX_BIGINT = 2**63 - 1
# Text parameters hold no NUL: PostgreSQL text cannot (it would answer a DataError, a 500).
NO_NUL = r"^[^\x00]+$"
LOOKUPS = ("moodle_user_id", "zoho_id", "student_number", "email")

PROFILE_COLUMNS = (
    "student_key, moodle_user_id, zoho_id, student_number, first_name, last_name, full_name, email, "
    "photo_url, phone, date_of_birth, address, city, country, status, identity_match, updated_at"
)
# Which mart column each lookup compares, and how the given value is normalised first: student
# numbers compare upper-cased (as identity matches them), emails trimmed and lower-cased.
_LOOKUP_COLUMN = {
    "moodle_user_id": ("moodle_user_id", lambda v: v),
    "zoho_id": ("zoho_id", lambda v: v),
    "student_number": ("number_key", lambda v: v.strip().upper()),
    "email": ("email", lambda v: v.strip().lower()),
}
_FIND = {
    name: text(f"SELECT {PROFILE_COLUMNS} FROM student_profile WHERE tenant_id = :tenant AND {column} = :value LIMIT 2")
    for name, (column, _) in _LOOKUP_COLUMN.items()
}
_FIND_BY_KEY = text(f"SELECT {PROFILE_COLUMNS} FROM student_profile WHERE tenant_id = :tenant AND student_key = :key")
_ACADEMICS = text(
    "SELECT record_type, zoho_id, unit_zoho_id, code, name, level, credits, status, start_date, end_date "
    "FROM student_academics WHERE tenant_id = :tenant AND student_key = :key ORDER BY record_type, code, zoho_id"
)
_FINANCE = text(
    "SELECT payment_key, zoho_id, kind, amount_cents, currency, method, status, due_date, paid_on, "
    "total_fees_cents, paid_cents, outstanding_cents, last_payment_on, last_payment_cents "
    "FROM student_finance WHERE tenant_id = :tenant AND student_key = :key ORDER BY due_date, payment_key"
)
_CLASSES = text(
    "SELECT class_key, zoho_id, name, program_zoho_id, moodle_course_id, start_date, end_date, enrollment_status, "
    "teacher_moodle_user_id, teacher_name, teacher_email "
    "FROM student_classes WHERE tenant_id = :tenant AND student_key = :key "
    "ORDER BY start_date, class_key, teacher_name"
)
_GRADES = text(
    "SELECT grade_key, source, unit_zoho_id, unit_code, unit_name, credits, btec_grade, percentage, graded_at, "
    "feedback, distinction_count, merit_count, pass_count, refer_count, graded_units, graded_credits, "
    "average_points_per_credit "
    "FROM student_grades WHERE tenant_id = :tenant AND student_key = :key ORDER BY graded_at DESC, grade_key"
)


@router.get(
    "/v1/students/profile",
    response_model=m.ProfileResponse,
    summary="A student's whole profile",
    responses={
        **problem_responses(401, 403, 404, 422, 503),
        409: {
            "description": "The student number or email names more than one student: use moodle_user_id or zoho_id.",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
async def student_profile(
    request: Request,
    key: Reader,
    conn: Warehouse,
    moodle_user_id: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="The student's Moodle user id.")
    ] = None,
    zoho_id: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,19}$", description="The student's Zoho CRM record id.")
    ] = None,
    student_number: Annotated[
        str | None,
        Query(min_length=1, max_length=64, pattern=NO_NUL, description="The student number, any case."),
    ] = None,
    email: Annotated[
        str | None, Query(min_length=3, max_length=254, pattern=NO_NUL, description="The academic email (any case).")
    ] = None,
) -> Response:
    """One student's profile, programmes, registrations, payments and finance, classes and grades,
    looked up by exactly one of `moodle_user_id`, `zoho_id`, `student_number` or `email`.

    An admin key reads any student of its tenant; a student key reads only its own student."""
    given = {
        name: value
        for name, value in zip(LOOKUPS, (moodle_user_id, zoho_id, student_number, email), strict=True)
        if value is not None
    }
    if len(given) != 1:
        named = ", ".join(given) if given else ", ".join(LOOKUPS)
        raise Problem(
            422,
            "Give exactly one identifier",
            f"Look a student up by exactly one of {', '.join(LOOKUPS)}; got {len(given)}.",
            parameter=named,
        )
    ((name, value),) = given.items()
    profile = await run_read(request, _find_and_read, conn, key, name, value, request.app.state.settings.moodle_url)
    # The models validated the values as they were built: serialise once, without FastAPI
    # validating the whole answer a second time (a third of a read's CPU).
    return Response(profile.model_dump_json(by_alias=True), media_type="application/json")


def _find_and_read(conn: Connection, key: ApiKey, name: str, value: str | int, moodle_url: str) -> m.ProfileResponse:
    _, normalise = _LOOKUP_COLUMN[name]
    rows = conn.execute(_FIND[name], {"tenant": key.tenant_id, "value": normalise(value)}).mappings().all()
    if not rows:
        raise Problem(404, "Student not found", f"No student with {name} {value}.", parameter=name)
    if len(rows) > 1:
        raise Problem(409, "Ambiguous identifier", f"{name} {value} names more than one student.", parameter=name)
    ensure_may_read(key, rows[0]["student_key"])
    return read_profile(conn, key.tenant_id, rows[0], moodle_url=moodle_url)


def read_profile(
    conn: Connection, tenant_id: str, student: Any, *, moodle_url: str, today: date | None = None
) -> m.ProfileResponse:
    """The profile of one student (its `student_profile` row given), from the other four marts."""
    params = {"tenant": tenant_id, "key": student["student_key"]}
    today = today or datetime.now(UTC).date()
    programs, registrations = [], []
    for row in conn.execute(_ACADEMICS, params).mappings():
        if row["record_type"] == "program":
            programs.append(
                m.Program(
                    zoho_id=row["zoho_id"],
                    code=row["code"],
                    name=row["name"],
                    level=row["level"],
                    credits=row["credits"],
                    expected_completion_date=row["end_date"],
                )
            )
        else:
            registrations.append(
                m.Registration(
                    zoho_id=row["zoho_id"],
                    unit_zoho_id=row["unit_zoho_id"],
                    unit_code=row["code"],
                    unit_name=row["name"],
                    credits=row["credits"],
                    status=row["status"],
                    start_date=row["start_date"],
                    end_date=row["end_date"],
                )
            )
    payments, summaries = [], {}
    for row in conn.execute(_FINANCE, params).mappings():
        currency = row["currency"]
        paid = row["status"] == "paid" and row["zoho_id"] is not None
        payments.append(
            m.Payment(
                payment_key=row["payment_key"],
                zoho_id=row["zoho_id"],
                kind=row["kind"],
                amount=_money(row["amount_cents"], currency),
                method=row["method"],
                status=row["status"],
                due_date=row["due_date"],
                paid_on=row["paid_on"],
                receipt_url=receipt_path(student["student_key"], row["zoho_id"]) if paid else None,
            )
        )
        summaries.setdefault(
            currency,
            m.FinanceSummary(
                currency=currency,
                total_fees=_money(row["total_fees_cents"], currency),
                paid=_money(row["paid_cents"], currency),
                outstanding=_money(row["outstanding_cents"], currency),
                last_payment_on=row["last_payment_on"],
                last_payment=None if row["last_payment_cents"] is None else _money(row["last_payment_cents"], currency),
            ),
        )
    classes: dict[str, dict] = {}
    teachers: dict[str, list[m.ClassTeacher]] = defaultdict(list)
    for row in conn.execute(_CLASSES, params).mappings():
        key = row["class_key"]
        if key not in classes:
            end = _date(row["end_date"])
            classes[key] = {
                "class_key": key,
                "zoho_id": row["zoho_id"],
                "name": row["name"],
                "program_zoho_id": row["program_zoho_id"],
                "moodle_course_id": row["moodle_course_id"],
                "moodle_course_url": (
                    f"{moodle_url.rstrip('/')}/course/view.php?id={row['moodle_course_id']}"
                    if row["moodle_course_id"] is not None
                    else None
                ),
                "start_date": row["start_date"],
                "end_date": end,
                "status": "completed" if end is not None and end < today else "active",
                "enrollment_status": row["enrollment_status"],
            }
        if row["teacher_moodle_user_id"] is not None:
            teachers[key].append(
                m.ClassTeacher(
                    moodle_user_id=row["teacher_moodle_user_id"],
                    full_name=row["teacher_name"] or "",
                    email=row["teacher_email"],
                )
            )
    grades, summary = [], None
    for row in conn.execute(_GRADES, params).mappings():
        grades.append(
            m.Grade(
                grade_key=row["grade_key"],
                source=row["source"],
                unit_zoho_id=row["unit_zoho_id"],
                unit_code=row["unit_code"],
                unit_name=row["unit_name"],
                credits=row["credits"],
                btec_grade=row["btec_grade"],
                percentage=row["percentage"],
                graded_at=utc(row["graded_at"]),
                feedback=row["feedback"],
            )
        )
        if summary is None:
            average = row["average_points_per_credit"]
            summary = grade_summary(
                distinction=row["distinction_count"] or 0,
                merit=row["merit_count"] or 0,
                passes=row["pass_count"] or 0,
                refer=row["refer_count"] or 0,
                graded_units=row["graded_units"] or 0,
                credits=row["graded_credits"] or 0,
                average=None if average is None else round(float(average), 4),
            )
    return m.ProfileResponse(
        student=student_model(student),
        programs=programs,
        registrations=registrations,
        payments=payments,
        finance_summary=list(summaries.values()),
        classes=[m.StudentClass(**c, teachers=teachers[k]) for k, c in classes.items()],
        grades=grades,
        grade_summary=summary or grade_summary(0, 0, 0, 0, 0, 0, None),
    )


def grade_summary(
    distinction: int, merit: int, passes: int, refer: int, graded_units: int, credits: int, average: float | None
) -> m.GradeSummary:
    return m.GradeSummary.model_validate(
        {
            "distinction": distinction,
            "merit": merit,
            "pass": passes,
            "refer": refer,
            "graded_units": graded_units,
            "credits": credits,
            "average_points_per_credit": average,
        }
    )


def student_model(row: Any) -> m.StudentProfile:
    values = dict(row)
    values["updated_at"] = utc(values["updated_at"])
    values["full_name"] = values["full_name"] or ""
    return m.StudentProfile(**values)


def receipt_path(student_key: str, payment_id: str) -> str:
    return f"/v1/students/{quote(student_key, safe=':')}/payments/{quote(payment_id)}/receipt"


def _money(cents: int | None, currency: str | None) -> m.Money:
    return m.Money(amount=(Decimal(int(cents or 0)) / 100).quantize(Decimal("0.01")), currency=currency)


def _date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])


def utc(value: datetime | str | None) -> datetime | None:
    """A mart timestamp as an aware UTC datetime: PostgreSQL returns aware datetimes, SQLite
    (where the canonical tables store naive UTC) text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
