"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.types import TypeDecorator

_CENT = Decimal("0.01")


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on both backends.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are stored as naive UTC
    and given their zone back on read. Naive input is rejected rather than guessed at: a wrong
    zone would silently break "an older update never overwrites a newer one".
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        value = _utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else utc_from_stored(value)


def utc_from_stored(value: datetime | str) -> datetime:
    """A UTCDateTime as the driver returns it when read without SQLAlchemy's processing (SQLite:
    naive UTC text; PostgreSQL: an aware datetime), as the aware UTC datetime it stands for."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: warehouse timestamps must be timezone-aware")
    return value.astimezone(UTC)


def sqlite_timestamp_text(value: datetime) -> str:
    """A UTCDateTime as it is stored in SQLite: naive UTC text in SQLAlchemy's own fixed format
    (microseconds always present), so that text comparisons order timestamps correctly. For bulk
    writes that bypass SQLAlchemy's binds; equal to what they would store (tested)."""
    return _utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


class Money(TypeDecorator):
    """An amount of money, exact on both backends: `NUMERIC(12, 2)` on PostgreSQL; on SQLite,
    which has no decimal type (its NUMERIC is a float), the decimal text (`"12.50"`). Read back as
    a `Decimal` with two places."""

    impl = Numeric(12, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(16))
        return dialect.type_descriptor(Numeric(12, 2))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        amount = Decimal(value).quantize(_CENT)
        return str(amount) if dialect.name == "sqlite" else amount

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value).quantize(_CENT)
