"""`GET /v1/students/{student_key}/payments/{payment_id}/receipt`: the PDF receipt of a paid
payment, for the student it belongs to and for admins of its tenant."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from sqlalchemy import text

from integration_pipelines.api.auth import Reader, ensure_may_read
from integration_pipelines.api.problems import Problem, problem_responses
from integration_pipelines.api.profile import _date
from integration_pipelines.api.warehouse import Warehouse
from integration_pipelines.lib.receipts import ReceiptFacts, render_receipt

router = APIRouter(tags=["students"])

_PAYMENT = text(
    "SELECT f.zoho_id, f.kind, f.method, f.status, f.amount_cents, f.currency, f.paid_on, "
    "p.full_name, p.student_number FROM student_finance f "
    "JOIN student_profile p ON p.tenant_id = f.tenant_id AND p.student_key = f.student_key "
    "WHERE f.tenant_id = :tenant AND f.student_key = :student AND f.zoho_id = :payment"
)


@router.get(
    "/v1/students/{student_key}/payments/{payment_id}/receipt",
    summary="The PDF receipt of a paid payment",
    response_class=Response,
    responses={
        200: {
            "description": "The receipt.",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        },
        **problem_responses(401, 403, 404, 422, 503),
        409: {
            "description": "The payment is not paid (yet), so it has no receipt.",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
def payment_receipt(
    request: Request,
    key: Reader,
    conn: Warehouse,
    student_key: Annotated[
        str, Path(max_length=96, pattern=r"^(zoho|moodle):[0-9]{1,19}$", description="`student_key` of the profile.")
    ],
    payment_id: Annotated[str, Path(pattern=r"^[0-9]{1,19}$", description="The payment's Zoho record id.")],
) -> Response:
    """A one-page PDF naming the student, the amount and currency, and the date paid."""
    ensure_may_read(key, student_key)
    row = (
        conn.execute(_PAYMENT, {"tenant": key.tenant_id, "student": student_key, "payment": payment_id})
        .mappings()
        .first()
    )
    if row is None:
        raise Problem(
            404, "Payment not found", f"Student {student_key} has no payment {payment_id}.", parameter="payment_id"
        )
    if row["status"] != "paid":
        raise Problem(409, "Not paid", f"Payment {payment_id} is {row['status']}: only a paid payment has a receipt.")
    pdf = render_receipt(
        ReceiptFacts(
            college=request.app.state.settings.college_name,
            student_name=row["full_name"] or student_key,
            student_number=row["student_number"],
            student_key=student_key,
            payment_id=payment_id,
            kind=row["kind"],
            method=row["method"],
            amount=Decimal(int(row["amount_cents"])) / 100,
            currency=row["currency"],
            paid_on=_date(row["paid_on"]),
        )
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="receipt-{payment_id}.pdf"'},
    )
