"""What the raw assets land: each source's records, read and shaped as raw records.

A raw record is `(entity, record id, payload, source modification time)`, its payload already
encoded (`encode_json`). The readers here run wherever the reading runs: in a process of their
own for snapshots (`ReadAhead(..., process=True)`), so they take plain arguments and a picklable
client factory, build their client there, and return the requests they made.
`prepared_raw_records` wraps a reader so that its records arrive prepared for the upsert
(`RawLander.land_prepared`), leaving the landing process nothing to do but write.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from integration_pipelines.lib.canonical import epoch
from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.lib.warehouse.engine import warehouse_dialect
from integration_pipelines.lib.warehouse.raw import deleted_entity_name, raw_row
from integration_pipelines.lib.warehouse.upsert import EncodedJSON, encode_json, row_preparer
from integration_pipelines.lib.zoho import ZohoClient, parse_zoho_datetime

RawRecord = tuple[str, str, EncodedJSON, datetime]


def prepared_raw_records(
    warehouse_url: str, tenant_id: str, source: str, read: Callable[..., Iterator], *args: Any
) -> Generator[Any, None, Any]:
    """What `read(*args)` yields, each raw record as `(entity, record id, prepared)`, prepared
    for the warehouse's `raw_records` upsert (`RawLander.land_prepared`); anything else it yields
    (a `ModuleRead`) passes as it is. Returns what `read` returns.

    Preparing (building, fingerprinting and converting the row) is per-record work like the
    reading: done here, in a snapshot's reader process, it leaves the landing process, which the
    snapshot waits on, only the writing. Needs no connection.
    """
    prepare = row_preparer(warehouse_dialect(warehouse_url), "raw_records")
    with closing(read(*args)) as records:
        while True:
            try:
                record = next(records)
            except StopIteration as end:
                return end.value
            if isinstance(record, tuple):
                entity, record_id, payload, modified_at = record
                row = raw_row(tenant_id, source, entity, record_id, payload, modified_at)
                yield entity, row["record_id"], prepare(row)
            else:
                yield record


# Enrolment payloads keep what is specific to the course; the user's profile lands once, as a user.
ENROLMENT_KEYS = ("roles", "groups", "lastcourseaccess")
GRADE_ITEM_KEYS = (
    "id",
    "itemname",
    "itemtype",
    "itemmodule",
    "iteminstance",
    "idnumber",
    "grademin",
    "grademax",
    "scaleid",
    "cmid",
)


def read_moodle_snapshot(
    make_client: Callable[[], MoodleClient], observed_at: datetime, concurrency: int
) -> Iterator[RawRecord]:
    """The whole Moodle site as raw records: courses, enrolments (with their suspension), users,
    assignment grade items and grades. Returns the number of requests made."""
    items_seen: set[int] = set()
    with make_client() as client:
        for record in client.crawl_snapshot(grades=True, enrolment_status=True, concurrency=concurrency):
            if record.kind == "course":
                yield "courses", str(record.id), encode_json(record.data), observed_at
            elif record.kind == "enrolment":
                payload = {
                    "courseid": record.course_id,
                    "userid": record.user_id,
                    "suspended": record.suspended,
                    **{k: record.data[k] for k in ENROLMENT_KEYS if k in record.data},
                }
                yield "enrolments", f"{record.course_id}:{record.user_id}", encode_json(payload), observed_at
            elif record.kind == "user":
                yield "users", str(record.id), encode_json(record.data), observed_at
            elif record.kind == "grade" and record.data.get("itemmodule") == "assign":
                if record.item_id not in items_seen:
                    items_seen.add(record.item_id)
                    item = {k: record.data.get(k) for k in GRADE_ITEM_KEYS} | {"courseid": record.course_id}
                    yield "grade_items", str(record.item_id), encode_json(item), observed_at
                if record.data.get("graderaw") is not None:
                    # The item's own fields land once, as a grade item; a grade keeps what is its own.
                    payload = {
                        "itemid": record.item_id,
                        "iteminstance": record.data.get("iteminstance"),
                        "courseid": record.course_id,
                        "userid": record.user_id,
                        "graderaw": record.data["graderaw"],
                        "gradedategraded": record.data.get("gradedategraded"),
                    }
                    graded = epoch(record.data.get("gradedategraded")) or observed_at
                    yield "grades", f"{record.item_id}:{record.user_id}", encode_json(payload), graded
        return client.counter.total


@dataclass(frozen=True)
class ModuleRead:
    """Marks the end of one Zoho module's records in `read_zoho_modules`, and what reading it cost."""

    module: str
    requests: int


def read_zoho_modules(
    make_client: Callable[[], ZohoClient],
    modules: Sequence[tuple[str, Sequence[str]]],
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[RawRecord | ModuleRead]:
    """Each Zoho module's records (all of them, or those modified in [since, until)) and its
    deleted list (`<module>.deleted`), as raw records; a `ModuleRead` follows each module's.
    `modules` are (module API name, fields to read). Returns the number of requests made."""
    with make_client() as client:
        for module, fields in modules:
            before = client.counter.total
            for record in client.iter_records(module, fields, modified_since=since):
                modified = parse_zoho_datetime(record["Modified_Time"])
                if until is not None and modified >= until:
                    break  # sorted by Modified_Time: the rest belongs to later windows
                yield module, str(record["id"]), encode_json(record), modified
            deleted = deleted_entity_name(module)
            for record in client.iter_deleted(module, since=since):
                deleted_time = parse_zoho_datetime(record["deleted_time"])
                if until is None or deleted_time < until:
                    yield deleted, str(record["id"]), encode_json(record), deleted_time
            yield ModuleRead(module, client.counter.total - before)
        return client.counter.total
