"""What the raw assets land: each source's records, read and shaped as raw records.

A raw record is `(entity, record id, payload, source modification time)`, its payload already
encoded (`encode_json`). The readers take a client factory, build their client, read with
threads of their own (the Moodle crawl's pool, one thread per Zoho module) so that reading waits
on the source while the caller lands what was read, and return the requests they made. They run
in the landing process: an A/B (docs/benchmarks.md, "Read-ahead A/B") found a reader process or
an extra read-ahead thread no faster.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from integration_pipelines.lib.canonical import epoch
from integration_pipelines.lib.moodle import MoodleClient, MoodleNotFound
from integration_pipelines.lib.moodle.grades import is_scale_item, moodle_number
from integration_pipelines.lib.moodle.records import (
    MoodleAssignGrade,
    MoodleCompletion,
    MoodleCourse,
    MoodleEnrolment,
    MoodleGrade,
    MoodleUser,
)
from integration_pipelines.lib.warehouse.raw import deleted_entity_name, iter_raw_payloads
from integration_pipelines.lib.warehouse.upsert import EncodedJSON, encode_json
from integration_pipelines.lib.zoho import (
    ZohoAPIError,
    ZohoAuthError,
    ZohoBulkReadError,
    ZohoClient,
    ZohoResponseError,
    bulk,
    check_mapped_fields,
    parse_zoho_datetime,
)
from integration_pipelines.lib.zoho.bulk import LOOKUP_NAME_FIELD, BulkRecordShaper

RawRecord = tuple[str, str, EncodedJSON, datetime]

logger = logging.getLogger(__name__)


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
    "rangeformatted",
    "cmid",
)


# Which snapshot entity each phase of the crawl feeds, by wsfunction, for its request count. The
# grade reports feed grade items and grades both: they are counted once, on grades.
REQUESTS_OF = {
    "core_course_get_courses": "courses",
    "core_enrol_get_enrolled_users": "enrolments",
    "core_user_get_users_by_field": "users",
    "gradereport_user_get_grade_items": "grades",
    "core_enrol_get_users_courses": "completions",
    "core_completion_get_course_completion_status": "completions",
}


def requests_by_entity(by_wsfunction: dict[str, int]) -> dict[str, int]:
    """A crawl's requests by wsfunction as the snapshot entities' figures: each phase's on the
    entity it feeds (`REQUESTS_OF`), anything else on courses, so they add up to the total."""
    figures: dict[str, int] = dict.fromkeys(
        ("courses", "enrolments", "users", "grade_items", "grades", "completions"), 0
    )
    for wsfunction, count in by_wsfunction.items():
        figures[REQUESTS_OF.get(wsfunction, "courses")] += count
    return figures


# The source time of a Moodle record whose answer carries none. Moodle's users (`core_user_get_users_by_field`
# gives `firstaccess`/`lastaccess`, which are access times, not modification times), enrolments
# (`core_enrol_get_enrolled_users`, with or without `onlysuspended`, gives no enrolment time) and
# assignment grade items (the grade report gives none) say nothing of when they changed. The
# sync's own clock would make every snapshot of an unchanged site a different raw row, so these
# get one stable value, the Unix epoch, meaning "unknown". It never blocks a change: the upsert
# writes a changed fingerprint when the stored source time is older *or equal* (`<=`).
UNKNOWN_SOURCE_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def course_modified_at(course: Mapping[str, Any]) -> datetime:
    """A course's source time: its `timemodified`, else its `timecreated`, else unknown (epoch)."""
    return epoch(course.get("timemodified")) or epoch(course.get("timecreated")) or UNKNOWN_SOURCE_TIME


