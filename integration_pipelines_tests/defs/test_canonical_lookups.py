"""The lookups the canonical steps read from the warehouse: one tenant's rows, live rows first."""

from __future__ import annotations

from integration_pipelines.defs.canonical.assets import _live, _student_links
from integration_pipelines.lib.canonical import StudentLink
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
        assert _student_links(conn, "default") == {42: StudentLink("zoho:1", "1"), 7: StudentLink("zoho:2", "2")}
        assert _student_links(conn, "other") == {8: StudentLink("zoho:3", "3")}
        assert _live(conn, "default", "units", "zoho_id", "code") == [("1", "U1")]
