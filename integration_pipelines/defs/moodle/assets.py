"""Moodle snapshot: courses, enrolments and users, landed raw.

Moodle offers no "modified since" for users, courses or enrolments, so this is a full snapshot
that costs the same requests every run: courses, then enrolled users per course (paged), then
each user's details once, in batches. Unchanged records cost no writes (fingerprints), and
records that vanished from Moodle are soft-deleted.
"""


from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, multi_asset

from integration_pipelines.defs.moodle.resources import MoodleResource
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.raw_sync import RawLander

# Enrolment payloads keep what is specific to the course; the user's profile lands once, as a user.
ENROLMENT_KEYS = ("roles", "groups", "lastcourseaccess")

MOODLE_KINDS = {"moodle"}


@multi_asset(
    specs=[
        AssetSpec("raw_moodle_courses", group_name="moodle", kinds=MOODLE_KINDS,
                  description="Moodle courses, as core_course_get_courses returns them."),
        AssetSpec("raw_moodle_enrolments", group_name="moodle", kinds=MOODLE_KINDS,
                  description="Who is enrolled in which course, with their roles and groups."),
        AssetSpec("raw_moodle_users", group_name="moodle", kinds=MOODLE_KINDS,
                  description="Every user enrolled anywhere, as core_user_get_users_by_field returns them."),
    ],
    pool="moodle_api",
)
def moodle_snapshot(context: AssetExecutionContext, moodle: MoodleResource, warehouse: WarehouseResource):
    """A full crawl of the Moodle site, landed raw; what it no longer finds is soft-deleted."""
    observed_at = datetime.now(UTC)
    with moodle.client() as client, warehouse.begin() as conn:
        lander = RawLander(conn, warehouse.tenant, "moodle", ("courses", "enrolments", "users"), snapshot=True)
        for record in client.crawl_snapshot(grades=False):
            if record.kind == "course":
                lander.land("courses", record.id, record.data, observed_at)
            elif record.kind == "enrolment":
                payload = {"courseid": record.course_id, "userid": record.user_id,
                           **{k: record.data[k] for k in ENROLMENT_KEYS if k in record.data}}
                lander.land("enrolments", f"{record.course_id}:{record.user_id}", payload, observed_at)
            elif record.kind == "user":
                lander.land("users", record.id, record.data, observed_at)
        results = lander.finish()
        for entity, counts in results.items():
            warehouse.record_sync(conn, f"moodle.{entity}", counts.read)
    requests = client.counter.total
    for entity, counts in results.items():
        yield MaterializeResult(
            asset_key=f"raw_moodle_{entity}",
            metadata={**counts.as_metadata(), "requests": requests, "mode": "snapshot"},
        )