def read_moodle_snapshot(
    make_client: Callable[[], MoodleClient],
    concurrency: int,
    *,
    completions: bool = True,
    known_completed: Collection[tuple[int, int]] = (),
    known_open: Collection[tuple[int, int]] = (),
) -> Generator[RawRecord, None, dict[str, int]]:
    """The whole Moodle site as raw records: courses, enrolments (with their suspension), users,
    every grade item (assignments, manual items, course totals) and its grades. Returns the
    requests made, by wsfunction.

    Each record carries the source's own time where Moodle's answer has one (a course's
    `timemodified`, a grade's `gradedategraded`) and `UNKNOWN_SOURCE_TIME` otherwise, never the
    sync's clock: two snapshots of an unchanged site land the same raw rows.

    With `completions`, each enrolment's course completion lands too, at one request per user
    (`core_enrol_get_users_courses`: which of the user's courses are completed) plus one per
    enrolment completed since the last snapshot (`core_completion_get_course_completion_status`,
    for its time: see `completion_record`), and one per suspended enrolment whose completion has
    not landed yet, which Moodle leaves out of a user's courses (the crawl's docstring says what
    becomes of them). A course that does not track completion costs nothing, nor do the (course,
    user) pairs in `known_completed` (a completion is for good: asked once). `known_completions`
    reads both sets from the raw layer."""
    items_seen: set[int | None] = set()
    unknown = UNKNOWN_SOURCE_TIME
    with make_client() as client:
        for record in client.crawl_snapshot(
            grades=True,
            enrolment_status=True,
            concurrency=concurrency,
            completions="per_user" if completions else "none",
            known_completed=known_completed,
            known_open=known_open,
        ):
            if isinstance(record, MoodleCourse):
                yield "courses", str(record.id), encode_json(record.data), course_modified_at(record.data)
            elif isinstance(record, MoodleEnrolment):
                payload = {
                    "courseid": record.course_id,
                    "userid": record.user_id,
                    "suspended": record.suspended,
                    **{k: record.data[k] for k in ENROLMENT_KEYS if k in record.data},
                }
                yield "enrolments", f"{record.course_id}:{record.user_id}", encode_json(payload), unknown
            elif isinstance(record, MoodleUser):
                yield "users", str(record.id), encode_json(record.data), unknown
            elif isinstance(record, MoodleGrade):
                yield from grade_records(record, items_seen)
            elif isinstance(record, MoodleCompletion):
                yield completion_record(record)
        return dict(client.counter.by_endpoint)


def assign_grade_record(grade: MoodleAssignGrade) -> RawRecord | None:
    """An assignment grade (`mod_assign_get_grades`) as a raw `assign_grades` record, stamped with
    when it was graded; None for no grade ("-1") or no time. Change windows and events land these."""
    graded = epoch(grade.timemodified)
    if grade.grade is None or graded is None:
        return None
    payload = {**grade.data, "assignmentid": grade.assignment_id, "grade": moodle_number(grade.data.get("grade"))}
    return "assign_grades", f"{grade.assignment_id}:{grade.user_id}", encode_json(payload), graded


def grade_records(grade: MoodleGrade, items_seen: set[int | None]) -> Iterator[RawRecord]:
    """A grade report's entry as raw records: its grade item the first time that item is seen
    (every kind: assignments, manual items, quizzes, the course total), and its grade when it has
    one. Numbers get one spelling (`moodle_number`) and a scale item is marked (`scale`) whatever
    its `scaleid` says, so the canonical SQL reads what Moodle means."""
    data = grade.data
    if grade.item_id not in items_seen:
        items_seen.add(grade.item_id)
        item = {k: data.get(k) for k in GRADE_ITEM_KEYS} | {
            "courseid": grade.course_id,
            "grademin": moodle_number(data.get("grademin")),
            "grademax": moodle_number(data.get("grademax")),
            "scale": is_scale_item(data),
        }
        yield "grade_items", str(grade.item_id), encode_json(item), UNKNOWN_SOURCE_TIME
    if data.get("graderaw") is not None:
        # The item's own fields land once, as a grade item; a grade keeps what is its own: the
        # gradebook's final grade, overridden or not, with the words a scale shows for it.
        payload = {
            "itemid": grade.item_id,
            "iteminstance": data.get("iteminstance"),
            "itemtype": data.get("itemtype"),
            "courseid": grade.course_id,
            "userid": grade.user_id,
            "graderaw": moodle_number(data["graderaw"]),
            "gradeformatted": data.get("gradeformatted"),
            "gradeisoverridden": bool(data.get("gradeisoverridden")),
            "gradedategraded": data.get("gradedategraded"),
        }
        graded = epoch(data.get("gradedategraded")) or UNKNOWN_SOURCE_TIME
        yield "grades", f"{grade.item_id}:{grade.user_id}", encode_json(payload), graded


def known_completions(conn: Connection, tenant: str) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """The (course, user) pairs whose completion the raw layer holds: those completed (no
    enrolment is asked again once completed) and the others, not completed or unknown (a
    suspended enrolment among them is not asked again: see `crawl_snapshot`)."""
    completed: set[tuple[int, int]] = set()
    open_: set[tuple[int, int]] = set()
    for c in iter_raw_payloads(conn, tenant, "moodle", "completions"):
        (completed if c.get("completed") else open_).add((int(c["courseid"]), int(c["userid"])))
    return completed, open_


