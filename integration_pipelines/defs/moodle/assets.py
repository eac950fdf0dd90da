"""Moodle, landed raw: a nightly snapshot of the site, and daily windows of assignment grades.

Moodle offers no "modified since" for users, courses or enrolments, so the snapshot costs the
same requests every run: courses; per course its enrolled users (paged), its suspended
enrolments and its grade report; each user's details once, in batches of 100. Unchanged records
cost no writes (fingerprints), and records that vanished from Moodle are soft-deleted. Between
snapshots, assignment grades come from `mod_assign_get_grades` with `since`, and the rest from
webhook events.
"""

from dagster import AssetExecutionContext, AssetSpec, BackfillPolicy, MaterializeResult, asset, multi_asset

from integration_pipelines.defs.moodle.resources import MoodleResource
from integration_pipelines.defs.partitions import change_windows
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.raw_sync import RawLander
from integration_pipelines.lib.source_reads import (
    Reading,
    assign_grade_record,
    read_moodle_snapshot,
    requests_by_entity,
)
from integration_pipelines.lib.warehouse.raw import iter_raw_payloads

SNAPSHOT_ENTITIES = ("courses", "enrolments", "users", "grade_items", "grades")
MOODLE_KINDS = {"moodle"}


@multi_asset(
    specs=[
        AssetSpec(
            "raw_moodle_courses",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Moodle courses, as core_course_get_courses returns them. Its `requests` are the "
            "crawl's course list (one request).",
        ),
        AssetSpec(
            "raw_moodle_enrolments",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Who is enrolled in which course, with roles, groups and suspension. Its `requests` "
            "are the crawl's core_enrol_get_enrolled_users calls (pages, and each course's suspended ones).",
        ),
        AssetSpec(
            "raw_moodle_users",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Every user enrolled anywhere, as core_user_get_users_by_field returns them. Its "
            "`requests` are those batches of users.",
        ),
        AssetSpec(
            "raw_moodle_grade_items",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Assignment grade items: what each is out of, its scale, and its idnumber (unit code). "
            "They come from the grade reports counted on raw_moodle_grades, so its `requests` is 0.",
        ),
        AssetSpec(
            "raw_moodle_grades",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Assignment grades from each course's grade report. Its `requests` are the "
            "gradereport_user_get_grade_items calls (one per course with enrolments), which also feed "
            "raw_moodle_grade_items.",
        ),
    ],
    pool="moodle_api",
)
def moodle_snapshot(context: AssetExecutionContext, moodle: MoodleResource, warehouse: WarehouseResource):
    """A full crawl of the Moodle site, landed raw; what it no longer finds is soft-deleted.

    The crawl keeps `MoodleResource.concurrency` requests in flight in threads that wait on
    Moodle while this one lands what they read. Each asset's `requests` counts the requests of
    the phase that feeds it (see `REQUESTS_OF`), so the five add up to the crawl's total.
    """
    reader = Reading(read_moodle_snapshot(moodle.client_factory(), moodle.concurrency))
    with warehouse.begin() as conn:
        lander = RawLander(conn, warehouse.tenant, "moodle", SNAPSHOT_ENTITIES, snapshot=True)
        for entity, record_id, payload, modified_at in reader:
            lander.land(entity, record_id, payload, modified_at)
        results = lander.finish()
        for entity, counts in results.items():
            warehouse.record_sync(conn, f"moodle.{entity}", counts.read)
    assert reader.result is not None  # set once the reader's generator returned, above
    requests = requests_by_entity(reader.result)
    for entity, counts in results.items():
        yield MaterializeResult(
            asset_key=f"raw_moodle_{entity}",
            metadata={**counts.as_metadata(), "requests": requests[entity], "mode": "snapshot"},
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
            record = assign_grade_record(grade)
            if record is None or record[3] >= window.end:
                continue
            lander.land(*record)
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
