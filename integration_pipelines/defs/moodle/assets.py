"""Moodle, landed raw: a nightly snapshot of the site, and daily windows of assignment grades.

Moodle offers no "modified since" for users, courses or enrolments, so the snapshot costs the
same requests every run: courses; per course its enrolled users (paged), its suspended
enrolments and its grade report; each user's details once, in batches of 100. Unchanged records
cost no writes (fingerprints), and records that vanished from Moodle are soft-deleted. Between
snapshots, assignment grades come from `mod_assign_get_grades` with `since`, and the rest from
webhook events.
"""

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    asset,
    multi_asset,
)

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.moodle.resources import MoodleResource
from integration_pipelines.defs.partitions import change_windows
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.moodle.capabilities import diagnose
from integration_pipelines.lib.raw_sync import RawLander, land_moodle_snapshot
from integration_pipelines.lib.source_reads import (
    RecordsWithResult,
    known_completions,
    read_moodle_grade_changes,
    read_moodle_snapshot,
    requests_by_entity,
)
from integration_pipelines.lib.warehouse.raw import iter_raw_payloads

# A change window lands the assignment grades that changed, and the gradebook re-read for them.
CHANGE_ENTITIES = ("assign_grades", "grade_items", "grades")
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
        AssetSpec(
            "raw_moodle_completions",
            group_name="moodle",
            kinds=MOODLE_KINDS,
            description="Course completions, one per enrolment of a course that tracks completion: whether "
            "and when the user completed it. Each user's courses say which are completed "
            "(core_enrol_get_users_courses, one request per user with an open enrolment); an enrolment "
            "completed since the last snapshot is asked its completion time "
            "(core_completion_get_course_completion_status, once: a completion is for good), as is a "
            "suspended enrolment, which Moodle leaves out of a user's courses, until its completion has "
            "landed. A course without completion enabled costs no request. Its `requests` are the calls of "
            "both functions.",
        ),
    ],
    pool="moodle_api",
)
def moodle_snapshot(context: AssetExecutionContext, moodle: MoodleResource, warehouse: WarehouseResource):
    """A full crawl of the Moodle site, landed raw; what it no longer finds is soft-deleted.

    The crawl keeps `MoodleResource.concurrency` requests in flight in threads that wait on
    Moodle while this one lands what they read. Each asset's `requests` counts the requests of
    the phase that feeds it (see `REQUESTS_OF`), so the six add up to the crawl's total.
    """
    if moodle.check_capabilities:
        # The doctor's check first: a token that would land less than it should stops the run
        # here, naming what to grant, instead of landing users without emails.
        with moodle.client() as client:
            diagnosis = diagnose(client, crm_field=FIELD_MAPPING.identity.moodle_crm_field)
        if not diagnosis.ok:
            raise Failure(
                description="The Moodle token cannot see everything a sync lands:\n" + diagnosis.report(),
                metadata={
                    "missing_capabilities": diagnosis.missing_capabilities(),
                    "missing_functions": diagnosis.missing_functions(),
                },
            )
        context.log.info(diagnosis.report())
    # Committed batch by batch as the crawl lands it: an event batch need not wait for the whole crawl.
    with warehouse.write_in_steps() as conn:
        known_completed, known_open = known_completions(conn, warehouse.tenant)
        reader = RecordsWithResult(
            read_moodle_snapshot(
                moodle.client_factory(),
                moodle.concurrency,
                known_completed=known_completed,
                known_open=known_open,
            )
        )
        results = land_moodle_snapshot(conn, warehouse.tenant, reader)
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
    """Grades given or changed within the window: `mod_assign_get_grades` with `since` names the
    assignment grades that changed, and the gradebook of those users is re-read (one request per
    course), since the gradebook's grade, an override included, is the grade.

    Assignments are those of the last snapshot's grade items; one created since then is picked up
    by the next snapshot.
    """
    window = context.partition_time_window
    with moodle.client() as client, warehouse.begin() as conn:
        course_of_assignment = {
            int(i["iteminstance"]): int(i["courseid"])
            for i in iter_raw_payloads(conn, warehouse.tenant, "moodle", "grade_items")
            if i.get("itemmodule") == "assign" and i.get("iteminstance") is not None
        }
        lander = RawLander(conn, warehouse.tenant, "moodle", CHANGE_ENTITIES, snapshot=False)
        for entity, record_id, payload, modified_at in read_moodle_grade_changes(
            client, course_of_assignment, window.start, window.end
        ):
            lander.land(entity, record_id, payload, modified_at)
        counts = lander.finish()
    signals, regrades = counts["assign_grades"], counts["grades"]
    return MaterializeResult(
        metadata={
            **regrades.as_metadata(),
            "assign_grades_read": signals.read,
            "grade_items_read": counts["grade_items"].read,
            "assignments": len(course_of_assignment),
            "requests": client.counter.total,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
        }
    )
