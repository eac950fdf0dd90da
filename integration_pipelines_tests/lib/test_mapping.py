"""Field mappings: the default matches the sandbox, and a bad file names its file, line and field.

The transforms are SQL (lib/canonical/transforms.py), so they are tested on a real warehouse, on
both backends: one at a time over a one-row JSON document, and the mapping as a whole by landing
sandbox records as raw records and applying the canonical tables.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, Text, cast, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from integration_pipelines.lib.canonical.apply import apply_table
from integration_pipelines.lib.canonical.transforms import TRANSFORMS as SQL_TRANSFORMS
from integration_pipelines.lib.canonical.transforms import Field
from integration_pipelines.lib.mapping import (
    CANONICAL_COLUMNS,
    DEFAULT_BTEC_THRESHOLDS,
    DEFAULT_POINTS_PER_CREDIT,
    TRANSFORMS,
    FieldMapping,
    MappingError,
    RecordTransformError,
    load_mapping,
)
from integration_pipelines.lib.warehouse import upsert_rows
from integration_pipelines.lib.warehouse.raw import raw_row
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES
from integration_pipelines.lib.warehouse.types import sqlite_timestamp_text, utc_from_stored
from integration_pipelines.lib.warehouse.upsert import encode_json
from integration_pipelines.sandbox import zoho_fields
from integration_pipelines.sandbox.college import College, generate_college

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mappings"
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "integration_pipelines" / "mappings" / "default.yaml"
TENANT = "default"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def mapping() -> FieldMapping:
    return load_mapping()


@pytest.fixture(scope="module")
def college() -> College:
    return generate_college(students=30, seed=3)


def zoho_records(college: College, mapping: FieldMapping, entity: str) -> list[tuple[Any, dict]]:
    """(sandbox record, the record as the Zoho API renders it for the mapping's requested fields)."""
    em = mapping.zoho.entities[entity]
    return [
        (rec, zoho_fields.render(college, em.module, rec, em.source_fields))
        for rec in college.zoho[em.module].records.values()
    ]


# ---- records through the canonical tables ------------------------------------------------------
# The canonical table each entity fills, and the truth table it is compared with (the Zoho BTEC
# grades are rows of `grades`).
CANONICAL_TABLE = {"btec_grades": "grades"}


def _modified_at(record: dict) -> datetime:
    """The raw record's source time, as a Zoho read would give it (T0 where the record has none)."""
    try:
        parsed = datetime.fromisoformat(record["Modified_Time"])
    except (KeyError, TypeError, ValueError):
        return T0
    return parsed if parsed.tzinfo is not None else T0


def apply_records(
    warehouse: Engine,
    mapping: FieldMapping,
    entity: str,
    records: list[dict],
    modified: list[datetime] | None = None,
) -> dict[str, dict]:
    """Land `records` (as Zoho renders them) as raw records of the entity's module, apply its
    canonical table, and return the table's Zoho rows by Zoho id."""
    module, table = mapping.zoho.entities[entity].module, CANONICAL_TABLE.get(entity, entity)
    times = modified or [_modified_at(r) for r in records]
    raw = [raw_row(TENANT, "zoho", module, r["id"], r, t) for r, t in zip(records, times, strict=True)]
    with warehouse.begin() as conn:
        upsert_rows(conn, "raw_records", raw)
    with warehouse.begin() as conn:
        apply_table(conn, table, TENANT, mapping, full=True)
    canonical = KEYED_TABLES[table].table
    with warehouse.connect() as conn:
        rows = conn.execute(
            select(canonical).where(canonical.c.tenant_id == TENANT, canonical.c.zoho_id.is_not(None))
        ).mappings()
        return {row["zoho_id"]: dict(row) for row in rows}


def apply_error(warehouse: Engine, mapping: FieldMapping, entity: str, record: dict) -> RecordTransformError:
    with pytest.raises(RecordTransformError) as caught:
        apply_records(warehouse, mapping, entity, [record])
    return caught.value


# ---- the default mapping ----------------------------------------------------------------------
def test_default_loads_from_package_data_and_names_its_file(mapping: FieldMapping):
    assert set(mapping.zoho.entities) == set(CANONICAL_COLUMNS)
    assert Path(mapping.file).name == "default.yaml"
    assert mapping.identity.moodle_crm_field == "crmid"
    assert mapping.identity.match_on_idnumber is True
    assert mapping.identity.unmatched_warn_share == pytest.approx(0.10)
    assert mapping.moodle.unit_link == "grade_item_idnumber"


def test_loading_by_path_gives_the_same_mapping_as_the_packaged_default(mapping: FieldMapping):
    by_path = load_mapping(DEFAULT_FILE)
    assert by_path.file == str(DEFAULT_FILE)
    for name, entity in mapping.zoho.entities.items():
        assert by_path.zoho.entities[name].columns == entity.columns
        assert by_path.zoho.entities[name].module == entity.module


def test_default_btec_section_equals_the_code_defaults_btec_functions_use(mapping: FieldMapping):
    assert mapping.btec.thresholds == DEFAULT_BTEC_THRESHOLDS
    assert mapping.btec.thresholds.as_tuple() == (40.0, 60.0, 70.0)
    assert mapping.btec.points_per_credit == DEFAULT_POINTS_PER_CREDIT
    assert [mapping.btec.points_per_credit.for_grade(g) for g in ("Refer", "Pass", "Merit", "Distinction")] == [
        0,
        7,
        8,
        9,
    ]


@pytest.mark.parametrize("entity", list(CANONICAL_COLUMNS))
def test_default_requests_only_fields_the_sandbox_module_has(mapping: FieldMapping, entity: str):
    em = mapping.zoho.entities[entity]
    sandbox_fields = zoho_fields.FIELDS[em.module]  # KeyError if the module name is wrong
    assert set(em.source_fields) <= set(sandbox_fields)
    # At most what the mapping names, plus Modified_Time; id comes with every record anyway.
    assert set(em.source_fields) == {c.source for c in em.columns} | {"Modified_Time"}
    assert "id" not in em.source_fields
    assert len(em.source_fields) == len(set(em.source_fields))


# Columns whose truth is not a plain function of the Zoho record: an enrolment's canonical status
# merges Zoho's and Moodle's (a suspension on either side wins), so it is compared separately.
NOT_ZOHO_ONLY = {"enrollments": {"status"}}


def _as_truth(value: object) -> object:
    """Our typed values in the truth's formats: dates YYYY-MM-DD, money '12.50', ISO datetimes."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


@pytest.mark.parametrize("entity", list(CANONICAL_COLUMNS))
def test_default_mapping_applied_matches_the_sandbox_truth(
    warehouse: Engine, mapping: FieldMapping, college: College, entity: str
):
    pairs = zoho_records(college, mapping, entity)
    rows = apply_records(
        warehouse,
        mapping,
        entity,
        [r for _, r in pairs],
        [datetime.fromtimestamp(rec.modified, UTC) for rec, _ in pairs],
    )
    assert len(rows) == len(pairs)
    for rec, _ in pairs:
        row = rows[str(rec.zid)]
        assert {c.name for c in CANONICAL_COLUMNS[entity]} <= set(row)
        assert row["source_modified_at"] == datetime.fromtimestamp(rec.modified, UTC)
    truth = [t for t in college.iter_truth(CANONICAL_TABLE.get(entity, entity)) if t["zoho_id"] is not None]
    assert truth and len(rows) == len(truth)
    compared = (set(truth[0]) & {c.name for c in CANONICAL_COLUMNS[entity]}) - NOT_ZOHO_ONLY.get(entity, set())
    assert len(compared) >= 2, compared  # the test must actually compare something
    for t in truth:
        row = rows[t["zoho_id"]]
        assert {c: _as_truth(row[c]) for c in compared} == {c: t[c] for c in compared}, t["zoho_id"]


def test_enrollment_status_is_the_zoho_status_lower_cased(warehouse: Engine, mapping: FieldMapping, college: College):
    # No Moodle enrolments landed: each enrollment's status is Zoho's alone.
    pairs = zoho_records(college, mapping, "enrollments")
    assert pairs
    rows = apply_records(warehouse, mapping, "enrollments", [r for _, r in pairs])
    assert {zid: row["status"] for zid, row in rows.items()} == {str(rec.zid): rec.status.lower() for rec, _ in pairs}


def test_truth_formats_spot_check(warehouse: Engine, mapping: FieldMapping, college: College):
    # A few columns by hand, so a format slip in _as_truth cannot hide a wrong value.
    rec, rendered = zoho_records(college, mapping, "payments")[0]
    row = apply_records(warehouse, mapping, "payments", [rendered])[str(rec.zid)]
    assert row["amount"] == Decimal(rec.amount_pence) / 100 and row["amount"].as_tuple().exponent == -2
    assert row["kind"] in {"fee", "instalment"} and row["status"] == rec.status.lower()
    assert isinstance(row["due_date"], date) and not isinstance(row["due_date"], datetime)
    rendered = {
        "id": "1",
        "Student_Number": " S1 ",
        "Email": "  Amina.KHAN@Example.ac.uk ",
        "Status": "Active",
        "Programme": {"name": "BTEC L3 IT", "id": "900"},
        "Modified_Time": "2026-01-02T03:04:05+01:00",
    }
    row = apply_records(warehouse, mapping, "students", [rendered])["1"]
    assert (row["student_number"], row["email"], row["status"], row["program_zoho_id"]) == (
        "S1",
        "amina.khan@example.ac.uk",
        "active",
        "900",
    )
    assert row["first_name"] is None  # not in the record: None, not an error
    assert row["source_modified_at"] == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)


# ---- optional columns -------------------------------------------------------------------------
def test_minimal_mapping_leaves_optional_columns_null_and_unrequested(warehouse: Engine):
    minimal = load_mapping(FIXTURES / "minimal_valid.yaml")
    payments = minimal.zoho.entities["payments"]
    assert payments.source_fields == ["Student", "Amount", "Modified_Time"]
    record = {
        "id": "7",
        "Student": {"name": "A", "id": "5"},
        "Amount": 12.5,
        "Modified_Time": "2026-01-01T00:00:00+00:00",
    }
    row = apply_records(warehouse, minimal, "payments", [record])["7"]
    assert row["amount"] == Decimal("12.50") and str(row["amount"]) == "12.50" and row["student_zoho_id"] == "5"
    assert (row["student_key"], row["payment_key"]) == ("zoho:5", "zoho:7")
    assert row["currency"] is None and row["due_date"] is None
    assert minimal.btec.thresholds == DEFAULT_BTEC_THRESHOLDS  # omitted section -> defaults


# ---- transforms, one at a time: SQL over a one-row JSON document -------------------------------
MISSING = object()
"""A field the document does not have."""


def evaluate(warehouse: Engine, transform: str, value: Any) -> tuple[Any, Any]:
    """(value, valid) of a transform over the field F of the JSON document {"F": value}, as the
    database returns them (jsonb on PostgreSQL, JSON text on SQLite, encoded as raw records are)."""
    document = "{}" if value is MISSING else encode_json({"F": value})
    payload = literal(document, Text)
    if warehouse.dialect.name == "postgresql":
        payload = cast(payload, JSONB)
    row = select(payload.label("payload")).subquery()
    converted = SQL_TRANSFORMS[transform](Field(row.c.payload, "F"))
    with warehouse.connect() as conn:
        return tuple(conn.execute(select(converted.value, converted.valid).select_from(row)).one())


SQLITE_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}")


def as_column_value(backend: str, transform: str, value: Any) -> Any:
    """A transform's SQL value as the canonical column it fills reads it back. SQLite keeps dates,
    timestamps and money as text (these expressions are not typed columns): that text must be
    exactly what the column stores."""
    if value is None or backend != "sqlite":
        return value
    if transform == "date":
        assert isinstance(value, str), value
        return date.fromisoformat(value)
    if transform == "datetime":
        assert isinstance(value, str) and SQLITE_TIMESTAMP.fullmatch(value), value
        return utc_from_stored(value)
    if transform == "decimal":
        assert isinstance(value, str), value
        return Decimal(value)
    return value


class AsJSON:
    """Expected text that is JSON for this value (`identity` of an object; spacing differs by backend)."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"AsJSON({self.value!r})"


def test_the_mapping_may_name_exactly_the_sql_transforms():
    assert TRANSFORMS == tuple(SQL_TRANSFORMS)


@pytest.mark.parametrize(
    ("transform", "value", "expected"),
    [
        ("identity", {"a": 1}, AsJSON({"a": 1})),
        ("identity", " S24 ", " S24 "),  # kept as it is
        ("identity", 60, "60"),  # as text
        ("strip", "  S24 ", "S24"),
        ("strip", "   ", None),
        ("strip", 2400001, "2400001"),
        ("strip", "\u00a0S24\u2003", "S24"),  # typographic spaces too
        ("lower", " Active ", "active"),
        ("upper", "it-l3", "IT-L3"),
        ("email", " Amina.Khan@Example.AC.uk\t", "amina.khan@example.ac.uk"),
        ("email", "", None),
        ("lookup_id", {"name": "Evie Davies", "id": "5843104000000400040"}, "5843104000000400040"),
        ("lookup_id", "5843104000000400040", "5843104000000400040"),
        ("int", 60, 60),
        ("int", "7", 7),
        ("int", 3.0, 3),
        ("decimal", 7800.0, Decimal("7800.00")),
        ("decimal", 12.1, Decimal("12.10")),
        ("decimal", "0.005", Decimal("0.01")),
        ("decimal", 9999999999.99, Decimal("9999999999.99")),  # the largest amount the column holds
        ("date", "2025-08-31", date(2025, 8, 31)),
        (
            "datetime",
            "2025-10-28T07:30:36+01:00",
            datetime(2025, 10, 28, 7, 30, 36, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("datetime", "2025-10-28T07:30:36Z", datetime(2025, 10, 28, 7, 30, 36, tzinfo=UTC)),
        (
            "datetime",
            "2025-10-28T07:30:36.123456+01:00",
            datetime(2025, 10, 28, 6, 30, 36, 123456, tzinfo=UTC),
        ),  # microseconds kept (SQLite's strftime keeps milliseconds only)
        ("bool", True, True),
        ("bool", "false", False),
    ],
)
def test_transform_converts(warehouse: Engine, transform: str, value: object, expected: object):
    backend = warehouse.dialect.name
    got, valid = evaluate(warehouse, transform, value)
    assert valid is True
    if isinstance(expected, AsJSON):
        assert isinstance(got, str) and json.loads(got) == expected.value, got
        return
    if transform == "datetime" and backend == "sqlite":
        # Exactly the text a UTCDateTime column stores: the upsert compares timestamps as text.
        assert got == sqlite_timestamp_text(expected), got
    result = as_column_value(backend, transform, got)
    assert result == expected and type(result) is type(expected), got
    if isinstance(expected, datetime):
        assert result.utcoffset() is not None
    if isinstance(expected, Decimal):
        assert str(result) == str(expected)  # exactly two places


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("value", [None, MISSING], ids=["null", "missing"])
def test_every_transform_keeps_none_as_none(warehouse: Engine, transform: str, value: object):
    assert evaluate(warehouse, transform, value) == (None, True)


@pytest.mark.parametrize(
    ("transform", "value"),
    [
        ("strip", ["S1"]),
        ("lookup_id", {"name": "no id"}),
        ("lookup_id", True),
        ("int", "seven"),
        ("int", 2.5),
        ("int", True),
        ("int", 1e20),  # beyond a BIGINT
        ("int", "99999999999999999999"),  # more digits than a BIGINT holds
        ("decimal", "12,50"),
        ("decimal", "NaN"),  # JSON has no NaN: the text Zoho would send instead
        ("decimal", False),
        ("decimal", 10_000_000_000),  # more than NUMERIC(12, 2) holds
        ("date", "2025-8-31"),
        ("date", "20250831"),
        ("date", "2025-02-30"),
        ("date", "0000-01-01"),  # there is no year 0
        ("datetime", "2025-10-28T07:30:36"),  # naive: no offset
        ("datetime", "yesterday"),
        ("datetime", "2025-10-28T07:30:36+24:00"),  # an offset is less than a day
        ("bool", "yes"),
    ],
)
def test_transform_rejects(warehouse: Engine, transform: str, value: object):
    got, valid = evaluate(warehouse, transform, value)
    assert (got, valid) == (None, False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pence=st.integers(min_value=-(10**12) + 1, max_value=10**12 - 1))
def test_decimal_keeps_every_zoho_currency_amount_exact(warehouse: Engine, pence: int):
    # Zoho renders currency as a JSON number with two decimals, i.e. a float; every amount
    # NUMERIC(12, 2) holds comes back exactly, with two places.
    got, valid = evaluate(warehouse, "decimal", pence / 100)
    assert valid is True
    assert str(as_column_value(warehouse.dialect.name, "decimal", got)) == str(Decimal(pence).scaleb(-2))


# ---- a record whose value cannot be converted stops the apply, naming it -----------------------
@pytest.mark.parametrize(
    ("entity", "record", "field", "value"),
    [
        ("payments", {"Student": {"name": "A", "id": "1"}, "Amount": "a lot"}, ("amount", "Amount"), "'a lot'"),
        ("students", {"Student_Number": "S1", "Email": ["a@example.ac.uk"]}, ("email", "Email"), "['a@example.ac.uk']"),
    ],
)
def test_bad_record_value_names_entity_field_and_record_id(
    warehouse: Engine, mapping: FieldMapping, entity: str, record: dict, field: tuple[str, str], value: str
):
    record = {"id": "5843104000000400057", **record, "Modified_Time": "2026-01-01T00:00:00+00:00"}
    err = apply_error(warehouse, mapping, entity, record)
    assert isinstance(err, ValueError) and not isinstance(err, MappingError)
    assert (err.entity, err.record_id) == (entity, "5843104000000400057")
    assert err.field == f"{field[0]} (from {field[1]})"
    assert entity in str(err) and "5843104000000400057" in str(err) and value in str(err)
    with warehouse.connect() as conn:  # nothing was written
        assert conn.execute(select(KEYED_TABLES[entity].table)).first() is None


@pytest.mark.parametrize(
    "entity",
    [
        *CANONICAL_COLUMNS,
    ],
)
@pytest.mark.parametrize(
    ("modified", "reason"),
    [
        # A record without an id cannot land at all: the raw layer is keyed by it.
        ({}, "the record has no Modified_Time"),
        ({"Modified_Time": None}, "Modified_Time is null"),
        ({"Modified_Time": "2026-01-01T00:00:00"}, "'2026-01-01T00:00:00'"),
    ],
    ids=["missing", "null", "naive"],
)
def test_record_without_a_valid_modified_time_is_rejected(
    warehouse: Engine, mapping: FieldMapping, entity: str, modified: dict, reason: str
):
    err = apply_error(warehouse, mapping, entity, {"id": "9", "Student_Number": "S1", **modified})
    assert (err.field, err.entity, err.record_id) == ("Modified_Time", entity, "9")
    assert reason in err.reason, err.reason


# ---- bad files: one test per kind of mistake ---------------------------------------------------
def load_error(path: Path | str) -> MappingError:
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    return caught.value


def assert_points_at(err: MappingError, path: Path, line: int, field: str | None, *fragments: str) -> None:
    """The message names the file, the exact line and the field; the line is the marked one."""
    message = str(err)
    prefix = f"{path}:{line}: " + (f"{field}: " if field else "")
    assert message.startswith(prefix), message
    assert (err.file, err.line, err.field) == (str(path), line, field)
    for fragment in fragments:
        assert fragment in message, message
    assert "<- error" in path.read_text().splitlines()[line - 1]  # the fixture marks that line


def test_yaml_syntax_error():
    path = FIXTURES / "bad_yaml_syntax.yaml"
    # A syntax error stops the parse before any field exists, so there is no field path to name.
    assert_points_at(load_error(path), path, 13, None, "invalid YAML", "mapping values are not allowed here")


def test_duplicate_key():
    path = FIXTURES / "bad_duplicate_key.yaml"
    assert_points_at(
        load_error(path),
        path,
        25,
        "zoho.entities.students.fields.email",
        "duplicate key 'email'",
        "first given on line 24",
    )


def test_unknown_top_level_key():
    path = FIXTURES / "bad_unknown_top_level_key.yaml"
    assert_points_at(load_error(path), path, 3, "identitiy", "unknown section 'identitiy'", "identity, btec, zoho")


def test_unknown_entity():
    path = FIXTURES / "bad_unknown_entity.yaml"
    assert_points_at(
        load_error(path), path, 40, "zoho.entities.invoices", "unknown entity 'invoices'", "programs, units, classes"
    )


def test_unknown_canonical_column():
    path = FIXTURES / "bad_unknown_column.yaml"
    assert_points_at(
        load_error(path),
        path,
        40,
        "zoho.entities.payments.fields.amount_paid",
        "unknown canonical column 'amount_paid'",
        "amount, currency",
    )


def test_unknown_transform():
    path = FIXTURES / "bad_unknown_transform.yaml"
    assert_points_at(
        load_error(path),
        path,
        41,
        "zoho.entities.payments.fields.amount.transform",
        "unknown transform 'decmal'",
        "expected one of: identity, strip",
        "decimal",
    )


def test_missing_module_points_at_the_entity():
    path = FIXTURES / "bad_missing_module.yaml"
    assert_points_at(load_error(path), path, 30, "zoho.entities.registrations.module", "missing required key 'module'")


def test_wrong_type():
    path = FIXTURES / "bad_wrong_type.yaml"
    assert_points_at(load_error(path), path, 5, "identity.match_on_idnumber", "valid boolean", "'yes'")


def test_thresholds_not_increasing():
    path = FIXTURES / "bad_thresholds_not_increasing.yaml"
    assert_points_at(
        load_error(path),
        path,
        6,
        "btec.thresholds.merit",
        "strictly increasing",
        "merit (35.0) must be above pass (40.0)",
    )


def test_missing_file(tmp_path: Path):
    path = tmp_path / "college.yaml"
    err = load_error(path)
    assert str(err) == f"{path}: mapping file not found"
    assert (err.file, err.line, err.field) == (str(path), None, None)


# ---- more mistakes, as one-line edits of the default file --------------------------------------
def edited_default(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """The default file with the one line containing ``old`` replaced; returns its path and that line."""
    lines = DEFAULT_FILE.read_text().splitlines()
    [index] = [i for i, text in enumerate(lines) if old in text]
    lines[index] = lines[index].replace(old, new)
    path = tmp_path / "college.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, index + 1


@pytest.mark.parametrize(
    ("old", "new", "field", "fragment"),
    [
        # a date column filled through identity would hold strings
        (
            "start_date: {source: Start_Date, transform: date}",
            "start_date: Start_Date",
            "zoho.entities.classes.fields.start_date",
            "transform 'identity' cannot fill the date column 'start_date'",
        ),
        (
            "student_number: {source: Student_Number, transform: strip}",
            "student_number: null",
            "zoho.entities.students.fields.student_number",
            "required and cannot be null",
        ),
        ("module: BTEC_Grades", "module: BTEC Grades", "zoho.entities.btec_grades.module", "is not a Zoho API name"),
        ("module: Units", "module: ''", "zoho.entities.units.module", "must not be empty"),
        ("code: Programme_Code", "code: 5", "zoho.entities.programs.fields.code", "expected a Zoho field name"),
        ("thresholds: {pass: 40.0,", "thresholds: {pass: 140.0,", "btec.thresholds.pass", "less than or equal to 100"),
        ("distinction: 70.0}", "distinction: 60.0}", "btec.thresholds.distinction", "strictly increasing"),
        ("{Refer: 0, Pass: 7,", "{Pass: 7,", "btec.points_per_credit.Refer", "missing required grade 'Refer'"),
        ("unmatched_warn_share: 0.10", "unmatched_warn_share: 1.5", "identity.unmatched_warn_share", "1.5"),
        ("unit_link: grade_item_idnumber", "unit_link: course_idnumber", "moodle.unit_link", "'course_idnumber'"),
        ("version: 1", "version: 2", "version", "(got 2)"),
    ],
)
def test_other_mistakes_name_line_and_field(tmp_path: Path, old: str, new: str, field: str, fragment: str):
    path, line = edited_default(tmp_path, old, new)
    err = load_error(path)
    assert (err.line, err.field) == (line, field), str(err)
    assert str(err).startswith(f"{path}:{line}: {field}: ") and fragment in str(err), str(err)


def test_missing_entity_points_at_entities(tmp_path: Path):
    text = DEFAULT_FILE.read_text()
    start = text.index("    btec_grades:")
    path = tmp_path / "college.yaml"
    path.write_text(text[:start] + text[text.index("\nmoodle:", start) + 1 :])
    entities_line = text[: text.index("  entities:")].count("\n") + 1
    err = load_error(path)
    assert (err.line, err.field) == (entities_line, "zoho.entities.btec_grades")
    assert "missing required entity 'btec_grades'" in str(err)


def test_every_problem_is_reported_in_line_order(tmp_path: Path):
    text = DEFAULT_FILE.read_text()
    text = text.replace("transform: decimal}", "transform: decmal}").replace(
        "match_on_idnumber: true", "match_on_idnumber: 1"
    )
    path = tmp_path / "college.yaml"
    path.write_text(text)
    err = load_error(path)
    assert [p.field for p in err.problems] == [
        "identity.match_on_idnumber",
        "zoho.entities.payments.fields.amount.transform",
    ]
    assert err.field == "identity.match_on_idnumber" and len(str(err).splitlines()) == 2


def test_empty_file_and_non_mapping_root(tmp_path: Path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert "the file is empty" in str(load_error(empty))
    listing = tmp_path / "list.yaml"
    listing.write_text("\n- version: 1\n")
    err = load_error(listing)
    assert err.line == 2 and "valid dictionary" in str(err)


def test_two_entities_mapped_to_one_module_name_the_file_the_line_and_both_entities(tmp_path: Path):
    # units read the Programs module too: the second entity's `module` line is the one named.
    lines = DEFAULT_FILE.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip() == "module: Units")
    lines[line - 1] = lines[line - 1].replace("Units", "Programs") + "  # <- error"
    path = tmp_path / "college.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert_points_at(
        load_error(path),
        path,
        line,
        "zoho.entities.units.module",
        "entities 'programs' and 'units' are both mapped to the Zoho module 'Programs'",
    )
