"""The canonical tables, as SQL over the raw layer, applied by key.

Each canonical table has one module here that owns its SQL: `programs`, `units`, `classes`,
`registrations` and `payments` (one to one from a Zoho module, `zoho_records`), `students`
(identity), `enrollments` (the merge of Zoho enrollments and Moodle enrolments) and `grades`
(Zoho BTEC grades and Moodle assignment grades, with their BTEC conversion). A table's rows are
one `SELECT` over `raw_records`, staged into the one merge (`upsert_select`), so the database does
the work, never Python record by record.

`apply.py` runs them: a canonical step applies everything (`full_sync`) or the raw keys written
since its watermark (a change window), and `apply_raw_keys` applies a given set of raw keys to
every table (an event batch). Either way a table touches only the rows those keys reach.
"""

from datetime import UTC, datetime
from typing import Any

from integration_pipelines.lib.warehouse.schema import KEYED_TABLES


def key_column(table: str) -> str:
    """The natural-key column of a canonical table: `program_key`, `class_key`, ..."""
    return KEYED_TABLES[table].key_columns[-1]


def epoch(value: Any) -> datetime | None:
    """Moodle times are epoch seconds, 0 meaning never."""
    return datetime.fromtimestamp(int(value), UTC) if value else None
