"""The sandbox's Zoho CRM modules and fields: API names, data types, rendering and parsing.

This is the contract the pipeline's field-mapping file defaults to. Every module also has
the system fields ``id``, ``Owner``, ``Created_Time``, ``Modified_Time``, ``Created_By`` and
``Modified_By``. Lookups render as ``{"name", "id"}`` (``Owner`` adds ``email``); ids are
19-digit strings; datetimes are ISO 8601 with offset; dates ``YYYY-MM-DD``; currency fields
are JSON numbers with two decimals.

========= ================= ==========================================================
module    record            fields (besides the system fields)
========= ================= ==========================================================
Programs  a programme       Name, Programme_Code (unique), Level, Credits, Annual_Fee
Units     a BTEC unit       Name, Unit_Code (unique), Programme -> Programs, Credits
Classes   a taught group    Name, Programme -> Programs, Moodle_Course_ID (integer),
                            Start_Date, End_Date
Students  a student         Name (read-only "First Last"), First_Name, Last_Name,
                            Student_Number (unique), Email, Phone, Programme -> Programs,
                            Status (Active|Suspended|Withdrawn|Completed), Enrolment_Date
Enrollments student x class Name, Student -> Students, Class -> Classes,
                            Status (Active|Suspended|Withdrawn), Enrolment_Date
Registrations student x unit Name, Student -> Students, Unit -> Units,
                            Status (Registered|Completed|Withdrawn)
Payments  fee/instalment    Name, Student -> Students, Payment_Type (Fee|Instalment),
                            Amount (currency), Currency (GBP|EUR), Payment_Method,
                            Payment_Status (Paid|Pending|Overdue|Refunded), Due_Date, Paid_On
BTEC_Grades unit grade      Name, Grade_Key (unique "<Student_Number>-<Unit_Code>"),
                            Student -> Students, Unit -> Units,
                            Grade (Refer|Pass|Merit|Distinction), Graded_Time (datetime)
========= ================= ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .college import (
    BTEC_SCALE,
    CRM_USERS,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    BtecGrade,
    College,
    Enrollment,
    Payment,
    Program,
    Registration,
    Student,
    Unit,
    ZClass,
    date_to_epoch,
    parse_zoho_datetime,
    zoho_date,
    zoho_datetime,
)


class FieldValueError(ValueError):
    """A value given for a field in a write is not acceptable (Zoho answers INVALID_DATA)."""

    def __init__(self, api_name: str, expected: str):
        super().__init__(api_name)
        self.api_name = api_name
        self.expected = expected


@dataclass(frozen=True)
class FieldSpec:
    api_name: str
    # Zoho data_type: bigint, text, email, phone, integer, currency, date, datetime, lookup,
    # ownerlookup, picklist
    data_type: str
    label: str
    get: Callable[[College, Any], Any]
    set: Callable[[College, Any, Any], None] | None = None  # None = read-only
    lookup: str | None = None  # target module of a lookup
    picklist: tuple[str, ...] = ()
    mandatory: bool = False
    unique: bool = False


# ---- renderers ------------------------------------------------------------------------------
def _owner(col: College, idx: int) -> dict:
    zid, name, email = CRM_USERS[idx]
    return {"name": name, "id": str(zid), "email": email}


def _lookup(module: str) -> Callable[[College, int], dict | None]:
    def render(col: College, zid: int) -> dict | None:
        rec = col.zoho[module].records.get(zid) if zid else None
        if rec is None:
            return None
        return {"name": record_name(module, col, rec), "id": str(zid)}

    return render


def record_name(module: str, col: College, rec: Any) -> str:
    """The record's display name (the ``name`` of lookups pointing at it)."""
    if module == "Students":
        return f"{rec.first_name} {rec.last_name}"
    if module in ("Programs", "Units", "Classes"):
        return rec.name
    if module == "Enrollments":
        s = col.students_by_zid.get(rec.student)
        c = col.zoho["Classes"].records.get(rec.zclass)
        return f"{s.student_number if s else '?'} - {c.name if c else '?'}"
    if module == "Registrations":
        s = col.students_by_zid.get(rec.student)
        u = col.zoho["Units"].records.get(rec.unit)
        return f"{s.student_number if s else '?'} - {u.code if u else '?'}"
    if module == "Payments":
        return f"{rec.kind} {rec.zid}"
    if module == "BTEC_Grades":
        return rec.key
    return str(rec.zid)


