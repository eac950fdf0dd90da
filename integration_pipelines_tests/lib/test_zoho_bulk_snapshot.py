"""Zoho snapshots read large modules by Bulk Read: the export lands exactly the raw records the
record API's pages land, and a failed or expired job stops the read with a clear error.

The real Zoho client reads the sandbox over HTTP; each read lands in a fresh SQLite warehouse as
the `zoho_snapshot` asset lands it (`read_zoho_modules` into `land_modules`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.lib.raw_sync import land_modules
from integration_pipelines.lib.source_reads import ModuleRead, ZohoModule, read_zoho_modules
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.zoho import ZohoBulkReadError
from integration_pipelines.sandbox import SandboxConfig, run_sandbox
from integration_pipelines.sandbox import bulk as sandbox_bulk
from integration_pipelines_tests.lib.test_clients_sandbox import zoho_client

MODULES = [ZohoModule(e, m.module, tuple(m.source_fields)) for e, m in FIELD_MAPPING.zoho.entities.items()]


def snapshot(sb: Any, path: Path, threshold: int, modules=MODULES) -> tuple[dict, dict[str, str]]:
    """One Zoho snapshot into a fresh warehouse: its raw rows, and how each module was read."""
    engine = create_warehouse_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    read_by: dict[str, str] = {}

    def noting(reader):
        for item in reader:
            if isinstance(item, ModuleRead):
                read_by[item.module] = item.read_by
            yield item

    reader = read_zoho_modules(lambda: zoho_client(sb), modules, concurrency=4, bulk_threshold=threshold)
    with engine.begin() as conn:
        list(land_modules(conn, "default", "zoho", [m.module for m in modules], noting(reader), snapshot=True))
    r = raw_records.c
    with engine.connect() as conn:
        rows = {
            (entity, rid): (payload, modified)
            for entity, rid, payload, modified in conn.execute(
                select(r.entity, r.record_id, r.payload, r.source_modified_at).where(r.source == "zoho")
            )
        }
    engine.dispose()
    return rows, read_by


def test_bulk_read_lands_the_records_the_pages_land(tmp_path):
    # Result pages of 400 records: the larger modules take more than one job (more_records).
    with run_sandbox(SandboxConfig(students=100, seed=5, bulk_read_page_size=400)) as sb:
        sb.mutate(advance_seconds=60, zoho_change_share=0.05, zoho_delete_share=0.01)
        paged, paged_by = snapshot(sb, tmp_path / "pages.db", threshold=0)
        exported, bulk_by = snapshot(sb, tmp_path / "bulk.db", threshold=1)
        jobs = list(sb.app.bulk.jobs.values())
    modules = {m.module for m in MODULES}
    assert paged_by == dict.fromkeys(modules, "pages")
    assert bulk_by == dict.fromkeys(modules, "bulk")
    assert {e for e, _ in paged} >= modules
    assert any(e.endswith(".deleted") for e, _ in paged)  # the deleted lists are read as before
    assert exported.keys() == paged.keys()
    differing = sorted(k for k in paged if paged[k] != exported[k])
    assert differing == [], [(k, paged[k], exported[k]) for k in differing[:3]]
    # One export per module (its lookup targets' names came from their own exports), paged.
    assert {j.module for j in jobs} == modules
    assert not [j for j in jobs if j.fields == ["Name"]]
    assert max(j.page for j in jobs) > 1
    # The payloads carry every type the pages do: lookups with names, numbers, nulls.
    payments = [p for (e, _), (p, _) in exported.items() if e == "Payments"]
    assert any(p["Paid_On"] is None for p in payments) and any(isinstance(p["Paid_On"], str) for p in payments)
    assert all(isinstance(p["Amount"], float) for p in payments)
    assert all(set(p["Student"]) == {"name", "id"} and p["Student"]["name"] for p in payments)
    programs = [p for (e, _), (p, _) in exported.items() if e == "Programs"]
    assert all(isinstance(p["Credits"], int) for p in programs)


def test_modules_under_the_threshold_are_paged(tmp_path):
    with run_sandbox(SandboxConfig(students=60, seed=5)) as sb:
        with sb.lock:
            programs = len(sb.college.zoho["Programs"].index("id"))
        _, read_by = snapshot(sb, tmp_path / "w.db", threshold=programs)
        jobs = list(sb.app.bulk.jobs.values())
    assert read_by == {m.module: "pages" if m.module == "Programs" else "bulk" for m in MODULES}
    # Programs, paged, is exported only for the names its lookups carry: one job, of its Name.
    assert [j.fields for j in jobs if j.module == "Programs"] == [["Name"]]


def test_a_failed_bulk_read_job_stops_the_read_naming_the_job(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox_bulk, "STATES", ("ADDED", "QUEUED", "FAILURE"))
    programs = [m for m in MODULES if m.module == "Programs"]
    with run_sandbox(SandboxConfig(students=30, seed=5)) as sb:
        with pytest.raises(ZohoBulkReadError, match=r"Bulk Read job \d+ \(Programs\) failed"):
            snapshot(sb, tmp_path / "w.db", threshold=1, modules=programs)


def test_an_expired_bulk_read_job_stops_the_read_naming_the_job(tmp_path):
    programs = [m for m in MODULES if m.module == "Programs"]
    with run_sandbox(SandboxConfig(students=30, seed=5)) as sb:
        bulk = sb.app.bulk
        status = bulk.status

        def expiring(job_id: str):
            bulk.jobs.pop(job_id, None)  # Zoho forgets the job (its result expired)
            return status(job_id)

        bulk.status = expiring
        with pytest.raises(ZohoBulkReadError, match=r"Bulk Read job \d+ \(Programs\) no longer exists"):
            snapshot(sb, tmp_path / "w.db", threshold=1, modules=programs)


def test_the_shaper_types_csv_text_by_the_field_metadata():
    from integration_pipelines.lib.zoho.bulk import BulkRecordShaper

    metadata = [
        {"api_name": "Active", "data_type": "boolean", "json_type": "boolean"},
        {"api_name": "Score", "data_type": "double", "json_type": "double"},
        {
            "api_name": "Account",
            "data_type": "lookup",
            "json_type": "jsonobject",
            "lookup": {"module": {"api_name": "A"}},
        },
        {"api_name": "Owner", "data_type": "ownerlookup", "json_type": "jsonobject"},
        {"api_name": "Tags", "data_type": "multiselectpicklist", "json_type": "jsonarray"},
    ]
    shaper = BulkRecordShaper.for_fields("M", ["id", "Active", "Score", "Account", "Owner", "Tags"], metadata)
    assert shaper.unsupported() == ["Owner", "Tags"]
    shaper = BulkRecordShaper.for_fields("M", ["Active", "Score", "Account"], metadata)
    convert = shaper.converter(lambda module: {"7": f"{module} seven"})
    assert convert({"Id": "1", "Active": "true", "Score": "", "Account": "7"}) == {
        "id": "1",
        "Active": True,
        "Score": None,
        "Account": {"name": "A seven", "id": "7"},
    }
    # A `<field>.id` column carries the id; its `<field>` column is then the name.
    assert convert({"Id": "2", "Active": "FALSE", "Score": "2.5", "Account": "Acme", "Account.id": "9"})["Account"] == {
        "name": "Acme",
        "id": "9",
    }
    with pytest.raises(Exception, match="not a boolean"):
        convert({"Id": "3", "Active": "maybe", "Score": "1", "Account": ""})
