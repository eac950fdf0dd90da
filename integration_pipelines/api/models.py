"""The API's typed answers: what the dashboard and any other client can rely on.

Every field is always present: a value the warehouse does not hold is `null`, never missing.
Money is a decimal string with two places beside its currency (`{"amount": "1250.00",
"currency": "GBP"}`), never a float. Dates are ISO 8601 (`YYYY-MM-DD`), timestamps ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

# A decimal as text with exactly two places: JSON numbers are floats to most clients.
MoneyAmount = Annotated[Decimal, PlainSerializer(lambda d: f"{d:.2f}", return_type=str, when_used="json")]
BtecGrade = Literal["Refer", "Pass", "Merit", "Distinction"]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Money(ApiModel):
    """An amount of money in one currency."""

    amount: Annotated[MoneyAmount, Field(json_schema_extra={"type": "string", "pattern": r"^-?\d+\.\d{2}$"})]
    currency: str | None = Field(description="ISO 4217 code, e.g. GBP; null when the source did not say.")


class StudentProfile(ApiModel):
    """Who the student is, in both systems. Zoho (admissions) is the system of record for a linked
    student's personal fields; the photo comes from Moodle."""

    student_key: str = Field(
        description="The warehouse's key: `zoho:<id>`, or `moodle:<id>` for a Moodle-only account."
    )
    moodle_user_id: int | None
    zoho_id: str | None
    student_number: str | None
    first_name: str | None
    last_name: str | None
    full_name: str
    email: str | None = Field(description="The academic email, trimmed and lower-cased.")
    photo_url: str | None = Field(description="Moodle's `profileimageurl`; null without a Moodle account.")
    phone: str | None
    date_of_birth: date | None
    address: str | None
    city: str | None
    country: str | None
    status: str | None = Field(description="active, suspended, withdrawn or completed.")
    identity_match: Literal["crm_field", "idnumber", "email"] | None = Field(
        description="How the Moodle account and the Zoho record were linked; null: one system only."
    )
    updated_at: datetime = Field(description="When the warehouse last changed this student.")


class Program(ApiModel):
    """A programme the student studies."""

    zoho_id: str
    code: str | None
    name: str | None
    level: str | None
    credits: int | None
    expected_completion_date: date | None = Field(
        description="The last end date of the student's classes in this programme."
    )


class Registration(ApiModel):
    """The student's registration on one unit."""

    zoho_id: str
    unit_zoho_id: str | None
    unit_code: str | None
    unit_name: str | None
    credits: int | None
    status: str | None = Field(description="registered, completed or withdrawn.")
    start_date: date | None = Field(description="When the class teaching the unit starts.")
    end_date: date | None = Field(description="When the class teaching the unit ends.")


class Payment(ApiModel):
    """One payment line of the student's account (a fee or an instalment)."""

    payment_key: str
    zoho_id: str | None
    kind: str | None = Field(description="fee or instalment.")
    amount: Money
    method: str | None
    status: str | None = Field(description="paid, pending, overdue or refunded.")
    due_date: date | None
    paid_on: date | None
    receipt_url: str | None = Field(description="The PDF receipt of a paid payment; null otherwise.")


class FinanceSummary(ApiModel):
    """The student's account in one currency. Refunded lines count neither as due nor as paid."""

    currency: str | None
    total_fees: Money = Field(description="Everything due: every line not refunded.")
    paid: Money = Field(description="The lines paid.")
    outstanding: Money = Field(description="total_fees - paid.")
    last_payment_on: date | None
    last_payment: Money | None


class ClassTeacher(ApiModel):
    moodle_user_id: int
    full_name: str
    email: str | None


class StudentClass(ApiModel):
    """A class the student is enrolled in, with its Moodle course."""

    class_key: str
    zoho_id: str | None
    name: str | None
    program_zoho_id: str | None
    moodle_course_id: int | None
    moodle_course_url: str | None
    start_date: date | None
    end_date: date | None
    status: Literal["active", "completed"] = Field(description="completed once the class has ended.")
    enrollment_status: str | None = Field(description="The student's enrolment: active, suspended or withdrawn.")
    teachers: list[ClassTeacher]