# ---- parsers (for upsert) ---------------------------------------------------------------------
def _text(api: str, max_len: int = 255) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or len(v) > max_len:
            raise FieldValueError(api, "text")
        return v

    return parse


def _email(api: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or "@" not in v:
            raise FieldValueError(api, "email")
        return v

    return parse


def _integer(api: str) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise FieldValueError(api, "integer")
        try:
            return int(v)
        except ValueError:
            raise FieldValueError(api, "integer") from None

    return parse


def _currency_pence(api: str) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise FieldValueError(api, "double")
        try:
            return int(round(float(v) * 100))
        except (TypeError, ValueError):
            raise FieldValueError(api, "double") from None

    return parse


def _date(api: str, optional: bool = False) -> Callable[[Any], int | None]:
    def parse(v: Any) -> int | None:
        if v is None and optional:
            return None
        try:
            return date_to_epoch(v)
        except (TypeError, ValueError):
            raise FieldValueError(api, "date") from None

    return parse


def _datetime(api: str) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        try:
            return parse_zoho_datetime(v)
        except (TypeError, ValueError, AttributeError):
            raise FieldValueError(api, "datetime") from None

    return parse


def _picklist(api: str, values: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if v not in values:
            raise FieldValueError(api, "picklist")
        return v

    return parse


def lookup_id(v: Any) -> int | None:
    """Accept ``{"id": "..."}``, ``"..."`` or an int as a lookup value."""
    if isinstance(v, dict):
        v = v.get("id")
    if isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _lookup_parse(api: str, module: str) -> Callable[[College, Any], int]:
    def parse(col: College, v: Any) -> int:
        zid = lookup_id(v)
        rec = col.zoho[module].records.get(zid) if zid is not None else None
        if rec is None or rec.deleted is not None:
            raise FieldValueError(api, "lookup")
        return zid

    return parse


def _attr_setter(attr: str, parse: Callable[[Any], Any]) -> Callable[[College, Any, Any], None]:
    def set_(col: College, rec: Any, v: Any) -> None:
        setattr(rec, attr, parse(v))

    return set_


def _lookup_setter(attr: str, api: str, module: str) -> Callable[[College, Any, Any], None]:
    parse = _lookup_parse(api, module)

    def set_(col: College, rec: Any, v: Any) -> None:
        setattr(rec, attr, parse(col, v))

    return set_


# ---- field builders ---------------------------------------------------------------------------
def text(api: str, attr: str, label: str, **kw: Any) -> FieldSpec:
    return FieldSpec(api, "text", label, lambda c, r: getattr(r, attr), _attr_setter(attr, _text(api)), **kw)


def picklist(api: str, attr: str, label: str, values: tuple[str, ...], **kw: Any) -> FieldSpec:
    return FieldSpec(
        api,
        "picklist",
        label,
        lambda c, r: getattr(r, attr),
        _attr_setter(attr, _picklist(api, values)),
        picklist=values,
        **kw,
    )


def lookup(api: str, attr: str, label: str, module: str, **kw: Any) -> FieldSpec:
    render = _lookup(module)
    return FieldSpec(
        api,
        "lookup",
        label,
        lambda c, r: render(c, getattr(r, attr)),
        _lookup_setter(attr, api, module),
        lookup=module,
        **kw,
    )


def date_field(api: str, attr: str, label: str, optional: bool = False, **kw: Any) -> FieldSpec:
    return FieldSpec(
        api, "date", label, lambda c, r: zoho_date(getattr(r, attr)), _attr_setter(attr, _date(api, optional)), **kw
    )


SYSTEM_FIELDS = (
    FieldSpec("id", "bigint", "Record Id", lambda c, r: str(r.zid)),
    FieldSpec("Owner", "ownerlookup", "Owner", lambda c, r: _owner(c, r.owner), lookup="users"),
    FieldSpec("Created_Time", "datetime", "Created Time", lambda c, r: zoho_datetime(r.created)),
    FieldSpec("Modified_Time", "datetime", "Modified Time", lambda c, r: zoho_datetime(r.modified)),
    FieldSpec("Created_By", "ownerlookup", "Created By", lambda c, r: _owner(c, r.owner), lookup="users"),
    FieldSpec("Modified_By", "ownerlookup", "Modified By", lambda c, r: _owner(c, r.owner), lookup="users"),
)


def _student_name_setter(attr: str, api: str) -> Callable[[College, Any, Any], None]:
    return _attr_setter(attr, _text(api))


MODULE_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    "Programs": (
        text("Name", "name", "Programme Name", mandatory=True),
        text("Programme_Code", "code", "Programme Code", mandatory=True, unique=True),
        picklist("Level", "level", "Level", ("L2", "L3", "HNC", "HND")),
        FieldSpec(
            "Credits", "integer", "Credits", lambda c, r: r.credits, _attr_setter("credits", _integer("Credits"))
        ),
        FieldSpec(
            "Annual_Fee",
            "currency",
            "Annual Fee",
            lambda c, r: r.fee_pence / 100,
            _attr_setter("fee_pence", _currency_pence("Annual_Fee")),
        ),
    ),
    "Units": (
        text("Name", "name", "Unit Name", mandatory=True),
        text("Unit_Code", "code", "Unit Code", mandatory=True, unique=True),
        lookup("Programme", "program", "Programme", "Programs", mandatory=True),
        FieldSpec(
            "Credits", "integer", "Credits", lambda c, r: r.credits, _attr_setter("credits", _integer("Credits"))
        ),
    ),
    "Classes": (
        text("Name", "name", "Class Name", mandatory=True),
        lookup("Programme", "program", "Programme", "Programs", mandatory=True),
        FieldSpec(
            "Moodle_Course_ID",
            "integer",
            "Moodle Course ID",
            lambda c, r: r.course_id,
            _attr_setter("course_id", _integer("Moodle_Course_ID")),
        ),
        date_field("Start_Date", "start", "Start Date"),
        date_field("End_Date", "end", "End Date"),
    ),
    "Students": (
        FieldSpec("Name", "text", "Student Name", lambda c, r: f"{r.first_name} {r.last_name}"),
        text("First_Name", "first_name", "First Name"),
        text("Last_Name", "last_name", "Last Name", mandatory=True),
        text("Student_Number", "student_number", "Student Number", mandatory=True, unique=True),
        FieldSpec(
            "Email", "email", "Email", lambda c, r: r.email_raw, _attr_setter("email_raw", _email("Email")), unique=True
        ),
        FieldSpec("Phone", "phone", "Phone", lambda c, r: r.phone, _attr_setter("phone", _text("Phone", 30))),
        lookup("Programme", "program", "Programme", "Programs"),
        picklist("Status", "status", "Status", ("Active", "Suspended", "Withdrawn", "Completed")),
        date_field("Enrolment_Date", "enrolment_date", "Enrolment Date"),
        date_field("Date_of_Birth", "birth_date", "Date of Birth", optional=True),
        text("Mailing_Street", "street", "Mailing Street"),
        text("Mailing_City", "city", "Mailing City"),
        text("Mailing_Country", "country", "Mailing Country"),
    ),
    "Enrollments": (
        FieldSpec("Name", "text", "Enrollment Name", lambda c, r: record_name("Enrollments", c, r)),
        lookup("Student", "student", "Student", "Students", mandatory=True),
        lookup("Class", "zclass", "Class", "Classes", mandatory=True),
        picklist("Status", "status", "Status", ("Active", "Suspended", "Withdrawn")),
        FieldSpec("Enrolment_Date", "date", "Enrolment Date", lambda c, r: zoho_date(r.created)),
    ),
    "Registrations": (
        FieldSpec("Name", "text", "Registration Name", lambda c, r: record_name("Registrations", c, r)),
        lookup("Student", "student", "Student", "Students", mandatory=True),
        lookup("Unit", "unit", "Unit", "Units", mandatory=True),
        picklist("Status", "status", "Status", ("Registered", "Completed", "Withdrawn")),
    ),
    "Payments": (
        FieldSpec("Name", "text", "Payment Name", lambda c, r: record_name("Payments", c, r)),
        lookup("Student", "student", "Student", "Students", mandatory=True),
        picklist("Payment_Type", "kind", "Payment Type", ("Fee", "Instalment"), mandatory=True),
        FieldSpec(
            "Amount",
            "currency",
            "Amount",
            lambda c, r: r.amount_pence / 100,
            _attr_setter("amount_pence", _currency_pence("Amount")),
            mandatory=True,
        ),
        picklist("Currency", "currency", "Currency", ("GBP", "EUR")),
        picklist("Payment_Method", "method", "Payment Method", PAYMENT_METHODS),
        picklist("Payment_Status", "status", "Payment Status", PAYMENT_STATUSES),
        date_field("Due_Date", "due", "Due Date"),
        date_field("Paid_On", "paid_on", "Paid On", optional=True),
    ),
    "BTEC_Grades": (
        FieldSpec("Name", "text", "Grade Name", lambda c, r: r.key),
        text("Grade_Key", "key", "Grade Key", mandatory=True, unique=True),
        lookup("Student", "student", "Student", "Students", mandatory=True),
        lookup("Unit", "unit", "Unit", "Units", mandatory=True),
        picklist("Grade", "grade", "Grade", BTEC_SCALE, mandatory=True),
        FieldSpec(
            "Graded_Time",
            "datetime",
            "Graded Time",
            lambda c, r: zoho_datetime(r.graded),
            _attr_setter("graded", _datetime("Graded_Time")),
        ),
    ),
}

MODULE_LABELS = {
    "Programs": ("Programme", "Programmes"),
    "Units": ("Unit", "Units"),
    "Classes": ("Class", "Classes"),
    "Students": ("Student", "Students"),
    "Enrollments": ("Enrollment", "Enrollments"),
    "Registrations": ("Registration", "Registrations"),
    "Payments": ("Payment", "Payments"),
    "BTEC_Grades": ("BTEC Grade", "BTEC Grades"),
}


def fields_of(module: str) -> dict[str, FieldSpec]:
    """All fields of a module by API name, system fields first."""
    return {f.api_name: f for f in SYSTEM_FIELDS + MODULE_FIELDS[module]}


FIELDS: dict[str, dict[str, FieldSpec]] = {m: fields_of(m) for m in MODULE_FIELDS}


def render(col: College, module: str, rec: Any, field_names: list[str]) -> dict:
    """One record as Zoho returns it: ``id`` always, then the requested fields."""
    specs = FIELDS[module]
    out = {"id": str(rec.zid)}
    for name in field_names:
        out[name] = specs[name].get(col, rec)
    return out


def new_record(col: College, module: str, zid: int, now: int) -> Any:
    """A blank record of ``module`` ready for an upsert's values (mandatory fields checked after)."""
    if module == "Programs":
        return Program(zid, now, now, 0, "", "", "L3", 0, 0)
    if module == "Units":
        return Unit(zid, now, now, 0, 0, "", "", 0)
    if module == "Classes":
        return ZClass(zid, now, now, 0, 0, "", 0, now, now, ())
    if module == "Students":
        return Student(zid, now, now, 0, "", "", "", "", 0, "Active", "", now, None)
    if module == "Enrollments":
        return Enrollment(zid, now, now, 0, 0, 0, "Active", 0, 0, 0, 0, 0, 0)
    if module == "Registrations":
        return Registration(zid, now, now, 0, 0, 0, "Registered")
    if module == "Payments":
        return Payment(zid, now, now, 0, 0, "Fee", 0, "GBP", PAYMENT_METHODS[0], "Pending", now, None)
    if module == "BTEC_Grades":
        return BtecGrade(zid, now, now, 0, 0, 0, "Pass", now, "")
    raise KeyError(module)
