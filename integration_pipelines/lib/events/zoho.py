"""Zoho CRM notifications as raw records: re-read what changed, through the change-window path.

A notification names a module and record ids, and may leave the operation's spelling open
(API_NOTES B6). Rather than trust either, a batch re-reads each notified module's change
window from its earliest notification (records modified since, and Zoho's deleted list), with
the same reader and landing as `incremental_sync` (`read_zoho_modules`, `land_modules`): the
records land with Zoho's own `Modified_Time`, so out-of-order notifications cannot let older
data win, and a deletion lands as the window's deleted list lands it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from integration_pipelines.lib.events.models import ZohoNotification
from integration_pipelines.lib.mapping import FieldMapping
from integration_pipelines.lib.source_reads import ModuleRead, ZohoModule, read_zoho_modules
from integration_pipelines.lib.zoho import ZohoClient

# Zoho's clock and the record's Modified_Time may differ by a moment: read a little earlier.
NOTIFICATION_LOOKBACK = timedelta(seconds=5)


def mapped_modules(mapping: FieldMapping) -> dict[str, ZohoModule]:
    """The Zoho modules the mapping reads, by module API name."""
    return {
        m.module: ZohoModule(entity, m.module, tuple(m.source_fields)) for entity, m in mapping.zoho.entities.items()
    }


def reread(
    make_client: Callable[[], ZohoClient], modules: Iterable[ZohoModule], since: datetime
) -> tuple[list, list[tuple[str, str, str]]]:
    """Each module's changes since `since` (what `land_modules` lands), and the raw keys they reach."""
    records = list(read_zoho_modules(make_client, list(modules), since - NOTIFICATION_LOOKBACK, concurrency=2))
    keys: list[tuple[str, str, str]] = []
    for record in records:
        if isinstance(record, ModuleRead):
            continue
        entity, record_id = record[0], str(record[1])
        keys.append(("zoho", entity, record_id))
        if entity.endswith(".deleted"):
            # The window soft-deletes the module's record too.
            keys.append(("zoho", entity.removesuffix(".deleted"), record_id))
    return records, keys


def event_type(notification: ZohoNotification) -> str:
    return f"zoho.{notification.module}.{notification.operation.lower()}"
