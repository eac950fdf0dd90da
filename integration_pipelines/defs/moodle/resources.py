"""The Moodle Web Services client as a Dagster resource."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from dagster import ConfigurableResource
from pydantic import Field, SecretStr

from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.settings import get_settings


class MoodleResource(ConfigurableResource):
    """A Moodle site reached through its Web Services REST API (or the sandbox)."""

    url: str | None = Field(None, description="Moodle wwwroot, e.g. https://lms.example.ac.uk. Unset: MOODLE_URL.")
    token: str = Field(description="Web service token; set MOODLE_TOKEN in the environment.")
    timeout_seconds: float = Field(60.0, description="Per-request timeout.")
    max_attempts: int = Field(5, description="Attempts per call for transport errors and 5xx.")
    check_capabilities: bool = Field(
        True,
        description="Check the token first, as `integration-pipelines doctor` does (a few requests); a snapshot "
        "that would land less than it should fails, naming the capabilities to grant.",
    )
    concurrency: int = Field(
        8, description="Requests a snapshot keeps in flight, in every phase of its crawl (courses, users, grades)."
    )

    def client_factory(self) -> Callable[[], MoodleClient]:
        """Builds a client wherever it is called, another process included (it pickles)."""
        url = self.url or get_settings().moodle_url
        return partial(
            MoodleClient, url, SecretStr(self.token), timeout=self.timeout_seconds, max_attempts=self.max_attempts
        )

    def client(self) -> MoodleClient:
        return self.client_factory()()
