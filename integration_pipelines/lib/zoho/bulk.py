"""Zoho Bulk Read: export a module as a job, poll it, and stream the CSV rows of its zip.

- :func:`bulk_read` streams CSV rows page by page (one job per 200,000 records);
- :func:`spooled_bulk_read` keeps every page's zip in a temporary file while it is open, so its
  rows can be read more than once (a first pass for the lookup names a snapshot needs);
- :class:`BulkRecordShaper` turns a CSV row (all text) into the record the paged
  ``GET /crm/v8/{module}`` answer has, using the module's field metadata.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from integration_pipelines.lib.http import call_with_retries
from integration_pipelines.lib.zoho.errors import (
    ZohoAPIError,
    ZohoBulkReadError,
    ZohoNotFound,
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
    backoff: float = 1.0,
) -> Iterator[dict[str, str]]:
    """Stream CSV rows of a Bulk Read export (scope ``ZohoCRM.bulk.read``).

    Creates a job (``POST /crm/bulk/v8/read``), polls it every ``poll_interval`` seconds
    (growing by ``backoff`` after each poll, to at most ``MAX_POLL_INTERVAL``) until
    ``COMPLETED``, within ``timeout`` seconds, downloads the zip to a temporary file (streamed,
    not in memory) and yields its CSV rows as dicts. A job returns at most 200,000 records;
    while ``more_records`` is true the next page (``page_token`` if given, else ``page+1``) is
    requested as a new job.
    """
    for job_id, result in _jobs(client, module, fields, criteria, poll_interval, timeout, backoff):
        with _download_spool(client, job_id, result) as spool:
            yield from _csv_rows(spool, job_id)


# The longest wait between two polls of a job, however long it runs.
MAX_POLL_INTERVAL = 60.0


@dataclass
class BulkExport:
    """A Bulk Read export held in temporary files (one zip per result page) while it is open."""

    module: str
    job_ids: list[str] = field(default_factory=list)
    _spools: list[IO[bytes]] = field(default_factory=list)

    def rows(self) -> Iterator[dict[str, str]]:
        """Every page's CSV rows, in order; may be called more than once."""
        for job_id, spool in zip(self.job_ids, self._spools, strict=True):
            spool.seek(0)
            yield from _csv_rows(spool, job_id)


@contextmanager
def spooled_bulk_read(
    client: ZohoClient,
    module: str,
    fields: Sequence[str],
    *,
    criteria: Mapping[str, Any] | None = None,
    poll_interval: float | None = None,
    timeout: float | None = None,
    backoff: float = 1.0,
) -> Iterator[BulkExport]:
    """:func:`bulk_read`, every result page downloaded first and kept (on disk) until the block
    ends, so that :meth:`BulkExport.rows` can be read more than once."""
    export = BulkExport(module)
    try:
        for job_id, result in _jobs(client, module, fields, criteria, poll_interval, timeout, backoff):
            spool = _download(client, job_id, result)
            export.job_ids.append(job_id)
            export._spools.append(spool)
        yield export
    finally:
        for spool in export._spools:
            spool.close()


