"""BTEC unit grades from Moodle grades, and credit-weighted points averages.

A BTEC unit is graded Refer, Pass, Merit or Distinction (API_NOTES D). Moodle gives us one of
two things for a grade item:

- a **scale** grade: the ``gradingform_btec`` plugin's scale "Refer,Pass,Merit,Distinction",
  so the web services return 1..4 (e.g. ``"3.00000"`` for Merit) and -1 when not graded;
- a **numeric** grade out of the item's maximum (100, 20, ...), which we convert through
  percentage cut-offs. Pearson defines no official cut-offs; the 40/60/70 default is the UK
  higher-education convention, so colleges configure them in their mapping file.

Letter grades are never averaged: an average is points per credit, weighted by the units' credits
(Pearson's way of computing a qualification grade).

The BTEC configuration lives in the mapping file's ``btec`` section (lib/mapping.py); the
functions here take its parts as arguments, defaulting to the default mapping's values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from .mapping import (
    BTEC_GRADES,
    DEFAULT_BTEC_THRESHOLDS,
    DEFAULT_POINTS_PER_CREDIT,
    BtecThresholds,
    PointsPerCredit,
)

__all__ = [
    "BTEC_GRADES",
    "NOT_GRADED",
    "average_points_per_credit",
    "grade_from_numeric",
    "grade_from_percentage",
    "grade_from_scale",
    "grade_rank",
    "percentage",
    "points",
]

# Moodle's "no grade yet" value (mod_assign returns "-1.00000" for an ungraded submission).
NOT_GRADED = -1

# Percentages are rounded to this many places before comparing with the thresholds, so that
# float noise (e.g. 0.07 * 100 == 7.000000000000001) cannot move a grade sitting exactly on a
# boundary. Moodle stores grades with 5 decimals, so nothing meaningful is lost.
_PERCENT_PLACES = 9


def _number(value: Any, what: str) -> float:
    """A Moodle number: int, float, Decimal or a numeric string such as "3.00000"."""
    if isinstance(value, bool):  # bool is an int subclass; True is not a grade
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float, Decimal)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{what} must be a number, got {value!r}") from None
    else:
        raise ValueError(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return number


def grade_rank(grade: str) -> int:
    """0 for Refer up to 3 for Distinction; ValueError for anything that is not a unit grade."""
    try:
        return BTEC_GRADES.index(grade)
    except ValueError:
        raise ValueError(f"not a BTEC unit grade: {grade!r} (expected one of: {', '.join(BTEC_GRADES)})") from None


def grade_from_scale(value: Any) -> str | None:
    """The unit grade of a ``gradingform_btec`` scale value: 1 Refer, 2 Pass, 3 Merit, 4 Distinction.

    None or -1 mean "not graded" and give None. Anything else (0, 5, 2.5, "Merit") is not a
    value of that scale, which means the grade item is not on the BTEC scale: ValueError.
    """
    if value is None:
        return None
    number = _number(value, "scale value")
    if number == NOT_GRADED:
        return None
    if number.is_integer() and 1 <= number <= len(BTEC_GRADES):
        return BTEC_GRADES[int(number) - 1]
    raise ValueError(f"not a BTEC scale value (1..4, or -1 for not graded): {value!r}")


def percentage(raw_grade: Any, grade_max: Any) -> float:
    """``raw_grade`` as a percentage of ``grade_max`` (raw / max x 100); max must be positive."""
    raw = _number(raw_grade, "raw grade")
    maximum = _number(grade_max, "grade max")
    if maximum <= 0:
        raise ValueError(f"grade max must be positive, got {grade_max!r}")
    # Multiply before dividing: 12 * 100 / 20 is exactly 60.0, while 12 / 20 * 100 need not be.
    return round(raw * 100.0 / maximum, _PERCENT_PLACES)


def grade_from_percentage(pct: float, thresholds: BtecThresholds = DEFAULT_BTEC_THRESHOLDS) -> str:
    """The unit grade of a percentage: Refer < pass <= Pass < merit <= Merit < distinction <= Distinction.

    A boundary belongs to the higher grade: exactly 40 (by default) is a Pass.
    """
    pct = _number(pct, "percentage")
    if pct >= thresholds.distinction_mark:
        return "Distinction"
    if pct >= thresholds.merit_mark:
        return "Merit"
    if pct >= thresholds.pass_mark:
        return "Pass"
    return "Refer"


def grade_from_numeric(
    raw_grade: Any, grade_max: Any, thresholds: BtecThresholds = DEFAULT_BTEC_THRESHOLDS
) -> str | None:
    """The unit grade of a numeric Moodle grade out of ``grade_max`` (e.g. 100 or 20).

    None or -1 mean "not graded" and give None. Other negative grades are not grades: ValueError.
    A grade above the maximum (Moodle's "unlimited grades" setting) is allowed and scores as such.
    """
    if raw_grade is None:
        return None
    raw = _number(raw_grade, "raw grade")
    if raw == NOT_GRADED:
        return None
    if raw < 0:
        raise ValueError(f"raw grade must not be negative, got {raw_grade!r}")
    return grade_from_percentage(percentage(raw, grade_max), thresholds)


def points(grade: str, credits: Any, points_per_credit: PointsPerCredit = DEFAULT_POINTS_PER_CREDIT) -> float:
    """Points a unit earns: its grade's points per credit times its credits."""
    credit_count = _number(credits, "credits")
    if credit_count < 0:
        raise ValueError(f"credits must not be negative, got {credits!r}")
    return points_per_credit.for_grade(grade) * credit_count


def average_points_per_credit(
    graded_units: Iterable[tuple[str | None, Any]],
    points_per_credit: PointsPerCredit = DEFAULT_POINTS_PER_CREDIT,
) -> float | None:
    """The credit-weighted average points per credit over ``(grade, credits)`` pairs.

    This is the "GPA" of a student's units: sum(points) / sum(credits). Units not graded yet
    (grade None) are left out rather than counted as zero, since they say nothing about
    attainment. None when no graded credits remain (nothing to average).
    """
    total_points = 0.0
    total_credits = 0.0
    for grade, credits in graded_units:
        if grade is None:
            continue
        total_points += points(grade, credits, points_per_credit)
        total_credits += _number(credits, "credits")
    if total_credits == 0:
        return None
    return total_points / total_credits