def completion_record(completion: MoodleCompletion) -> RawRecord:
    """A course completion as a raw record, `<course>:<user>`: whether the user completed the
    course, and when. Moodle's completion status carries no completion time of the course
    itself, only each criterion's; the course is complete when its criteria are (aggregation
    "all", 1), so its time is the latest criterion's, and unknown (null) for "any". An open
    enrolment, known from the user's courses (`core_enrol_get_users_courses`), has neither."""
    data = completion.data
    criteria_times = [
        int(c["timecompleted"]) for c in data.get("completions") or [] if c.get("complete") and c.get("timecompleted")
    ]
    completed_at = max(criteria_times) if completion.completed and criteria_times else None
    if data.get("aggregation") not in (None, 1, "1"):
        completed_at = None
    payload = {
        "courseid": completion.course_id,
        "userid": completion.user_id,
        "completed": completion.completed,
        "timecompleted": completed_at,
        "aggregation": data.get("aggregation"),
    }
    at = epoch(completed_at) or UNKNOWN_SOURCE_TIME
    return "completions", f"{completion.course_id}:{completion.user_id}", encode_json(payload), at


def read_gradebook(client: MoodleClient, pairs: Iterable[tuple[int, int]]) -> Iterator[RawRecord]:
    """The gradebook's grades of some (course, user) pairs, re-read as raw records: what a
    changed assignment grade or a grade event is a signal to do (the gradebook's final grade,
    overrides included, is the grade; `mod_assign_get_grades` is not).

    Batched by course: one request for a course with one user to re-read, one request for the
    whole course (`userid=0`, its other users' grades left out) for a course with more."""
    by_course: dict[int, set[int]] = {}
    for course_id, user_id in pairs:
        by_course.setdefault(int(course_id), set()).add(int(user_id))
    items_seen: set[int | None] = set()
    for course_id in sorted(by_course):
        users = by_course[course_id]
        asked = next(iter(users)) if len(users) == 1 else 0
        try:
            for grade in client.iter_course_grades(course_id, user_id=asked):
                if grade.user_id in users:
                    yield from grade_records(grade, items_seen)
        except MoodleNotFound:
            # The course (or the user) is gone: the next snapshot soft-deletes what it held.
            logger.info("Moodle course %s or its users vanished before their gradebook was re-read", course_id)


def read_moodle_grade_changes(
    client: MoodleClient, course_of_assignment: Mapping[int, int], start: datetime, end: datetime | None
) -> Iterator[RawRecord]:
    """A change window of Moodle grades as raw records: the assignment grades given or changed in
    [start, end) (no end: up to now, what an event asks), landed as raw `assign_grades` (the
    signal), then the gradebook of every (course, user) they name, re-read in one batch
    (`read_gradebook`): the grade itself, which a gradebook override keeps whatever the assignment
    says since."""
    reread: set[tuple[int, int]] = set()
    for grade in client.iter_assign_grades(sorted(course_of_assignment), since=start):
        record = assign_grade_record(grade)
        if record is None or (end is not None and record[3] >= end):
            continue
        yield record
        reread.add((course_of_assignment[grade.assignment_id], grade.user_id))
    yield from read_gradebook(client, reread)


_Result = TypeVar("_Result")


class RecordsWithResult(Generic[_Result]):
    """Iterates a reader's generator and keeps what it returns as `result` (its requests, None
    until the generator has returned)."""

    def __init__(self, records: Generator[Any, None, _Result]):
        self._records: Generator[Any, None, _Result] = records
        self.result: _Result | None = None

    def __iter__(self) -> Iterator[Any]:
        self.result = yield from self._records


@dataclass(frozen=True)
class ModuleRead:
    """Marks the end of one Zoho module's records in `read_zoho_modules`, what reading it cost,
    and how its records were read: `"bulk"` (a Bulk Read export) or `"pages"` (the record API)."""

    module: str
    requests: int
    read_by: str = "pages"


@dataclass(frozen=True)
class ZohoModule:
    """What to read of one Zoho module: the mapping's entity it feeds, and the fields it maps."""

    entity: str
    module: str
    fields: tuple[str, ...]


# Records put on the queue at a time by a module's reader (one page's worth).
_CHUNK = 200

# A Bulk Read job's polls start at the client's `bulk_poll_interval` and grow by this factor,
# to at most `bulk.MAX_POLL_INTERVAL`, within the client's `bulk_timeout`.
BULK_POLL_BACKOFF = 1.5