def _jobs(
    client: ZohoClient,
    module: str,
    fields: Sequence[str],
    criteria: Mapping[str, Any] | None,
    poll_interval: float | None,
    timeout: float | None,
    backoff: float,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each result page's job, created and waited for: `(job id, its result block)`."""
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
        result = _wait_for_job(client, job_id, module, poll_interval, timeout, backoff)
        yield job_id, result
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
    client: ZohoClient,
    job_id: str,
    module: str,
    poll_interval: float | None,
    timeout: float | None,
    backoff: float = 1.0,
) -> dict[str, Any]:
    endpoint = "GET /crm/bulk/v8/read/{job_id}"
    interval = client.bulk_poll_interval if poll_interval is None else poll_interval
    limit = client.bulk_timeout if timeout is None else timeout
    deadline = client._clock() + limit
    while True:
        try:
            body = client._get_json(f"/crm/bulk/v8/read/{job_id}", endpoint=endpoint)
        except ZohoNotFound as exc:
            raise ZohoBulkReadError(
                f"Zoho Bulk Read job {job_id} ({module}) no longer exists: it expired or was deleted "
                f"while it was polled ({exc})",
                endpoint=endpoint,
            ) from exc
        job = (body.get("data") or [{}])[0]
        state = str(job.get("state") or "").upper()
        if state == "COMPLETED":
            return job.get("result") or {}
        if state == "FAILURE":
            raise ZohoBulkReadError(
                f"Zoho Bulk Read job {job_id} ({module}) failed: Zoho answered state FAILURE; "
                "no records were read from it",
                endpoint=endpoint,
            )
        if client._clock() >= deadline:
            raise ZohoBulkReadError(
                f"Zoho Bulk Read job {job_id} ({module}) still {state or 'unknown'} after the timeout ({limit:g} s)",
                endpoint=endpoint,
            )
        client._sleep(interval)
        interval = min(interval * backoff, max(interval, MAX_POLL_INTERVAL))


@contextmanager
def _download_spool(client: ZohoClient, job_id: str, result: Mapping[str, Any]) -> Iterator[IO[bytes]]:
    spool = _download(client, job_id, result)
    with spool:
        yield spool


def _download(client: ZohoClient, job_id: str, result: Mapping[str, Any]) -> IO[bytes]:
    """The job's result zip, streamed into a temporary file (the caller closes it)."""
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

    try:
        return call_with_retries(
            attempt,
            policy=client.retry,
            sleep=client._sleep,
            logger=logger,
            counter=client.counter,
            what=f"Zoho {endpoint}",
        )
    except ZohoNotFound as exc:
        raise ZohoBulkReadError(
            f"Zoho Bulk Read job {job_id}: its result is gone (it expired before it was downloaded) ({exc})",
            endpoint=endpoint,
        ) from exc


def _csv_rows(spool: IO[bytes], job_id: str) -> Iterator[dict[str, str]]:
    endpoint = "GET /crm/bulk/v8/read/{job_id}/result"
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


# -- CSV rows as the records of the paged API -------------------------------------------------

_RESULT = "GET /crm/bulk/v8/read/{job_id}/result"

# How each Zoho json_type's CSV text becomes the paged answer's JSON value. The CSV cannot tell
# an empty text from a missing one: both are empty cells, and both come out null, as Zoho's
# record API leaves empty fields null.
_SCALARS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "integer": int,
    "double": float,
    "boolean": lambda text: {"true": True, "false": False}[text.strip().lower()],
}
# A field's json_type when the metadata leaves it out, by data_type.
_JSON_TYPE_OF = {
    "bigint": "string",
    "text": "string",
    "textarea": "string",
    "email": "string",
    "phone": "string",
    "website": "string",
    "picklist": "string",
    "autonumber": "string",
    "date": "string",
    "datetime": "string",
    "integer": "integer",
    "long": "integer",
    "double": "double",
    "currency": "double",
    "decimal": "double",
    "percent": "double",
    "boolean": "boolean",
    "lookup": "jsonobject",
}

# The field of a lookup's target whose value is the lookup's `name` in the paged answer: the
# record-name field, `Name` in custom modules.
LOOKUP_NAME_FIELD = "Name"

# A lookup target's record names (id -> `Name`); a record without a name maps to None.
LookupNames = Callable[[str], Mapping[str, str | None]]


