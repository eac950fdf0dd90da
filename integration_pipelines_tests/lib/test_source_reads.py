"""Zoho modules read side by side land as each module's own: interleaved records go to their
module's lander, and each module's counts and requests are reported once, when it ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from integration_pipelines.lib.raw_sync import land_modules
from integration_pipelines.lib.source_reads import ModuleRead
from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.warehouse.upsert import encode_json

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ids_of(conn, entity: str) -> list[str]:
    r = raw_records.c
    return list(conn.scalars(select(r.record_id).where(r.tenant_id == "default", r.entity == entity)))


def record(module: str, i: int):
    return module, str(i), encode_json({"id": str(i), "Name": f"{module} {i}"}), T0 + timedelta(minutes=i)


def interleaved():
    """Two modules read side by side, as `read_zoho_modules` yields them."""
    yield record("Programs", 0)
    yield record("Units", 0)
    yield record("Programs", 1)
    yield "Units.deleted", "9", encode_json({"id": "9", "deleted_time": T0.isoformat()}), T0
    yield ModuleRead("Units", requests=3)
    yield record("Programs", 2)
    yield ModuleRead("Programs", requests=2)


def test_interleaved_modules_land_each_in_its_own_module_and_report_once(warehouse):
    with warehouse.begin() as conn:
        landed = list(land_modules(conn, "default", "zoho", ["Programs", "Units"], interleaved(), snapshot=True))
    assert [(module, counts.read, counts.written.inserted, requests) for module, counts, requests in landed] == [
        ("Units", 1, 1, 3),
        ("Programs", 3, 3, 2),
    ]
    with warehouse.connect() as conn:
        programs = sorted(ids_of(conn, "Programs"))
        deleted = ids_of(conn, "Units.deleted")
    assert programs == ["0", "1", "2"]
    assert deleted == ["9"]


def test_a_read_that_ends_before_a_module_did_is_an_error(warehouse):
    def cut_short():
        yield record("Programs", 0)

    with pytest.raises(RuntimeError, match="Programs"), warehouse.begin() as conn:
        list(land_modules(conn, "default", "zoho", ["Programs"], cut_short(), snapshot=True))
