"""Canonical students: one row per person, linked across Zoho (admissions) and Moodle (LMS).

Identity rules, in order of trust:
1. the configured key: a Moodle custom profile field holding the Zoho id (`crmid` by default);
2. Moodle `idnumber` equal to the Zoho student number;
3. the normalised email (trimmed, lower-cased), when exactly one Zoho student has it.

Nothing is dropped. A Zoho student without a Moodle account and a Moodle student without a Zoho
record are both kept (`identity_match` is null) and counted as unmatched, so a data engineer can
see how much of the college the link covers. Moodle users without a student role (teachers,
administrators) that match no Zoho student are not students and are left out.

A student Zoho has deleted is kept as a soft-deleted row (a tombstone), with the fields last seen
if any, so that enrollments and grades that still point at it resolve. A Moodle account whose
configured key names such a student belongs to the tombstone: it is counted, linked, and not
brought back as a Moodle-only student.

Zoho is the system of record for who a student is, so a linked row takes its profile fields
from Zoho and only the Moodle id from Moodle.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from more_itertools import chunked
from sqlalchemy import BigInteger, Boolean, Column, Connection, String, distinct, func, select

from integration_pipelines.lib.lookups import LOOKUP_BATCH, ScratchTable, with_lookup

STUDENT_ROLE = "student"


def holds_student_role(enrolment: Mapping[str, Any]) -> bool:
    """Whether a Moodle enrolment (as the enrolled-users answer gives it) carries the student role."""
    return any(role.get("shortname") == STUDENT_ROLE for role in enrolment.get("roles") or ())


@dataclass
class IdentityStats:
    """How the link went: counts for run metadata and the unmatched-identity check."""

    zoho_students: int = 0
    moodle_students: int = 0
    matched: dict[str, int] = field(default_factory=lambda: {"crm_field": 0, "idnumber": 0, "email": 0})
    zoho_only: int = 0
    moodle_only: int = 0
    ambiguous_emails: int = 0
    conflicts: int = 0  # a second Moodle account claiming an already-linked Zoho student
    linked_to_deleted: int = 0  # Moodle accounts of students Zoho has deleted

    @property
    def unmatched(self) -> int:
        return self.zoho_only + self.moodle_only

    def as_metadata(self) -> dict[str, int]:
        return {
            "zoho_students": self.zoho_students,
            "moodle_students": self.moodle_students,
            **{f"matched_by_{k}": v for k, v in self.matched.items()},
            "zoho_only": self.zoho_only,
            "moodle_only": self.moodle_only,
            "ambiguous_emails": self.ambiguous_emails,
            "identity_conflicts": self.conflicts,
            "linked_to_deleted": self.linked_to_deleted,
        }


MOODLE_USER_FIELDS = ("id", "idnumber", "email", "firstname", "lastname", "suspended")


def slim_moodle_user(user: Mapping[str, Any], crm_field: str | None) -> dict[str, Any]:
    """The parts of a Moodle user record that identity needs (the rest can be large: preferences...)."""
    slim = {k: user.get(k) for k in MOODLE_USER_FIELDS}
    crm = _custom_field(user, crm_field)
    if crm:
        slim["customfields"] = [{"shortname": crm_field, "value": crm}]
    return slim


def normalise_email(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value or None


def _custom_field(user: Mapping[str, Any], shortname: str | None) -> str | None:
    if not shortname:
        return None
    for custom in user.get("customfields") or ():
        if custom.get("shortname") == shortname:
            value = str(custom.get("value") or "").strip()
            return value or None
    return None


class IdentityRules(Protocol):
    """The identity section of the field mapping."""

    moodle_crm_field: str | None
    match_on_idnumber: bool


def link_students(
    conn: Connection,
    zoho_students: Callable[[], Iterable[Mapping[str, Any]]],
    moodle_users: Iterable[Mapping[str, Any]],
    moodle_student_ids: Iterable[int],
    *,
    tenant_id: str,
    observed_at: datetime,
    rules: IdentityRules,
    deleted_zoho: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Iterator[dict[str, Any]], IdentityStats]:
    """Link the two sources: canonical student rows (streamed) and the link statistics (complete
    on return).

    `zoho_students()` gives the Zoho Students records already mapped to canonical columns (the
    field mapping's `to_row`); it is read twice, once to index the students and once to write
    them. `moodle_users` are user records as Moodle's WS returns them (or `slim_moodle_user`), in
    ascending id order: when two accounts claim one student, the older account keeps it.
    `moodle_student_ids` are the Moodle users with a student role in some course (repeats are
    fine). `deleted_zoho` maps each student Zoho lists as deleted to what is known of it (at
    least `deleted_at`; the mapped columns when the warehouse saw it alive). `observed_at` stamps
    rows that only Moodle knows, since Moodle does not say when a user last changed.

    What matching needs of every student (the Zoho index, who holds a student role, the links
    made) is kept in scratch tables on `conn` and asked about a batch at a time, so that a college
    of any size is never held in memory.
    """
    stats = IdentityStats()
    # Pass 1: what matching needs of each Zoho student, and nothing more.
    index = _ZohoIndex(conn, ((row["zoho_id"], row) for row in zoho_students()))
    stats.zoho_students = index.live_count()
    # Deleted students stay matchable by what the warehouse last saw of them: a Moodle account
    # belongs to its student even after admissions deleted the record.
    deleted_zoho = deleted_zoho or {}
    alive = set().union(*(index.known(set(batch)) for batch in chunked(deleted_zoho, LOOKUP_BATCH)))
    deleted_zoho = {zid: known for zid, known in deleted_zoho.items() if zid not in alive}
    index.add_deleted(deleted_zoho.items())

    # Pass 2: each Moodle account, oldest first, against the index.
    student_ids = ScratchTable(
        conn, "moodle_students", Column("user_id", BigInteger, nullable=False), indexes=[("user_id",)]
    ).load((user_id,) for user_id in moodle_student_ids)
    links = _Links(conn)
    moodle_only: list[Mapping[str, Any]] = []
    previous_id = None
    for batch in chunked(moodle_users, LOOKUP_BATCH):
        user_ids = [int(user["id"]) for user in batch]
        for user_id in user_ids:
            if previous_id is not None and user_id <= previous_id:
                raise ValueError(f"moodle_users must come in ascending id order: {user_id} after {previous_id}")
            previous_id = user_id
        students_here = student_ids.among("user_id", set(user_ids))
        candidates = index.for_users(batch, rules)
        matches = [_match(user, rules, candidates, stats) for user in batch]
        taken = links.linked({zoho_id for zoho_id, _ in matches if zoho_id is not None})
        made = []
        for user, user_id, (zoho_id, how) in zip(batch, user_ids, matches, strict=True):
            is_student = user_id in students_here
            if zoho_id is not None and zoho_id in taken:
                stats.conflicts += 1
                zoho_id = None
            if zoho_id is not None:
                taken.add(zoho_id)
                made.append((zoho_id, user_id, how))
            if zoho_id in deleted_zoho:
                stats.linked_to_deleted += 1
                continue
            if zoho_id is not None:
                stats.matched[how] += 1
            elif is_student:
                moodle_only.append(user)
            if is_student or zoho_id is not None:
                stats.moodle_students += 1
        links.add(made)
    student_ids.drop()
    stats.zoho_only = links.unlinked_live(index)
    stats.moodle_only = len(moodle_only)
    index.drop()

    # Pass 3: the rows.
    def rows() -> Iterator[dict[str, Any]]:
        for row, link in with_lookup(zoho_students(), lambda r: r["zoho_id"], links.of):
            user_id, how = link or (None, None)
            yield {
                **row,
                "tenant_id": tenant_id,
                "student_key": f"zoho:{row['zoho_id']}",
                "moodle_user_id": user_id,
                "identity_match": how,
            }
        for (zoho_id, known), link in with_lookup(deleted_zoho.items(), lambda item: item[0], links.of):
            user_id, how = link or (None, None)
            yield {
                "student_number": None,
                "first_name": None,
                "last_name": None,
                "email": None,
                "program_zoho_id": None,
                "status": None,
                **known,
                "tenant_id": tenant_id,
                "student_key": f"zoho:{zoho_id}",
                "zoho_id": zoho_id,
                "moodle_user_id": user_id,
                "identity_match": how,
                "source_modified_at": known.get("source_modified_at") or known["deleted_at"],
            }
        links.drop()
        for user in moodle_only:
            yield {
                "tenant_id": tenant_id,
                "student_key": f"moodle:{int(user['id'])}",
                "zoho_id": None,
                "moodle_user_id": int(user["id"]),
                "student_number": (user.get("idnumber") or "").strip() or None,
                "first_name": user.get("firstname"),
                "last_name": user.get("lastname"),
                "email": normalise_email(user.get("email")),
                "program_zoho_id": None,
                "status": "suspended" if user.get("suspended") else "active",
                "identity_match": None,
                "source_modified_at": observed_at,
            }

    return rows(), stats


@dataclass
class _Candidates:
    """What the index says about one batch of Moodle users: which of their configured keys name a
    known student, and which student each number and email points to (None: an email two
    students share)."""

    known: set[str]
    by_number: dict[str, str]
    by_email: dict[str, str | None]


class _ZohoIndex:
    """Every Zoho student's id, number and email (live ones, then those Zoho deleted), in a
    scratch table; asked a batch of Moodle users at a time."""

    def __init__(self, conn: Connection, students: Iterable[tuple[str, Mapping[str, Any]]]):
        self._order = itertools.count()
        self._scratch = ScratchTable(
            conn,
            "identity_zoho",
            Column("seq", BigInteger, nullable=False),  # later entries win a shared number, as in a dict
            Column("zoho_id", String, nullable=False),
            Column("number", String),
            Column("email", String),
            Column("deleted", Boolean, nullable=False),
            indexes=[("zoho_id",), ("number",), ("email",)],
        )
        self._scratch.load(self._entry(zoho_id, row, False) for zoho_id, row in students)

    def _entry(self, zoho_id: str, row: Mapping[str, Any], deleted: bool) -> tuple:
        number = row.get("student_number")
        return next(self._order), zoho_id, number.upper() if number else None, row.get("email") or None, deleted

    def add_deleted(self, students: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        self._scratch.insert(self._entry(zoho_id, known, True) for zoho_id, known in students)

    def live_count(self) -> int:
        c = self._scratch.c
        return self._scratch.conn.execute(select(func.count(distinct(c.zoho_id))).where(~c.deleted)).scalar_one()

    def known(self, zoho_ids: set[str]) -> set[str]:
        return self._scratch.among("zoho_id", zoho_ids)

    def for_users(self, users: list[Mapping[str, Any]], rules: IdentityRules) -> _Candidates:
        c, conn = self._scratch.c, self._scratch.conn
        crm_ids = {crm for user in users if (crm := _custom_field(user, rules.moodle_crm_field))}
        numbers = {(user.get("idnumber") or "").strip().upper() for user in users} - {""}
        emails = {normalise_email(user.get("email")) for user in users} - {None}
        by_number: dict[str, str] = {}
        if rules.match_on_idnumber and numbers:
            stmt = select(c.number, c.zoho_id).where(c.number.in_(numbers)).order_by(c.seq)
            by_number = {number: zoho_id for number, zoho_id in conn.execute(stmt)}
        by_email: dict[str, str | None] = {}
        if emails:
            for email, zoho_id in conn.execute(select(c.email, c.zoho_id).where(c.email.in_(emails))):
                # Two Zoho students sharing an email cannot be told apart by it: it is ambiguous.
                by_email[email] = None if email in by_email else zoho_id
        return _Candidates(self.known(crm_ids), by_number, by_email)

    @property
    def table(self):
        return self._scratch.table

    def drop(self) -> None:
        self._scratch.drop()


class _Links:
    """The links made so far, Zoho student -> (Moodle user, rule), in a scratch table."""

    def __init__(self, conn: Connection):
        self._scratch = ScratchTable(
            conn,
            "identity_links",
            Column("zoho_id", String, primary_key=True),
            Column("user_id", BigInteger, nullable=False),
            Column("how", String),
        )
        self.c = self._scratch.c

    def add(self, links: list[tuple[str, int, str | None]]) -> None:
        self._scratch.insert(links)

    def linked(self, zoho_ids: set[str]) -> set[str]:
        return self._scratch.among("zoho_id", zoho_ids)

    def of(self, zoho_ids: set[str]) -> dict[str, tuple[int, str | None]]:
        if not zoho_ids:
            return {}
        stmt = select(self.c.zoho_id, self.c.user_id, self.c.how).where(self.c.zoho_id.in_(zoho_ids))
        return {zoho_id: (int(user_id), how) for zoho_id, user_id, how in self._scratch.conn.execute(stmt)}

    def unlinked_live(self, index: _ZohoIndex) -> int:
        """How many live Zoho students no Moodle account links to."""
        students = index.table
        linked = select(self.c.zoho_id).where(self.c.zoho_id == students.c.zoho_id).exists()
        stmt = select(func.count(distinct(students.c.zoho_id))).where(~students.c.deleted, ~linked)
        return self._scratch.conn.execute(stmt).scalar_one()

    def drop(self) -> None:
        self._scratch.drop()


def _match(user, rules, candidates: _Candidates, stats) -> tuple[str | None, str | None]:
    crm_id = _custom_field(user, rules.moodle_crm_field)
    if crm_id and crm_id in candidates.known:
        return crm_id, "crm_field"
    if rules.match_on_idnumber:
        number = (user.get("idnumber") or "").strip().upper()
        if number and number in candidates.by_number:
            return candidates.by_number[number], "idnumber"
    email = normalise_email(user.get("email"))
    if email and email in candidates.by_email:
        if candidates.by_email[email] is None:
            stats.ambiguous_emails += 1
            return None, None
        return candidates.by_email[email], "email"
    return None, None
