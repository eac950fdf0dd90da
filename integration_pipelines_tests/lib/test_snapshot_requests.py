"""A Moodle snapshot reports each request once: each phase's on the asset it feeds."""

from __future__ import annotations

from integration_pipelines.lib.source_reads import RecordsWithResult, read_moodle_snapshot, requests_by_entity
from integration_pipelines_tests.lib.test_moodle_client import FakeSite, make_client


def test_each_phase_counts_on_the_entity_it_feeds_and_the_figures_add_up_to_the_total() -> None:
    site = FakeSite(n_courses=5, n_users=300, per_course=80)
    client, _ = make_client(site, page_size=30)
    reading = RecordsWithResult(read_moodle_snapshot(lambda: client, 4))
    entities = {entity for entity, *_ in reading}
    figures = requests_by_entity(reading.result)
    assert set(figures) == {"courses", "enrolments", "users", "grade_items", "grades", "completions"} >= entities
    assert sum(figures.values()) == client.counter.total == len(site.calls)
    assert figures["courses"] == site.calls.count("core_course_get_courses") == 1
    assert figures["enrolments"] == site.calls.count("core_enrol_get_enrolled_users")
    assert figures["users"] == site.calls.count("core_user_get_users_by_field") == 3
    assert figures["grades"] == site.calls.count("gradereport_user_get_grade_items") == 5
    assert figures["grade_items"] == 0, "grade reports are counted once, on grades"
    users_courses = site.calls.count("core_enrol_get_users_courses")
    assert users_courses > 0, "completions are read user by user"
    assert figures["completions"] == users_courses + site.calls.count("core_completion_get_course_completion_status")


def test_a_function_of_no_phase_is_counted_once_on_courses() -> None:
    assert requests_by_entity({"core_course_get_courses": 1, "core_webservice_get_site_info": 2})["courses"] == 3
