"""A college that changes while full_sync reads it: students enrolled after the Zoho read passed
the Students module, with payments, registrations and enrollments read after their creation,
still make a sound warehouse (the blocking reference checks pass), on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.schema import payments, students
from integration_pipelines.lib.zoho.client import ZohoClient
from integration_pipelines_tests.e2e import materializations, running_pipeline

pytestmark = pytest.mark.slow

ZOHO_CREDENTIALS = {
    "client_id": {"env": "ZOHO_CLIENT_ID"},
    "client_secret": {"env": "ZOHO_CLIENT_SECRET"},
    "refresh_token": {"env": "ZOHO_REFRESH_TOKEN"},
}


def test_students_enrolled_while_the_sync_reads_zoho_are_fetched_by_id(warehouse_url, tmp_path, monkeypatch):
    from integration_pipelines.definitions import defs

    with running_pipeline(warehouse_url, tmp_path, students=40, seed=3) as pipeline:
        enrolled: list[str] = []
        read_pages = ZohoClient.iter_records

        def enrolling_after_the_students_read(self, module, fields, **kwargs):
            yield from read_pages(self, module, fields, **kwargs)
            if module == "Students" and not enrolled:
                # The Students module is read; the modules read next will see these students' records.
                before = set(pipeline.sandbox.app.college.zoho["Students"].records)
                pipeline.sandbox.mutate(advance_seconds=60, zoho_new_students=2)
                after = set(pipeline.sandbox.app.college.zoho["Students"].records)
                enrolled.extend(str(z) for z in after - before)

        monkeypatch.setattr(ZohoClient, "iter_records", enrolling_after_the_students_read)
        result = defs.resolve_job_def("full_sync").execute_in_process(
            instance=pipeline.instance,
            # One module at a time, in the mapping's order: Students before Enrollments and Payments.
            run_config={"resources": {"zoho": {"config": {"max_concurrency": 1, **ZOHO_CREDENTIALS}}}},
            raise_on_error=False,
        )

        assert len(enrolled) == 2
        failed_checks = [
            evaluation.check_name for evaluation in result.get_asset_check_evaluations() if not evaluation.passed
        ]
        assert result.success, failed_checks
        assert materializations(result)["raw_zoho_students"]["fetched_by_id"] == 2
        engine = create_warehouse_engine(warehouse_url)
        with engine.connect() as conn:
            live = set(conn.execute(select(students.c.zoho_id).where(students.c.deleted_at.is_(None))).scalars())
            paid = set(conn.execute(select(payments.c.student_key).where(payments.c.deleted_at.is_(None))).scalars())
        engine.dispose()
        assert set(enrolled) <= live
        assert {f"zoho:{z}" for z in enrolled} <= paid
