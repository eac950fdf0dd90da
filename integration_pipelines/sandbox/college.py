"""Seeded generator of one consistent college, seen from both Zoho CRM and Moodle.

`generate_college(students, seed, **knobs)` is pure Python and deterministic for a given
seed, size and knobs. The college holds both systems' records (Zoho records and Moodle rows)
plus the links between them, so it can answer both APIs and state its own ground truth
(`College.truth()` / `College.iter_truth(table)`): what a correct warehouse should hold.

Memory: every record is a slots dataclass with int ids and int epoch times; Zoho ids are
stored as ints and rendered as 19-digit strings; grades are the bulk (about 10 per student).

Identity rules the truth follows (the "deliberate mess" a pipeline has to survive):
- A share of students exists only in Zoho (no Moodle account) or only in Moodle.
- Matched Moodle users carry the Zoho id in the custom profile field ``crmid`` unless
  ``missing_crmid_share`` says otherwise; then they match by idnumber (= student number),
  or for ``email_only_share`` of them by normalised email alone.
- Emails differ in case (Moodle) or carry stray whitespace (Zoho) for ``email_mess_share``.
- Some Moodle users are suspended; some Moodle accounts are deleted (invisible to the
  API and absent from the truth); some Zoho students are deleted (truth ``deleted=True``).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

DAY = 86_400
# College time starts on 2025-08-01T00:00:00Z; "now" starts 200 days later. Pure constants keep
# generation deterministic (the wall clock is never read by the generator).
EPOCH_START = 1_754_006_400
EPOCH_NOW = EPOCH_START + 200 * DAY
ZOHO_ID_BASE = 5_843_104_000_000_400_000
ZOHO_ORG_ID = "20100000001"

BTEC_SCALE = ("Refer", "Pass", "Merit", "Distinction")  # Moodle scale values 1..4
BTEC_SCALE_ID = 1  # Moodle scale id of "Refer,Pass,Merit,Distinction"
# Default numeric -> BTEC cut-offs (a convention, API_NOTES D): Refer <40, Pass <60, Merit <70.
BTEC_THRESHOLDS = (40.0, 60.0, 70.0)

TABLES = ("students", "programs", "classes", "enrollments", "units", "registrations", "payments", "grades")

FIRST_NAMES = (
    "Amina Oliver Noah Isla Leo Freya Arthur Ava Muhammad Lily George Ivy Oscar Sophia Harry Grace "
    "Jack Mia Theo Rosie Alfie Ella Charlie Evie Henry Florence Archie Willow Finley Emily Thomas "
    "Chloe Jacob Maya Isaac Zara Lucas Aisha Mason Hannah Ethan Priya Samuel Chen Ruby Daniel Sofia "
    "Joseph Layla Adam Nadia Ryan Elena Kai Imani Yusuf Anya Dylan Maryam Rohan Erin"
).split()
LAST_NAMES = (
    "Khan Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Robinson Wright Thompson "
    "Evans Walker White Roberts Green Hall Wood Jackson Clarke Hughes Edwards Lewis Turner Hill "
    "Moore Ali Ahmed Singh Murphy O'Brien Kowalski Nowak Okafor Mensah Nguyen Chen Garcia Rossi "
    "Muller Silva Kaur Begum Hussain Shah Cooper Ward Morris King Baker Harris Scott Young Allen"
).split()
SUBJECTS = (
    ("IT", "Information Technology"),
    ("BUS", "Business"),
    ("ENG", "Engineering"),
    ("HSC", "Health and Social Care"),
    ("SPT", "Sport"),
    ("ART", "Art and Design"),
    ("MED", "Creative Media"),
    ("APS", "Applied Science"),
    ("CMP", "Computing"),
    ("TTM", "Travel and Tourism"),
    ("PSS", "Public Services"),
    ("MUS", "Music"),
)
LEVELS = (
    ("L2", "BTEC Level 2 Diploma", 60),
    ("L3", "BTEC Level 3 Extended Diploma", 180),
    ("HNC", "BTEC Higher National Certificate", 120),
    ("HND", "BTEC Higher National Diploma", 240),
)
UNIT_TOPICS = (
    "Principles",
    "Professional Practice",
    "Research Project",
    "Digital Skills",
    "Communication",
    "Health and Safety",
    "Data Analysis",
    "Team Project",
    "Industry Placement",
    "Innovation",
    "Planning and Management",
    "Systems",
    "Law and Ethics",
    "Customer Service",
    "Design",
    "Finance",
)
CITIES = ("London", "Leeds", "Manchester", "Bristol", "Birmingham", "Sheffield", "Leicester", "Nottingham")
PAYMENT_METHODS = ("Card", "Bank Transfer", "Direct Debit", "Student Loan")
PAYMENT_STATUSES = ("Paid", "Pending", "Overdue", "Refunded")
FEES_PENCE = (520_000, 650_000, 780_000, 925_000)


# ----------------------------------------------------------------------------------------
# Time helpers
# ----------------------------------------------------------------------------------------
def zoho_datetime(epoch: int) -> str:
    """Zoho's datetime format: ISO 8601 with a UTC offset, seconds precision."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def zoho_date(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


