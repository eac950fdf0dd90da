"""API keys of the profile API: created, listed, revoked and resolved. Dagster-free.

A key reads `ipk_<key id>_<secret>`. The key id (12 characters) is public: lists show it, and
a request's key is found by it. The secret is 32 random bytes (`secrets.token_urlsafe(32)`),
shown once when the key is created. The warehouse keeps only the SHA-256 of the whole key: a
high-entropy random key needs no slow hash, and a leaked table yields no key.

Each key has a tenant and a scope: `admin` reads every student of its tenant, `student` reads
the one student it is bound to. A revoked key fails from the next request on: every request
looks its key up (one primary-key read).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Connection, bindparam, insert, select, update

from integration_pipelines.lib.warehouse.schema import api_keys, students

Scope = Literal["admin", "student"]
SCOPES: tuple[Scope, ...] = ("admin", "student")
KEY_PREFIX = "ipk_"
_KEY_ID_LENGTH = 12


class ApiKeyError(ValueError):
    """A key that cannot be created or revoked as asked; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    tenant_id: str
    scope: Scope
    student_key: str | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_id_of(presented: str) -> str | None:
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    return key_id if sep and secret and len(key_id) == _KEY_ID_LENGTH else None


def create_key(
    conn: Connection,
    tenant_id: str,
    scope: Scope,
    *,
    student_key: str | None = None,
    label: str | None = None,
    now: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its plain text (the only time the plain text exists).

    A student key must name a live student of the tenant; an admin key names none.
    """
    if scope not in SCOPES:
        raise ApiKeyError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if scope == "admin" and student_key is not None:
        raise ApiKeyError("an admin key reads every student of its tenant: give no student")
    if scope == "student":
        if not student_key:
            raise ApiKeyError("a student key must name its student (student_key, e.g. zoho:5843104000000400001)")
        known = conn.execute(
            select(students.c.student_key).where(
                students.c.tenant_id == tenant_id,
                students.c.student_key == student_key,
                students.c.deleted_at.is_(None),
            )
        ).first()
        if known is None:
            raise ApiKeyError(f"tenant {tenant_id!r} has no student {student_key!r}")
    key_id = secrets.token_hex(_KEY_ID_LENGTH // 2)
    plain = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(key_id, tenant_id, scope, student_key, label, now or datetime.now(UTC), None)
    conn.execute(
        insert(api_keys).values(
            key_id=key_id,
            tenant_id=tenant_id,
            scope=scope,
            student_key=student_key,
            key_hash=_hash(plain),
            label=label,
            created_at=record.created_at,
            revoked_at=None,
        )
    )
    return record, plain


def list_keys(conn: Connection, tenant_id: str | None = None) -> list[ApiKey]:
    """Every key (of one tenant, if given), oldest first, revoked ones included."""
    query = select(*_PUBLIC_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.key_id)
    if tenant_id is not None:
        query = query.where(api_keys.c.tenant_id == tenant_id)
    return [ApiKey(**row) for row in conn.execute(query).mappings()]


def revoke_key(conn: Connection, key_id: str, *, now: datetime | None = None) -> ApiKey:
    """Revoke a key by its id; revoking a revoked key changes nothing."""
    if key_id.startswith(KEY_PREFIX):  # the whole key was pasted: take its id, never store it
        key_id = _key_id_of(key_id) or key_id
    row = conn.execute(select(*_PUBLIC_COLUMNS).where(api_keys.c.key_id == key_id)).mappings().first()
    if row is None:
        raise ApiKeyError(f"no key {key_id!r}")
    if row["revoked_at"] is None:
        at = now or datetime.now(UTC)
        conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=at))
        return ApiKey(**{**row, "revoked_at": at})
    return ApiKey(**row)


def resolve_key(conn: Connection, presented: str) -> ApiKey | None:
    """The live key `presented` is, or None (malformed, unknown, wrong secret or revoked)."""
    key_id = _key_id_of(presented)
    if key_id is None:
        return None
    row = conn.execute(_KEY_BY_ID, {"key_id": key_id}).first()
    if row is None or not hmac.compare_digest(row.key_hash, _hash(presented)) or row.revoked_at is not None:
        return None
    values = row._asdict()
    values.pop("key_hash")
    return ApiKey(**values)


_PUBLIC_COLUMNS = (
    api_keys.c.key_id,
    api_keys.c.tenant_id,
    api_keys.c.scope,
    api_keys.c.student_key,
    api_keys.c.label,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
)
# Every API request checks its key: the statement is built once, not per request.
_KEY_BY_ID = select(*_PUBLIC_COLUMNS, api_keys.c.key_hash).where(api_keys.c.key_id == bindparam("key_id"))
