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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

STUDENT_ROLE = "student"


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
    zoho_students: Iterable[Mapping[str, Any]],
    moodle_users: Iterable[Mapping[str, Any]],
    moodle_roles: Mapping[int, set[str]],
    *,
    tenant_id: str,
    observed_at: datetime,
    rules: IdentityRules,
    deleted_zoho: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], IdentityStats]:
    """Link the two sources and return canonical student rows and the link statistics.

    `zoho_students` are Zoho Students records already mapped to canonical columns (the field
    mapping's `to_row`), `moodle_users` are user records as Moodle's WS returns them, and
    `moodle_roles` maps a Moodle user id to the role shortnames it holds in any course.
    `deleted_zoho` maps each student Zoho lists as deleted to what is known of it (at least
    `deleted_at`; the mapped columns when the warehouse saw it alive). `observed_at` stamps rows
    that only Moodle knows, since Moodle does not say when a user last changed.
    """
    stats = IdentityStats()
    zoho = {row["zoho_id"]: row for row in zoho_students}
    stats.zoho_students = len(zoho)
    # Deleted students stay matchable by what the warehouse last saw of them: a Moodle account
    # belongs to its student even after admissions deleted the record.
    deleted_zoho = {zid: known for zid, known in (deleted_zoho or {}).items() if zid not in zoho}
    candidates = {**deleted_zoho, **zoho}
    by_number: dict[str, str] = {}
    by_email: dict[str, str | None] = {}
    for zoho_id, row in candidates.items():
        if row.get("student_number"):
            by_number[row["student_number"].upper()] = zoho_id
        if row.get("email"):
            # Two Zoho students sharing an email cannot be told apart by it: mark it ambiguous.
            by_email[row["email"]] = None if row["email"] in by_email else zoho_id

    linked: dict[str, tuple[Mapping[str, Any], str]] = {}
    moodle_only: list[Mapping[str, Any]] = []
    for user in sorted(moodle_users, key=lambda u: int(u["id"])):
        user_id = int(user["id"])
        is_student = STUDENT_ROLE in moodle_roles.get(user_id, set())
        zoho_id, how = _match(user, rules, candidates, by_number, by_email, stats)
        if zoho_id is not None and zoho_id in linked:
            stats.conflicts += 1
            zoho_id = None
        if zoho_id in deleted_zoho:
            stats.linked_to_deleted += 1
            linked[zoho_id] = (user, how)
            continue
        if zoho_id is not None:
            linked[zoho_id] = (user, how)
            stats.matched[how] += 1
        elif is_student:
            moodle_only.append(user)
        if is_student or zoho_id is not None:
            stats.moodle_students += 1

    rows = []
    for zoho_id, row in zoho.items():
        user, how = linked.get(zoho_id, (None, None))
        if user is None:
            stats.zoho_only += 1
        rows.append(
            {
                **row,
                "tenant_id": tenant_id,
                "student_key": f"zoho:{zoho_id}",
                "moodle_user_id": int(user["id"]) if user else None,
                "identity_match": how,
            }
        )
    for zoho_id, known in deleted_zoho.items():
        user, how = linked.get(zoho_id, (None, None))
        rows.append(
            {
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
                "moodle_user_id": int(user["id"]) if user else None,
                "identity_match": how,
                "source_modified_at": known.get("source_modified_at") or known["deleted_at"],
            }
        )
    for user in moodle_only:
        stats.moodle_only += 1
        rows.append(
            {
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
        )
    return rows, stats


def _match(user, rules, zoho, by_number, by_email, stats) -> tuple[str | None, str | None]:
    crm_id = _custom_field(user, rules.moodle_crm_field)
    if crm_id and crm_id in zoho:
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
