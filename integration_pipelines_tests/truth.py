"""Compare the warehouse's canonical tables with the sandbox generator's ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from integration_pipelines.lib.canonical import key_column
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES

# Columns the truth states but the sources never tell us, so the warehouse cannot hold them:
# Moodle's Web Services expose no user-enrolment ids (only its events carry them).
NOT_OBSERVABLE = {"enrollments": {"moodle_user_enrolment_id"}}


@dataclass(frozen=True)
class Unobservable:
    """Moodle accounts, and the deleted Zoho students they belong to, that no API connects."""

    moodle_user_ids: frozenset[int] = frozenset()
    student_zoho_ids: frozenset[str] = frozenset()

    def covers(self, row: dict[str, Any]) -> bool:
        return row.get("moodle_user_id") in self.moodle_user_ids or row.get("student_zoho_id") in self.student_zoho_ids


def unobservable_users(college, engine: Engine) -> Unobservable:
    """Moodle accounts whose student no source can name.

    A student Zoho deleted before this warehouse ever saw it alive is known only by id (Zoho's
    deleted list and recycle bin carry no field values). Its Moodle account links to it only
    through the configured key; an account without that key looks, to anyone reading the APIs,
    like a Moodle-only student. The truth knows better; no pipeline can.
    """
    table = KEYED_TABLES["students"].table
    with engine.connect() as conn:
        never_seen = set(
            conn.execute(
                select(table.c.zoho_id).where(table.c.deleted_at.is_not(None), table.c.student_number.is_(None))
            ).scalars()
        )
    users = [u for u in college.users.values() if str(u.student_zid) in never_seen and not u.crmid]
    return Unobservable(frozenset(u.id for u in users), frozenset(str(u.student_zid) for u in users))


def truth_key(table: str, row: dict[str, Any]) -> Any:
    """The canonical key a truth row must appear under."""
    if table == "grades" and row["source"] == "moodle":
        return ("moodle", row["moodle_grade_item_id"], row["moodle_user_id"])
    if table == "course_results":
        return f"moodle:{row['moodle_course_id']}:{row['moodle_user_id']}"
    if row.get("zoho_id"):
        return f"zoho:{row['zoho_id']}"
    if table == "students":
        return f"moodle:{row['moodle_user_id']}"
    if table == "enrollments":
        return f"moodle:{row['moodle_course_id']}:{row['moodle_user_id']}"
    raise AssertionError(f"no key for {table} truth row {row}")


def warehouse_key(table: str, row: dict[str, Any]) -> Any:
    if table == "grades" and row["source"] == "moodle":
        return ("moodle", row["moodle_grade_item_id"], row["moodle_user_id"])
    return row[key_column(table)]


def normalise(value: Any) -> Any:
    """One spelling for values that the truth writes as text and the warehouse types."""
    if isinstance(value, datetime):
        return value.isoformat() if value.tzinfo is None else value.timestamp()
    if isinstance(value, str) and len(value) > 18 and value[4] == "-" and value[10] == "T":
        return datetime.fromisoformat(value).timestamp()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def live_rows(engine: Engine, table: str) -> dict[Any, dict[str, Any]]:
    spec = KEYED_TABLES[table].table
    with engine.connect() as conn:
        rows = conn.execute(select(spec).where(spec.c.deleted_at.is_(None))).mappings().all()
    return {warehouse_key(table, dict(r)): dict(r) for r in rows}


def differences(
    engine: Engine, table: str, truth_rows, *, unobservable: Unobservable = Unobservable(), limit: int = 10
) -> list[str]:
    """What the warehouse's live rows of `table` get wrong against the truth's live rows (empty: equal).

    Rows about `unobservable` accounts and students are left out on both sides.
    """

    def observable(row) -> bool:
        return not unobservable.covers(row)

    expected = {truth_key(table, r): r for r in truth_rows if not r["deleted"] and observable(r)}
    actual = {k: r for k, r in live_rows(engine, table).items() if observable(r)}
    problems = []
    missing = sorted(set(expected) - set(actual), key=str)
    extra = sorted(set(actual) - set(expected), key=str)
    if missing:
        problems.append(f"{table}: {len(missing)} missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{table}: {len(extra)} unexpected, e.g. {extra[:3]}")
    skip = {"deleted"} | NOT_OBSERVABLE.get(table, set())
    for key in sorted(set(expected) & set(actual), key=str):
        want, got = expected[key], actual[key]
        for column in want:
            if column in skip:
                continue
            if normalise(want[column]) != normalise(got[column]):
                problems.append(f"{table} {key}: {column} = {got[column]!r}, truth {want[column]!r}")
                if len(problems) >= limit:
                    return problems
    return problems
