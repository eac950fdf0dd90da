"""Zoho Bulk Read: export a module as a job, poll it, and stream the CSV rows of its zip."""

from __future__ import annotations

import csv
import io
import logging
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from integration_pipelines.lib.http import call_with_retries
from integration_pipelines.lib.zoho.errors import (
    ZohoAPIError,
    ZohoBulkReadError,
    ZohoResponseError,
    ZohoServerError,
    describe_details,
    error_code,
)

if TYPE_CHECKING:
    from integration_pipelines.lib.zoho.client import ZohoClient

logger = logging.getLogger(__name__)


def bulk_read(
    client: ZohoClient,
    module: str,
    fields: Sequence[str],
    *,
    criteria: Mapping[str, Any] | None = None,
    poll_interval: float | None = None,
    timeout: float | None = None,
) -> Iterator[dict[str, str]]:
    """Stream CSV rows of a Bulk Read export (scope ``ZohoCRM.bulk.read``).

    Creates a job (``POST /crm/bulk/v8/read``), polls it every ``poll_interval`` seconds
    until ``COMPLETED``, downloads the zip to a temporary file (streamed, not in memory)
    and yields its CSV rows as dicts. A job returns at most 200,000 records; while
    ``more_records`` is true the next page (``page_token`` if given, else ``page+1``) is
    requested as a new job.
    """
    page = 1
    page_token: str | None = None
    while True:
        query: dict[str, Any] = {"module": {"api_name": module}, "fields": list(fields)}
        if criteria:
            query["criteria"] = dict(criteria)
        if page_token:
            query["page_token"] = page_token
        else:
            query["page"] = page
        job_id = _create_job(client, query)
        result = _wait_for_job(client, job_id, poll_interval, timeout)
        yield from _download_result(client, job_id, result)
        if not result.get("more_records"):
            return
        if result.get("next_page_token"):
            page_token = str(result["next_page_token"])
        else:
            page += 1


def _create_job(client: ZohoClient, query: dict[str, Any]) -> str:
    endpoint = "POST /crm/bulk/v8/read"
    response = client._request("POST", "/crm/bulk/v8/read", endpoint=endpoint, json_body={"query": query})
    body = client._decode(response, endpoint)
    items = body.get("data") or []
    if not items or items[0].get("status") != "success":
        item = items[0] if items else body
        raise ZohoAPIError(
            f"Zoho {endpoint}: job not created ({item.get('code')}: {client._redact(item.get('message') or '')}"
            f"{'; ' + client._redact(describe_details(item.get('details'))) if item.get('details') else ''})",
            endpoint=endpoint,
            code=item.get("code"),
            details=item.get("details"),
            status_code=response.status_code,
        )
    return str(items[0]["details"]["id"])


def _wait_for_job(
    client: ZohoClient, job_id: str, poll_interval: float | None, timeout: float | None
) -> dict[str, Any]:
    endpoint = "GET /crm/bulk/v8/read/{job_id}"
    interval = client.bulk_poll_interval if poll_interval is None else poll_interval
    deadline = client._clock() + (client.bulk_timeout if timeout is None else timeout)
    while True:
        body = client._get_json(f"/crm/bulk/v8/read/{job_id}", endpoint=endpoint)
        job = (body.get("data") or [{}])[0]
        state = str(job.get("state") or "").upper()
        if state == "COMPLETED":
            return job.get("result") or {}
        if state == "FAILURE":
            raise ZohoBulkReadError(f"Zoho Bulk Read job {job_id} failed", endpoint=endpoint)
        if client._clock() >= deadline:
            raise ZohoBulkReadError(
                f"Zoho Bulk Read job {job_id} still {state or 'unknown'} after the timeout", endpoint=endpoint
            )
        client._sleep(interval)


def _download_result(client: ZohoClient, job_id: str, result: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    endpoint = "GET /crm/bulk/v8/read/{job_id}/result"
    url = result.get("download_url") or f"/crm/bulk/v8/read/{job_id}/result"
    if url.startswith("/"):
        url = client._url(url)
    elif not url.startswith(client.api_domain):
        raise ZohoResponseError(f"Zoho Bulk Read job {job_id}: download URL off the API domain", endpoint=endpoint)
    refreshed = False

    def attempt() -> IO[bytes]:
        nonlocal refreshed
        token = client._tokens.get()
        spool = tempfile.TemporaryFile()
        try:
            with client._session.stream(
                "GET",
                url,
                endpoint=endpoint,
                headers={"Authorization": f"Zoho-oauthtoken {token.get_secret_value()}"},
            ) as response:
                if response.status_code == 200:
                    for chunk in response.iter_bytes(64 * 1024):
                        spool.write(chunk)
                    spool.seek(0)
                    return spool
                response.read()
            if response.status_code == 401 and not refreshed and error_code(response) == "INVALID_TOKEN":
                refreshed = True
                client._tokens.invalidate(token)
                raise ZohoServerError(
                    "access token expired during download; refreshed", endpoint=endpoint, retryable=True
                )
            client._check(response, endpoint)
            raise ZohoResponseError(f"Zoho {endpoint}: HTTP {response.status_code}", endpoint=endpoint)
        except BaseException:
            spool.close()
            raise

    spool = call_with_retries(
        attempt,
        policy=client.retry,
        sleep=client._sleep,
        logger=logger,
        counter=client.counter,
        what=f"Zoho {endpoint}",
    )
    with spool:
        try:
            archive = zipfile.ZipFile(spool)
        except zipfile.BadZipFile:
            raise ZohoBulkReadError(
                f"Zoho Bulk Read job {job_id}: the result is not a zip file", endpoint=endpoint
            ) from None
        with archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if not members:
                raise ZohoBulkReadError(f"Zoho Bulk Read job {job_id}: no CSV in the result", endpoint=endpoint)
            for member in members:
                with archive.open(member) as raw:
                    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                    yield from csv.DictReader(text)
