"""The Zoho CRM v8 client as a Dagster resource."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from dagster import ConfigurableResource
from pydantic import Field, SecretStr

from integration_pipelines.lib.zoho import ZohoClient
from integration_pipelines.settings import get_settings


class ZohoResource(ConfigurableResource):
    """A Zoho CRM org reached through the v8 REST API with a self-client refresh token."""

    api_domain: str | None = Field(None, description="e.g. https://www.zohoapis.eu. Unset: ZOHO_API_DOMAIN.")
    accounts_url: str | None = Field(None, description="e.g. https://accounts.zoho.eu. Unset: ZOHO_ACCOUNTS_URL.")
    client_id: str = Field(description="OAuth client id; set ZOHO_CLIENT_ID.")
    client_secret: str = Field(description="OAuth client secret; set ZOHO_CLIENT_SECRET.")
    refresh_token: str = Field(description="OAuth refresh token; set ZOHO_REFRESH_TOKEN.")
    max_concurrency: int | None = Field(
        None,
        description="Concurrent requests, and modules read side by side; the org edition's limit at most. "
        "Unset: the edition's limit (Free 5, Standard 10, Professional 15, Enterprise 20, Ultimate 25), "
        "read from /crm/v8/org at the start of each read; 5 when it cannot be read.",
    )

    bulk_read_threshold: int = Field(
        100_000,
        description="A full read (the nightly snapshot) of a module holding more records than this (Zoho's "
        "GET /crm/v8/{module}/actions/count) exports it with Bulk Read (scope ZohoCRM.bulk.read) instead of "
        "paging the record API; 0 or less never does. Change windows always page.",
    )

    def client_factory(self) -> Callable[[], ZohoClient]:
        """Builds a client wherever it is called, another process included (it pickles)."""
        settings = get_settings()
        return partial(
            ZohoClient,
            self.api_domain or settings.zoho_api_domain,
            self.accounts_url or settings.zoho_accounts_url,
            self.client_id,
            SecretStr(self.client_secret),
            SecretStr(self.refresh_token),
            max_concurrency=self.max_concurrency,
        )

    def client(self) -> ZohoClient:
        return self.client_factory()()
