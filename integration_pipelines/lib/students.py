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

from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

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
    zoho_students: Callable[[], Iterable[Mapping[str, Any]]],
    moodle_users: Iterable[Mapping[str, Any]],
    moodle_student_ids: Container[int],
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
    them, so that a college of any size is never held in memory. `moodle_users` are user records
    as Moodle's WS returns them (or `slim_moodle_user`), in ascending id order: when two accounts
    claim one student, the older account keeps it. `moodle_student_ids` holds the Moodle users
    with a student role in some course. `deleted_zoho` maps each student Zoho lists as deleted to
    what is known of it (at least `deleted_at`; the mapped columns when the warehouse saw it
    alive). `observed_at` stamps rows that only Moodle knows, since Moodle does not say when a
    user last changed.
    """
    stats = IdentityStats()
    # Pass 1: what matching needs of each Zoho student, and nothing more.
    zoho_ids: set[str] = set()
    by_number: dict[str, str] = {}
    by_email: dict[str, str | None] = {}

    def index(zoho_id: str, row: Mapping[str, Any]) -> None:
        if row.get("student_number"):
            by_number[row["student_number"].upper()] = zoho_id
        if row.get("email"):
            # Two Zoho students sharing an email cannot be told apart by it: mark it ambiguous.
            by_email[row["email"]] = None if row["email"] in by_email else zoho_id

    for row in zoho_students():
        zoho_ids.add(row["zoho_id"])
        index(row["zoho_id"], row)
    stats.zoho_students = len(zoho_ids)
    # Deleted students stay matchable by what the warehouse last saw of them: a Moodle account
    # belongs to its student even after admissions deleted the record.
    deleted_zoho = {zid: known for zid, known in (deleted_zoho or {}).items() if zid not in zoho_ids}
    for zoho_id, known in deleted_zoho.items():
        index(zoho_id, known)
    candidates = zoho_ids | deleted_zoho.keys()

    # Pass 2: each Moodle account, oldest first, against the index.
    linked: dict[str, tuple[int, str | None]] = {}
    moodle_only: list[Mapping[str, Any]] = []
    previous_id = None
    for user in moodle_users:
        user_id = int(user["id"])
        if previous_id is not None and user_id <= previous_id:
            raise ValueError(f"moodle_users must come in ascending id order: {user_id} after {previous_id}")
        previous_id = user_id
        is_student = user_id in moodle_student_ids
        zoho_id, how = _match(user, rules, candidates, by_number, by_email, stats)
        if zoho_id is not None and zoho_id in linked:
            stats.conflicts += 1
            zoho_id = None
        if zoho_id in deleted_zoho:
            stats.linked_to_deleted += 1
            linked[zoho_id] = (user_id, how)
            continue
        if zoho_id is not None:
            linked[zoho_id] = (user_id, how)
            stats.matched[how] += 1
        elif is_student:
            moodle_only.append(user)
        if is_student or zoho_id is not None:
            stats.moodle_students += 1
    stats.zoho_only = sum(1 for zoho_id in zoho_ids if zoho_id not in linked)
    stats.moodle_only = len(moodle_only)

    # Pass 3: the rows.
    def rows() -> Iterator[dict[str, Any]]:
        for row in zoho_students():
            user_id, how = linked.get(row["zoho_id"], (None, None))
            yield {
                **row,
                "tenant_id": tenant_id,
                "student_key": f"zoho:{row['zoho_id']}",
                "moodle_user_id": user_id,
                "identity_match": how,
            }
        for zoho_id, known in deleted_zoho.items():
            user_id, how = linked.get(zoho_id, (None, None))
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


def _match(user, rules, candidates, by_number, by_email, stats) -> tuple[str | None, str | None]:
    crm_id = _custom_field(user, rules.moodle_crm_field)
    if crm_id and crm_id in candidates:
        return crm_id, "crm_field"
    if rules.match_on_idnumber:
        number = (user.get("idnumber") or "").strip().upper()
        if number and number in by_number:
            return by_number[number], "idnumber"
    email = normalise_email(user.get("email"))
    if email and email in by_email:
        if by_email[email] is None:
            stats.ambiguous_emails += 1
            return None, None
        return by_email[email], "email"
    return None, None
