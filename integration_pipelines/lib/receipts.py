"""PDF receipts of paid payments (fpdf2). Dagster-free; the API serves them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from fpdf import FPDF


@dataclass(frozen=True)
class ReceiptFacts:
    """What a receipt states: who paid, what, when, for which line of their account."""

    college: str
    student_name: str
    student_number: str | None
    student_key: str
    payment_id: str
    kind: str | None
    method: str | None
    amount: Decimal
    currency: str | None
    paid_on: date | None


def _latin1(value: str) -> str:
    # The PDF core fonts cover Latin-1; anything beyond it is spelled with "?" rather than failing.
    return value.encode("latin-1", "replace").decode("latin-1")


def render_receipt(facts: ReceiptFacts) -> bytes:
    """A one-page A4 receipt naming the student, the amount with its currency and the date paid."""
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"Receipt {facts.payment_id}"))
    pdf.set_creator("integration_pipelines")
    pdf.add_page()
    pdf.set_font("helvetica", "B", 18)
    pdf.cell(0, 12, _latin1(facts.college), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 14)
    pdf.cell(0, 10, "Payment receipt", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("helvetica", "", 11)
    amount = f"{facts.currency or ''} {facts.amount:,.2f}".strip()
    lines = (
        ("Student", facts.student_name),
        ("Student number", facts.student_number or "-"),
        ("Receipt number", facts.payment_id),
        ("For", (facts.kind or "payment").capitalize()),
        ("Method", facts.method or "-"),
        ("Amount paid", amount),
        ("Date paid", facts.paid_on.isoformat() if facts.paid_on else "-"),
    )
    for label, value in lines:
        pdf.set_font("helvetica", "B", 11)
        pdf.cell(50, 8, _latin1(label))
        pdf.set_font("helvetica", "", 11)
        pdf.cell(0, 8, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
