"""The Zoho CRM v8 client as a Dagster resource."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from integration_pipelines.lib.zoho import ZohoClient
from integration_pipelines.settings import get_settings


class ZohoResource(ConfigurableResource):
    """A Zoho CRM org reached through the v8 REST API with a self-client refresh token."""

    api_domain: str | None = Field(None, description="e.g. https://www.zohoapis.eu. Unset: ZOHO_API_DOMAIN.")
    accounts_url: str | None = Field(None, description="e.g. https://accounts.zoho.eu. Unset: ZOHO_ACCOUNTS_URL.")
    client_id: str = Field(description="OAuth client id; set ZOHO_CLIENT_ID.")
    client_secret: str = Field(description="OAuth client secret; set ZOHO_CLIENT_SECRET.")
    refresh_token: str = Field(description="OAuth refresh token; set ZOHO_REFRESH_TOKEN.")
    max_concurrency: int = Field(10, description="Concurrent requests; the org edition's limit at most.")

    def client(self) -> ZohoClient:
        settings = get_settings()
        return ZohoClient(
            self.api_domain or settings.zoho_api_domain,
            self.accounts_url or settings.zoho_accounts_url,
            self.client_id,
            self.client_secret,
            self.refresh_token,
            max_concurrency=self.max_concurrency,
        )
