"""Moodle, landed raw: a nightly snapshot of the site, and daily windows of assignment grades.

Moodle offers no "modified since" for users, courses or enrolments, so the snapshot costs the
same requests every run: courses; per course its enrolled users (paged), its suspended
enrolments and its grade report; each user's details once, in batches of 100. Unchanged records
cost no writes (fingerprints), and records that vanished from Moodle are soft-deleted. Between
snapshots, assignment grades come from `mod_assign_get_grades` with `since`, and the rest from
webhook events.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetSpec, BackfillPolicy, MaterializeResult, asset, multi_asset

from integration_pipelines.defs.moodle.resources import MoodleResource
from integration_pipelines.defs.partitions import change_windows
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.canonical import epoch
from integration_pipelines.lib.raw_sync import RawLander
from integration_pipelines.lib.read_ahead import read_ahead
from integration_pipelines.lib.warehouse.raw import iter_raw_payloads

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
SNAPSHOT_ENTITIES = ("courses", "enrolments", "users", "grade_items", "grades")
MOODLE_KINDS = {"moodle"}


@multi_asset(
    specs=[
        AssetSpec(
            "raw_moodle_courses",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Moodle courses, as core_course_get_courses returns them.",
        ),
        AssetSpec(
            "raw_moodle_enrolments",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Who is enrolled in which course, with roles, groups and suspension.",
        ),
        AssetSpec(
            "raw_moodle_users",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Every user enrolled anywhere, as core_user_get_users_by_field returns them.",
        ),
        AssetSpec(
            "raw_moodle_grade_items",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Assignment grade items: what each is out of, its scale, and its idnumber (unit code).",
        ),
        AssetSpec(
            "raw_moodle_grades",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Assignment grades from each course's grade report.",
        ),
    ],
    pool="moodle_api",
)
def moodle_snapshot(context: AssetExecutionContext, moodle: MoodleResource, warehouse: WarehouseResource):
    """A full crawl of the Moodle site, landed raw; what it no longer finds is soft-deleted."""
    observed_at = datetime.now(UTC)
    with moodle.client() as client, warehouse.begin() as conn:
        lander = RawLander(conn, warehouse.tenant, "moodle", SNAPSHOT_ENTITIES, snapshot=True)
        for entity, record_id, payload, modified_at in read_ahead(_snapshot_records(client, observed_at)):
            lander.land(entity, record_id, payload, modified_at)
        results = lander.finish()
        for entity, counts in results.items():
            warehouse.record_sync(conn, f"moodle.{entity}", counts.read)
    for entity, counts in results.items():
        yield MaterializeResult(
            asset_key=f"raw_moodle_{entity}",
            metadata={**counts.as_metadata(), "requests": client.counter.total, "mode": "snapshot"},
        )


def _snapshot_records(client, observed_at: datetime) -> Iterator[tuple[str, object, dict, datetime]]:
    """The crawl as raw records: (entity, record id, payload, source modification time)."""
    suspended: set[int] = set()
    items_seen: set[int] = set()
    for record in client.crawl_snapshot(grades=True):
        if record.kind == "course":
            yield "courses", record.id, record.data, observed_at
            # The enrolled-users answer has no enrolment status: ask for the suspended ones apart.
            suspended = {e.user_id for e in client.iter_enrolled_users(record.id, options={"onlysuspended": 1})}
        elif record.kind == "enrolment":
            payload = {
                "courseid": record.course_id,
                "userid": record.user_id,
                "suspended": record.user_id in suspended,
                **{k: record.data[k] for k in ENROLMENT_KEYS if k in record.data},
            }
            yield "enrolments", f"{record.course_id}:{record.user_id}", payload, observed_at
        elif record.kind == "user":
            yield "users", record.id, record.data, observed_at
        elif record.kind == "grade" and record.data.get("itemmodule") == "assign":
            if record.item_id not in items_seen:
                items_seen.add(record.item_id)
                item = {k: record.data.get(k) for k in GRADE_ITEM_KEYS} | {"courseid": record.course_id}
                yield "grade_items", record.item_id, item, observed_at
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
                yield (
                    "grades",
                    f"{record.item_id}:{record.user_id}",
                    payload,
                    epoch(record.data.get("gradedategraded")) or observed_at,
                )


@asset(
    group_name="moodle",
    kinds=MOODLE_KINDS,
    partitions_def=change_windows,
    backfill_policy=BackfillPolicy.single_run(),
    deps=["raw_moodle_grade_items"],
    pool="moodle_api",
)
def moodle_grade_changes(
    context: AssetExecutionContext, moodle: MoodleResource, warehouse: WarehouseResource
) -> MaterializeResult:
    """Assignment grades given or changed within the window, from `mod_assign_get_grades` with `since`.

    Assignments are those of the last snapshot's grade items; one created since then is picked up
    by the next snapshot.
    """
    window = context.partition_time_window
    with moodle.client() as client, warehouse.begin() as conn:
        assignments = sorted(
            {int(i["iteminstance"]) for i in iter_raw_payloads(conn, warehouse.tenant, "moodle", "grade_items")}
        )
        lander = RawLander(conn, warehouse.tenant, "moodle", ("assign_grades",), snapshot=False)
        for grade in client.iter_assign_grades(assignments, since=window.start):
            graded = epoch(grade.timemodified)
            if grade.grade is None or graded is None or graded >= window.end:
                continue
            payload = {**grade.data, "assignmentid": grade.assignment_id}
            lander.land("assign_grades", f"{grade.assignment_id}:{grade.user_id}", payload, graded)
        counts = lander.finish()["assign_grades"]
    return MaterializeResult(
        metadata={
            **counts.as_metadata(),
            "assignments": len(assignments),
            "requests": client.counter.total,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
        }
    )
