"""What a Moodle grade means, read from a real Moodle 5.1 site's answers (fixtures/moodle_ws)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration_pipelines.lib.moodle.grades import is_scale_assignment, is_scale_item, moodle_number, range_ends
from integration_pipelines.lib.moodle.records import MoodleGrade
from integration_pipelines.lib.source_reads import grade_records

MOODLE_WS = Path(__file__).resolve().parent.parent / "fixtures" / "moodle_ws"


def reference(name: str):
    return json.loads((MOODLE_WS / f"{name}.json").read_text())


def scale_report_items() -> dict[int, dict]:
    [first, *_] = reference("gradereport_user_get_grade_items__scale_item")["usergrades"]
    return {item["id"]: item for item in first["gradeitems"]}


def test_a_real_sites_scale_item_is_recognised_though_its_scaleid_is_null():
    items = scale_report_items()
    scale = items[21]
    assert scale["scaleid"] is None and scale["gradeformatted"] == "Refer"
    assert is_scale_item(scale)
    assert range_ends(scale["rangeformatted"]) == ("Refer", "Distinction")
    assert [i for i, item in items.items() if is_scale_item(item)] == [21]  # numeric, manual and total are not


def test_a_scale_assignment_has_minus_its_scales_id_as_its_grade():
    [course] = reference("mod_assign_get_assignments__scale_item")["courses"]
    by_name = {a["name"]: a for a in course["assignments"]}
    assert is_scale_assignment(by_name["ENGL unit 3 assignment"])
    assert not is_scale_assignment(by_name["ENGL unit 2 assignment"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(11, 11), (11.0, 11), ("11.00000", 11), ("7.50000", 7.5), (7.5, 7.5), ("-1.00000", -1), (None, None), ("", None)],
)
def test_one_spelling_for_a_moodle_number(value, expected):
    got = moodle_number(value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value", ["eleven", True, float("nan")])
def test_a_value_that_is_no_number_is_refused_by_name(value):
    with pytest.raises(ValueError, match="not a Moodle number"):
        moodle_number(value)


def test_the_grade_report_and_the_assignment_grades_land_the_same_number():
    """The real site sends `"graderaw": 11` in the grade report and `"11.00000"` from
    mod_assign_get_grades: landed, both are 11, so an unchanged grade fingerprints the same."""
    items = scale_report_items()
    grade = MoodleGrade(course_id=6, user_id=42, item_id=19, course_idnumber=None, user_idnumber=None, data=items[19])
    records = {entity: json.loads(payload) for entity, _id, payload, _at in grade_records(grade, set())}
    assert records["grades"]["graderaw"] == moodle_number("11.00000") == 11
    assert records["grade_items"]["scale"] is False
    scale = MoodleGrade(course_id=6, user_id=42, item_id=21, course_idnumber=None, user_idnumber=None, data=items[21])
    landed = {entity: json.loads(payload) for entity, _id, payload, _at in grade_records(scale, set())}
    assert landed["grade_items"]["scale"] is True and landed["grades"]["gradeformatted"] == "Refer"
