"""Raw records prepared in a snapshot's reader process land exactly as records landed one by one
in the landing process do, and the reader's markers and result come through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from integration_pipelines.lib.raw_sync import RawLander
from integration_pipelines.lib.read_ahead import ReadAhead
from integration_pipelines.lib.source_reads import ModuleRead, prepared_raw_records
from integration_pipelines.lib.warehouse.raw import iter_raw_changes
from integration_pipelines.lib.warehouse.upsert import encode_json

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def programs(n: int):
    """A reader as `read_zoho_modules` is: raw records, then a marker; returns its request count."""
    for i in range(n):
        yield "Programs", i, encode_json({"id": i, "Name": f"Programme {i}"}), T0 + timedelta(minutes=i)
    yield ModuleRead("Programs", requests=2)
    return 2


def test_records_prepared_in_a_reader_process_land_as_records_landed_one_by_one(warehouse):
    url = warehouse.url.render_as_string(hide_password=False)
    with ReadAhead(prepared_raw_records, url, "default", "zoho", programs, 3, process=True) as reader:
        received = list(reader)
    assert reader.result == 2
    *records, marker = received
    assert marker == ModuleRead("Programs", requests=2)
    assert [(entity, record_id) for entity, record_id, _ in records] == [
        ("Programs", "0"),
        ("Programs", "1"),
        ("Programs", "2"),
    ]

    with warehouse.begin() as conn:
        lander = RawLander(conn, "default", "zoho", ["Programs"], snapshot=False)
        for entity, _, prepared in records:
            lander.land_prepared(entity, prepared)
        assert lander.finish()["Programs"].written.inserted == 3
    with warehouse.begin() as conn:
        # The same records landed here, unprepared: identical rows, so nothing is written.
        lander = RawLander(conn, "default", "zoho", ["Programs"], snapshot=False)
        for record in programs(3):
            if isinstance(record, tuple):
                lander.land(*record)
        again = lander.finish()["Programs"]
    assert (again.read, again.written.written, again.written.unchanged) == (3, 0, 3)
    with warehouse.connect() as conn:
        landed = [(c.record_id, c.payload) for c in iter_raw_changes(conn, "default", "zoho", "Programs", None)]
    assert sorted(landed) == [(str(i), {"id": i, "Name": f"Programme {i}"}) for i in range(3)]