@dataclass
class _Plan:
    """How one module is read, decided before any module's records are: its field list, and its
    shaper when it is read by Bulk Read."""

    read: ZohoModule
    field_list: list[dict[str, Any]]
    shaper: BulkRecordShaper | None = None

    @property
    def read_by(self) -> str:
        return "pages" if self.shaper is None else "bulk"


class _LookupNames:
    """The record names of lookup targets (id -> `Name`), each module's read once per read.

    A module read by Bulk Read that other bulk-read modules look up fills its own names from its
    export (one job for both). Any other target is read by a job of its own, by the first module
    that needs it. Whoever claims a module's names fills them without waiting on anything else,
    so a module waiting on another's names never waits on a reader that waits on it."""

    def __init__(self, client: ZohoClient):
        self._client = client
        self._lock = threading.Lock()
        self._slots: dict[str, _NamesSlot] = {}

    def claim(self, module: str) -> _NamesSlot | None:
        """The module's slot, to fill, if nobody has claimed it yet."""
        with self._lock:
            if module in self._slots:
                return None
            slot = self._slots[module] = _NamesSlot()
            return slot

    def get(self, module: str) -> Mapping[str, str | None]:
        slot = self.claim(module)
        if slot is not None:
            try:
                deleted = list(self._client.iter_deleted(module))
                with bulk.spooled_bulk_read(
                    self._client, module, ["id", LOOKUP_NAME_FIELD], backoff=BULK_POLL_BACKOFF
                ) as export:
                    slot.fill(record_names(export, deleted))
            except BaseException as error:
                slot.fail(error)
                raise
        with self._lock:
            slot = self._slots[module]
        return slot.wait(module)


def record_names(export: bulk.BulkExport, deleted: Sequence[Mapping[str, Any]]) -> dict[str, str | None]:
    """Id -> name of a module's records: the live ones' `Name` from its export, and the deleted
    ones' `display_name` from its deleted list (a lookup to a deleted record keeps its name)."""
    names = {str(r["id"]): r.get("display_name") or None for r in deleted if r.get("id")}
    names.update((row["Id"], row.get(LOOKUP_NAME_FIELD) or None) for row in export.rows())
    return names


class _NamesSlot:
    def __init__(self) -> None:
        self._done = threading.Event()
        self._names: Mapping[str, str | None] = {}
        self._error: BaseException | None = None

    def fill(self, names: Mapping[str, str | None]) -> None:
        self._names = names
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self, module: str) -> Mapping[str, str | None]:
        self._done.wait()
        if self._error is not None:
            raise ZohoBulkReadError(
                f"Zoho Bulk Read: the names of the {module} records (for lookups to them) could not be read: "
                f"{self._error}"
            ) from self._error
        return self._names


