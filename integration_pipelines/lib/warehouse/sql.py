"""SQL that compiles for both warehouse backends: SQLite's JSON functions and PostgreSQL's
`jsonb` operators.

A canonical table is one `SELECT` over `raw_records`: each column is an expression over the
record's payload, built from the few constructs here. Where the dialects differ the construct
compiles differently (`@compiles`); everything else is plain SQLAlchemy Core. What SQLite has no
function for (exact decimal rounding, regular expressions, Unicode case folding, a digest) is a
deterministic scalar function registered on each of its connections (`register_sqlite_functions`):
it runs inside the statement, on one value at a time, never on whole records.

Kinds. `json_kind` names a JSON value's kind in one vocabulary on both backends: `null` (also for
a missing member), `true`, `false`, `integer`, `real`, `text`, `object`, `array`.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, Boolean, ColumnElement, Float, String, Text, and_, case, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

# What Python's str.strip() removes that shows up in typed-in data: ASCII whitespace, the
# no-break and typographic spaces, and the line and paragraph separators.
WHITESPACE = (
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _path_literal(compiler, path: tuple[str, ...], postgres: bool) -> str:
    """A JSON path as an SQL string literal: `'$."a"."b"'` (SQLite) or `'{a,b}'` (PostgreSQL)."""
    if postgres:
        text = "{" + ",".join('"' + p.replace('"', '\\"') + '"' for p in path) + "}"
    else:
        text = "$" + "".join('."' + p.replace('"', '""') + '"' for p in path)
    return "'" + text.replace("'", "''") + "'"


class _JsonPathFunction(FunctionElement):
    inherit_cache = True

    # The path is part of what the statement means, so of its cache key.
    _traverse_internals = [*FunctionElement._traverse_internals, ("path", InternalTraversal.dp_plain_obj)]

    def __init__(self, payload: ColumnElement, *path: str):
        self.path = tuple(path)
        super().__init__(payload)


class json_text(_JsonPathFunction):
    """The JSON value at `path` as text: a string unquoted, a number exactly as written, `true` or
    `false`, an object or array as JSON text; NULL for null or missing."""

    type = Text()
    name = "json_text"
    inherit_cache = True


class json_kind(_JsonPathFunction):
    """The kind of the JSON value at `path` (see the module's docstring)."""

    type = String()
    name = "json_kind"
    inherit_cache = True


def _payload(compiler, element, kw) -> str:
    return compiler.process(list(element.clauses)[0], **kw)


@compiles(json_text, "sqlite")
def _json_text_sqlite(element, compiler, **kw):
    p, path = _payload(compiler, element, kw), _path_literal(compiler, element.path, False)
    # `->>` gives strings unquoted; `->` gives everything else as its JSON text (numbers exactly
    # as written, where `->>` would give a float).
    return f"CASE json_type({p}, {path}) WHEN 'text' THEN {p} ->> {path} WHEN 'null' THEN NULL ELSE {p} -> {path} END"


@compiles(json_text, "postgresql")
def _json_text_postgresql(element, compiler, **kw):
    return f"({_payload(compiler, element, kw)} #>> {_path_literal(compiler, element.path, True)})"


@compiles(json_kind, "sqlite")
def _json_kind_sqlite(element, compiler, **kw):
    p, path = _payload(compiler, element, kw), _path_literal(compiler, element.path, False)
    return f"coalesce(json_type({p}, {path}), 'null')"


@compiles(json_kind, "postgresql")
def _json_kind_postgresql(element, compiler, **kw):
    p, path = _payload(compiler, element, kw), _path_literal(compiler, element.path, True)
    value = f"({p} #> {path})"
    return (
        f"CASE jsonb_typeof({value}) WHEN 'string' THEN 'text' "
        f"WHEN 'number' THEN CASE WHEN ({p} #>> {path}) ~ '^-?[0-9]+$' THEN 'integer' ELSE 'real' END "
        f"WHEN 'boolean' THEN ({p} #>> {path}) "
        f"ELSE coalesce(jsonb_typeof({value}), 'null') END"
    )


class strip(FunctionElement):
    """Text without leading and trailing whitespace (`WHITESPACE`), as Python's `str.strip()`."""

    type = Text()
    name = "strip"
    inherit_cache = True


@compiles(strip, "sqlite")
def _strip_sqlite(element, compiler, **kw):
    return f"trim({compiler.process(element.clauses, **kw)}, {_quoted(WHITESPACE)})"


@compiles(strip, "postgresql")
def _strip_postgresql(element, compiler, **kw):
    return f"btrim({compiler.process(element.clauses, **kw)}, {_quoted(WHITESPACE)})"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class matches(FunctionElement):
    """Whether text matches a regular expression (a literal pattern)."""

    type = Boolean()
    name = "matches"
    inherit_cache = True

    _traverse_internals = [*FunctionElement._traverse_internals, ("pattern", InternalTraversal.dp_plain_obj)]

    def __init__(self, value: ColumnElement, pattern: str):
        self.pattern = pattern
        super().__init__(value)


@compiles(matches, "sqlite")
def _matches_sqlite(element, compiler, **kw):
    return f"({compiler.process(element.clauses, **kw)} REGEXP {_quoted(element.pattern)})"


@compiles(matches, "postgresql")
def _matches_postgresql(element, compiler, **kw):
    return f"({compiler.process(element.clauses, **kw)} ~ {_quoted(element.pattern)})"


class epoch_time(FunctionElement):
    """Epoch seconds (a number) as a warehouse timestamp: the text SQLite stores for a
    `UTCDateTime`, a `timestamptz` on PostgreSQL."""

    type = Text()
    name = "epoch_time"
    inherit_cache = True


@compiles(epoch_time, "sqlite")
def _epoch_time_sqlite(element, compiler, **kw):
    return f"(strftime('%Y-%m-%d %H:%M:%S', {compiler.process(element.clauses, **kw)}, 'unixepoch') || '.000000')"


@compiles(epoch_time, "postgresql")
def _epoch_time_postgresql(element, compiler, **kw):
    return f"to_timestamp(CAST({compiler.process(element.clauses, **kw)} AS DOUBLE PRECISION))"


class iso_time(FunctionElement):
    """An ISO 8601 text with a UTC offset as a warehouse timestamp (in UTC)."""

    type = Text()
    name = "iso_time"
    inherit_cache = True


@compiles(iso_time, "sqlite")
def _iso_time_sqlite(element, compiler, **kw):
    # SQLite's own format for a UTCDateTime, microseconds always present. strftime's `%f` keeps
    # milliseconds only, so the fraction is taken from the text (an offset moves whole minutes):
    # the digits after the seconds' '.', up to the offset (`Z`, or `±HH:MM`).
    value = compiler.process(element.clauses, **kw)
    digits = (
        f"CASE WHEN substr({value}, 20, 1) = '.' THEN substr({value}, 21, "
        f"length({value}) - CASE WHEN substr({value}, -1) = 'Z' THEN 21 ELSE 26 END) ELSE '' END"
    )
    return f"(strftime('%Y-%m-%d %H:%M:%S', {value}) || '.' || substr({digits} || '000000', 1, 6))"


@compiles(iso_time, "postgresql")
def _iso_time_postgresql(element, compiler, **kw):
    return f"CAST({compiler.process(element.clauses, **kw)} AS TIMESTAMPTZ)"


class iso_date(FunctionElement):
    """`YYYY-MM-DD` text as a date (SQLite keeps dates as that text)."""

    type = Text()
    name = "iso_date"
    inherit_cache = True


@compiles(iso_date, "sqlite")
def _iso_date_sqlite(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


@compiles(iso_date, "postgresql")
def _iso_date_postgresql(element, compiler, **kw):
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


class is_calendar_date(FunctionElement):
    """Whether `YYYY-MM-DD` text names a day that exists (no 30 February)."""

    type = Boolean()
    name = "is_calendar_date"
    inherit_cache = True


@compiles(is_calendar_date, "sqlite")
def _is_calendar_date_sqlite(element, compiler, **kw):
    value = compiler.process(element.clauses, **kw)
    # julianday rolls 2025-02-30 over into March: a real day comes back as itself.
    return f"(date(julianday({value})) IS {value})"


@compiles(is_calendar_date, "postgresql")
def _is_calendar_date_postgresql(element, compiler, **kw):
    value = compiler.process(element.clauses, **kw)
    first_of_month = f"CAST(substr({value}, 1, 8) || '01' AS DATE)"
    last_day = f"extract(day from date_trunc('month', {first_of_month}) + interval '1 month - 1 day')"
    return (
        f"(CASE WHEN {value} ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$' "
        f"THEN CAST(substr({value}, 9, 2) AS INTEGER) <= {last_day} ELSE false END)"
    )


class money(FunctionElement):
    """A number (JSON text) rounded half up to two decimals: exact `NUMERIC` on PostgreSQL, the
    exact decimal text on SQLite, which has no decimal type."""

    type = Text()
    name = "money"
    inherit_cache = True


@compiles(money, "sqlite")
def _money_sqlite(element, compiler, **kw):
    return f"ip_money({compiler.process(element.clauses, **kw)})"


@compiles(money, "postgresql")
def _money_postgresql(element, compiler, **kw):
    return f"round(CAST({compiler.process(element.clauses, **kw)} AS NUMERIC), 2)"


class row_fingerprint(FunctionElement):
    """A digest of a row's business values (32 hex digits): a changed value changes it."""

    type = String(32)
    name = "row_fingerprint"
    inherit_cache = True


@compiles(row_fingerprint, "sqlite")
def _row_fingerprint_sqlite(element, compiler, **kw):
    return f"ip_fingerprint({compiler.process(element.clauses, **kw)})"


@compiles(row_fingerprint, "postgresql")
def _row_fingerprint_postgresql(element, compiler, **kw):
    return f"md5(CAST(ROW({compiler.process(element.clauses, **kw)}, NULL) AS TEXT))"


# -- SQLite's missing functions, registered on each of its connections ---------------------

_CENT = Decimal("0.01")


def _money(value: Any) -> str | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    return str(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


def _fingerprint(*values: Any) -> str:
    return hashlib.blake2b(repr(values).encode(), digest_size=16).hexdigest()


_patterns: dict[str, re.Pattern] = {}


def _regexp(pattern: str, value: Any) -> bool | None:
    if value is None:
        return None
    compiled = _patterns.get(pattern) or _patterns.setdefault(pattern, re.compile(pattern))
    return compiled.search(str(value)) is not None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def register_sqlite_functions(dbapi_connection) -> None:
    """Give a SQLite connection what the canonical SQL needs and SQLite lacks. `lower` and `upper`
    are replaced by Unicode-aware ones, as PostgreSQL's and Python's are (SQLite's fold ASCII only)."""
    create = dbapi_connection.create_function
    create("ip_money", 1, _money, deterministic=True)
    create("ip_fingerprint", -1, _fingerprint, deterministic=True)
    create("regexp", 2, _regexp, deterministic=True)
    create("lower", 1, _lower, deterministic=True)
    create("upper", 1, _upper, deterministic=True)


# -- small helpers the table modules share -------------------------------------------------


def blank_to_null(value: ColumnElement) -> ColumnElement:
    """Stripped text, NULL when nothing is left."""
    return case((strip(value) == "", None), else_=strip(value))


def kind_in(kind: ColumnElement, *kinds: str) -> ColumnElement:
    return kind.in_(kinds)


def all_of(*conditions: ColumnElement) -> ColumnElement:
    return and_(*conditions) if conditions else literal(True)


def any_of(*conditions: ColumnElement) -> ColumnElement:
    return or_(*conditions)


class round_to(FunctionElement):
    """A number rounded to `places` decimals (PostgreSQL rounds only NUMERIC to a given place)."""

    type = Float()
    name = "round_to"
    inherit_cache = True

    _traverse_internals = [*FunctionElement._traverse_internals, ("places", InternalTraversal.dp_plain_obj)]

    def __init__(self, value: ColumnElement, places: int):
        self.places = places
        super().__init__(value)


@compiles(round_to, "sqlite")
def _round_to_sqlite(element, compiler, **kw):
    return f"round({compiler.process(element.clauses, **kw)}, {int(element.places)})"


@compiles(round_to, "postgresql")
def _round_to_postgresql(element, compiler, **kw):
    value = compiler.process(element.clauses, **kw)
    return f"CAST(round(CAST({value} AS NUMERIC), {int(element.places)}) AS DOUBLE PRECISION)"


class json_integer(_JsonPathFunction):
    """The JSON integer at `path`, as SQL's integer: the one expression an index on it is built
    with, so that queries written with it use the index."""

    type = BigInteger()
    name = "json_integer"
    inherit_cache = True


@compiles(json_integer, "sqlite")
def _json_integer_sqlite(element, compiler, **kw):
    # Cast, so that the expression has INTEGER affinity: compared with an integer column (an
    # `IN` over user ids, say), an expression without affinity would not be looked up by its index.
    p, path = _payload(compiler, element, kw), _path_literal(compiler, element.path, False)
    return f"CAST(json_extract({p}, {path}) AS INTEGER)"


@compiles(json_integer, "postgresql")
def _json_integer_postgresql(element, compiler, **kw):
    p, path = _payload(compiler, element, kw), _path_literal(compiler, element.path, True)
    return f"CAST(({p} #>> {path}) AS BIGINT)"


class json_array_has(FunctionElement):
    """Whether the JSON array `array` holds an object whose `member` is the text `value`: a Moodle
    enrolment's roles hold the student role, say."""

    type = Boolean()
    name = "json_array_has"
    inherit_cache = True
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("array", InternalTraversal.dp_plain_obj),
        ("member", InternalTraversal.dp_plain_obj),
        ("value", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, payload: ColumnElement, array: str, member: str, value: str):
        self.array, self.member, self.value = array, member, value
        super().__init__(payload)


@compiles(json_array_has, "sqlite")
def _json_array_has_sqlite(element, compiler, **kw):
    p = _payload(compiler, element, kw)
    array, member = _path_literal(compiler, (element.array,), False), _path_literal(compiler, (element.member,), False)
    return (
        f"EXISTS (SELECT 1 FROM json_each({p}, {array}) AS item "
        f"WHERE json_extract(item.value, {member}) = {_quoted(element.value)})"
    )


@compiles(json_array_has, "postgresql")
def _json_array_has_postgresql(element, compiler, **kw):
    p = _payload(compiler, element, kw)
    wanted = json.dumps([{element.member: element.value}])
    return f"(({p} -> {_quoted(element.array)}) @> CAST({_quoted(wanted)} AS JSONB))"


class json_array_find(FunctionElement):
    """From the JSON array `array`, the `member` (as text) of the first object whose `key` is the
    text `value`: a Moodle user's custom profile field by its shortname, say."""

    type = Text()
    name = "json_array_find"
    inherit_cache = True
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("array", InternalTraversal.dp_plain_obj),
        ("key", InternalTraversal.dp_plain_obj),
        ("value", InternalTraversal.dp_plain_obj),
        ("member", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, payload: ColumnElement, array: str, key: str, value: str, member: str):
        self.array, self.key, self.value, self.member = array, key, value, member
        super().__init__(payload)


@compiles(json_array_find, "sqlite")
def _json_array_find_sqlite(element, compiler, **kw):
    p = _payload(compiler, element, kw)
    array = _path_literal(compiler, (element.array,), False)
    key, member = _path_literal(compiler, (element.key,), False), _path_literal(compiler, (element.member,), False)
    return (
        f"(SELECT CAST(json_extract(item.value, {member}) AS TEXT) FROM json_each({p}, {array}) AS item "
        f"WHERE json_extract(item.value, {key}) = {_quoted(element.value)} LIMIT 1)"
    )


@compiles(json_array_find, "postgresql")
def _json_array_find_postgresql(element, compiler, **kw):
    p = _payload(compiler, element, kw)
    path = f'$.{element.array}[*] ? (@.{element.key} == "{element.value}").{element.member}'
    return f"(jsonb_path_query_first({p}, CAST({_quoted(path)} AS JSONPATH)) #>> '{{}}')"
