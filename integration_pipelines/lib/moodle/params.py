"""Moodle's PHP bracket encoding of arguments, and small parsers of its answers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Enum):
        return _scalar(value.value)
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    return str(value)


def encode_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """PHP bracket encoding, as Moodle's REST server expects.

    ``{"options": {"ids": [7]}}`` -> ``[("options[ids][0]", "7")]``;
    ``{"options": [{"name": "limitnumber", "value": 100}]}`` ->
    ``[("options[0][name]", "limitnumber"), ("options[0][value]", "100")]``.
    Booleans become ``1``/``0``; ``None`` values are left out (Moodle treats a missing
    optional parameter as its default); datetimes become epoch seconds.
    """

    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}[{k}]", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        elif isinstance(value, (set, frozenset)):
            for i, v in enumerate(sorted(value)):
                walk(f"{prefix}[{i}]", v)
        else:
            out.append((prefix, _scalar(value)))

    for key, value in params.items():
        walk(str(key), value)
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _to_epoch(value: int | float | datetime | None) -> int:
    if value is None:
        return 0
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def parse_assign_grade(value: Any) -> float | None:
    """``"3.00000"`` -> 3.0; ``"-1.00000"`` (not graded), ``""`` or None -> None."""
    if value is None or value == "":
        return None
    try:
        grade = float(value)
    except (TypeError, ValueError):
        return None
    return None if grade < 0 else grade
