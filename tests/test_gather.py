"""gather_claim: from a Claim on a FHIR server (respx) to the Bundle the engine checks."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import respx
from conftest import load_fixture

from fhir_checker.engine import run as run_check
from fhir_checker.fhirclient import FhirClient
from fhir_checker.gather import Gathered, claim_references, gather_claim

BASE = "https://fhir.example.org/r4"


def server_copy() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The port-placement fixture as it would sit on a server: Type/id references."""
    bundle = load_fixture("port-placement-aml.json")
    by_urn: dict[str, str] = {}
    resources: dict[str, dict[str, Any]] = {}
    for n, e in enumerate(bundle["entry"]):
        res = e["resource"]
        res.setdefault("id", f"r{n}")
        by_urn[e["fullUrl"]] = f"{res['resourceType']}/{res['id']}"
        resources[f"{res['resourceType']}/{res['id']}"] = res

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (by_urn.get(v, v) if k == "reference" else rewrite(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    resources = {k: rewrite(v) for k, v in resources.items()}
    resources["Organization/org-medicare"] = {"resourceType": "Organization", "id": "org-medicare"}
    claim = next(r for r in resources.values() if r["resourceType"] == "Claim")
    return claim, resources


def mock_reads(resources: dict[str, dict[str, Any]], *, gone: set[str] = frozenset()) -> respx.Route:  # type: ignore[assignment]
    respx.post(BASE).respond(405)  # no batch: read one by one
    for key, res in resources.items():
        if key in gone:
            respx.get(f"{BASE}/{key}").respond(404, json={"resourceType": "OperationOutcome", "issue": []})
        else:
            respx.get(f"{BASE}/{key}").respond(json=res)
    return respx.get(url__startswith=BASE).respond(404)


def gather(claim: dict[str, Any], have: dict[str, Any] | None = None) -> Gathered:
    async def go() -> Gathered:
        async with FhirClient(BASE, token="t") as c:
            return await gather_claim(c, claim, have=have)

    return asyncio.run(go())


def test_claim_references_cover_what_rules_read() -> None:
    claim, _ = server_copy()
    refs = claim_references(claim)
    assert refs[0].startswith("Patient/")
    kinds = {r.split("/")[0] for r in refs}
    assert {"Patient", "Coverage", "Condition", "Procedure", "MedicationAdministration"} <= kinds


@respx.mock
def test_gathered_bundle_checks_like_the_fixture() -> None:
    claim, resources = server_copy()
    mock_reads(resources)
    got = gather(claim)
    assert got.missing == []
    kinds = sorted(e["resource"]["resourceType"] for e in got.bundle["entry"])
    assert kinds.count("Procedure") == 7
    assert "Device" in kinds and "Organization" in kinds  # second round: focalDevice, Coverage.payor
    assert all(
        e["fullUrl"] == f"{BASE}/{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in got.bundle["entry"]
    )
    gathered = run_check(got.bundle)
    original = run_check(load_fixture("port-placement-aml.json"))
    assert [i["details"]["coding"][0]["code"] for i in gathered.outcome["issue"]] == [
        i["details"]["coding"][0]["code"] for i in original.outcome["issue"]
    ]
    assert not gathered.has_errors


@respx.mock
def test_prefetched_resources_are_not_read_again() -> None:
    claim, resources = server_copy()
    mock_reads(resources)
    have = {k: v for k, v in resources.items() if k.startswith(("Patient/", "Condition/"))}
    got = gather(claim, have=copy.deepcopy(have))
    assert got.missing == []
    urls = {str(c.request.url) for c in respx.calls}
    assert not any("/Patient/" in u or "/Condition/" in u for u in urls)
    assert any("/Procedure/" in u for u in urls)


@respx.mock
def test_missing_reads_are_listed() -> None:
    claim, resources = server_copy()
    proc = next(k for k in resources if k.startswith("Procedure/"))
    mock_reads(resources, gone={proc})
    claim["diagnosis"].append({"sequence": 9, "diagnosisReference": {"reference": "urn:uuid:abc"}})
    claim["contained"] = [{"resourceType": "Condition", "id": "c0"}]
    claim["diagnosis"].append({"sequence": 10, "diagnosisReference": {"reference": "#c0"}})
    got = gather(claim)
    assert f"{proc} (404)" in got.missing
    assert any(m.startswith("urn:uuid:abc") for m in got.missing)
    assert not any("#c0" in m for m in got.missing)


@respx.mock
def test_batch_read_when_the_server_allows_it() -> None:
    claim, resources = server_copy()

    def answer(request: Any) -> Any:
        import httpx
        import orjson

        body = orjson.loads(request.content)
        entries = [
            {"resource": resources[e["request"]["url"]], "response": {"status": "200 OK"}}
            for e in body["entry"]
        ]
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    batch = respx.post(BASE).mock(side_effect=answer)
    reads = respx.get(url__startswith=BASE).respond(500)
    got = gather(claim)
    assert got.missing == [] and batch.call_count == 2  # first round, then the Device round
    assert not reads.called
