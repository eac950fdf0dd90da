"""RFC 9457 problem details: every error the API returns has this one shape."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer: raise it from a route to return a problem+json body."""

    def __init__(self, status: int, title: str, detail: str, **extra):
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def problem_response(request: Request, status: int, title: str, detail: str, **extra) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(request, exc.status, exc.title, exc.detail, **exc.extra)

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
        return problem_response(request, 422, "Invalid request", f"Invalid parameter(s): {names}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return problem_response(request, exc.status_code, str(exc.detail), str(exc.detail))
