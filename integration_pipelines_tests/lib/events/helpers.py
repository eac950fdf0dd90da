"""A warehouse holding a sandbox college, synced the way full_sync lands and applies it (without
Dagster), and an events inbox beside it: what the events tests start from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import Engine, select

from integration_pipelines.lib.canonical.apply import apply_table, canonical_tables
from integration_pipelines.lib.events.inbox import EventsInbox
from integration_pipelines.lib.events.models import InboxEvent, LocalWebhooksBody, derived_event_id
from integration_pipelines.lib.events.process import EventProcessor, RetryPolicy
from integration_pipelines.lib.events.zoho import mapped_modules
from integration_pipelines.lib.mapping import FieldMapping, load_mapping
from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.lib.raw_sync import RawLander, land_modules
from integration_pipelines.lib.source_reads import read_moodle_snapshot, read_zoho_modules
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES
from integration_pipelines.lib.zoho import ZohoClient
from integration_pipelines.sandbox.server import Sandbox

SNAPSHOT_ENTITIES = ("courses", "enrolments", "users", "grade_items", "grades")


def moodle_factory(sandbox: Sandbox):
    return partial(MoodleClient, sandbox.moodle_url, sandbox.config.moodle_token, max_attempts=3)


def zoho_factory(sandbox: Sandbox):
    c = sandbox.config
    return partial(
        ZohoClient,
        sandbox.zoho_api_domain,
        sandbox.zoho_accounts_url,
        c.zoho_client_id,
        c.zoho_client_secret,
        c.zoho_refresh_token,
    )


def sync_college(engine: Engine, sandbox: Sandbox, tenant: str, mapping: FieldMapping) -> None:
    """Snapshot both sources into the raw layer and apply every raw record (full_sync's data path)."""
    moodle_records = list(read_moodle_snapshot(moodle_factory(sandbox), 4))
    modules = list(mapped_modules(mapping).values())
    zoho_records = list(read_zoho_modules(zoho_factory(sandbox), modules, concurrency=2))
    with begin_write(engine) as conn:
        lander = RawLander(conn, tenant, "moodle", SNAPSHOT_ENTITIES, snapshot=True)
        for record in moodle_records:
            lander.land(*record)
        lander.finish()
        for _ in land_modules(conn, tenant, "zoho", [m.module for m in modules], iter(zoho_records), snapshot=True):
            pass
        for table in canonical_tables():
            apply_table(conn, table, tenant, mapping, full=True)


def rows(engine: Engine, table: str, tenant: str) -> dict[str, dict]:
    """The live rows of a keyed table, by key, without bookkeeping columns."""
    spec = KEYED_TABLES[table]
    t = spec.table
    skip = {"created_at", "updated_at", "fingerprint"}
    with engine.connect() as conn:
        found = conn.execute(select(t).where(t.c.tenant_id == tenant, t.c.deleted_at.is_(None))).mappings()
        return {str(r[spec.key_columns[-1]]): {k: v for k, v in r.items() if k not in skip} for r in found}


@dataclass
class EventsBench:
    """An inbox, and a processor applying it to the warehouse."""

    inbox: EventsInbox
    processor: EventProcessor
    tenant: str

    def drop(self, body: dict, *, event_id: str | None = None, name: str | None = None) -> str:
        """Write a local_webhooks body into the inbox as the receiver would (by hand, given `name`)."""
        parsed = LocalWebhooksBody.model_validate({"token": "", **body})
        event_id = event_id or derived_event_id(self.tenant, parsed.event())
        from datetime import UTC, datetime

        event = InboxEvent(
            event_id=event_id,
            tenant_id=self.tenant,
            sender="local_webhooks",
            received_at=datetime.now(UTC),
            body={k: v for k, v in body.items() if k != "token"},
        )
        if name is None:
            self.inbox.accept(event)
        else:
            (self.inbox.inbox / name).write_bytes(event.to_json())
        return event_id

    def process_all(self, batch_size: int = 1000):
        """Claim and process everything waiting, batch by batch; returns the results."""
        results = []
        while names := self.inbox.waiting(batch_size):
            batch = f"b{len(results):05d}"
            self.inbox.claim(batch, names)
            results.append(self.processor.process_batch(batch))
        return results


def events_bench(
    engine: Engine, sandbox: Sandbox | None, tmp: Path, tenant: str, mapping: FieldMapping | None = None, **kw
) -> EventsBench:
    mapping = mapping or load_mapping()
    inbox = EventsInbox.at(tmp / "events" / "inbox")
    processor = EventProcessor(
        engine,
        inbox,
        mapping,
        moodle_client=moodle_factory(sandbox) if sandbox else None,
        zoho_client=zoho_factory(sandbox) if sandbox else None,
        retry=kw.pop("retry", RetryPolicy(max_attempts=3, base_seconds=1)),
        **kw,
    )
    return EventsBench(inbox, processor, tenant)
