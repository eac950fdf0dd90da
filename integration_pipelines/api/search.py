"""`GET /v1/students/search` (admin): students whose name, email, username or student number
begins with the query, in name order, a page at a time.

Each field is matched by a range over its own index (`[q, q + U+10FFFF)`, byte order: PostgreSQL
compares in the "C" collation, as its indexes are built), so a search reads only the matching
entries, whatever the size of the college.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import text

from integration_pipelines.api import models as m
from integration_pipelines.api.auth import Admin
from integration_pipelines.api.problems import Problem, problem_responses
from integration_pipelines.api.profile import NO_NUL
from integration_pipelines.api.warehouse import Warehouse

router = APIRouter(tags=["students"])

# (mart column, how the query is normalised for it): names, emails and usernames are kept
# lower-cased in the mart, student numbers upper-cased.
SEARCHED = (
    ("name_key", str.lower),
    ("first_key", str.lower),
    ("last_key", str.lower),
    ("email", str.lower),
    ("username", str.lower),
    ("number_key", str.upper),
)
_TOP = "\U0010ffff"


def _statement(dialect: str, with_cursor: bool) -> str:
    collate = ' COLLATE "C"' if dialect == "postgresql" else ""
    branches = " UNION ".join(
        f"SELECT student_key FROM student_profile WHERE tenant_id = :tenant "
        f"AND {column}{collate} >= :lo_{i} AND {column}{collate} < :hi_{i}"
        for i, (column, _) in enumerate(SEARCHED)
    )
    after = f" AND (p.name_key{collate}, p.student_key{collate}) > (:after_name, :after_key)" if with_cursor else ""
    return (
        "SELECT p.student_key, p.moodle_user_id, p.zoho_id, p.student_number, p.full_name, p.email, p.username, "
        f"p.status, p.name_key FROM student_profile p WHERE p.tenant_id = :tenant AND p.student_key IN ({branches})"
        f"{after} ORDER BY p.name_key{collate}, p.student_key{collate} LIMIT :limit"
    )


@router.get(
    "/v1/students/search",
    response_model=m.SearchPage,
    summary="Find students by the start of a name, email, username or student number",
    responses=problem_responses(401, 403, 422, 503),
)
def search_students(
    key: Admin,
    conn: Warehouse,
    q: Annotated[
        str,
        Query(
            min_length=1, max_length=100, pattern=NO_NUL, description="The start of a name, email, username or number."
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=100, description="Students per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=400, pattern=r"^[A-Za-z0-9_=-]+$", description="`next_cursor` of the previous page."),
    ] = None,
) -> m.SearchPage:
    """Students of the key's tenant matching `q` (case-insensitive prefix), in name order."""
    term = q.strip()
    if not term or "\x00" in term:
        raise Problem(422, "Invalid request", "q must hold a visible character.", parameter="q")
    params: dict = {"tenant": key.tenant_id, "limit": limit + 1}
    for i, (_, normalise) in enumerate(SEARCHED):
        params[f"lo_{i}"] = normalise(term)
        params[f"hi_{i}"] = normalise(term) + _TOP
    if cursor is not None:
        params["after_name"], params["after_key"] = _decode(cursor)
    statement = text(_statement(conn.dialect.name, cursor is not None))
    rows = conn.execute(statement, params).mappings().all()
    items = [m.SearchHit(**{k: v for k, v in row.items() if k != "name_key"}) for row in rows[:limit]]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return m.SearchPage(items=items, next_cursor=_encode(last["name_key"], last["student_key"]) if last else None)


def _encode(name_key: str, student_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([name_key, student_key]).encode()).decode()


def _decode(cursor: str) -> tuple[str, str]:
    try:
        name_key, student_key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(name_key, str) and isinstance(student_key, str):
            return name_key, student_key
    except (ValueError, TypeError, binascii.Error):
        pass
    raise Problem(422, "Invalid request", "cursor is not a next_cursor this API gave.", parameter="cursor")
