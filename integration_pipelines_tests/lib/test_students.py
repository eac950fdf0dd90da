"""Identity rules for canonical students, linked on a real warehouse connection (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integration_pipelines.lib.lookups import LOOKUP_BATCH
from integration_pipelines.lib.mapping import IdentityConfig, load_mapping
from integration_pipelines.lib.students import link_students, normalise_email

NOW = datetime(2026, 11, 1, tzinfo=UTC)
STUDENTS = load_mapping().zoho.entities["students"]


def zoho(zid: str, number: str, email: str, first: str = "Amina", last: str = "Khan"):
    """A Zoho Students record as the API returns it, mapped to canonical columns by the default mapping."""
    return STUDENTS.to_row(
        {
            "id": zid,
            "Student_Number": number,
            "First_Name": first,
            "Last_Name": last,
            "Email": email,
            "Programme": {"name": "BTEC L3 IT", "id": "900"},
            "Status": "Active",
            "Modified_Time": "2026-10-01T09:00:00+01:00",
        }
    )


def moodle(uid: int, *, email: str, idnumber: str = "", crmid: str | None = None, suspended: bool = False):
    user = {
        "id": uid,
        "firstname": "M",
        "lastname": "User",
        "email": email,
        "idnumber": idnumber,
        "suspended": suspended,
    }
    if crmid is not None:
        user["customfields"] = [
            {"type": "text", "value": crmid, "displayvalue": crmid, "name": "CRM ID", "shortname": "crmid"}
        ]
    return user


STUDENT = {"student"}


DEFAULT_RULES = IdentityConfig()


@pytest.fixture
def link(warehouse):
    """Link students on a connection of a real warehouse, whose scratch tables hold the index."""

    def link(zoho_records, moodle_users, roles, rules=DEFAULT_RULES, **kwargs):
        with warehouse.connect() as conn:
            rows, stats = link_students(
                conn,
                lambda: iter(zoho_records),
                sorted(moodle_users, key=lambda u: u["id"]),
                [uid for uid, held in roles.items() if "student" in held],
                tenant_id="t",
                observed_at=NOW,
                rules=rules,
                **kwargs,
            )
            keyed = {r["student_key"]: r for r in rows}
        return keyed, stats

    return link


def test_each_rule_links_in_order_of_trust(link):
    records = [zoho("1", "S1", "one@x.ac.uk"), zoho("2", "S2", "two@x.ac.uk"), zoho("3", "S3", "three@x.ac.uk")]
    users = [
        moodle(10, email="other@x.ac.uk", crmid="1"),  # configured key
        moodle(11, email="other2@x.ac.uk", idnumber="s2"),  # idnumber, case-insensitive
        moodle(12, email="  THREE@x.ac.uk "),  # normalised email
    ]
    rows, stats = link(records, users, {10: STUDENT, 11: STUDENT, 12: STUDENT})
    assert {k: (r["moodle_user_id"], r["identity_match"]) for k, r in rows.items()} == {
        "zoho:1": (10, "crm_field"),
        "zoho:2": (11, "idnumber"),
        "zoho:3": (12, "email"),
    }
    assert stats.matched == {"crm_field": 1, "idnumber": 1, "email": 1}
    assert stats.unmatched == 0


def test_zoho_wins_for_profile_fields_and_moodle_supplies_its_id(link):
    rows, _ = link([zoho("1", "S1", " Amina.Khan@X.ac.uk")], [moodle(10, email="x@y", crmid="1")], {10: STUDENT})
    row = rows["zoho:1"]
    assert (row["first_name"], row["email"], row["program_zoho_id"], row["status"]) == (
        "Amina",
        "amina.khan@x.ac.uk",
        "900",
        "active",
    )
    assert row["source_modified_at"] == datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


def test_unmatched_students_are_kept_and_staff_are_not_students(link):
    rows, stats = link(
        [zoho("1", "S1", "one@x.ac.uk")],
        [moodle(20, email="lonely@x.ac.uk", suspended=True), moodle(30, email="teacher@x.ac.uk")],
        {20: STUDENT, 30: {"editingteacher"}},
    )
    assert set(rows) == {"zoho:1", "moodle:20"}
    assert rows["moodle:20"]["status"] == "suspended"
    assert rows["moodle:20"]["source_modified_at"] == NOW
    assert (stats.zoho_only, stats.moodle_only) == (1, 1)


def test_an_email_shared_by_two_zoho_students_links_nobody(link):
    rows, stats = link(
        [zoho("1", "S1", "same@x.ac.uk"), zoho("2", "S2", "same@x.ac.uk")],
        [moodle(10, email="SAME@x.ac.uk")],
        {10: STUDENT},
    )
    assert rows["zoho:1"]["moodle_user_id"] is None and rows["zoho:2"]["moodle_user_id"] is None
    assert "moodle:10" in rows
    assert stats.ambiguous_emails == 1


def test_a_second_account_claiming_a_linked_student_stays_separate(link):
    rows, stats = link(
        [zoho("1", "S1", "one@x.ac.uk")],
        [moodle(10, email="a@x", crmid="1"), moodle(11, email="b@x", crmid="1")],
        {10: STUDENT, 11: STUDENT},
    )
    assert rows["zoho:1"]["moodle_user_id"] == 10
    assert "moodle:11" in rows
    assert stats.conflicts == 1


def test_an_older_account_keeps_its_student_whichever_batch_the_newer_one_is_read_in(link):
    # Accounts are matched a batch at a time: the link the first batch made must still stand
    # against an account read batches later, and the unmatched must still be counted.
    staff = [moodle(uid, email=f"staff{uid}@x.ac.uk") for uid in range(2, LOOKUP_BATCH + 2)]
    users = [moodle(1, email="one@x.ac.uk"), *staff, moodle(LOOKUP_BATCH + 10, email="One@X.ac.uk ")]
    rows, stats = link(
        [zoho("1", "S1", "one@x.ac.uk"), zoho("2", "S2", "two@x.ac.uk")],
        users,
        {1: STUDENT, LOOKUP_BATCH + 10: STUDENT},
    )
    assert rows["zoho:1"]["moodle_user_id"] == 1
    assert f"moodle:{LOOKUP_BATCH + 10}" in rows, "the newer account stays a student of its own"
    assert (stats.conflicts, stats.matched["email"], stats.zoho_only, stats.moodle_only) == (1, 1, 1, 1)
    assert len(rows) == 3, "staff who match nobody are not students"


def test_a_student_zoho_deleted_is_a_tombstone_that_keeps_its_moodle_account(link):
    gone_at = datetime(2026, 10, 5, tzinfo=UTC)
    seen_alive = {**zoho("8", "S8", "eight@x.ac.uk"), "deleted_at": gone_at}
    rows, stats = link(
        [],
        [moodle(10, email="gone@x.ac.uk", crmid="7"), moodle(11, email="x@y", idnumber="s8")],
        {10: STUDENT, 11: STUDENT},
        deleted_zoho={"7": {"deleted_at": gone_at}, "8": seen_alive},
    )
    assert set(rows) == {"zoho:7", "zoho:8"}, "neither account comes back as a Moodle-only student"
    assert (rows["zoho:7"]["moodle_user_id"], rows["zoho:7"]["deleted_at"]) == (10, gone_at)
    # A student seen alive before deletion keeps its fields, and matches by number as it did then.
    assert (rows["zoho:8"]["moodle_user_id"], rows["zoho:8"]["identity_match"]) == (11, "idnumber")
    assert rows["zoho:8"]["email"] == "eight@x.ac.uk"
    assert stats.linked_to_deleted == 2


def test_the_configured_key_and_idnumber_rule_can_be_changed(link):
    rules = IdentityConfig(moodle_crm_field="zohoid", match_on_idnumber=False)
    rows, _ = link(
        [zoho("1", "S1", "one@x.ac.uk")],
        [moodle(10, email="x@y", idnumber="S1", crmid="1")],
        {10: STUDENT},
        rules=rules,
    )
    assert rows["zoho:1"]["moodle_user_id"] is None


@pytest.mark.parametrize(("raw", "expected"), [(" A@B.C ", "a@b.c"), ("", None), (None, None), ("  ", None)])
def test_normalise_email(raw, expected):
    assert normalise_email(raw) == expected


def test_moodle_users_must_come_oldest_first_so_the_older_account_keeps_a_contested_student(warehouse):
    with warehouse.connect() as conn, pytest.raises(ValueError, match="ascending id order: 10 after 11"):
        link_students(
            conn,
            lambda: iter([zoho("1", "S1", "one@x.ac.uk")]),
            [moodle(11, email="one@x.ac.uk"), moodle(10, email="one@x.ac.uk")],
            [10, 11],
            tenant_id="t",
            observed_at=NOW,
            rules=DEFAULT_RULES,
        )
