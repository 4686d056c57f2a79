"""FhirClient against respx-mocked FHIR servers: headers, token scope, retries, batch, paging."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
import respx

from fhir_checker.fhirclient import FhirClient, FhirError, parse_reference

BASE = "https://fhir.example.org/r4"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found", "diagnostics": text}],
    }


async def _read(ref: str, **kw: Any) -> dict[str, Any]:
    async with FhirClient(BASE, token="tok-123", **kw) as c:
        return await c.read_reference(ref)


@respx.mock
def test_read_sends_fhir_json_and_token() -> None:
    route = respx.get(f"{BASE}/Patient/p1").respond(json={"resourceType": "Patient", "id": "p1"})
    got = run(_read("Patient/p1"))
    assert got["id"] == "p1"
    req = route.calls.last.request
    assert req.headers["accept"] == "application/fhir+json"
    assert req.headers["authorization"] == "Bearer tok-123"


@respx.mock
def test_absolute_reference_on_server_and_history() -> None:
    respx.get(f"{BASE}/Procedure/x/_history/2").respond(json={"resourceType": "Procedure", "id": "x"})
    assert run(_read(f"{BASE}/Procedure/x/_history/2"))["id"] == "x"


@respx.mock
def test_reference_to_other_server_is_refused_without_a_request() -> None:
    other = respx.get("https://evil.example.com/r4/Patient/p1").respond(json={"resourceType": "Patient"})
    prefix = respx.get("https://fhir.example.org/r4x/Patient/p1").respond(json={"resourceType": "Patient"})
    for ref in ("https://evil.example.com/r4/Patient/p1", "https://fhir.example.org/r4x/Patient/p1"):
        with pytest.raises(FhirError, match="another server"):
            run(_read(ref))
    assert not other.called and not prefix.called


@pytest.mark.parametrize("ref", ["urn:uuid:1234", "#dev1", "Patient", "Patient/../../admin", "patient/p1"])
def test_unreadable_references(ref: str) -> None:
    with pytest.raises(FhirError):
        run(_read(ref))


@respx.mock
def test_http_error_carries_status_and_outcome_but_no_phi() -> None:
    respx.get(f"{BASE}/Condition/c9").respond(404, json=outcome("Condition/c9 for John Doe not found"))
    with pytest.raises(FhirError) as err:
        run(_read("Condition/c9"))
    assert err.value.status == 404
    assert err.value.outcome is not None and err.value.outcome["resourceType"] == "OperationOutcome"
    assert "John" not in str(err.value) and "404" in str(err.value)
    assert err.value.reason == "404"


@respx.mock
def test_one_retry_on_connect_error() -> None:
    route = respx.get(f"{BASE}/Patient/p1")
    route.side_effect = [httpx.ConnectError("refused"), httpx.Response(200, json={"resourceType": "Patient"})]
    assert run(_read("Patient/p1"))["resourceType"] == "Patient"
    assert route.call_count == 2


@respx.mock
def test_connect_error_twice_gives_up() -> None:
    route = respx.get(f"{BASE}/Patient/p1").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(FhirError) as err:
        run(_read("Patient/p1"))
    assert err.value.status is None and route.call_count == 2
    assert err.value.reason == "server unreachable" and err.value.transient and not err.value.gone


@respx.mock
def test_read_timeout_is_not_retried() -> None:
    route = respx.get(f"{BASE}/Patient/p1").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(FhirError) as err:
        run(_read("Patient/p1"))
    assert err.value.reason == "timeout" and route.call_count == 1


def test_real_timeout_against_a_slow_server() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(2)
        return httpx.Response(200, json={"resourceType": "Patient"})

    transport = httpx.MockTransport(slow)

    async def go() -> None:
        async with FhirClient(BASE, timeout=0.05, transport=transport) as c:
            await asyncio.wait_for(c.read("Patient", "p1"), timeout=0.05)

    with pytest.raises((FhirError, TimeoutError)):
        run(go())


@respx.mock
def test_non_fhir_answer() -> None:
    respx.get(f"{BASE}/Patient/p1").respond(200, text="<html>login</html>")
    with pytest.raises(FhirError, match="not JSON"):
        run(_read("Patient/p1"))


def _batch_answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    assert body["type"] == "batch"
    entries = []
    for e in body["entry"]:
        url = e["request"]["url"]
        assert e["request"]["method"] == "GET"
        if url == "Procedure/gone":
            entries.append({"response": {"status": "410 Gone", "outcome": outcome("deleted")}})
        else:
            rtype, rid = url.split("/")
            entries.append({"resource": {"resourceType": rtype, "id": rid}, "response": {"status": "200 OK"}})
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries})


@respx.mock
def test_read_many_uses_one_batch() -> None:
    batch = respx.post(BASE).mock(side_effect=_batch_answer)

    async def go() -> dict[str, Any]:
        async with FhirClient(BASE, token="t") as c:
            return await c.read_many(["Patient/p1", f"{BASE}/Procedure/a", "Procedure/gone", "Patient/p1"])

    got = run(go())
    assert batch.call_count == 1
    assert got["Patient/p1"]["id"] == "p1"  # type: ignore[index]
    assert got[f"{BASE}/Procedure/a"]["id"] == "a"  # type: ignore[index]
    gone = got["Procedure/gone"]
    assert isinstance(gone, FhirError) and gone.status == 410 and gone.outcome is not None


@respx.mock
def test_read_many_falls_back_to_parallel_reads_and_remembers() -> None:
    batch = respx.post(BASE).respond(405, json=outcome("batch not allowed"))
    respx.get(f"{BASE}/Patient/p1").respond(json={"resourceType": "Patient", "id": "p1"})
    respx.get(f"{BASE}/Condition/c1").respond(404, json=outcome("no"))
    respx.get(f"{BASE}/Condition/c2").respond(json={"resourceType": "Condition", "id": "c2"})

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        async with FhirClient(BASE) as c:
            first = await c.read_many(["Patient/p1", "Condition/c1", "https://evil.example.com/Patient/p1"])
            second = await c.read_many(["Patient/p1", "Condition/c2"])
            return first, second

    first, second = run(go())
    assert batch.call_count == 1  # not tried again on the second call
    assert first["Patient/p1"]["id"] == "p1"
    assert isinstance(first["Condition/c1"], FhirError) and first["Condition/c1"].status == 404
    assert isinstance(first["https://evil.example.com/Patient/p1"], FhirError)
    assert second["Condition/c2"]["id"] == "c2"


@respx.mock
def test_read_many_batch_unauthorised_is_reported_per_reference() -> None:
    respx.post(BASE).respond(401, json=outcome("token expired"))
    reads = respx.get(url__startswith=BASE).respond(401)

    async def go() -> dict[str, Any]:
        async with FhirClient(BASE, token="t") as c:
            return await c.read_many(["Patient/p1", "Condition/c1"])

    got = run(go())
    assert all(isinstance(v, FhirError) and v.status == 401 for v in got.values())
    assert not reads.called


@respx.mock
def test_search_follows_next_pages_on_the_server_only() -> None:
    page2 = f"{BASE}?_getpages=abc&_offset=1"
    respx.get(f"{BASE}/Procedure", params={"patient": "p1"}).respond(
        json={
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": page2}],
            "entry": [
                {"resource": {"resourceType": "Procedure", "id": "a"}, "search": {"mode": "match"}},
                {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
            ],
        }
    )
    respx.get(page2).respond(
        json={
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": "https://evil.example.com/steal"}],
            "entry": [{"resource": {"resourceType": "Procedure", "id": "b"}}],
        }
    )
    evil = respx.get("https://evil.example.com/steal").respond(json={"resourceType": "Bundle"})

    async def go() -> list[str]:
        ids: list[str] = []
        async with FhirClient(BASE, token="secret") as c:
            async for r in c.search("Procedure", {"patient": "p1"}):
                ids.append(r["id"])
        return ids

    with pytest.raises(FhirError, match="off the server"):
        run(go())
    assert not evil.called


@respx.mock
def test_search_yields_every_page() -> None:
    page2 = f"{BASE}?_getpages=abc"
    respx.get(f"{BASE}/Condition").respond(
        json={
            "resourceType": "Bundle",
            "link": [{"relation": "next", "url": page2}],
            "entry": [{"resource": {"resourceType": "Condition", "id": "1"}}],
        }
    )
    respx.get(page2).respond(
        json={"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition", "id": "2"}}]}
    )

    async def go() -> list[str]:
        async with FhirClient(BASE) as c:
            return [r["id"] async for r in c.search("Condition", {"patient": "p1"})]

    assert run(go()) == ["1", "2"]


@respx.mock
def test_create_and_update() -> None:
    created = respx.post(f"{BASE}/Task").respond(201, json={"resourceType": "Task", "id": "t1"})
    updated = respx.put(f"{BASE}/Task/t1").respond(
        200, json={"resourceType": "Task", "id": "t1", "status": "completed"}
    )
    minimal = respx.post(f"{BASE}/Flag").respond(201, headers={"Location": f"{BASE}/Flag/f1/_history/1"})
    respx.get(f"{BASE}/Flag/f1/_history/1").respond(json={"resourceType": "Flag", "id": "f1"})

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with FhirClient(BASE, token="t") as c:
            a = await c.create({"resourceType": "Task"}, if_none_exist="identifier=x|1")
            b = await c.update({"resourceType": "Task", "id": "t1", "status": "completed"})
            f = await c.create({"resourceType": "Flag"})
            return a, b, f

    a, b, f = run(go())
    assert a["id"] == "t1" and b["status"] == "completed" and f["id"] == "f1"
    req = created.calls.last.request
    assert req.headers["if-none-exist"] == "identifier=x|1"
    assert req.headers["content-type"] == "application/fhir+json"
    assert json.loads(updated.calls.last.request.content)["status"] == "completed"
    assert minimal.called


def test_update_needs_an_id() -> None:
    async def go() -> None:
        async with FhirClient(BASE) as c:
            await c.update({"resourceType": "Task"})

    with pytest.raises(FhirError):
        run(go())


def test_parse_reference_and_bad_base() -> None:
    assert parse_reference("Claim/c-1") == ("Claim", "c-1", None)
    assert parse_reference("Claim/c-1/_history/3") == ("Claim", "c-1", "3")
    assert parse_reference("Claim/c 1") is None
    with pytest.raises(ValueError):
        FhirClient("ftp://x")
