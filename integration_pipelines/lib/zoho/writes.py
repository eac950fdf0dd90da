"""Writing records to Zoho CRM: one upsert batch, and what each record's answer means.

Built on :class:`~integration_pipelines.lib.zoho.client.ZohoClient`'s one request path (its
token refresh, retries with backoff, the concurrency cap and typed errors): this module adds
what a writer needs on top of :meth:`ZohoClient.upsert`:

- :func:`upsert_batch` sends at most one batch (100 records, ``POST /crm/v8/{module}/upsert``)
  with ``duplicate_check_fields``, so a caller can record each batch as in flight before it is
  sent and settle it once the 207 answer is read, record by record;
- :func:`record_outcome` sorts a record's answer into written, rejected for good (Zoho's
  validation: invalid data, an unknown or read-only field, a mandatory field missing), or worth
  another try later;
- :func:`credits_charged` counts the API credits a client's requests used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from integration_pipelines.lib.zoho.client import UPSERT_BATCH, UpsertResult, ZohoClient
from integration_pipelines.lib.zoho.errors import describe_details
from integration_pipelines.lib.zoho.times import parse_zoho_datetime

# Record-level codes that say the same record may be accepted on another try: Zoho was busy or
# the record was locked for a moment. Every other error code (INVALID_DATA, MANDATORY_NOT_FOUND,
# DUPLICATE_DATA, ...) is Zoho refusing the record as it is: resending it cannot help.
TRANSIENT_RECORD_CODES = frozenset({"INTERNAL_ERROR", "TOO_MANY_REQUESTS", "RECORD_LOCKED", "REQUEST_TIMEOUT"})


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """What Zoho did with one record of a batch (in the order the records were given)."""

    index: int
    written: bool
    permanent: bool
    """A refusal that another try cannot change (only meaningful when not ``written``)."""
    zoho_id: str | None
    action: str | None
    """``insert`` or ``update`` when written."""
    modified_at: datetime | None
    """The record's ``Modified_Time`` after the write, on Zoho's clock (when written and given)."""
    error: str | None
    """Zoho's code, message and details, e.g. ``INVALID_DATA: invalid data (api_name=Student, ...)``."""


def record_outcome(result: UpsertResult) -> RecordOutcome:
    """One record's answer in a 207 multi-status, as a :class:`RecordOutcome`."""
    if result.ok:
        modified = result.details.get("Modified_Time")
        modified_at = parse_zoho_datetime(modified) if isinstance(modified, str) else None
        return RecordOutcome(result.index, True, False, result.id, result.action, modified_at, None)
    code = result.code or result.status
    error = f"{code}: {result.message or ''}".rstrip(": ")
    if detail := describe_details(result.details):
        error += f" ({detail})"
    return RecordOutcome(result.index, False, code not in TRANSIENT_RECORD_CODES, None, None, None, error)


def upsert_batch(
    client: ZohoClient,
    module: str,
    records: Sequence[Mapping[str, Any]],
    duplicate_check_fields: Sequence[str],
) -> list[RecordOutcome]:
    """Upsert one batch (at most 100 records) and read its answer record by record.

    Zoho matches each record on ``duplicate_check_fields``, so resending a batch whose answer
    was lost updates the records the first attempt created instead of creating them again; the
    client's retries (429, 5xx, timeouts, dropped connections, one token refresh) rely on that.
    A whole-batch failure raises the client's typed error (``retryable`` says whether a later
    run may succeed).
    """
    if not records:
        return []
    if len(records) > UPSERT_BATCH:
        raise ValueError(f"an upsert batch holds at most {UPSERT_BATCH} records, got {len(records)}")
    return [record_outcome(r) for r in client.upsert(module, records, duplicate_check_fields)]


# Answers that say the call was refused before it was served, so it cost no credit: a rate limit,
# an access token to refresh, a server error.
_REFUSED = {"401", "429"}


def credits_charged(client: ZohoClient) -> int:
    """API credits the client's calls have used, at most: one per API call Zoho served (an
    upsert of up to 100 records costs 1 credit). Token refreshes are not API calls, and a call
    refused (401, 429) or failed (5xx) cost nothing; a call that got no answer at all is counted,
    since Zoho may have served it and the answer been lost on the way back."""
    served = sum(
        count
        for status, count in client.counter.by_status.items()
        if status not in _REFUSED and not status.startswith("5")
    )
    return max(0, served - client.token_refreshes)