@dataclass(frozen=True)
class BulkRecordShaper:
    """Turns a Bulk Read CSV row of one module into the record ``GET /crm/v8/{module}`` answers
    for the same fields: ``id``, then each field's value typed as the module's field metadata
    (``/settings/fields``) says: text as strings, integers, doubles and booleans as JSON
    numbers and booleans, dates and datetimes as Zoho's text, empty cells null, and lookups as
    ``{"name", "id"}``. A lookup's id is its column (or a ``<field>.id`` column, whose ``<field>``
    column is then its name); its name otherwise comes from ``lookup_names(target module)``.

    :meth:`unsupported` names the fields whose paged value a CSV cannot rebuild (owner lookups,
    which carry the user's email, multi-selects, subforms...): read such a module by pages.
    """

    module: str
    fields: tuple[str, ...]
    metadata: Mapping[str, Mapping[str, Any]]

    @classmethod
    def for_fields(cls, module: str, fields: Sequence[str], field_list: Sequence[Mapping[str, Any]]):
        by_name = {str(f.get("api_name")): f for f in field_list}
        wanted = tuple(f for f in dict.fromkeys(fields) if f != "id")
        return cls(module, wanted, {f: by_name.get(f, {}) for f in wanted})

    def kind(self, name: str) -> str | None:
        """`lookup`, a scalar json_type, or None when the CSV cannot rebuild the field."""
        meta = self.metadata.get(name) or {}
        data_type = str(meta.get("data_type") or "")
        json_type = str(meta.get("json_type") or _JSON_TYPE_OF.get(data_type, ""))
        if data_type == "lookup" and json_type == "jsonobject" and self.lookup_target(name):
            return "lookup"
        return json_type if json_type in _SCALARS and data_type != "ownerlookup" else None

    def unsupported(self) -> list[str]:
        return [f for f in self.fields if self.kind(f) is None]

    def lookup_target(self, name: str) -> str | None:
        lookup = (self.metadata.get(name) or {}).get("lookup") or {}
        module = lookup.get("module") if isinstance(lookup, Mapping) else None
        target = module.get("api_name") if isinstance(module, Mapping) else None
        return str(target) if target else None

    def lookup_targets(self) -> dict[str, str]:
        """Lookup field -> the module it points at."""
        return {f: t for f in self.fields if self.kind(f) == "lookup" and (t := self.lookup_target(f))}

    def converter(self, lookup_names: LookupNames) -> Callable[[Mapping[str, str]], dict[str, Any]]:
        """A function from one CSV row to the record; lookup names are resolved once per target."""
        plan: list[tuple[str, str, Any]] = []
        for name in self.fields:
            kind = self.kind(name)
            if kind is None:
                raise ValueError(f"Zoho {self.module}.{name}: a Bulk Read CSV cannot rebuild this field")
            if kind == "lookup":
                plan.append((name, kind, self.lookup_target(name)))
            else:
                plan.append((name, kind, _SCALARS[kind]))
        names: dict[str, Mapping[str, str | None]] = {}

        def convert(row: Mapping[str, str]) -> dict[str, Any]:
            rid = row.get("Id", row.get("id"))
            if not rid:
                raise ZohoResponseError(f"Zoho Bulk Read {self.module}: a CSV row has no Id", endpoint=_RESULT)
            record: dict[str, Any] = {"id": rid}
            for name, kind, how in plan:
                if kind == "lookup":
                    record[name] = self._lookup(row, name, how, names, lookup_names)
                    continue
                if name not in row:
                    raise ZohoResponseError(
                        f"Zoho Bulk Read {self.module}: the CSV has no column {name!r}",
                        endpoint=_RESULT,
                    )
                text = row[name]
                try:
                    record[name] = None if text == "" else how(text)
                except (KeyError, ValueError):
                    raise ZohoResponseError(
                        f"Zoho Bulk Read {self.module} record {rid}: {name} is {text!r}, not a {kind}",
                        endpoint=_RESULT,
                    ) from None
            return record

        return convert

    def _lookup(
        self,
        row: Mapping[str, str],
        name: str,
        target: str,
        names: dict[str, Mapping[str, str | None]],
        lookup_names: LookupNames,
    ) -> dict[str, str | None] | None:
        if f"{name}.id" in row:
            rid, label = row[f"{name}.id"], row.get(name) or None
        elif name in row:
            rid, label = row[name], None
        else:
            raise ZohoResponseError(
                f"Zoho Bulk Read {self.module}: the CSV has no column {name!r}",
                endpoint=_RESULT,
            )
        if not rid:
            return None
        if label is None:
            if target not in names:
                names[target] = lookup_names(target)
            label = names[target].get(rid)
        return {"name": label, "id": rid}
