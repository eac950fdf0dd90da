"""Zoho modules read side by side, at the org's concurrency limit, against the sandbox; the
mapping's fields checked before the first page; Zoho's error details in the message."""

from __future__ import annotations

import httpx
import pytest

from integration_pipelines.lib.mapping import load_mapping
from integration_pipelines.lib.source_reads import ModuleRead, ZohoModule, read_zoho_modules
from integration_pipelines.lib.zoho import ZohoAPIError, ZohoClient, ZohoFieldError, check_mapped_fields
from integration_pipelines_tests.lib.test_clients_sandbox import live_ids, sandbox, zoho_client


def mapped_modules() -> list[ZohoModule]:
    return [ZohoModule(entity, m.module, tuple(m.source_fields)) for entity, m in load_mapping().zoho.entities.items()]


def read_all(client: ZohoClient, modules: list[ZohoModule], **kwargs) -> tuple[dict, dict, int]:
    records: dict[str, list[str]] = {}
    reported: dict[str, int] = {}
    reader = read_zoho_modules(lambda: client, modules, **kwargs)
    try:
        while True:
            item = next(reader)
            if isinstance(item, ModuleRead):
                assert item.module not in reported, "each module's requests are reported once"
                reported[item.module] = item.requests
            else:
                entity, record_id, _, _ = item
                assert isinstance(record_id, str)
                records.setdefault(entity, []).append(record_id)
    except StopIteration as end:
        return records, reported, end.value


@pytest.mark.parametrize(("edition", "limit"), [("free", 5), ("standard", 10)])
def test_modules_are_read_side_by_side_at_the_editions_limit(edition, limit) -> None:
    modules = mapped_modules()
    with sandbox(students=300, seed=3, zoho_edition=edition, response_delay_seconds=0.01) as sb:
        client = zoho_client(sb)
        records, reported, total = read_all(client, modules)
        assert client.max_concurrency == limit, "the default is the edition's limit, read from /org"
        assert client.limiter.peak == min(limit, len(modules))
        assert "429" not in client.counter.by_status, "never above the org's limit"
        for m in modules:
            assert sorted(records[m.module]) == sorted(live_ids(sb, m.module)), m.module
        assert set(reported) == {m.module for m in modules}
        # Every request is in one module's figure but the token refresh and the edition lookup.
        assert sum(reported.values()) == total - 2


def test_a_configured_concurrency_wins_over_the_edition() -> None:
    modules = mapped_modules()
    with sandbox(students=100, seed=3, response_delay_seconds=0.01) as sb:
        client = zoho_client(sb)
        _, _, total = read_all(client, modules, concurrency=2)
        assert client.max_concurrency == 2 and client.limiter.peak == 2
        assert client.counter["GET /crm/v8/org"] == 0


def test_without_the_edition_the_limit_is_the_conservative_five() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/v2/token":
            return httpx.Response(200, json={"access_token": "1000.tok-abcdef0123", "expires_in": 3600})
        return httpx.Response(
            401,
            json={"code": "OAUTH_SCOPE_MISMATCH", "details": {}, "message": "invalid oauth scope", "status": "error"},
        )

    client = ZohoClient(
        "https://www.zohoapis.test",
        "https://accounts.zoho.test",
        "id",
        "secret",
        "refresh",
        transport=httpx.MockTransport(handler),
    )
    assert client.configure_concurrency_from_org() == 5


def test_an_unknown_mapped_field_fails_before_the_first_page_naming_entity_module_and_field() -> None:
    with sandbox(students=50, seed=3) as sb:
        client = zoho_client(sb)
        fields = ("Email", "Emial", "Last_Name", "Frist_Name")
        with pytest.raises(ZohoFieldError) as raised:
            read_all(client, [ZohoModule("students", "Students", fields)])
        message = str(raised.value)
        assert "'students'" in message and "Students" in message
        assert "'Emial'" in message and "'Frist_Name'" in message and "'Email'" not in message
        assert raised.value.unknown == ["Emial", "Frist_Name"]
        assert client.counter["GET /crm/v8/Students"] == 0, "no page was asked for"
        with zoho_client(sb) as fresh:  # the reader closed its client
            check_mapped_fields(fresh, "students", "Students", ("Email", "Last_Name"))  # known fields pass


def test_zoho_error_messages_carry_its_details() -> None:
    with sandbox(students=20, seed=3) as sb, zoho_client(sb) as client:
        with pytest.raises(ZohoAPIError) as raised:
            list(client.iter_records("Students", ["Emial"]))
        assert raised.value.code == "INVALID_DATA"
        assert "api_name=Emial" in str(raised.value), str(raised.value)
