"""Zoho's datetimes: ISO 8601 with an offset."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_zoho_datetime(value: str) -> datetime:
    """Zoho datetimes are ISO 8601 with an offset, e.g. 2024-06-01T10:15:22+01:00."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"Zoho datetime without an offset: {value!r}")
    return parsed


def as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else parse_zoho_datetime(value)


def format_if_modified_since(value: datetime | str) -> str:
    """ISO 8601 with an offset, as Zoho expects (``2019-07-25T15:26:49+05:30``); naive = UTC."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.replace(microsecond=0).isoformat()