def read_zoho_modules(
    make_client: Callable[[], ZohoClient],
    modules: Sequence[ZohoModule],
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    concurrency: int | None = None,
    bulk_threshold: int = 0,
) -> Iterator[RawRecord | ModuleRead]:
    """Each Zoho module's records (all of them, or those modified in [since, until)) and its
    deleted list (`<module>.deleted`), as raw records; a `ModuleRead` follows the last of each
    module's. Returns the number of requests made.

    Modules are read side by side, each in a thread of its own, up to `concurrency` at once
    (unset: the org edition's limit, read from `/org`, or the Free edition's 5 when it cannot be
    read); the client's concurrency cap holds their requests together to the same limit. One
    module's pages follow each other by `page_token`, so they cannot overlap: the client switches
    from `page` to `page_token` after the first page, as soon as Zoho offers a token, because a
    `page` offset shifts when records change during the read, and asking pages 2..10 of a module
    blindly would spend credits on pages that may not exist. Records of different modules
    therefore arrive interleaved, each module's in its order. Before its first page, a module's
    mapped fields are checked against its field list (`check_mapped_fields`).

    A full read (no window) of a module holding more than `bulk_threshold` records (0 or less:
    never; the count is `GET /{module}/actions/count`, one request) is a Bulk Read export
    instead of pages: its CSV rows become the records the pages would have been, typed by the
    module's field metadata (`BulkRecordShaper`), lookups with the names of the records they
    point at. A module with a field a CSV cannot rebuild (an owner lookup, say), or whose count
    Zoho will not give, is read by pages all the same, with a warning. Its deleted list is read
    as for pages.
    """
    full = since is None and until is None
    with make_client() as client:
        limit = concurrency or client.configure_concurrency_from_org()
        client.limiter.set_limit(limit)
        workers = max(1, min(limit, len(modules)))
        out: queue.Queue = queue.Queue(maxsize=8 * workers)
        stop = threading.Event()
        names = _LookupNames(client)

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def plan(read: ZohoModule) -> _Plan:
            with client.counter.scope(read.module):
                field_list = client.list_fields(read.module)
                check_mapped_fields(client, read.entity, read.module, read.fields, field_list)
                if not (full and bulk_threshold > 0):
                    return _Plan(read, field_list)
                try:
                    count = client.record_count(read.module)
                except (ZohoAPIError, ZohoResponseError) as error:
                    if isinstance(error, ZohoAuthError):
                        raise
                    logger.warning("Zoho %s: no record count (%s); reading it by pages", read.module, error)
                    return _Plan(read, field_list)
                if count <= bulk_threshold:
                    return _Plan(read, field_list)
                shaper = BulkRecordShaper.for_fields(read.module, read.fields, field_list)
                if unsupported := shaper.unsupported():
                    logger.warning(
                        "Zoho %s: %d records, over the Bulk Read threshold of %d, but a Bulk Read CSV cannot "
                        "rebuild %s as the record API returns it; reading it by pages",
                        read.module,
                        count,
                        bulk_threshold,
                        ", ".join(unsupported),
                    )
                    return _Plan(read, field_list)
                return _Plan(read, field_list, shaper)

        def records(p: _Plan, targets: set[str], deleted: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            """The module's records; for a module others look up, its deleted list is read first, into
            `deleted`, for the names of the deleted records they may still point at."""
            module = p.read.module
            if p.shaper is None:
                yield from client.iter_records(module, p.read.fields, modified_since=since)
                return
            fields = ["id", *p.shaper.fields]
            own = names.claim(module) if module in targets else None
            if own is not None and LOOKUP_NAME_FIELD not in fields:
                fields.append(LOOKUP_NAME_FIELD)
            try:
                if own is not None:
                    deleted.extend(client.iter_deleted(module, since=since))
                with bulk.spooled_bulk_read(client, module, fields, backoff=BULK_POLL_BACKOFF) as export:
                    if own is not None:
                        own.fill(record_names(export, deleted))
                        own = None
                    convert = p.shaper.converter(names.get)
                    for row in export.rows():
                        yield convert(row)
            finally:
                if own is not None:  # the export failed before it could fill the names
                    own.fail(ZohoBulkReadError(f"Zoho Bulk Read of {module} did not complete"))

        def read(p: _Plan, targets: set[str]) -> None:
            module = p.read.module
            with client.counter.scope(module):
                chunk: list[RawRecord] = []
                deleted_list: list[dict[str, Any]] = []
                for record in records(p, targets, deleted_list):
                    modified = parse_zoho_datetime(record["Modified_Time"])
                    if until is not None and modified >= until:
                        break  # sorted by Modified_Time: the rest belongs to later windows
                    chunk.append((module, record["id"], encode_json(record), modified))
                    if len(chunk) >= _CHUNK:
                        if not put(chunk):
                            return
                        chunk = []
                deleted = deleted_entity_name(module)
                for record in deleted_list or client.iter_deleted(module, since=since):
                    deleted_time = parse_zoho_datetime(record["deleted_time"])
                    if until is None or deleted_time < until:
                        chunk.append((deleted, record["id"], encode_json(record), deleted_time))
                        if len(chunk) >= _CHUNK:
                            if not put(chunk):
                                return
                            chunk = []
            if chunk and not put(chunk):
                return
            put(ModuleRead(module, client.counter.by_scope[module], p.read_by))

        def guarded(p: _Plan, targets: set[str]) -> None:
            try:
                read(p, targets)
            except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
                put(_ReadFailed(error))

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zoho-read")
        try:
            plans = [f.result() for f in [pool.submit(plan, m) for m in modules]]
            # Modules that bulk-read modules look up: each fills its names from its own export
            # when it is read by Bulk Read too; those go first, so they are under way when needed.
            targets = {t for p in plans if p.shaper for t in p.shaper.lookup_targets().values()}
            bulk_targets = {p.read.module for p in plans if p.shaper} & targets
            for p in sorted(plans, key=lambda p: p.read.module not in bulk_targets):
                pool.submit(guarded, p, bulk_targets)
            remaining = len(modules)
            while remaining:
                item = out.get()
                if isinstance(item, list):
                    yield from item
                elif isinstance(item, ModuleRead):
                    remaining -= 1
                    yield item
                else:
                    raise item.error
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        return client.counter.total


@dataclass(frozen=True)
class _ReadFailed:
    error: BaseException
