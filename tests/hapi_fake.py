"""A small stateful FHIR server for the HAPI-integration unit tests, mounted with respx.

It does what the integration relies on and no more: read, create (``If-None-Exist``),
update (``If-Match``, versions), batch GETs, searches by ``identifier`` / ``url`` /
``status`` / ``_lastUpdated=ge`` with offset paging (``Bundle.link`` next), and, when
``meta_ops`` is on, ``$meta-add`` / ``$meta-delete`` that do not bump the version (as on
HAPI). ``sticky_tags`` keeps tags across updates, as HAPI does.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import respx

BASE = "https://ehr.example.org/fhir"


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }


@dataclass
class FakeFhir:
    meta_ops: bool = True
    sticky_tags: bool = False
    page_size: int = 2
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    fail: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, path prefix) -> status, once
    _clock: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    )
    _ids: int = 0

    # ------------------------------------------------------------------ helpers for tests

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        return self._store(copy.deepcopy(resource))

    def get(self, rtype: str, rid: str) -> dict[str, Any]:
        return self.resources[(rtype, rid)]

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return [r for (t, _), r in self.resources.items() if t == rtype]

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for m, p in self.requests if m == method and path_part in p)

    def mount(self, router: respx.MockRouter) -> None:
        router.route(url__startswith=BASE).mock(side_effect=self.handle)

    # ------------------------------------------------------------------ storage

    def _tick(self) -> str:
        self._clock += timedelta(seconds=1)
        return self._clock.isoformat().replace("+00:00", "Z")

    def _store(self, res: dict[str, Any], *, bump: bool = True) -> dict[str, Any]:
        rtype = res["resourceType"]
        if not res.get("id"):
            self._ids += 1
            res["id"] = f"{rtype.lower()}-{self._ids}"
        old = self.resources.get((rtype, res["id"]))
        meta = dict(res.get("meta") or {})
        version = int(old["meta"]["versionId"]) + (1 if bump else 0) if old else 1
        meta["versionId"] = str(version)
        meta["lastUpdated"] = self._tick()
        if old and self.sticky_tags:
            tags = list(old["meta"].get("tag") or [])
            keys = {(t["system"], t["code"]) for t in tags}
            tags += [t for t in meta.get("tag") or [] if (t["system"], t["code"]) not in keys]
            meta["tag"] = tags
        res["meta"] = meta
        self.resources[(rtype, res["id"])] = res
        return res

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path[len(urlsplit(BASE).path) :].strip("/")
        self.requests.append((request.method, path))
        for (method, prefix), status in list(self.fail.items()):
            if method == request.method and path.startswith(prefix):
                del self.fail[(method, prefix)]
                return httpx.Response(status, json=_outcome("injected failure"))
        body = json.loads(request.content) if request.content else None
        parts = path.split("/") if path else []
        if request.method == "POST" and not parts:
            return self._batch(body)
        if request.method == "GET" and len(parts) == 1:
            return self._search(parts[0], dict(parse_qsl(request.url.query.decode())))
        if request.method == "GET" and len(parts) == 2:
            res = self.resources.get((parts[0], parts[1]))
            return httpx.Response(200, json=res) if res else httpx.Response(404, json=_outcome("not found"))
        if request.method == "POST" and len(parts) == 1:
            return self._create(parts[0], body, request.headers.get("if-none-exist"))
        if request.method == "PUT" and len(parts) == 2:
            return self._update(parts[0], parts[1], body, request.headers.get("if-match"))
        if request.method == "POST" and len(parts) == 3 and parts[2] in ("$meta-add", "$meta-delete"):
            return self._meta(parts[0], parts[1], parts[2], body)
        return httpx.Response(400, json=_outcome(f"unsupported {request.method} {path}"))

    def _create(self, rtype: str, body: dict[str, Any], if_none_exist: str | None) -> httpx.Response:
        if if_none_exist:
            found = self._matches(rtype, dict(parse_qsl(if_none_exist)))
            if found:
                return httpx.Response(200, json=found[0])
        res = copy.deepcopy(body)
        res.pop("id", None)
        return httpx.Response(201, json=self._store(res))

    def _update(self, rtype: str, rid: str, body: dict[str, Any], if_match: str | None) -> httpx.Response:
        cur = self.resources.get((rtype, rid))
        if if_match is not None:
            want = if_match.replace("W/", "").strip('"')
            if not cur or cur["meta"]["versionId"] != want:
                return httpx.Response(412, json=_outcome("version conflict"))
        res = copy.deepcopy(body)
        res["id"] = rid
        return httpx.Response(200 if cur else 201, json=self._store(res))

    def _meta(self, rtype: str, rid: str, op: str, body: dict[str, Any]) -> httpx.Response:
        if not self.meta_ops:
            return httpx.Response(404, json=_outcome(f"Operation {op} is not supported"))
        cur = self.resources.get((rtype, rid))
        if cur is None:
            return httpx.Response(404, json=_outcome("not found"))
        tags = body["parameter"][0]["valueMeta"]["tag"]
        meta = cur["meta"]
        have = list(meta.get("tag") or [])
        keys = {(t["system"], t["code"]) for t in tags}
        if op == "$meta-add":
            have += [
                t for t in tags if (t["system"], t["code"]) not in {(h["system"], h["code"]) for h in have}
            ]
        else:
            have = [h for h in have if (h["system"], h["code"]) not in keys]
        meta["tag"] = have  # no new version: HAPI's documented behaviour
        return httpx.Response(
            200, json={"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}
        )

    def _batch(self, body: dict[str, Any]) -> httpx.Response:
        entries = []
        for e in body["entry"]:
            rtype, rid = e["request"]["url"].split("/")[:2]
            res = self.resources.get((rtype, rid))
            entries.append(
                {"resource": res, "response": {"status": "200 OK"}}
                if res
                else {"response": {"status": "404 Not Found"}}
            )
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    def _matches(self, rtype: str, params: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for res in sorted(self.of_type(rtype), key=lambda r: r["id"]):
            ok = True
            for k, v in params.items():
                if k == "identifier":
                    system, _, value = v.partition("|")
                    ok &= any(
                        i.get("system") == system and i.get("value") == value
                        for i in res.get("identifier", [])
                    )
                elif k == "url":
                    ok &= res.get("channel", {}).get("endpoint") == v
                elif k == "status":
                    ok &= res.get("status") == v
                elif k == "_lastUpdated":
                    ok &= res["meta"]["lastUpdated"] >= re.sub(r"^ge", "", v)
            if ok:
                out.append(res)
        return out

    def _search(self, rtype: str, params: dict[str, str]) -> httpx.Response:
        offset = int(params.pop("_offset", "0"))
        count = int(params.pop("_count", str(self.page_size)))
        params.pop("_sort", None)
        found = self._matches(rtype, params)
        page = found[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in page],
            "link": [],
        }
        if offset + count < len(found):
            query = "&".join(
                f"{k}={v}" for k, v in {**params, "_count": count, "_offset": offset + count}.items()
            )
            bundle["link"].append({"relation": "next", "url": f"{BASE}/{rtype}?{query}"})
        return httpx.Response(200, json=bundle)


def clinical_claim(fake: FakeFhir, *, claim_id: str = "c1", bad_code: bool = False) -> dict[str, Any]:
    """Patient, Condition, Procedure and an active professional Claim on ``fake``."""
    fake.put({"resourceType": "Patient", "id": "pat1", "gender": "female", "birthDate": "1968-05-14"})
    fake.put(
        {
            "resourceType": "Condition",
            "id": "cond1",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]},
            "subject": {"reference": "Patient/pat1"},
        }
    )
    code = (
        {"system": "http://snomed.info/sct", "code": "73761001"}
        if bad_code
        else {
            "system": "http://www.ama-assn.org/go/cpt",
            "code": "99213",
        }
    )
    claim = {
        "resourceType": "Claim",
        "id": claim_id,
        "status": "active",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]
        },
        "use": "claim",
        "patient": {"reference": "Patient/pat1"},
        "created": "2026-02-03",
        "provider": {"reference": "Organization/org1"},
        "priority": {"coding": [{"code": "normal"}]},
        "diagnosis": [{"sequence": 1, "diagnosisReference": {"reference": "Condition/cond1"}}],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare Part B"}}],
        "item": [
            {
                "sequence": 1,
                "diagnosisSequence": [1],
                "productOrService": {"coding": [code]},
                "servicedDate": "2026-02-03",
                "quantity": {"value": 1},
            }
        ],
    }
    return fake.put(claim)
