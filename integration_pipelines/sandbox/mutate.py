"""Mutations of a running college, and the Moodle events they emit (webhook bodies)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from .server import SandboxApp


class MutateRequest(BaseModel):
    advance_seconds: int = Field(3600, ge=0)


class EventLog:
    def __init__(self, app: "SandboxApp"):
        self.app = app
        self.events: list[dict] = []


def apply_mutation(app: "SandboxApp", req: MutateRequest) -> dict:
    with app.lock:
        app.college.advance(req.advance_seconds)
        return {"now": app.college.clock()}
