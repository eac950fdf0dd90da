"""BTEC conversion: scale values, percentage cut-offs, points per credit and weighted averages."""

from __future__ import annotations

import inspect
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integration_pipelines.lib import btec
from integration_pipelines.lib.btec import (
    average_points_per_credit,
    grade_from_numeric,
    grade_from_percentage,
    grade_from_scale,
    grade_rank,
    percentage,
    points,
)
from integration_pipelines.lib.mapping import BtecThresholds, PointsPerCredit, load_mapping
from integration_pipelines.sandbox.college import btec_from_percentage, generate_college

# Pearson's Higher Nationals: 0/1/2 points per credit for Pass/Merit/Distinction (API_NOTES D).
HN_POINTS = PointsPerCredit(Refer=0, Pass=0, Merit=1, Distinction=2)


# ---- scale grades (gradingform_btec) -----------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "grade"),
    [
        (1, "Refer"),
        (2, "Pass"),
        (3, "Merit"),
        (4, "Distinction"),
        ("1.00000", "Refer"),
        ("2.00000", "Pass"),
        ("3.00000", "Merit"),
        ("4.00000", "Distinction"),
        (3.0, "Merit"),
        (Decimal("4.00000"), "Distinction"),
    ],
)
def test_scale_value_is_its_grade(value: object, grade: str):
    assert grade_from_scale(value) == grade


@pytest.mark.parametrize("value", [None, -1, -1.0, "-1.00000"])
def test_scale_not_graded_is_none(value: object):
    assert grade_from_scale(value) is None


@pytest.mark.parametrize("value", [0, 5, 2.5, "Merit", "", True, float("nan"), -2, [3]])
def test_scale_value_outside_the_scale_is_an_error(value: object):
    with pytest.raises(ValueError):
        grade_from_scale(value)


# ---- numeric grades ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "grade"),
    [
        (0, "Refer"),
        (39.99999, "Refer"),
        (40, "Pass"),
        (59.99999, "Pass"),
        (60, "Merit"),
        (69.99999, "Merit"),
        (70, "Distinction"),
        (100, "Distinction"),
        ("40.00000", "Pass"),
        ("69.50000", "Merit"),
    ],
)
def test_out_of_100_boundaries(raw: object, grade: str):
    assert grade_from_numeric(raw, 100) == grade


@pytest.mark.parametrize(
    ("raw", "grade"),
    [
        (7.5, "Refer"),
        (7.99999, "Refer"),
        (8, "Pass"),  # 40%
        (11.5, "Pass"),
        (11.99999, "Pass"),
        (12, "Merit"),  # 60%
        (13.5, "Merit"),
        (13.99999, "Merit"),
        (14, "Distinction"),  # 70%
        (20, "Distinction"),
        ("14.00000", "Distinction"),
    ],
)
def test_out_of_20_boundaries(raw: object, grade: str):
    assert grade_from_numeric(raw, 20) == grade
    assert grade_from_numeric(raw, "20.00000") == grade


def test_percentage_has_no_float_noise_on_boundaries():
    assert percentage(12, 20) == 60.0
    assert percentage(0.07, 1) == 7.0  # 0.07 * 100 is 7.000000000000001 in floats
    assert percentage(7, 10) == 70.0


@pytest.mark.parametrize("raw", [None, -1, "-1.00000"])
def test_numeric_not_graded_is_none(raw: object):
    assert grade_from_numeric(raw, 100) is None


@pytest.mark.parametrize(("raw", "grade_max"), [(50, 0), (50, -20), (-5, 100), ("abc", 100), (50, None), (True, 1)])
def test_numeric_grade_errors(raw: object, grade_max: object):
    with pytest.raises(ValueError):
        grade_from_numeric(raw, grade_max)


def test_grade_above_the_maximum_scores_as_such():
    # Moodle's "unlimited grades" lets a teacher give 22/20.
    assert grade_from_numeric(22, 20) == "Distinction"


def test_custom_thresholds():
    strict = BtecThresholds(pass_mark=50, merit_mark=65, distinction_mark=80)
    assert [grade_from_numeric(r, 100, strict) for r in (49.9, 50, 64.9, 65, 79.9, 80)] == [
        "Refer",
        "Pass",
        "Pass",
        "Merit",
        "Merit",
        "Distinction",
    ]
    assert grade_from_numeric(10, 20, strict) == "Pass"  # 50% out of 20
    assert grade_from_numeric(40, 100, strict) == "Refer"  # a default Pass is a Refer here


