"""Project settings, read from the environment (and an optional `.env` file).

One place decides where the data lives and how the sources are reached. Secrets are
`SecretStr`: their repr is redacted, and they are only ever read from the environment.
Every variable is documented in `.env.example`.
"""

from __future__ import annotations

from datetime import date
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the warehouse, the Dagster instance and the events inbox live, and how to reach the sources."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Defaults are passed as `default=`: a type checker reads a Field without it as a required field.
    data_dir: Path = Field(default=Path(".data"), validation_alias="INTEGRATION_DATA_DIR")
    warehouse_url: str = Field(
        default="",
        validation_alias="WAREHOUSE_URL",
        description="SQLAlchemy URL. Default: a SQLite file in the data directory. "
        "PostgreSQL: postgresql+psycopg://user:password@host/db",
    )
    dagster_home: Path | None = Field(default=None, validation_alias="DAGSTER_HOME")
    events_inbox_dir: Path | None = Field(default=None, validation_alias="EVENTS_INBOX_DIR")
    tenant_id: str = Field(default="default", validation_alias="TENANT_ID")
    field_mapping_file: Path | None = Field(
        default=None,
        validation_alias="FIELD_MAPPING_FILE",
        description="The college's field mapping. Default: the packaged one.",
    )

    incremental_start_date: date = Field(
        default=date(2025, 1, 1),
        validation_alias="INCREMENTAL_START_DATE",
        description="First daily change window of incremental_sync (UTC).",
    )
    freshness_warn_hours: float = Field(
        default=26.0,
        gt=0,
        validation_alias="FRESHNESS_MAX_AGE_HOURS",
        description="Canonical tables and marts older than this are late (freshness WARN): a nightly "
        "full_sync plus two hours.",
    )
    freshness_fail_hours: float = Field(
        default=50.0,
        gt=0,
        validation_alias="FRESHNESS_FAIL_HOURS",
        description="Canonical tables and marts older than this are stale (freshness FAIL): two nightly "
        "full_syncs missed.",
    )

    moodle_url: str = Field(default="http://127.0.0.1:8765", validation_alias="MOODLE_URL")
    moodle_token: SecretStr = Field(default=SecretStr(""), validation_alias="MOODLE_TOKEN")

    zoho_api_domain: str = Field(default="http://127.0.0.1:8765", validation_alias="ZOHO_API_DOMAIN")
    zoho_accounts_url: str = Field(default="http://127.0.0.1:8765", validation_alias="ZOHO_ACCOUNTS_URL")
    zoho_client_id: str = Field(default="", validation_alias="ZOHO_CLIENT_ID")
    zoho_client_secret: SecretStr = Field(default=SecretStr(""), validation_alias="ZOHO_CLIENT_SECRET")
    zoho_refresh_token: SecretStr = Field(default=SecretStr(""), validation_alias="ZOHO_REFRESH_TOKEN")

    # --- Real-time events (issue 15) ---------------------------------------------------------
    events_webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        validation_alias="EVENTS_WEBHOOK_SECRETS",
        description='Per tenant, the secret webhook senders present, as JSON: {"college-a": "..."}.',
    )
    events_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        validation_alias="EVENTS_MAX_BODY_BYTES",
        description="Largest webhook body accepted (413 above it).",
    )
    events_batch_size: int = Field(
        default=2_000, ge=1, validation_alias="EVENTS_BATCH_SIZE", description="Files one process_events run takes."
    )
    events_max_attempts: int = Field(
        default=5, ge=1, validation_alias="EVENTS_MAX_ATTEMPTS", description="Attempts before an event is dead."
    )
    events_retry_base_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias="EVENTS_RETRY_BASE_SECONDS",
        description="First retry delay; each further attempt waits twice as long.",
    )
    events_retention_days: float = Field(
        default=90.0,
        gt=0,
        validation_alias="EVENTS_RETENTION_DAYS",
        description="Processed and ignored events (log rows, archived files) older than this are removed.",
    )

    # The profile API (issue 16).
    api_cors_origins: str = Field(
        default="",
        validation_alias="API_CORS_ORIGINS",
        description="Origins allowed to call the API from a browser (the dashboard's), comma-separated. "
        "Default: none (no CORS headers).",
    )

    api_threads: int | None = Field(
        default=None,
        ge=1,
        le=64,
        validation_alias="API_THREADS",
        description="Threads per API process reading the warehouse (more processes: api serve --workers). "
        "Default: 1 on SQLite, 2 on PostgreSQL.",
    )

    college_name: str = Field(
        default="College", validation_alias="COLLEGE_NAME", description="The name receipts are issued in."
    )

    @property
    def api_cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.api_cors_origins.split(",") if origin.strip()]

    # --- The web pages (issue 17) ----------------------------------------------------------
    dagster_webserver_url: str = Field(
        default="",
        validation_alias="DAGSTER_WEBSERVER_URL",
        description="The Dagster webserver the admin console starts syncs on (GraphQL) and links runs to, "
        "e.g. http://127.0.0.1:3000. Empty: the console's sync buttons say it is not configured.",
    )

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Everything defaults to live under one data directory, so a fresh checkout needs no services.
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.dagster_home is None:
            self.dagster_home = self.data_dir / "dagster_home"
        if self.events_inbox_dir is None:
            self.events_inbox_dir = self.data_dir / "events" / "inbox"
        if not self.warehouse_url:
            self.warehouse_url = f"sqlite:///{self.data_dir / 'warehouse.db'}"
        if self.freshness_fail_hours <= self.freshness_warn_hours:
            raise ValueError(
                f"FRESHNESS_FAIL_HOURS ({self.freshness_fail_hours:g}) must be greater than "
                f"FRESHNESS_MAX_AGE_HOURS ({self.freshness_warn_hours:g})"
            )
        return self

    @cached_property
    def warehouse_backend(self) -> str:
        """`sqlite` or `postgresql`: the dialect name of the warehouse URL."""
        return self.warehouse_url.split(":", 1)[0].split("+", 1)[0]

    @property
    def api_read_threads(self) -> int:
        """Threads per API process reading the warehouse (api/threads.py says why so few): one on
        SQLite, whose driver hands the GIL over for every row; two on PostgreSQL, whose round trips
        a second thread overlaps."""
        if self.api_threads is not None:
            return self.api_threads
        return 1 if self.warehouse_backend == "sqlite" else 2


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; tests change the environment freely)."""
    return Settings()