def parse_zoho_datetime(text: str) -> int:
    """Parse an ISO 8601 datetime (with offset; naive means UTC) or an HTTP date into epoch seconds."""
    text = text.strip()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from email.utils import parsedate_to_datetime

        dt = parsedate_to_datetime(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def date_to_epoch(text: str) -> int:
    d = date.fromisoformat(text)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def btec_from_percentage(pct: float, thresholds: tuple[float, float, float] = BTEC_THRESHOLDS) -> str:
    """Convert a percentage to a BTEC unit grade with the (configurable) cut-offs."""
    if pct < thresholds[0]:
        return "Refer"
    if pct < thresholds[1]:
        return "Pass"
    if pct < thresholds[2]:
        return "Merit"
    return "Distinction"


# ----------------------------------------------------------------------------------------
# Zoho records. Every one carries zid/created/modified/deleted/owner; deleted is the epoch of
# deletion (None while live) and deleted_type is "recycle" or "permanent".
# ----------------------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class Program:
    zid: int
    created: int
    modified: int
    owner: int
    code: str
    name: str
    level: str
    credits: int
    fee_pence: int
    deleted: int | None = None
    deleted_type: str = "recycle"


@dataclass(slots=True, eq=False)
class Unit:
    zid: int
    created: int
    modified: int
    owner: int
    program: int  # Program zid
    code: str
    name: str
    credits: int
    deleted: int | None = None
    deleted_type: str = "recycle"


@dataclass(slots=True, eq=False)
class ZClass:
    """A Zoho class (a taught group of one program). Linked 1:1 to a Moodle course."""

    zid: int
    created: int
    modified: int
    owner: int
    program: int
    name: str
    course_id: int
    start: int
    end: int
    units: tuple[int, ...]  # unit zids taught in this class
    deleted: int | None = None
    deleted_type: str = "recycle"


@dataclass(slots=True, eq=False)
class Student:
    """A Zoho student. ``zid`` is 0 for a Moodle-only student (no Zoho record)."""

    zid: int
    created: int
    modified: int
    owner: int
    student_number: str
    first_name: str
    last_name: str
    email_raw: str  # as stored in Zoho (may carry stray whitespace)
    program: int
    status: str  # Active | Suspended | Withdrawn | Completed
    phone: str
    enrolment_date: int
    moodle_user_id: int | None  # the matching Moodle account (truth link); None if Zoho-only
    deleted: int | None = None
    deleted_type: str = "recycle"
    # The profile the dashboard shows (derived from the student's number, so no random draw changes).
    birth_date: int | None = None  # epoch of midnight UTC
    street: str = ""
    city: str = ""
    country: str = ""


@dataclass(slots=True, eq=False)
class Enrollment:
    """One student x class enrolment, holding both sides.

    Zoho side: ``zid`` (0 when the enrolment exists only in Moodle) and ``status``.
    Moodle side: ``ue_id`` (0 when it exists only in Zoho), ``m_status`` (0 active, 1 suspended).
    """

    zid: int
    created: int
    modified: int
    owner: int
    student: int  # Student zid (0 for Moodle-only students)
    zclass: int  # ZClass zid
    status: str  # Active | Suspended | Withdrawn
    ue_id: int
    user_id: int  # Moodle user id (0 when Zoho-only)
    course_id: int
    m_status: int
    m_created: int
    m_modified: int
    deleted: int | None = None
    deleted_type: str = "recycle"
    m_deleted: bool = False


@dataclass(slots=True, eq=False)
class Registration:
    zid: int
    created: int
    modified: int
    owner: int
    student: int
    unit: int
    status: str  # Registered | Completed | Withdrawn
    deleted: int | None = None
    deleted_type: str = "recycle"


@dataclass(slots=True, eq=False)
class Payment:
    zid: int
    created: int
    modified: int
    owner: int
    student: int
    kind: str  # Fee | Instalment
    amount_pence: int
    currency: str
    method: str
    status: str
    due: int
    paid_on: int | None
    deleted: int | None = None
    deleted_type: str = "recycle"


@dataclass(slots=True, eq=False)
class BtecGrade:
    zid: int
    created: int
    modified: int
    owner: int
    student: int
    unit: int
    grade: str  # Refer | Pass | Merit | Distinction
    graded: int
    key: str  # Grade_Key: "<student number>-<unit code>", unique per student x unit
    deleted: int | None = None
    deleted_type: str = "recycle"


# ----------------------------------------------------------------------------------------
# Moodle rows
# ----------------------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class MUser:
    id: int
    username: str
    firstname: str
    lastname: str
    email: str
    idnumber: str
    crmid: str  # custom profile field "crmid" ("" = empty; Moodle then omits it)
    is_teacher: bool
    city: str
    timecreated: int
    firstaccess: int
    lastaccess: int
    student_zid: int  # truth link to the Zoho student (0 if none)
    suspended: bool = False
    deleted: bool = False


@dataclass(slots=True, eq=False)
class Course:
    id: int
    shortname: str
    fullname: str
    idnumber: str
    categoryid: int
    startdate: int
    enddate: int
    timecreated: int
    timemodified: int
    class_zid: int
    teacher_id: int
    assignments: list = field(default_factory=list)  # Assignment objects
    enrolments: list = field(default_factory=list)  # Enrollment objects with a Moodle side
    total_item_id: int = 0  # grade item id of the course total
    context_id: int = 0
    # The syllabus page (mod_page) in the General section: its page id and course-module id.
    syllabus_page_id: int = 0
    syllabus_cmid: int = 0


@dataclass(slots=True, eq=False)
class Assignment:
    id: int
    cmid: int
    course_id: int
    name: str
    idnumber: str  # grade item idnumber = unit code ("" when not linked to a unit)
    unit_zid: int  # 0 when not linked
    grademax: int  # 100 or 20 for numeric items; 4 for the BTEC scale
    scale: bool
    item_id: int
    allowfrom: int
    duedate: int
    timemodified: int
    grades: dict = field(default_factory=dict)  # user id -> Grade


@dataclass(slots=True, eq=False)
class Grade:
    """An assignment grade (assign_grades row, mirrored in grade_grades)."""

    id: int
    assign_id: int
    user_id: int
    raw: float
    timecreated: int
    timemodified: int
    grader: int
    submitted: int


# ----------------------------------------------------------------------------------------
# Zoho module store with the indexes that make a page cost O(page)
# ----------------------------------------------------------------------------------------
def _key_id(r: Any) -> int:
    return r.zid


def _key_modified(r: Any) -> tuple[int, int]:
    return (r.modified, r.zid)


def _key_created(r: Any) -> tuple[int, int]:
    return (r.created, r.zid)


SORT_KEYS = {"id": _key_id, "Modified_Time": _key_modified, "Created_Time": _key_created}


class ZohoModule:
    """Records of one Zoho module: all by id, plus sorted lists of the live ones.

    The sorted lists are rebuilt lazily after bulk changes (``mark_dirty``) and updated in
    place (bisect) for single-record changes such as upserts.
    """

    def __init__(self, api_name: str):
        self.api_name = api_name
        self.records: dict[int, Any] = {}
        self._index: dict[str, list] = {}
        self._dirty = True

    def __len__(self) -> int:
        return len(self.records)

    def add(self, rec: Any) -> None:
        self.records[rec.zid] = rec
        if not self._dirty and rec.deleted is None:
            for name, lst in self._index.items():
                key = SORT_KEYS[name]
                bisect.insort(lst, rec, key=key)

    def mark_dirty(self) -> None:
        self._dirty = True
        self._index.clear()

    def _remove_from_index(self, rec: Any) -> None:
        for name, lst in self._index.items():
            key = SORT_KEYS[name]
            k = key(rec)
            i = bisect.bisect_left(lst, k, key=key)
            if i < len(lst) and lst[i] is rec:
                del lst[i]

    def touch(self, rec: Any, modified: int) -> None:
        """Change a record's Modified_Time keeping the indexes sorted."""
        if self._dirty or rec.deleted is not None:
            rec.modified = modified
            return
        self._remove_from_index(rec)
        rec.modified = modified
        for name, lst in self._index.items():
            bisect.insort(lst, rec, key=SORT_KEYS[name])

    def delete(self, rec: Any, when: int) -> None:
        if not self._dirty and rec.deleted is None:
            self._remove_from_index(rec)
        rec.deleted = when

    def index(self, sort_by: str) -> list:
        """Live records sorted ascending by ``sort_by`` (ties by id)."""
        if self._dirty:
            self._index.clear()
            self._dirty = False
        lst = self._index.get(sort_by)
        if lst is None:
            live = [r for r in self.records.values() if r.deleted is None]
            live.sort(key=SORT_KEYS[sort_by])
            self._index[sort_by] = lst = live
        return lst

    def deleted_records(self) -> list:
        """Deleted records sorted by deletion time (then id)."""
        out = [r for r in self.records.values() if r.deleted is not None]
        out.sort(key=lambda r: (r.deleted, r.zid))
        return out

    def live_count(self) -> int:
        return len(self.index("id"))


ZOHO_MODULES = ("Programs", "Units", "Classes", "Students", "Enrollments", "Registrations", "Payments", "BTEC_Grades")

# The CRM users who own records (Owner lookups). Index 0 is the API user (CurrentUser).
CRM_USERS = (
    (ZOHO_ID_BASE - 1000 + 5, "Sandbox Integration", "integration@college.example.ac.uk"),
    (ZOHO_ID_BASE - 1000 + 6, "Admissions Office", "admissions@college.example.ac.uk"),
    (ZOHO_ID_BASE - 1000 + 7, "Finance Office", "finance@college.example.ac.uk"),
    (ZOHO_ID_BASE - 1000 + 8, "Academic Registry", "registry@college.example.ac.uk"),
)


# ----------------------------------------------------------------------------------------
# The college
# ----------------------------------------------------------------------------------------
@dataclass
class College:
    """One generated college: Zoho modules, Moodle tables, the links, and a clock."""

    seed: int
    size: int
    knobs: dict
    now: int = EPOCH_NOW
    zoho: dict[str, ZohoModule] = field(default_factory=dict)
    users: dict[int, MUser] = field(default_factory=dict)
    courses: dict[int, Course] = field(default_factory=dict)
    assignments: dict[int, Assignment] = field(default_factory=dict)
    categories: list = field(default_factory=list)  # (id, name, idnumber, timemodified)
    completions: dict = field(default_factory=dict)  # (course id, user id) -> timecompleted
    user_enrolments: dict = field(default_factory=dict)  # user id -> [Enrollment]
    students_by_zid: dict = field(default_factory=dict)
    moodle_only_students: list = field(default_factory=list)  # Student objects with zid 0
    admin_id: int = 2
    moodle_version: int = 0  # bumped when Moodle users change (lets services cache indexes)
    zoho_version: int = 0  # bumped by bulk Zoho changes (mutate) that invalidate lookup indexes
    _zid_counter: int = ZOHO_ID_BASE
    _clock_anchor: float | None = None  # monotonic time when ``now`` was last set (None = frozen)
    _moodle_seq: dict = field(default_factory=dict)

    # ---- clock ---------------------------------------------------------------------------
    # The sandbox clock starts at the generator's fixed "now". Once a server runs it, the
    # clock follows the wall clock from there (``start_clock``), and ``advance`` jumps it
    # forward (mutate). Record times, token lifetimes and throttles all read this clock.
    def start_clock(self) -> None:
        import time

        if self._clock_anchor is None:
            self._clock_anchor = time.monotonic()

    def time(self) -> float:
        import time

        if self._clock_anchor is None:
            return float(self.now)
        return self.now + (time.monotonic() - self._clock_anchor)

    def clock(self) -> int:
        return int(self.time())

    def advance(self, seconds: float) -> int:
        import time

        t = self.time() + seconds
        self.now = int(t)
        if self._clock_anchor is not None:
            self._clock_anchor = time.monotonic() - (t - self.now)
        return self.now

    # ---- id allocation -------------------------------------------------------------------
    def new_zid(self) -> int:
        self._zid_counter += 1
        return self._zid_counter

    def new_moodle_id(self, table: str) -> int:
        nxt = self._moodle_seq.get(table, 1)
        self._moodle_seq[table] = nxt + 1
        return nxt

    # ---- convenience lookups -------------------------------------------------------------
    def zget(self, module: str, zid: int) -> Any:
        return self.zoho[module].records.get(zid)

    def live_users(self) -> Iterator[MUser]:
        return (u for u in self.users.values() if not u.deleted)

    def unit_by_code(self, course: Course) -> dict[str, int]:
        return {a.idnumber: a.unit_zid for a in course.assignments if a.unit_zid}

    # ---- truth ---------------------------------------------------------------------------
    def _identity(self, student_zid: int, user_id: int | None) -> dict:
        return {"student_zoho_id": str(student_zid) if student_zid else None, "moodle_user_id": user_id}

    def iter_truth(self, table: str) -> Iterator[dict]:
        """Rows of one canonical table, generated lazily (the grades table can be ~1M rows).

        The generator walks snapshots of the record collections, so it may be advanced in
        chunks (each under the sandbox lock) while mutations happen in between.
        """
        if table not in TABLES:
            raise KeyError(table)
        return getattr(self, f"_truth_{table}")()

    def truth(self) -> dict[str, list[dict]]:
        """Every canonical table as a list of dicts (materialised; fine for small colleges)."""
        return {t: list(self.iter_truth(t)) for t in TABLES}

    def _truth_students(self) -> Iterator[dict]:
        for s in list(self.zoho["Students"].records.values()):
            yield self._student_row(s)
        for s in list(self.moodle_only_students):
            yield self._student_row(s)

    def _student_row(self, s: Student) -> dict:
        user = self.users.get(s.moodle_user_id) if s.moodle_user_id else None
        if s.zid:
            status = s.status.lower()
            deleted = s.deleted is not None
            first, last, email = s.first_name, s.last_name, s.email_raw
        else:  # Moodle-only: Moodle is the only source
            status = "suspended" if user.suspended else "active"
            deleted = user.deleted
            first, last, email = user.firstname, user.lastname, user.email
        return {
            "zoho_id": str(s.zid) if s.zid else None,
            "moodle_user_id": s.moodle_user_id,
            "student_number": s.student_number,
            "first_name": first,
            "last_name": last,
            "email": email.strip().lower(),
            "program_zoho_id": str(s.program) if s.zid else None,
            "status": status,
            **self._student_profile_fields(s, user),
            "deleted": deleted,
        }

    @staticmethod
    def _student_profile_fields(s: Student, user: MUser | None) -> dict:
        """Phone, birth date and address: Zoho's for a student admissions knows, else the Moodle account's."""
        if s.zid:
            return {
                "phone": s.phone or None,
                "date_of_birth": zoho_date(s.birth_date),
                "address": s.street or None,
                "city": s.city or None,
                "country": s.country or None,
            }
        city = user.city if user else ""
        return {
            "phone": None,
            "date_of_birth": None,
            "address": None,
            "city": city or None,
            "country": "GB" if city else None,
        }

    def _truth_programs(self) -> Iterator[dict]:
        for p in list(self.zoho["Programs"].records.values()):
            yield {
                "zoho_id": str(p.zid),
                "code": p.code,
                "name": p.name,
                "level": p.level,
                "credits": p.credits,
                "deleted": p.deleted is not None,
            }

    def _truth_units(self) -> Iterator[dict]:
        for u in list(self.zoho["Units"].records.values()):
            yield {
                "zoho_id": str(u.zid),
                "program_zoho_id": str(u.program),
                "code": u.code,
                "name": u.name,
                "credits": u.credits,
                "deleted": u.deleted is not None,
            }

    def _truth_classes(self) -> Iterator[dict]:
        for c in list(self.zoho["Classes"].records.values()):
            yield {
                "zoho_id": str(c.zid),
                "program_zoho_id": str(c.program),
                "name": c.name,
                "moodle_course_id": c.course_id,
                "start_date": zoho_date(c.start),
                "end_date": zoho_date(c.end),
                "deleted": c.deleted is not None,
            }

    @staticmethod
    def enrollment_status(e: Enrollment) -> str:
        """Canonical status: Zoho 'Withdrawn' wins, then a suspension on either side, else active."""
        if e.zid and e.status == "Withdrawn":
            return "withdrawn"
        if (e.zid and e.status == "Suspended") or (e.ue_id and e.m_status == 1):
            return "suspended"
        return "active"

    def all_enrollments(self) -> Iterator[Enrollment]:
        yield from list(self.zoho["Enrollments"].records.values())
        for c in list(self.courses.values()):
            for e in list(c.enrolments):
                if not e.zid:
                    yield e

    def _truth_enrollments(self) -> Iterator[dict]:
        for e in self.all_enrollments():
            yield {
                "zoho_id": str(e.zid) if e.zid else None,
                **self._identity(e.student, e.user_id or None),
                "class_zoho_id": str(e.zclass),
                "moodle_course_id": e.course_id,
                "moodle_user_enrolment_id": e.ue_id or None,
                "status": self.enrollment_status(e),
                "deleted": (e.deleted is not None) if e.zid else e.m_deleted,
            }

    def _truth_registrations(self) -> Iterator[dict]:
        for r in list(self.zoho["Registrations"].records.values()):
            yield {
                "zoho_id": str(r.zid),
                "student_zoho_id": str(r.student),
                "unit_zoho_id": str(r.unit),
                "status": r.status.lower(),
                "deleted": r.deleted is not None,
            }

    def _truth_payments(self) -> Iterator[dict]:
        for p in list(self.zoho["Payments"].records.values()):
            yield {
                "zoho_id": str(p.zid),
                "student_zoho_id": str(p.student),
                "kind": p.kind.lower(),
                "amount": f"{p.amount_pence // 100}.{p.amount_pence % 100:02d}",
                "currency": p.currency,
                "method": p.method,
                "status": p.status.lower(),
                "due_date": zoho_date(p.due),
                "paid_on": zoho_date(p.paid_on),
                "deleted": p.deleted is not None,
            }

    def _truth_grades(self) -> Iterator[dict]:
        for a in list(self.assignments.values()):
            for g in list(a.grades.values()):
                user = self.users[g.user_id]
                if user.is_teacher:
                    continue
                yield {
                    "source": "moodle",
                    **self._identity(user.student_zid, user.id),
                    "zoho_id": None,
                    "unit_zoho_id": str(a.unit_zid) if a.unit_zid else None,
                    "moodle_course_id": a.course_id,
                    "moodle_grade_item_id": a.item_id,
                    "raw_grade": g.raw,
                    "grade_max": a.grademax,
                    "btec_grade": BTEC_SCALE[int(g.raw) - 1] if a.scale else None,
                    "graded_at": zoho_datetime(g.timemodified),
                    "deleted": False,
                }
        for b in list(self.zoho["BTEC_Grades"].records.values()):
            s = self.students_by_zid.get(b.student)
            yield {
                "source": "zoho",
                **self._identity(b.student, s.moodle_user_id if s else None),
                "zoho_id": str(b.zid),
                "unit_zoho_id": str(b.unit),
                "moodle_course_id": None,
                "moodle_grade_item_id": None,
                "raw_grade": None,
                "grade_max": None,
                "btec_grade": b.grade,
                "graded_at": zoho_datetime(b.graded),
                "deleted": b.deleted is not None,
            }

    def summary(self) -> dict:
        """Counts per Zoho module and Moodle table (cheap; for logs and the CLI)."""
        return {
            "now": zoho_datetime(self.now),
            "zoho": {m: mod.live_count() for m, mod in self.zoho.items()},
            "moodle": {
                "users": sum(1 for u in self.users.values() if not u.deleted),
                "courses": len(self.courses),
                "assignments": len(self.assignments),
                "grades": sum(len(a.grades) for a in self.assignments.values()),
                "enrolments": sum(len(c.enrolments) for c in self.courses.values()),
            },
        }


# ----------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------
DEFAULT_KNOBS: dict[str, Any] = {
    "programs": None,  # default: about one program per 1,500 students, 3..80
    "units_per_program": 8,
    "classes_per_student": 4,  # the program's units are split into this many blocks (classes)
    "class_size": 25,
    "unmatched_share": 0.05,  # half Zoho-only, half Moodle-only
    "missing_crmid_share": 0.10,  # matched users without the crmid profile field
    "email_only_share": 0.03,  # ...of which neither crmid nor idnumber: match by email only
    "email_mess_share": 0.10,  # email differs in case (Moodle) or whitespace (Zoho)
    "suspended_user_share": 0.03,
    "deleted_user_share": 0.01,  # extra deleted Moodle accounts (invisible to the API)
    "zoho_deleted_student_share": 0.01,
    "enrolment_suspended_share": 0.03,  # suspended in Moodle only
    "graded_share": 0.85,
    "zoho_btec_share": 0.5,  # share of unit-linked Moodle grades already recorded in Zoho
    "completed_share": 0.4,
    "teachers_per_class": 0.34,
}


STREETS = ("High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane", "Park Avenue", "Queen Street")


def student_profile_fields(student: Student, n: int) -> None:
    """A student's birth date and address, from its number alone (no random draw, so adding them
    changed no other generated value)."""
    student.birth_date = int(datetime(1990 + n % 16, 1 + n % 12, 1 + n % 28, tzinfo=UTC).timestamp())
    student.street = f"{1 + n % 199} {STREETS[n % len(STREETS)]}"
    student.city = CITIES[(n // 7) % len(CITIES)]
    student.country = "GB"


def generate_college(students: int, seed: int, **knobs: Any) -> College:
    """Generate a college of ``students`` students, deterministic for (students, seed, knobs)."""
    unknown = set(knobs) - set(DEFAULT_KNOBS)
    if unknown:
        raise TypeError(f"unknown college knobs: {sorted(unknown)}")
    k = {**DEFAULT_KNOBS, **knobs}
    rng = random.Random(seed)
    col = College(seed=seed, size=students, knobs=k)
    for m in ZOHO_MODULES:
        col.zoho[m] = ZohoModule(m)
    rand = rng.random
    randint = rng.randint
    now = col.now

    def times(lo: int = EPOCH_START, hi: int = EPOCH_START + 150 * DAY) -> tuple[int, int]:
        created = randint(lo, hi)
        return created, randint(created, now - 3600)

    # --- programs and units ---------------------------------------------------------------
    n_programs = k["programs"] or max(3, min(80, round(students / 1500)))
    units_pp = k["units_per_program"]
    blocks = max(1, min(k["classes_per_student"], units_pp))
    programs: list[Program] = []
    program_units: dict[int, list[Unit]] = {}
    for i in range(n_programs):
        abbr, subject = SUBJECTS[i % len(SUBJECTS)]
        lvl_code, lvl_name, credits = LEVELS[(i // len(SUBJECTS) + i) % len(LEVELS)]
        c, m = times(EPOCH_START - 300 * DAY, EPOCH_START - 100 * DAY)
        p = Program(
            col.new_zid(),
            c,
            m,
            3,
            f"{abbr}-{lvl_code}-{i + 1:02d}",
            f"{lvl_name} in {subject}",
            lvl_code,
            credits,
            FEES_PENCE[i % len(FEES_PENCE)],
        )
        col.zoho["Programs"].add(p)
        programs.append(p)
        units = []
        for j in range(units_pp):
            c, m = times(EPOCH_START - 300 * DAY, EPOCH_START - 60 * DAY)
            u = Unit(
                col.new_zid(),
                c,
                m,
                3,
                p.zid,
                f"{abbr}{lvl_code}{i + 1:02d}U{j + 1:02d}",
                f"{subject}: {UNIT_TOPICS[(i + j) % len(UNIT_TOPICS)]}",
                max(5, credits // units_pp),
            )
            col.zoho["Units"].add(u)
            units.append(u)
        program_units[p.zid] = units

    # --- categories: one per program level, plus Moodle's default ----------------------------
    col.categories.append((1, "Category 1", None, EPOCH_START - 400 * DAY))
    level_cat = {}
    for n, (lvl_code, lvl_name, _) in enumerate(LEVELS):
        level_cat[lvl_code] = n + 2
        col.categories.append((n + 2, lvl_name, f"CAT-{lvl_code}", EPOCH_START - 400 * DAY))

    # --- student shells: decide program, kind and cohort before creating records ---------
    per_program: dict[int, list[int]] = {p.zid: [] for p in programs}
    student_program = []
    for i in range(students):
        p = programs[randint(0, n_programs - 1)]
        per_program[p.zid].append(i)
        student_program.append(p)

    # --- classes and courses ------------------------------------------------------------------
    col.new_moodle_id("course")  # id 1 is the site course (front page)
    class_of: dict[tuple[int, int, int], ZClass] = {}
    units_per_block = max(1, units_pp // blocks)
    n_classes_total = 0
    for p in programs:
        sections = max(1, math.ceil(len(per_program[p.zid]) / k["class_size"]))
        for b in range(blocks):
            block_units = (
                program_units[p.zid][b * units_per_block : (b + 1) * units_per_block] or program_units[p.zid][-1:]
            )
            for s in range(sections):
                start = EPOCH_START + 30 * DAY + b * 7 * DAY
                c, m = times(EPOCH_START - 60 * DAY, EPOCH_START)
                course_id = col.new_moodle_id("course")
                zc = ZClass(
                    col.new_zid(),
                    c,
                    m,
                    3,
                    p.zid,
                    f"{p.code} B{b + 1} {chr(65 + s % 26)}{s // 26 or ''}",
                    course_id,
                    start,
                    start + 270 * DAY,
                    tuple(u.zid for u in block_units),
                )
                col.zoho["Classes"].add(zc)
                class_of[(p.zid, b, s)] = zc
                n_classes_total += 1

    # --- Moodle users: admin, then teachers ------------------------------------------------
    col.new_moodle_id("user")  # id 1 is the guest account (never returned)
    admin_id = col.new_moodle_id("user")
    col.users[admin_id] = MUser(
        admin_id,
        "admin",
        "Admin",
        "User",
        "admin@college.example.ac.uk",
        "",
        "",
        False,
        "",
        EPOCH_START - 400 * DAY,
        EPOCH_START - 400 * DAY,
        now - 600,
        0,
    )
    n_teachers = max(2, round(n_classes_total * k["teachers_per_class"]))
    teachers = []
    for t in range(n_teachers):
        first, last = FIRST_NAMES[randint(0, len(FIRST_NAMES) - 1)], LAST_NAMES[randint(0, len(LAST_NAMES) - 1)]
        uid = col.new_moodle_id("user")
        created = randint(EPOCH_START - 400 * DAY, EPOCH_START)
        user = MUser(
            uid,
            f"t{t + 1:05d}",
            first,
            last,
            f"t{t + 1:05d}.{last.lower()}@college.example.ac.uk",
            f"T{t + 1:05d}",
            "",
            True,
            CITIES[t % len(CITIES)],
            created,
            created + DAY,
            randint(now - 20 * DAY, now),
            0,
        )
        col.users[uid] = user
        teachers.append(user)

    # --- courses for the classes -------------------------------------------------------------
    prog_by_zid = {p.zid: p for p in programs}
    t_i = 0
    for (pzid, b, _section), zc in class_of.items():
        p = prog_by_zid[pzid]
        teacher = teachers[t_i % n_teachers]
        t_i += 1
        shortname = zc.name.replace(" ", "-")
        course = Course(
            zc.course_id,
            shortname,
            f"{p.name} - Block {b + 1} ({zc.name})",
            f"ZC-{zc.zid}",
            level_cat[p.level],
            zc.start,
            zc.end,
            zc.created,
            zc.modified,
            zc.zid,
            teacher.id,
        )
        course.context_id = 100_000 + course.id
        col.courses[course.id] = course
        units = [col.zoho["Units"].records[u] for u in zc.units]
        # Assignments: a numeric one out of 100 for the first unit, a BTEC-scale one for the
        # second, and an unlinked quiz out of 20 (idnumber "") to exercise unmatched items.
        specs = [(units[0], 100, False)]
        if len(units) > 1:
            specs.append((units[1], 4, True))
        specs += [(u, 4, True) for u in units[2:]]
        specs.append((None, 20, False))
        for n, (unit, gmax, scale) in enumerate(specs):
            aid = col.new_moodle_id("assign")
            allow = zc.start + n * 20 * DAY
            label = unit.name if unit else "Quiz"
            a = Assignment(
                aid,
                col.new_moodle_id("cm"),
                course.id,
                f"{shortname} Assignment {n + 1}: {label}",
                unit.code if unit else "",
                unit.zid if unit else 0,
                gmax,
                scale,
                col.new_moodle_id("grade_item"),
                allow,
                allow + 28 * DAY,
                zc.modified,
            )
            course.assignments.append(a)
            col.assignments[aid] = a
        course.total_item_id = col.new_moodle_id("grade_item")
    # One syllabus page per course, as on the capture site: a page is the module kind whose
    # core_course_get_contents entry carries contents and contentsinfo. Its ids are drawn after
    # every assignment's, so the assignments keep the ids they had before pages existed.
    for course in col.courses.values():
        course.syllabus_page_id = col.new_moodle_id("page")
        course.syllabus_cmid = col.new_moodle_id("cm")

    # --- students ------------------------------------------------------------------------------
    unmatched = k["unmatched_share"]
    section_fill: dict[int, int] = {p.zid: 0 for p in programs}
    n_pick = len(FIRST_NAMES), len(LAST_NAMES)
    for i in range(students):
        p = student_program[i]
        first, last = FIRST_NAMES[randint(0, n_pick[0] - 1)], LAST_NAMES[randint(0, n_pick[1] - 1)]
        number = f"S{2_400_001 + i}"
        email = f"{first}.{last}.{i + 1}@student.example.ac.uk".lower().replace("'", "")
        r = rand()
        kind = "zoho_only" if r < unmatched / 2 else ("moodle_only" if r < unmatched else "matched")
        created, modified = times()
        sr = rand()
        status = "Active" if sr < 0.88 else "Suspended" if sr < 0.91 else "Withdrawn" if sr < 0.96 else "Completed"
        zoho_email = email
        moodle_email = email
        if rand() < k["email_mess_share"]:
            if rand() < 0.5:
                zoho_email = f" {email.title()} " if rand() < 0.5 else f"{email}  "
            else:
                moodle_email = email.upper() if rand() < 0.3 else email.title()
        student = Student(
            0 if kind == "moodle_only" else col.new_zid(),
            created,
            modified,
            1,
            number,
            first,
            last,
            zoho_email,
            p.zid,
            status,
            f"+44 7700 {randint(0, 999_999):06d}",
            created - randint(0, 30) * DAY,
            None,
        )
        student_profile_fields(student, 2_400_001 + i)
        user = None
        if kind != "zoho_only":
            uid = col.new_moodle_id("user")
            crmid, idnumber = (str(student.zid), number) if kind == "matched" else ("", number)
            if kind == "matched" and rand() < k["missing_crmid_share"]:
                crmid = ""
                if rand() < k["email_only_share"] / max(k["missing_crmid_share"], 1e-9):
                    idnumber = ""
            ucreated = created + randint(0, 10) * DAY
            user = MUser(
                uid,
                number.lower(),
                first,
                last,
                moodle_email,
                idnumber,
                crmid,
                False,
                CITIES[randint(0, len(CITIES) - 1)],
                ucreated,
                ucreated + randint(1, 20) * DAY,
                randint(now - 30 * DAY, now),
                student.zid,
            )
            user.suspended = rand() < k["suspended_user_share"] or status in ("Withdrawn",)
            col.users[uid] = user
            student.moodle_user_id = uid
        if student.zid:
            if rand() < k["zoho_deleted_student_share"]:
                student.deleted = randint(student.modified, now - 3600)
                student.deleted_type = "recycle" if now - student.deleted < 60 * DAY else "permanent"
                if user:
                    user.suspended = True
            col.zoho["Students"].add(student)
            col.students_by_zid[student.zid] = student
        else:
            col.moodle_only_students.append(student)

        # enrolments: the same section in every block of the program
        s_index = section_fill[p.zid] // k["class_size"]
        section_fill[p.zid] += 1
        for b in range(blocks):
            zc = class_of[(p.zid, b, s_index)]
            course = col.courses[zc.course_id]
            zstatus = (
                "Withdrawn"
                if status == "Withdrawn"
                else "Suspended"
                if status == "Suspended" or rand() < 0.02
                else "Active"
            )
            ec = max(created, zc.created)
            e = Enrollment(
                col.new_zid() if student.zid else 0,
                ec,
                randint(ec, now - 3600),
                1,
                student.zid,
                zc.zid,
                zstatus,
                0,
                0,
                course.id,
                0,
                0,
                0,
            )
            if user:
                e.ue_id = col.new_moodle_id("user_enrolments")
                e.user_id = user.id
                e.m_status = 1 if zstatus != "Active" or rand() < k["enrolment_suspended_share"] else 0
                e.m_created = max(user.timecreated, course.timecreated)
                e.m_modified = randint(e.m_created, now - 3600)
                course.enrolments.append(e)
                col.user_enrolments.setdefault(user.id, []).append(e)
            if e.zid:
                col.zoho["Enrollments"].add(e)

            # grades, completion and Zoho BTEC grades for this class
            graded_all = True
            for a in course.assignments:
                if not user or rand() >= k["graded_share"] * (0.5 if e.m_status else 1.0):
                    graded_all = False
                    continue
                if a.scale:
                    x = rand()
                    raw: float = 1 if x < 0.1 else 2 if x < 0.5 else 3 if x < 0.8 else 4
                else:
                    raw = max(0.0, min(float(a.grademax), rng.gauss(0.62, 0.16) * a.grademax))
                    raw = round(raw * 2) / 2  # whole or half marks
                    if raw == int(raw):
                        raw = int(raw)
                tm = (
                    randint(a.duedate - 10 * DAY, min(now - 3600, a.duedate + 40 * DAY))
                    if a.duedate - 10 * DAY < now - 3600
                    else now - 3600
                )
                g = Grade(
                    col.new_moodle_id("assign_grades"),
                    a.id,
                    user.id,
                    raw,
                    tm,
                    tm,
                    course.teacher_id,
                    tm - randint(1, 9) * DAY,
                )
                a.grades[user.id] = g
                if a.unit_zid and student.zid and rand() < k["zoho_btec_share"]:
                    grade = BTEC_SCALE[int(raw) - 1] if a.scale else btec_from_percentage(100.0 * raw / a.grademax)
                    unit = col.zoho["Units"].records[a.unit_zid]
                    bt = tm + randint(1, 5) * DAY
                    bt = min(bt, now - 60)
                    col.zoho["BTEC_Grades"].add(
                        BtecGrade(col.new_zid(), bt, bt, 3, student.zid, a.unit_zid, grade, tm, f"{number}-{unit.code}")
                    )
            if user and graded_all and rand() < k["completed_share"]:
                last = max(a.grades[user.id].timemodified for a in course.assignments)
                col.completions[(course.id, user.id)] = last + 3600

        if student.zid:
            for u in program_units[p.zid]:
                c = randint(student.created, student.created + 20 * DAY)
                rs = rand()
                col.zoho["Registrations"].add(
                    Registration(
                        col.new_zid(),
                        c,
                        randint(c, now - 3600),
                        3,
                        student.zid,
                        u.zid,
                        "Withdrawn" if status == "Withdrawn" else "Completed" if rs < 0.2 else "Registered",
                    )
                )
            # Payments: the fee, then two instalments against it.
            c = randint(student.created, student.created + 5 * DAY)
            fee = p.fee_pence
            currency = "EUR" if rand() < 0.05 else "GBP"
            method = PAYMENT_METHODS[randint(0, 3)]
            rows = [("Fee", fee, c + 30 * DAY)] + [
                ("Instalment", fee // 2 + (fee % 2 if n == 0 else 0), c + (60 + 90 * n) * DAY) for n in range(2)
            ]
            for kind_, amount, due in rows:
                x = rand()
                if due < now:
                    pstatus = "Paid" if x < 0.85 else "Overdue" if x < 0.97 else "Refunded"
                else:
                    pstatus = "Pending" if x < 0.9 else "Paid"
                paid_on = None
                if pstatus in ("Paid", "Refunded"):
                    lo = min(due - 20 * DAY, now - 2 * DAY)
                    paid_on = randint(lo, max(lo, min(due + 10 * DAY, now - 60)))
                m = randint(c, now - 3600)
                if paid_on is not None:
                    m = max(m, min(paid_on + 3600, now - 60))
                col.zoho["Payments"].add(
                    Payment(col.new_zid(), c, m, 2, student.zid, kind_, amount, currency, method, pstatus, due, paid_on)
                )

    # --- deleted Moodle accounts (anonymised, as Moodle does) --------------------------------
    for _ in range(round(students * k["deleted_user_share"])):
        uid = col.new_moodle_id("user")
        ts = randint(EPOCH_START, now - DAY)
        col.users[uid] = MUser(
            uid,
            f"deleted-{uid}@{ts}",
            "",
            "",
            f"deleted-{uid}",
            "",
            "",
            False,
            "",
            ts,
            0,
            0,
            0,
            suspended=False,
            deleted=True,
        )

    for mod in col.zoho.values():
        mod.mark_dirty()
    return col
