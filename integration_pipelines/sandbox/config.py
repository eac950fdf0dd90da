"""Configuration of one sandbox instance (fake Moodle + fake Zoho CRM on one port).

Every credential default is deliberately, obviously fake: the sandbox serves generated
data only and must never be mistaken for a real site.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# Concurrency limits per org and app, by Zoho edition (API_NOTES B5).
ZOHO_CONCURRENCY_BY_EDITION = {
    "free": 5,
    "standard": 10,
    "professional": 15,
    "enterprise": 20,
    "ultimate": 25,
}
# Rolling-24h API credits: base plus per-user allowance, by edition (API_NOTES B5).
ZOHO_CREDITS_BY_EDITION = {
    "free": (5_000, 0),
    "standard": (50_000, 250),
    "professional": (50_000, 500),
    "enterprise": (50_000, 1_000),
    "ultimate": (50_000, 2_000),
}


class SandboxConfig(BaseModel):
    """Everything that shapes one sandbox: the college, the network, the credentials and the limits."""

    # --- the generated college -------------------------------------------------------------
    students: int = Field(50, ge=1, description="Number of students in the generated college.")
    seed: int = Field(7, description="Seed of the generator and of fault injection.")
    college_knobs: dict = Field(
        default_factory=dict,
        description="Extra keyword arguments for generate_college (shares of mess, sizes).",
    )

    # --- network ---------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port.")

    # --- credentials (fake on purpose; repr=False keeps them out of reprs and logs) --------
    moodle_token: str = Field("sandbox-moodle-token", repr=False)
    # A second token, of a service user holding only these capabilities: it answers as the
    # reference's limited user does (moodle_ws/*__without_*_capabilities). `doctor` names the rest.
    moodle_limited_token: str = Field("sandbox-moodle-limited-token", repr=False)
    moodle_limited_capabilities: tuple[str, ...] = (
        "webservice/rest:use",
        "moodle/course:enrolreview",
        "moodle/grade:viewall",
    )
    zoho_client_id: str = "1000.SANDBOXCLIENTID"
    zoho_client_secret: str = Field("sandbox-zoho-client-secret", repr=False)
    zoho_refresh_token: str = Field("1000.sandbox-zoho-refresh-token", repr=False)

    # --- Zoho OAuth behaviour --------------------------------------------------------------
    token_ttl_seconds: int = Field(3600, ge=1, description="Access-token lifetime on the sandbox clock.")
    token_ttl_calls: int | None = Field(
        None, ge=1, description="Access token dies after this many API calls (None = unlimited)."
    )
    refresh_limit: int = Field(10, ge=1, description="Refreshes allowed per refresh token per window.")
    refresh_window_seconds: float = Field(600.0, gt=0, description="Throttle window (wall-clock seconds).")

    # --- Zoho limits -----------------------------------------------------------------------
    zoho_edition: str = Field("enterprise", pattern="^(free|standard|professional|enterprise|ultimate)$")
    zoho_user_licenses: int = Field(10, ge=1)
    zoho_concurrency_limit: int | None = Field(None, ge=1, description="Overrides the edition's limit.")
    zoho_daily_credits: int | None = Field(None, ge=1, description="Overrides the edition's credits.")
    bulk_read_page_size: int = Field(200_000, ge=1, description="Records per Bulk Read result page.")

    # --- fault injection (Moodle and Zoho data endpoints, never /_sandbox) ----------------
    fault_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of data requests that fault.")
    fault_kinds: tuple[str, ...] = ("429", "5xx", "timeout", "drop")
    fault_delay_seconds: float = Field(0.2, ge=0.0, description="How long a 'timeout' fault holds the response.")
    fault_retry_after_seconds: int = Field(1, ge=0, description="Retry-After sent with injected 429s.")
    write_fault_rate: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of Zoho upserts whose answer is lost after the write was applied (the connection "
        "drops): what makes a resend a duplicate unless it is matched on duplicate_check_fields.",
    )

    response_delay_seconds: float = Field(
        0.0, ge=0.0, description="Latency added to every data request (makes concurrency observable)."
    )

    # --- Moodle webhooks (events emitted by mutate) ---------------------------------------
    webhook_url: str | None = Field(None, description="If set, mutate POSTs each event here.")
    webhook_token: str = Field("sandbox-webhook-token", repr=False)
    webhook_extra: str = ""
    tenant_id: str = "sandbox"
    # --- Zoho notifications (issue 15: a watch channel's callbacks, API_NOTES B6) ------------
    zoho_notify_url: str | None = Field(None, description="If set, mutate POSTs Zoho notifications here.")
    zoho_notify_token: str = Field("sandbox-zoho-channel-token", repr=False, max_length=50)
    zoho_notify_channel_id: str = "1000000068001"
    # The operation spellings are unverified (API_NOTES B6): insert, update, delete by default.
    zoho_notify_operations: tuple[str, str, str] = ("insert", "update", "delete")

    model_config = {"frozen": False}

    def concurrency_limit(self) -> int:
        return self.zoho_concurrency_limit or ZOHO_CONCURRENCY_BY_EDITION[self.zoho_edition]

    def daily_credits(self) -> int:
        if self.zoho_daily_credits:
            return self.zoho_daily_credits
        base, per_user = ZOHO_CREDITS_BY_EDITION[self.zoho_edition]
        return base + per_user * self.zoho_user_licenses
