"""The field mapping's transforms, as SQL over a raw record's JSON.

A transform turns one Zoho field into one canonical value. Each is a pair of SQL expressions
over the field: its `value`, and whether the field's JSON is something the transform can
convert (`valid`). Every transform maps null (or a missing field) to NULL. Text transforms trim
whitespace and treat a blank value as missing, because Zoho users type stray spaces and an empty
string means "not filled in" just as null does.

A record whose field is not `valid` is a data error: the canonical step stops and names the
entity, the field and the record (`RecordTransformError`), with `Transform.expected` as the
reason. The mapping file may name only the transforms here (`TRANSFORMS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import BigInteger, ColumnElement, Float, and_, case, cast, func, literal, or_

from integration_pipelines.lib.warehouse.sql import (
    blank_to_null,
    is_calendar_date,
    iso_date,
    iso_time,
    json_kind,
    json_text,
    matches,
    money,
    strip,
)

# At most 18 digits: every such integer fits a BIGINT column (a longer one may not).
INTEGER_TEXT = r"^[+-]?[0-9]{1,18}$"
INTEGER_LIMIT = 10**18
NUMBER_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATE_TEXT = r"^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # there is no year 0
# What Zoho sends for a datetime: ISO 8601 with seconds and an offset (a naive time cannot be
# ordered against other sources' times).
DATETIME_TEXT = (
    r"^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"([+-]([01][0-9]|2[0-3]):[0-5][0-9]|Z)$"
)
# The largest amount a NUMERIC(12, 2) column holds.
MONEY_LIMIT = 10**10


@dataclass(frozen=True)
class Field:
    """One field of a raw record's payload, as SQL."""

    payload: ColumnElement
    name: str

    @property
    def kind(self) -> ColumnElement:
        return json_kind(self.payload, self.name)

    @property
    def text(self) -> ColumnElement:
        return json_text(self.payload, self.name)

    def member(self, name: str) -> Field:
        return _Member(self.payload, self.name, name)


@dataclass(frozen=True)
class _Member(Field):
    member_name: str

    @property
    def kind(self) -> ColumnElement:
        return json_kind(self.payload, self.name, self.member_name)

    @property
    def text(self) -> ColumnElement:
        return json_text(self.payload, self.name, self.member_name)


@dataclass(frozen=True)
class Converted:
    value: ColumnElement
    valid: ColumnElement


@dataclass(frozen=True)
class Transform:
    """A transform: what it expects (for the error message) and its SQL."""

    expected: str
    sql: Callable[[Field], Converted]

    def __call__(self, field: Field) -> Converted:
        converted = self.sql(field)
        # A value is computed only where the field is valid: PostgreSQL would fail the whole
        # statement on a cast of what is not a number or a date.
        return Converted(case((converted.valid, converted.value), else_=None), converted.valid)


def _is(kind: ColumnElement, *kinds: str) -> ColumnElement:
    return kind.in_(kinds)


def _identity(f: Field) -> Converted:
    return Converted(f.text, literal(True))


def _strip(f: Field) -> Converted:
    value = case((f.kind == "text", blank_to_null(f.text)), (f.kind == "integer", f.text), else_=None)
    return Converted(value, _is(f.kind, "null", "text", "integer"))


def _cased(fold) -> Callable[[Field], Converted]:
    def sql(f: Field) -> Converted:
        stripped = _strip(f)
        return Converted(fold(stripped.value), stripped.valid)

    return sql


def _lookup_id(f: Field) -> Converted:
    """A Zoho lookup renders as `{"name": ..., "id": ...}`; the canonical column keeps the id. A
    text field holding the id (some colleges keep ids in plain fields) is taken as it is."""
    ref = f.member("id")
    value = case(
        (f.kind == "object", case((ref.kind == "text", blank_to_null(ref.text)), else_=ref.text)),
        (f.kind == "text", blank_to_null(f.text)),
        (f.kind == "integer", f.text),
        else_=None,
    )
    valid = or_(_is(f.kind, "null", "text", "integer"), and_(f.kind == "object", _is(ref.kind, "text", "integer")))
    return Converted(value, valid)


def _int(f: Field) -> Converted:
    as_float = cast(f.text, Float)
    value = case(
        (f.kind == "integer", cast(f.text, BigInteger)),
        (f.kind == "real", cast(as_float, BigInteger)),
        (f.kind == "text", cast(strip(f.text), BigInteger)),
        else_=None,
    )
    # Nested CASEs, not ANDs: PostgreSQL may evaluate either side of an AND first, and a cast of
    # what does not fit fails the whole statement.
    integral = case(
        (func.abs(as_float) < INTEGER_LIMIT, cast(cast(as_float, BigInteger), Float) == as_float), else_=False
    )
    valid = or_(
        f.kind == "null",
        and_(f.kind == "integer", matches(f.text, INTEGER_TEXT)),
        case((f.kind == "real", integral), else_=False),
        and_(f.kind == "text", matches(strip(f.text), INTEGER_TEXT)),
    )
    return Converted(value, valid)


def _decimal(f: Field) -> Converted:
    """Money: Zoho renders currency as a JSON number with two decimals; kept exact, rounded half
    up to the cent, and within what the column holds."""
    number = case((f.kind == "text", strip(f.text)), else_=f.text)
    is_number = or_(_is(f.kind, "integer", "real"), and_(f.kind == "text", matches(strip(f.text), NUMBER_TEXT)))
    in_range = func.abs(cast(money(number), Float)) < MONEY_LIMIT
    valid = or_(f.kind == "null", and_(is_number, case((is_number, in_range), else_=False)))
    return Converted(money(number), valid)


def _date(f: Field) -> Converted:
    valid = or_(
        f.kind == "null",
        and_(f.kind == "text", case((matches(f.text, DATE_TEXT), is_calendar_date(f.text)), else_=False)),
    )
    return Converted(iso_date(f.text), valid)


def datetime_field(f: Field) -> Converted:
    date_part = func.substr(f.text, 1, 10)
    valid = or_(
        f.kind == "null",
        and_(f.kind == "text", case((matches(f.text, DATETIME_TEXT), is_calendar_date(date_part)), else_=False)),
    )
    return Converted(iso_time(f.text), valid)


def _bool(f: Field) -> Converted:
    word = func.lower(strip(f.text))
    value = case((f.kind == "true", True), (f.kind == "false", False), (f.kind == "text", word == "true"), else_=None)
    valid = or_(_is(f.kind, "null", "true", "false"), and_(f.kind == "text", word.in_(("true", "false"))))
    return Converted(value, valid)


TRANSFORMS: dict[str, Transform] = {
    "identity": Transform("any value (kept as text)", _identity),
    "strip": Transform("text", _strip),
    "lower": Transform("text", _cased(func.lower)),
    "upper": Transform("text", _cased(func.upper)),
    "email": Transform("text (an email)", _cased(func.lower)),
    "lookup_id": Transform("a lookup {name, id} or an id", _lookup_id),
    "int": Transform("an integer", _int),
    "decimal": Transform(f"a number below {MONEY_LIMIT:,} in magnitude", _decimal),
    "date": Transform("a date YYYY-MM-DD", _date),
    "datetime": Transform("an ISO 8601 datetime with a UTC offset", datetime_field),
    "bool": Transform("true or false", _bool),
}
"""The transform registry: a mapping file may name only these."""
