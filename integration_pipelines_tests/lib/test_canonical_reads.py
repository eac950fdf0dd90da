"""The canonical steps' reading side gives the same rows and findings on the step's connection
and in a reader process of its own, and a bad record fails the read with its field named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from integration_pipelines.lib.canonical import zoho_rows
from integration_pipelines.lib.canonical_reads import (
    ChangesRead,
    Reading,
    read_changes,
    read_prepared,
    zoho_change_key,
)
from integration_pipelines.lib.mapping import RecordTransformError, load_mapping
from integration_pipelines.lib.read_ahead import ReadAhead
from integration_pipelines.lib.warehouse import upsert_rows
from integration_pipelines.lib.warehouse.raw import raw_row
from integration_pipelines.lib.warehouse.upsert import prepare_rows, soft_delete_keys

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PROGRAMS = load_mapping(None).zoho.entities["programs"]


def _program(i: int, credits: object = 120) -> dict:
    modified = (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return {"id": str(1000 + i), "Programme_Code": f"P{i}", "Name": f"Programme {i}", "Credits": credits,
            "Level": "3", "Modified_Time": modified}  # fmt: skip


def _land(engine, payloads) -> None:
    with engine.begin() as conn:
        rows = [raw_row("default", "zoho", "Programs", p["id"], p, T0) for p in payloads]
        upsert_rows(conn, "raw_records", rows)


def _changes_args():
    to_rows = partial(zoho_rows, "programs", PROGRAMS, tenant_id="default")
    return (read_changes, "default", "zoho", "Programs", None, to_rows, zoho_change_key)


def _inline(engine):
    with engine.connect() as conn:
        reading = Reading(prepare_rows(conn.dialect, "programs", _changes_args()[0](conn, *_changes_args()[1:])))
        return list(reading), reading.result


def _in_a_process(url):
    with ReadAhead(read_prepared, url, "programs", *_changes_args(), process=True) as reading:
        return list(reading), reading.result


def test_a_reader_process_reads_what_the_step_would(warehouse, warehouse_url):
    _land(warehouse, [_program(i) for i in range(30)])
    with warehouse.begin() as conn:  # a record Zoho deleted: its canonical key comes back as gone
        soft_delete_keys(
            conn, "raw_records", {"tenant_id": "default", "source": "zoho", "entity": "Programs"}, ["1007"]
        )

    rows, found = _inline(warehouse)
    assert isinstance(found, ChangesRead)
    assert (found.read, found.gone, len(rows)) == (30, ["zoho:1007"], 29)
    assert found.newest is not None and found.newest.tzinfo is not None
    assert _in_a_process(warehouse_url) == (rows, found)


def test_a_bad_record_fails_the_read_in_a_reader_process_with_its_field_named(warehouse, warehouse_url):
    _land(warehouse, [_program(1), _program(2, credits="many")])
    with pytest.raises(RecordTransformError, match="credits") as failure:
        _in_a_process(warehouse_url)
    assert (failure.value.entity, failure.value.record_id) == ("programs", "1002")