class Grade(ApiModel):
    """One grade of the student's history."""

    grade_key: str
    source: Literal["moodle", "zoho"]
    unit_zoho_id: str | None
    unit_code: str | None
    unit_name: str | None
    credits: int | None
    btec_grade: BtecGrade | None = Field(description="The unit grade on the BTEC scale (converted for numeric grades).")
    percentage: float | None
    graded_at: datetime | None
    feedback: str | None


class GradeSummary(ApiModel):
    """BTEC unit grades counted, and the credit-weighted average of points per credit."""

    distinction: int
    merit: int
    pass_: int = Field(alias="pass", serialization_alias="pass")
    refer: int
    graded_units: int
    credits: int
    average_points_per_credit: float | None = Field(
        description="Sum of points x credits over graded units, divided by their credits (mapping's points_per_credit)."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ProfileResponse(ApiModel):
    """A student's whole picture, as the dashboard's five tabs show it."""

    student: StudentProfile
    programs: list[Program]
    registrations: list[Registration]
    payments: list[Payment]
    finance_summary: list[FinanceSummary] = Field(description="One entry per currency the student's account uses.")
    classes: list[StudentClass]
    grades: list[Grade]
    grade_summary: GradeSummary


class SearchHit(ApiModel):
    student_key: str
    moodle_user_id: int | None
    zoho_id: str | None
    student_number: str | None
    full_name: str
    email: str | None
    username: str | None
    status: str | None


class SearchPage(ApiModel):
    """One page of search results, in name order. Pass `next_cursor` as `cursor` for the next page."""

    items: list[SearchHit]
    next_cursor: str | None


class MartFreshness(ApiModel):
    name: str
    exists: bool
    built_at: datetime | None


class SyncRunSummary(ApiModel):
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None


class Health(ApiModel):
    """What the API can say about its warehouse without revealing any data."""

    status: Literal["ok", "degraded"]
    backend: str
    reachable: bool = Field(description="The warehouse answered.")
    schema_ready: bool = Field(description="The warehouse holds the migrated schema.")
    marts: list[MartFreshness]
    last_sync_at: datetime | None
    last_full_sync: SyncRunSummary | None
    last_incremental_sync: SyncRunSummary | None
    event_backlog: int | None = Field(
        description="Events received and not yet processed (pending or failed); null while the schema is missing."
    )


class TableCounts(ApiModel):
    table: str
    read: int
    inserted: int
    updated: int
    deleted: int


class SyncRun(ApiModel):
    run_id: str
    kind: str
    status: Literal["started", "success", "failure"]
    started_at: datetime
    finished_at: datetime | None
    tables: list[TableCounts]
    error: str | None


class SyncHistoryPage(ApiModel):
    items: list[SyncRun]
    next_cursor: str | None


class EventReceipt(ApiModel):
    """A webhook's answer: the event was written to the inbox (202), or was already (200)."""

    status: Literal["accepted", "duplicate"]
    event_id: str


class LoggedEvent(ApiModel):
    """One row of the events log."""

    event_id: str
    tenant_id: str
    source: str = Field(description="moodle or zoho.")
    sender: str = Field(description="moodle_contract, local_webhooks or zoho.")
    event_type: str
    record_id: str | None
    user_id: int | None = Field(description="The Moodle user the event concerns, where there is one.")
    status: Literal["pending", "processed", "ignored", "failed", "dead"]
    retry_count: int
    last_error: str | None
    event_time: datetime
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None
    payload: dict[str, Any] | None = Field(default=None, description="The event as received; only with payload=true.")


class EventLogPage(ApiModel):
    events: list[LoggedEvent]
    next_cursor: str | None


class EventRequeued(ApiModel):
    status: Literal["requeued"]
    event_id: str


class Problem(ApiModel):
    """RFC 9457 problem details: the shape of every error."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    parameter: str | None = Field(default=None, description="For a 422: the parameter at fault.")
