"""The lookups the canonical readers make in the warehouse: one tenant's rows, a batch of keys at
a time, live rows first."""

from __future__ import annotations

from integration_pipelines.lib.canonical import StudentLink
from integration_pipelines.lib.canonical_reads import StudentLookup, live_rows
from integration_pipelines.lib.lookups import LOOKUP_BATCH, with_lookup
from integration_pipelines.lib.warehouse import upsert_rows
from integration_pipelines_tests.lib.test_warehouse import T0, student


def test_lookups_read_one_tenant_and_a_live_student_wins_over_its_tombstone(warehouse):
    rows = [
        # Moodle user 42 was a Moodle-only student, since linked to Zoho student 1: both rows stay.
        # The tombstone is written last, so that a lookup in write order would pick it.
        student("zoho:1"),
        student("moodle:42", zoho_id=None, deleted_at=T0),
        student("zoho:2", moodle_user_id=7, deleted_at=T0),  # deleted in Zoho: still resolvable
        student("zoho:3", moodle_user_id=8, tenant_id="other"),
        student("zoho:4", moodle_user_id=None),  # admissions only
    ]
    with warehouse.begin() as conn:
        upsert_rows(conn, "students", rows)
        upsert_rows(
            conn,
            "units",
            [
                {
                    "tenant_id": t,
                    "unit_key": f"zoho:{i}",
                    "zoho_id": str(i),
                    "program_zoho_id": None,
                    "code": "U1",
                    "name": "Unit",
                    "credits": 10,
                    "source_modified_at": T0,
                }
                for t, i in (("default", 1), ("other", 2))
            ],
        )
    with warehouse.connect() as conn:
        students, others = StudentLookup(conn, "default"), StudentLookup(conn, "other")
        linked = {42: StudentLink("zoho:1", "1"), 7: StudentLink("zoho:2", "2")}
        assert students.of_moodle_users({42, 7, 8, 99}) == linked
        assert others.of_moodle_users({42, 8}) == {8: StudentLink("zoho:3", "3")}
        assert students.moodle_users_of({"1", "2", "3", "4"}) == {"1": 42, "2": 7}
        assert students.of_moodle_users(set()) == {} and students.moodle_users_of(set()) == {}
        assert live_rows(conn, "default", "units", "zoho_id", "code") == [("1", "U1")]


def test_with_lookup_asks_a_batch_at_a_time_and_pairs_each_item_with_its_own_answer():
    asked: list[set[int]] = []

    def lookup(keys: set[int]) -> dict[int, str]:
        asked.append(keys)
        return {k: f"found {k}" for k in keys if k % 2 == 0}

    items = [*range(LOOKUP_BATCH + 3), None]
    paired = list(with_lookup(items, lambda i: i, lookup))
    assert paired == [(i, f"found {i}" if i is not None and i % 2 == 0 else None) for i in items]
    assert [len(keys) for keys in asked] == [LOOKUP_BATCH, 3], "two batches; None is never asked for"
