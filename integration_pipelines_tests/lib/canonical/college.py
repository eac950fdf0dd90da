"""A small college written straight into the raw layer, as the syncs would land it, for tests of
the canonical SQL on a real warehouse (both backends)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from integration_pipelines.lib.canonical.apply import TableResult, apply_raw_keys, apply_table, canonical_tables
from integration_pipelines.lib.mapping import FieldMapping, load_mapping
from integration_pipelines.lib.warehouse import upsert_rows
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.raw import raw_row
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES
from integration_pipelines.lib.warehouse.upsert import soft_delete_keys

TENANT = "t"
T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
MAPPING = load_mapping()


def zoho_time(at: datetime) -> str:
    return at.isoformat()


def zoho_student(zid: str, number: str | None, email: str | None, *, at: datetime = T0, **fields) -> dict:
    return {
        "id": zid,
        "Student_Number": number,
        "First_Name": fields.pop("first", "Amina"),
        "Last_Name": fields.pop("last", "Khan"),
        "Email": email,
        "Programme": {"name": "BTEC L3 IT", "id": "900"},
        "Status": fields.pop("status", "Active"),
        "Modified_Time": zoho_time(at),
        **fields,
    }


def moodle_user(uid: int, *, email: str, idnumber: str = "", crmid: str | None = None, suspended: bool = False):
    user: dict[str, Any] = {
        "id": uid,
        "firstname": "M",
        "lastname": f"User{uid}",
        "email": email,
        "idnumber": idnumber,
        "suspended": suspended,
    }
    if crmid is not None:
        user["customfields"] = [
            {"type": "text", "value": crmid, "displayvalue": crmid, "name": "CRM ID", "shortname": "crmid"}
        ]
    return user


def enrolment(course: int, user: int, *, role: str = "student", suspended: bool = False) -> dict:
    return {"courseid": course, "userid": user, "suspended": suspended, "roles": [{"shortname": role}]}


@dataclass
class RawCollege:
    """Lands raw records and applies the canonical tables, keeping the keys it landed."""

    engine: Engine
    mapping: FieldMapping = MAPPING
    landed: list[tuple[str, str, str]] = field(default_factory=list)
    clock: datetime = T0

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def land(self, source: str, entity: str, records: Iterable[tuple[str, dict]], at: datetime | None = None):
        rows = [raw_row(TENANT, source, entity, rid, payload, at or self.tick()) for rid, payload in records]
        with begin_write(self.engine) as conn:
            upsert_rows(conn, "raw_records", rows, now=self.tick())
        self.landed += [(source, entity, r["record_id"]) for r in rows]

    def zoho(self, module: str, *records: dict) -> None:
        self.land("zoho", module, [(r["id"], r) for r in records])

    def users(self, *users: dict) -> None:
        self.land("moodle", "users", [(str(u["id"]), u) for u in users])

    def enrolments(self, *enrolments: dict) -> None:
        self.land("moodle", "enrolments", [(f"{e['courseid']}:{e['userid']}", e) for e in enrolments])

    def zoho_deleted(self, module: str, zid: str, at: datetime) -> None:
        """Zoho lists `zid` as deleted (its `/deleted` entry), and the raw record, if any, goes."""
        self.land("zoho", f"{module}.deleted", [(zid, {"id": zid, "deleted_time": zoho_time(at)})])
        self.soft_delete("zoho", module, zid)

    def soft_delete(self, source: str, entity: str, record_id: str) -> None:
        with begin_write(self.engine) as conn:
            scope = {"tenant_id": TENANT, "source": source, "entity": entity}
            soft_delete_keys(conn, "raw_records", scope, [record_id], now=self.tick())
        self.landed.append((source, entity, record_id))

    def apply_all(self, *tables: str) -> dict[str, TableResult]:
        """Apply every raw record to `tables` (all, in order, by default): what full_sync does."""
        names = tables or tuple(canonical_tables())
        with begin_write(self.engine) as conn:
            return {t: apply_table(conn, t, TENANT, self.mapping, full=True, now=self.tick()) for t in names}

    def apply_changes(self, *tables: str) -> dict[str, TableResult]:
        """Apply what was landed since each table's watermark: what incremental_sync does."""
        names = tables or tuple(canonical_tables())
        with begin_write(self.engine) as conn:
            return {t: apply_table(conn, t, TENANT, self.mapping, full=False, now=self.tick()) for t in names}

    def apply_landed(self) -> dict[str, TableResult]:
        """Apply the keys landed since the last call to every table: what an event batch does."""
        with begin_write(self.engine) as conn:
            results = apply_raw_keys(conn, TENANT, self.mapping, self.landed, now=self.tick())
        self.landed = []
        return results

    def rows(self, table: str, *, live: bool = True) -> dict[str, dict]:
        spec = KEYED_TABLES[table]
        t = spec.table
        stmt = select(t).where(t.c.tenant_id == TENANT)
        if live:
            stmt = stmt.where(t.c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            return {row[spec.key_columns[-1]]: dict(row) for row in conn.execute(stmt).mappings()}


def synthetic_college(college: RawCollege, students: int, seed: int) -> None:
    """Land a college of `students` with every kind of identity case in it: students linked by
    the configured key, by idnumber and by email, shared emails, second accounts, Moodle-only
    and Zoho-only students, staff, enrolments, Zoho enrollments, grade items and grades."""
    import random

    rng = random.Random(seed)
    zoho, users, enrolments, enrollments, grades = [], [], [], [], []
    for i in range(students):
        zid, uid = f"z{i}", 1000 + i
        email = f"s{rng.randrange(students * 2)}@x.ac.uk"  # some emails repeat
        zoho.append(zoho_student(zid, f"N{i}", email))
        how = rng.random()
        if how < 0.3:
            users.append(moodle_user(uid, email="m" + email, crmid=zid))
        elif how < 0.55:
            users.append(moodle_user(uid, email="m" + email, idnumber=f"n{i}"))
        elif how < 0.8:
            users.append(moodle_user(uid, email=email.upper()))
        elif how < 0.9:
            users.append(moodle_user(uid, email=f"only{i}@x.ac.uk"))  # Moodle-only
        # else: Zoho-only
        if how < 0.9:
            course = 1 + rng.randrange(max(students // 20, 2))
            enrolments.append(enrolment(course, uid, suspended=rng.random() < 0.1))
            if rng.random() < 0.7:
                enrollments.append(
                    {
                        "id": f"e{i}",
                        "Student": {"id": zid},
                        "Class": {"id": f"c{course}"},
                        "Status": rng.choice(["Active", "Active", "Suspended", "Withdrawn"]),
                        "Modified_Time": T0.isoformat(),
                    }
                )
            grades.append(
                {
                    "itemid": 5000 + course,
                    "iteminstance": 6000 + course,
                    "courseid": course,
                    "userid": uid,
                    "graderaw": float(rng.randrange(0, 21)),
                    "gradedategraded": int(T0.timestamp()),
                }
            )
    courses = sorted({e["courseid"] for e in enrolments})
    college.zoho(
        "Classes",
        *(
            {
                "id": f"c{c}",
                "Name": f"C{c}",
                "Programme": {"id": "p"},
                "Moodle_Course_ID": c,
                "Modified_Time": T0.isoformat(),
            }
            for c in courses
        ),
    )
    college.zoho("Students", *zoho)
    college.users(*users, moodle_user(1, email="admin@x.ac.uk"))
    college.enrolments(*enrolments, *(enrolment(c, 1, role="editingteacher") for c in courses))
    college.zoho("Enrollments", *enrollments)
    items = [
        (
            str(5000 + c),
            {"id": 5000 + c, "iteminstance": 6000 + c, "idnumber": "", "grademax": 20, "scaleid": None, "courseid": c},
        )
        for c in courses
    ]
    college.land("moodle", "grade_items", items)
    college.land("moodle", "grades", [(f"{g['itemid']}:{g['userid']}", g) for g in grades])


def mutate_college(college: RawCollege, students: int, changes: int, seed: int) -> set[int]:
    """Change `changes` students' raw records, the ways the sources change them; returns their indexes."""
    import random

    rng = random.Random(seed)
    later = college.clock + timedelta(days=1)
    chosen = set(rng.sample(range(students), changes))
    for i in sorted(chosen):
        zid, uid = f"z{i}", 1000 + i
        kind = rng.randrange(6)
        if kind == 0:  # a new email, perhaps one another student has
            college.zoho("Students", zoho_student(zid, f"N{i}", f"s{rng.randrange(students * 2)}@x.ac.uk", at=later))
        elif kind == 1:  # a Moodle account (re)keyed to the student
            college.users(moodle_user(uid, email=f"moved{i}@x.ac.uk", crmid=zid))
        elif kind == 2:  # an account that loses its keys
            college.users(moodle_user(uid, email=f"lost{i}@x.ac.uk"))
        elif kind == 3:  # the enrolment goes
            college.soft_delete("moodle", "enrolments", f"{1 + i % max(students // 20, 2)}:{uid}")
            college.enrolments(enrolment(1, uid, suspended=True))
        elif kind == 4:  # Zoho deletes the student
            college.zoho_deleted("Students", zid, later)
        else:  # a second account claims the student
            college.users(moodle_user(90_000 + i, email=f"second{i}@x.ac.uk", crmid=zid))
            college.enrolments(enrolment(1, 90_000 + i))
    return chosen
