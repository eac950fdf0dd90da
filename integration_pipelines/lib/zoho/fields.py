"""Checking a mapping's fields against what a Zoho module has, before reading it.

Zoho answers a list request naming an unknown field with ``400 INVALID_DATA invalid data`` and
the field only in ``details.api_name``; a mistyped field in the mapping would otherwise load
without complaint and fail the run far from its cause.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from integration_pipelines.lib.zoho.errors import ZohoFieldError

if TYPE_CHECKING:
    from integration_pipelines.lib.zoho.client import ZohoClient


def check_mapped_fields(
    client: ZohoClient,
    entity: str,
    module: str,
    fields: Sequence[str],
    field_list: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Raise :class:`ZohoFieldError` naming the entity, the module and every field of ``fields``
    that the module's field list (``GET /crm/v8/settings/fields?module=``) does not have. One
    request, none when the caller passes the module's ``field_list`` it has already read."""
    listed = client.list_fields(module) if field_list is None else field_list
    known = {f.get("api_name") for f in listed} | {"id"}
    unknown = [f for f in dict.fromkeys(fields) if f not in known]
    if unknown:
        names = ", ".join(repr(f) for f in unknown)
        raise ZohoFieldError(
            f"the field mapping of entity {entity!r} reads field(s) {names} that the Zoho module {module} "
            f"does not have (checked against GET /crm/{client.api_version}/settings/fields?module={module}); "
            "fix the mapping's `source` names (Zoho API names are case-sensitive)",
            entity=entity,
            module=module,
            unknown=unknown,
            endpoint=f"GET /crm/{client.api_version}/settings/fields",
        )
