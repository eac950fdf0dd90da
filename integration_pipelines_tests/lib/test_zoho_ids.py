"""Zoho ids stay exact text: an integer id beyond 64 bits decodes exactly (orjson would make it a
float), and a record whose id cannot be a key is rejected before it lands, named by position."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from integration_pipelines.lib.http import RetryPolicy, decode_json_bytes
from integration_pipelines.lib.source_reads import ZohoModule, read_zoho_modules
from integration_pipelines.lib.zoho import ZohoClient, ZohoRecordError

API = "https://www.zohoapis.test"
ACCOUNTS = "https://accounts.zoho.test"
BIG = "18446744073709551616"  # 2**64: one past what orjson keeps as an integer


def test_integers_beyond_64_bits_decode_exactly() -> None:
    assert decode_json_bytes(b'{"id": 18446744073709551615}') == {"id": 2**64 - 1}
    assert decode_json_bytes(b'{"id": ' + BIG.encode() + b"}") == {"id": 2**64}
    assert decode_json_bytes(b'{"id": -' + BIG.encode() + b"1}") == {"id": -(2**64 * 10 + 1)}
    assert decode_json_bytes(b'{"n": 1.5, "s": "' + BIG.encode() + b'"}') == {"n": 1.5, "s": BIG}
    with pytest.raises(ValueError):
        decode_json_bytes(b'{"id": ' + BIG.encode())


def page(records_json: str, more: bool = False, token: str | None = None) -> httpx.Response:
    info = {"per_page": 200, "page": 1, "more_records": more} | ({"next_page_token": token} if token else {})
    return httpx.Response(200, content=f'{{"data":[{records_json}],"info":{json.dumps(info)}}}'.encode())


def mocked_zoho(router: respx.Router, *pages: httpx.Response) -> None:
    router.post(f"{ACCOUNTS}/oauth/v2/token").respond(
        200, json={"access_token": "1000.tok-0123456789", "expires_in": 3600}
    )
    router.get(f"{API}/crm/v8/settings/fields").respond(
        200, json={"fields": [{"api_name": "Modified_Time"}, {"api_name": "Email"}]}
    )
    router.get(f"{API}/crm/v8/Students").mock(side_effect=list(pages))
    router.get(f"{API}/crm/v8/Students/deleted").respond(204)


def read(concurrency: int = 1) -> list:
    def make() -> ZohoClient:
        return ZohoClient(API, ACCOUNTS, "1000.ID", "secret", "refresh", retry=RetryPolicy.fast())

    modules = [ZohoModule("students", "Students", ("Email", "Modified_Time"))]
    return list(read_zoho_modules(make, modules, concurrency=concurrency))


def test_a_big_integer_id_lands_as_its_exact_digits() -> None:
    record = f'{{"id":{BIG},"Email":"a@x.test","Modified_Time":"2026-01-01T00:00:00+00:00"}}'
    with respx.mock(assert_all_called=False) as router:
        mocked_zoho(router, page(record))
        (entity, record_id, payload, _), _marker = read()
    assert (entity, record_id) == ("Students", BIG)
    assert f'"id":"{BIG}"' in payload, "the payload keeps the id as text too"


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ('"Email":"x"', "no id"),
        ('"id":true,"Email":"x"', "True (bool)"),
        ('"id":1.8446744073709552e+19,"Email":"x"', "(float)"),
        ('"id":"","Email":"x"', "'' (str)"),
        ('"id":"   ","Email":"x"', "(str)"),
        ('"id":{"n":1},"Email":"x"', "(dict)"),
        ('"id":null,"Email":"x"', "None (NoneType)"),
    ],
)
def test_a_record_with_an_unusable_id_is_rejected_naming_module_page_and_index(bad, shown) -> None:
    good = '{"id":"5843104000000412001","Email":"a@x.test","Modified_Time":"2026-01-01T00:00:00+00:00"}'
    broken = "{" + bad + ',"Modified_Time":"2026-01-01T00:00:01+00:00"}'
    landed = []
    with respx.mock(assert_all_called=False) as router:
        mocked_zoho(router, page(good, more=True, token="t2"), page(f"{good},{broken}"))
        with pytest.raises(ZohoRecordError) as raised:
            for item in read():
                landed.append(item)
    assert (raised.value.module, raised.value.page, raised.value.index) == ("Students", 2, 1)
    message = str(raised.value)
    assert "Zoho Students: record 1 of page 2" in message and shown in message, message
    assert all(record[1] == "5843104000000412001" for record in landed if isinstance(record, tuple))