def test_thresholds_come_from_a_college_mapping_file(tmp_path: Path):
    default = Path(load_mapping().file).read_text()
    path = tmp_path / "college.yaml"
    path.write_text(
        default.replace("{pass: 40.0, merit: 60.0, distinction: 70.0}", "{pass: 50, merit: 65, distinction: 75}")
    )
    thresholds = load_mapping(path).btec.thresholds
    assert grade_from_numeric(45, 100) == "Pass"
    assert grade_from_numeric(45, 100, thresholds) == "Refer"
    assert grade_from_numeric(15, 20, thresholds) == "Distinction"  # 75%


def test_defaults_equal_the_default_mapping():
    mapping = load_mapping()
    for function in (grade_from_percentage, grade_from_numeric):
        assert inspect.signature(function).parameters["thresholds"].default == mapping.btec.thresholds
    for function in (points, average_points_per_credit):
        assert inspect.signature(function).parameters["points_per_credit"].default == mapping.btec.points_per_credit


thresholds_strategy = (
    st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=3, max_size=3, unique=True)
    .map(sorted)
    .map(lambda t: BtecThresholds(pass_mark=t[0], merit_mark=t[1], distinction_mark=t[2]))
)
percentages = st.floats(min_value=0, max_value=150, allow_nan=False)


@given(thresholds_strategy, percentages, percentages)
def test_grade_is_monotonic_in_the_percentage(thresholds: BtecThresholds, a: float, b: float):
    low, high = sorted((a, b))
    assert grade_rank(grade_from_percentage(low, thresholds)) <= grade_rank(grade_from_percentage(high, thresholds))


@given(thresholds_strategy, percentages)
def test_grade_agrees_with_the_sandbox_oracle(thresholds: BtecThresholds, pct: float):
    assert grade_from_percentage(pct, thresholds) == btec_from_percentage(pct, thresholds.as_tuple())


def test_sandbox_zoho_grades_are_the_conversion_of_their_moodle_grades():
    # The sandbox records in Zoho the BTEC grade of a share of unit-linked Moodle grades; converting
    # the same Moodle grades must give the same letters (scale items and numeric ones alike).
    college = generate_college(students=30, seed=3)
    zoho = {(b.student, b.unit, b.graded): b.grade for b in college.zoho["BTEC_Grades"].records.values()}
    kinds = set()
    checked = 0
    for item in college.assignments.values():
        for g in item.grades.values():
            key = (college.users[g.user_id].student_zid, item.unit_zid, g.timemodified)
            if key in zoho:
                converted = grade_from_scale(g.raw) if item.scale else grade_from_numeric(g.raw, item.grademax)
                assert converted == zoho[key], (item.id, g.raw, item.grademax)
                kinds.add("scale" if item.scale else item.grademax)
                checked += 1
    assert checked == len(zoho) > 20 and "scale" in kinds and len(kinds) >= 2, (checked, kinds)


# ---- points and averages -----------------------------------------------------------------------
@pytest.mark.parametrize(("grade", "expected"), [("Refer", 0), ("Pass", 105), ("Merit", 120), ("Distinction", 135)])
def test_points_are_points_per_credit_times_credits(grade: str, expected: float):
    assert points(grade, 15) == expected


def test_points_with_higher_national_points():
    assert points("Distinction", 15, HN_POINTS) == 30
    assert points("Pass", 15, HN_POINTS) == 0


@pytest.mark.parametrize(("grade", "credits"), [("Merit*", 10), ("merit", 10), (None, 10), ("Pass", -5)])
def test_points_errors(grade: object, credits: object):
    with pytest.raises(ValueError):
        points(grade, credits)  # type: ignore[arg-type]


def test_average_is_weighted_by_credits():
    # 10 credits of Pass (70 points) and 30 of Distinction (270): 340 / 40 = 8.5, not the 8.0 an
    # unweighted mean of the two units' points per credit would give.
    assert average_points_per_credit([("Pass", 10), ("Distinction", 30)]) == pytest.approx(8.5)
    assert average_points_per_credit([("Pass", 10), ("Distinction", 30)], HN_POINTS) == pytest.approx(1.5)
    assert average_points_per_credit(iter([("Merit", "15"), ("Merit", 5)])) == pytest.approx(8.0)


def test_average_leaves_ungraded_units_out():
    assert average_points_per_credit([("Merit", 10), (None, 50)]) == pytest.approx(8.0)
    assert average_points_per_credit([("Refer", 10), ("Distinction", 10)]) == pytest.approx(4.5)  # Refer counts


@pytest.mark.parametrize("graded_units", [[], [(None, 15)], [("Pass", 0)]])
def test_average_without_graded_credits_is_none(graded_units: list):
    assert average_points_per_credit(graded_units) is None


def test_module_exports_resolve():
    assert all(hasattr(btec, name) for name in btec.__all__)
