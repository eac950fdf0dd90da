"""`GET /v1/students/profile`: one student's whole picture, read from the five marts.

A read is one indexed lookup of the student (by the identifier given) and one indexed read per
mart by `(tenant_id, student_key)`. Every statement names the key's tenant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection, TextualSelect, column, text

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


def _mart_read(columns: str, mart: str, condition: str, then: str) -> TextualSelect:
    """A read of `columns` from one mart. Naming the columns lets SQLAlchemy keep the result's
    description with the statement's compiled form, instead of building it again from the driver's
    cursor on every read (a third of a profile's reads' time)."""
    names = [name.strip() for name in columns.split(",")]
    sql = f"SELECT {columns} FROM {mart} WHERE tenant_id = :tenant AND {condition} {then}"
    return text(sql).columns(*(column(name) for name in names))


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
    name: _mart_read(PROFILE_COLUMNS, "student_profile", f"{column_name} = :value", "LIMIT 2")
    for name, (column_name, _) in _LOOKUP_COLUMN.items()
}
_ACADEMICS = _mart_read(
    "record_type, zoho_id, unit_zoho_id, code, name, level, credits, status, start_date, end_date",
    "student_academics",
    "student_key = :key",
    "ORDER BY record_type, code, zoho_id",
)
_FINANCE = _mart_read(
    "payment_key, zoho_id, kind, amount_cents, currency, method, status, due_date, paid_on, "
    "total_fees_cents, paid_cents, outstanding_cents, last_payment_on, last_payment_cents",
    "student_finance",
    "student_key = :key",
    "ORDER BY due_date, payment_key",
)
_CLASSES = _mart_read(
    "class_key, zoho_id, name, program_zoho_id, moodle_course_id, start_date, end_date, enrollment_status, "
    "teacher_moodle_user_id, teacher_name, teacher_email",
    "student_classes",
    "student_key = :key",
    "ORDER BY start_date, class_key, teacher_name",
)
_GRADES = _mart_read(
    "grade_key, source, unit_zoho_id, unit_code, unit_name, credits, btec_grade, percentage, graded_at, "
    "feedback, distinction_count, merit_count, pass_count, refer_count, graded_units, graded_credits, "
    "average_points_per_credit",
    "student_grades",
    "student_key = :key",
    "ORDER BY graded_at DESC, grade_key",
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
    """The profile of one student (its `student_profile` row given), from the other four marts.

    The answer is gathered as plain values and validated once, as a whole: one pass of pydantic's
    validator over the nested answer, not one per programme, payment, class and grade."""
    student_key = student["student_key"]
    params = {"tenant": tenant_id, "key": student_key}
    today = today or datetime.now(UTC).date()
    programs, registrations = [], []
    for record_type, zoho_id, unit_zoho_id, code, name, level, credits, status, start, end in conn.execute(
        _ACADEMICS, params
    ):
        if record_type == "program":
            programs.append(
                {
                    "zoho_id": zoho_id,
                    "code": code,
                    "name": name,
                    "level": level,
                    "credits": credits,
                    "expected_completion_date": end,
                }
            )
        else:
            registrations.append(
                {
                    "zoho_id": zoho_id,
                    "unit_zoho_id": unit_zoho_id,
                    "unit_code": code,
                    "unit_name": name,
                    "credits": credits,
                    "status": status,
                    "start_date": start,
                    "end_date": end,
                }
            )
    payments, summaries = [], {}
    for (
        payment_key,
        zoho_id,
        kind,
        amount_cents,
        currency,
        method,
        status,
        due_date,
        paid_on,
        total_fees_cents,
        paid_cents,
        outstanding_cents,
        last_payment_on,
        last_payment_cents,
    ) in conn.execute(_FINANCE, params):
        payments.append(
            {
                "payment_key": payment_key,
                "zoho_id": zoho_id,
                "kind": kind,
                "amount": _money(amount_cents, currency),
                "method": method,
                "status": status,
                "due_date": due_date,
                "paid_on": paid_on,
                "receipt_url": (
                    receipt_path(student_key, zoho_id) if status == "paid" and zoho_id is not None else None
                ),
            }
        )
        if currency not in summaries:
            summaries[currency] = {
                "currency": currency,
                "total_fees": _money(total_fees_cents, currency),
                "paid": _money(paid_cents, currency),
                "outstanding": _money(outstanding_cents, currency),
                "last_payment_on": last_payment_on,
                "last_payment": None if last_payment_cents is None else _money(last_payment_cents, currency),
            }
    classes: dict[str, dict] = {}
    for (
        class_key,
        zoho_id,
        name,
        program_zoho_id,
        moodle_course_id,
        start_date,
        end_date,
        enrollment_status,
        teacher_moodle_user_id,
        teacher_name,
        teacher_email,
    ) in conn.execute(_CLASSES, params):
        taught = classes.get(class_key)
        if taught is None:
            end = _date(end_date)
            taught = classes[class_key] = {
                "class_key": class_key,
                "zoho_id": zoho_id,
                "name": name,
                "program_zoho_id": program_zoho_id,
                "moodle_course_id": moodle_course_id,
                "moodle_course_url": (
                    f"{moodle_url.rstrip('/')}/course/view.php?id={moodle_course_id}"
                    if moodle_course_id is not None
                    else None
                ),
                "start_date": start_date,
                "end_date": end,
                "status": "completed" if end is not None and end < today else "active",
                "enrollment_status": enrollment_status,
                "teachers": [],
            }
        if teacher_moodle_user_id is not None:
            taught["teachers"].append(
                {"moodle_user_id": teacher_moodle_user_id, "full_name": teacher_name or "", "email": teacher_email}
            )
    grades, summary = [], None
    for (
        grade_key,
        source,
        unit_zoho_id,
        unit_code,
        unit_name,
        credits,
        btec_grade,
        percentage,
        graded_at,
        feedback,
        distinction,
        merit,
        passes,
        refer,
        graded_units,
        graded_credits,
        average,
    ) in conn.execute(_GRADES, params):
        grades.append(
            {
                "grade_key": grade_key,
                "source": source,
                "unit_zoho_id": unit_zoho_id,
                "unit_code": unit_code,
                "unit_name": unit_name,
                "credits": credits,
                "btec_grade": btec_grade,
                "percentage": percentage,
                "graded_at": utc(graded_at),
                "feedback": feedback,
            }
        )
        if summary is None:
            summary = grade_summary(
                distinction or 0,
                merit or 0,
                passes or 0,
                refer or 0,
                graded_units or 0,
                graded_credits or 0,
                None if average is None else float(average),
            )
    return m.ProfileResponse.model_validate(
        {
            "student": student_values(student),
            "programs": programs,
            "registrations": registrations,
            "payments": payments,
            "finance_summary": list(summaries.values()),
            "classes": list(classes.values()),
            "grades": grades,
            "grade_summary": summary or grade_summary(0, 0, 0, 0, 0, 0, None),
        }
    )


def grade_summary(
    distinction: int, merit: int, passes: int, refer: int, graded_units: int, credits: int, average: float | None
) -> dict:
    """A grade summary's values (`models.GradeSummary`), the average to four places."""
    return {
        "distinction": distinction,
        "merit": merit,
        "pass": passes,
        "refer": refer,
        "graded_units": graded_units,
        "credits": credits,
        "average_points_per_credit": None if average is None else round(average, 4),
    }


def student_values(row: Any) -> dict:
    """A `student_profile` row's values as `models.StudentProfile` takes them."""
    values = dict(row)
    values["updated_at"] = utc(values["updated_at"])
    values["full_name"] = values["full_name"] or ""
    return values


def receipt_path(student_key: str, payment_id: str) -> str:
    return f"/v1/students/{quote(student_key, safe=':')}/payments/{quote(payment_id)}/receipt"


def _money(cents: int | None, currency: str | None) -> dict:
    """Whole cents as an amount with exactly two places, beside its currency (`models.Money`)."""
    return {"amount": Decimal(int(cents or 0)).scaleb(-2), "currency": currency}


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
