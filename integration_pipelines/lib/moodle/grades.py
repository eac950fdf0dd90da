"""What a Moodle grade means, read from the answers a real site gives.

Two facts of a real Moodle site (5.1, `../shared/reference/moodle_ws/`) shape this module:

- ``gradereport_user_get_grade_items`` answers ``"scaleid": null`` for an item graded on a scale
  (Moodle fills that field from the outcome id). What gives a scale item away is its range:
  ``rangeformatted`` is the scale's first and last words ("Refer&ndash;Distinction") where a
  numeric item's is two numbers ("0&ndash;100"). ``mod_assign_get_assignments`` gives such an
  assignment ``grade: -<scale id>``.
- The same number comes as a JSON integer (``"graderaw": 11``) from the grade report and as a
  5-decimal string (``"11.00000"``) from ``mod_assign_get_grades``. A number is given one
  spelling (:func:`moodle_number`) before it is landed, so an unchanged grade fingerprints the
  same whichever way it came.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

# The separator Moodle puts between the ends of a range ("0&ndash;100"), decoded or not.
_RANGE_SEPARATOR = re.compile(r"\s*(?:&ndash;|\u2013|-)\s*")
_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")

# Moodle stores grades with 5 decimals (grade_grades.finalgrade is NUMBER(10,5)).
MOODLE_DECIMALS = 5


def moodle_number(value: Any) -> int | float | None:
    """One spelling for a Moodle number: an int when it is whole, else a float of 5 decimals.

    ``11``, ``11.0`` and ``"11.00000"`` all give ``11``; ``"7.50000"`` gives ``7.5``. None and
    ``""`` give None. Anything else that is not a finite number raises ValueError naming it.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a Moodle number: {value!r}")
    try:
        number = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(repr(float(value)))
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"not a Moodle number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a Moodle number: {value!r}")
    rounded = round(number, MOODLE_DECIMALS)
    if rounded == rounded.to_integral_value():
        return int(rounded)
    result = float(rounded)
    if not math.isfinite(result):
        raise ValueError(f"not a Moodle number: {value!r}")
    return result


def range_ends(rangeformatted: Any) -> tuple[str, str] | None:
    """The two ends of a grade item's ``rangeformatted`` ("Refer&ndash;Distinction" -> ("Refer",
    "Distinction")); None when it is not a range."""
    if not isinstance(rangeformatted, str) or not rangeformatted.strip():
        return None
    text = rangeformatted.strip()
    # Numbers may be negative, so split on the ndash first and a hyphen only between words.
    for separator in ("&ndash;", "\u2013"):
        if separator in text:
            low, _, high = text.partition(separator)
            return html.unescape(low).strip(), html.unescape(high).strip()
    parts = _RANGE_SEPARATOR.split(html.unescape(text), maxsplit=1)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def is_scale_item(item: Mapping[str, Any]) -> bool:
    """Whether a grade item (a ``gradeitems`` entry of the grade report) is graded on a scale.

    ``scaleid`` says so when Moodle fills it; a real site leaves it null, so the range decides:
    a scale's range is words, a numeric item's two numbers. An assignment's negative ``grade``
    (from ``mod_assign_get_assignments``) says the same, see :func:`is_scale_assignment`.
    """
    if item.get("scaleid") not in (None, 0, "0", ""):
        return True
    ends = range_ends(item.get("rangeformatted"))
    if ends is None:
        return False
    return not all(_NUMBER.match(end.replace(" ", "")) for end in ends)


def is_scale_assignment(assignment: Mapping[str, Any]) -> bool:
    """Whether an assignment (``mod_assign_get_assignments``) is graded on a scale: its
    ``grade`` is minus the scale's id."""
    grade = moodle_number(assignment.get("grade"))
    return grade is not None and grade < 0
