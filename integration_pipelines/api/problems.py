"""RFC 9457 problem details: every error the API returns has this one shape."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer: raise it from a route to return a problem+json body."""

    def __init__(self, status: int, title: str, detail: str, *, headers: Mapping[str, str] | None = None, **extra):
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers = dict(headers or {})


def problem_response(
    request: Request, status: int, title: str, detail: str, headers: Mapping[str, str] | None = None, **extra
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "The request body is malformed: not JSON.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key may not read this.",
    404: "No such record in the key's tenant.",
    409: "The record is not in a state that allows this.",
    413: "The request body is larger than the API accepts.",
    422: "A parameter is invalid; `parameter` names it.",
    503: "The warehouse is unreachable or its marts are not built yet.",
}


def problem_responses(*statuses: int, descriptions: Mapping[int, str] | None = None) -> dict[int | str, dict]:
    """OpenAPI `responses` for the error statuses a route can answer, each as problem+json.

    `descriptions` says what a status means for this route where the general meaning
    (`PROBLEM_DESCRIPTIONS`) does not fit, e.g. a 401 for a wrong webhook secret."""
    own = dict(descriptions or {})
    if unlisted := sorted(set(own) - set(statuses)):
        raise ValueError(f"descriptions for statuses the route does not answer: {unlisted}")
    return {
        status: {
            "description": own.get(status, PROBLEM_DESCRIPTIONS[status]),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(request, exc.status, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # Name each offending parameter, so a caller can fix the request without reading our code.
        errors = [
            {
                "parameter": ".".join(str(p) for p in err["loc"][1:]) or err["loc"][0],
                "in": err["loc"][0],
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        names = ", ".join(e["parameter"] for e in errors)
        return problem_response(
            request,
            422,
            "Invalid request",
            f"Invalid parameter(s): {names}",
            parameter=errors[0]["parameter"] if errors else None,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        # Keep the exception's headers: a 405 must still say which methods are allowed (`Allow`).
        return problem_response(request, exc.status_code, str(exc.detail), str(exc.detail), exc.headers)
