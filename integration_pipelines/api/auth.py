"""Who is asking: one dependency resolves the request's API key to its scope and tenant.

Every data route takes `Admin` or `Reader` (admin, or the student the key is bound to). The key
is looked up on every request, so a revoked key fails from the next one. Tenant isolation does
not rest on these checks alone: every query the routes run names the key's tenant, so a student
of another tenant is simply not found (404).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from integration_pipelines.api.problems import Problem
from integration_pipelines.api.threads import run_read
from integration_pipelines.api.warehouse import Warehouse
from integration_pipelines.lib.warehouse.api_keys import ApiKey, resolve_key

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="integration_pipelines"'}


class _ApiKeyBearer(HTTPBearer):
    """The bearer token a request carries; 401 without one, before the warehouse is asked anything."""

    def make_not_authenticated_error(self) -> Exception:  # type: ignore[override]
        return Problem(
            401, "Authentication required", "Send an API key: Authorization: Bearer <key>.", headers=_CHALLENGE
        )


_bearer = _ApiKeyBearer(
    scheme_name="ApiKey",
    description="An API key from `integration-pipelines keys create`, sent as `Authorization: Bearer ipk_…`.",
)


async def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials, Depends(_bearer)], conn: Warehouse
) -> ApiKey:
    """The live key the request carries (an admin key, or a student key, which may then read only its
    own student: `ensure_may_read`); 401 with an unknown or revoked one."""
    key = await run_read(request, resolve_key, conn, credentials.credentials)
    if key is None:
        raise Problem(401, "Invalid API key", "The API key is unknown or revoked.", headers=_CHALLENGE)
    return key


async def require_admin(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
    """An admin key of some tenant; 403 for a student key."""
    if key.scope != "admin":
        raise Problem(403, "Admin key required", "This route needs an admin key; a student key reads its own profile.")
    return key


def ensure_may_read(key: ApiKey, student_key: str) -> None:
    """403 when a student key asks for another student of its tenant."""
    if key.scope == "student" and key.student_key != student_key:
        raise Problem(403, "Not your profile", "A student key reads only the student it was issued for.")


Admin = Annotated[ApiKey, Depends(require_admin)]
Reader = Annotated[ApiKey, Depends(authenticated)]
