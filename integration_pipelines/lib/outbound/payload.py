"""A Moodle grade as the Zoho grade record it becomes, and the fingerprint of that record.

The fields written are the mapping's own ``btec_grades`` entity read in reverse (the column a
field fills, back into the field, through the inverse of its transform), plus the module's
unique field that the upsert matches on (the mapping's ``outbound.btec_grades``). So a college
that renames its grade module or fields changes one file, and reading and writing agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from integration_pipelines.lib.mapping import FieldMapping

# The canonical columns a write-back fills, by what the outbox knows of a grade.
WRITTEN_COLUMNS = ("student_zoho_id", "unit_zoho_id", "btec_grade", "graded_at")


def _zoho_datetime(value: Any) -> str:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def _zoho_date(value: Any) -> str:
    if not isinstance(value, date):
        raise TypeError(f"expected a date, got {value!r}")
    return value.isoformat()


# How a canonical value goes back into the Zoho field a transform read it from. Transforms that
# lose information (lower, upper, email) have no inverse: a picklist value read through `lower`
# cannot be written back in Zoho's own spelling, so such a mapping is refused before any write.
INVERSE_TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda v: v,
    "strip": lambda v: v,
    "lookup_id": lambda v: {"id": str(v)},
    "int": int,
    "datetime": _zoho_datetime,
    "date": _zoho_date,
}


class WritebackMappingError(ValueError):
    """The mapping cannot be written back (a field's transform has no inverse, a key is missing)."""


@dataclass(frozen=True)
class GradeRecordShape:
    """How one grade becomes a Zoho record: the module, the field Zoho matches on, and for each
    written column its field and inverse transform."""

    module: str
    duplicate_check_field: str
    key_format: str
    fields: tuple[tuple[str, str, Callable[[Any], Any]], ...]  # (column, Zoho field, inverse)

    @classmethod
    def of(cls, mapping: FieldMapping) -> GradeRecordShape:
        entity = mapping.zoho.entities["btec_grades"]
        config = mapping.outbound.btec_grades
        fields = []
        for column in WRITTEN_COLUMNS:
            ref = entity.column(column)
            if ref is None:
                if column == "graded_at":
                    continue  # optional: a college whose grade module has no grading time
                raise WritebackMappingError(f"btec_grades.fields.{column} must be mapped to write grades back")
            inverse = INVERSE_TRANSFORMS.get(ref.transform)
            if inverse is None:
                raise WritebackMappingError(
                    f"btec_grades.fields.{column}: transform {ref.transform!r} cannot be reversed to write "
                    f"{ref.source} back (use one of: {', '.join(INVERSE_TRANSFORMS)})"
                )
            fields.append((column, ref.source, inverse))
        if any(source == config.duplicate_check_field for _, source, _ in fields):
            raise WritebackMappingError(
                f"outbound.btec_grades.duplicate_check_field {config.duplicate_check_field!r} is also a mapped field"
            )
        return cls(entity.module, config.duplicate_check_field, config.key_format, tuple(fields))

    def record(self, values: Mapping[str, Any], *, student_number: str, unit_code: str) -> dict[str, Any]:
        """The Zoho record for a grade: its unique key, then each mapped field that has a value."""
        out: dict[str, Any] = {
            self.duplicate_check_field: self.key_format.format(student_number=student_number, unit_code=unit_code)
        }
        for column, source, inverse in self.fields:
            value = values.get(column)
            if value is not None:
                out[source] = inverse(value)
        return out


def fingerprint(record: Mapping[str, Any]) -> str:
    """A hash of what would be written: the same record is never sent twice."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()
