"""FHIR references: resolved inside the input (fullUrl, ``Type/id``, absolute URLs, ``#id``),
and the ones a Claim makes that its input must hold (read by :mod:`.gather` and the CDS hook)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .loader import Entry, InputDocument


@dataclass(frozen=True)
class Resolved:
    entry: Entry

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(self, entry: Entry) -> None:
        object.__setattr__(self, "entry", entry)

    @property
    def resource(self) -> dict[str, Any]:
        return self.entry.resource

    @property
    def resource_type(self) -> str | None:
        rt = self.entry.resource.get("resourceType")
        return rt if isinstance(rt, str) else None


class ReferenceIndex:
    """Every resource of the input, by each key a reference may use for it."""

    def __init__(self, doc: InputDocument) -> None:
        self._entries = doc.entries
        self._by_key: dict[str, Entry] = {}
        self._contained: dict[str, dict[str, Entry]] = {}  # container path -> "#id" -> entry
        for entry in doc.entries:
            res = entry.resource
            marker = ".contained["
            if marker in entry.path:
                container = entry.path.rsplit(marker, 1)[0]
                cid = res.get("id")
                if isinstance(cid, str):
                    self._contained.setdefault(container, {})["#" + cid] = entry
                continue
            if entry.full_url:
                self._by_key.setdefault(entry.full_url, entry)
            rtype, rid = res.get("resourceType"), res.get("id")
            if isinstance(rtype, str) and isinstance(rid, str):
                self._by_key.setdefault(f"{rtype}/{rid}", entry)

    def resolve(self, reference: str, container_path: str = "Claim") -> Resolved | None:
        """Find the resource ``reference`` points at, as seen from ``container_path``."""
        if not reference:
            return None
        if reference.startswith("#"):
            hit = self._contained.get(container_path, {}).get(reference)
            return Resolved(hit) if hit else None
        hit = self._by_key.get(reference)
        if hit is None and "/_history/" in reference:
            hit = self._by_key.get(reference.split("/_history/", 1)[0])
        if hit is None and "://" in reference:
            # absolute URL: match on its last Type/id
            parts = reference.rstrip("/").split("/")
            if len(parts) >= 2:
                hit = self._by_key.get(f"{parts[-2]}/{parts[-1]}")
        return Resolved(hit) if hit else None

    def of_type(self, resource_type: str) -> list[Entry]:
        return [e for e in self._entries if e.resource.get("resourceType") == resource_type]


def is_local_only(reference: str) -> bool:
    """References that can only ever resolve inside the input (``#id``, ``urn:uuid:``)."""
    return reference.startswith(("#", "urn:uuid:", "urn:oid:"))


# ------------------------------------------------ what a Claim points at (gathering its input)


def resource_key(resource: dict[str, Any]) -> str | None:
    """``Type/id`` of a resource, when it has both."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    return f"{rtype}/{rid}" if isinstance(rtype, str) and isinstance(rid, str) else None


def reference_of(value: Any) -> str | None:
    """A Reference's ``reference`` text, stripped; None when it has none (or is not an object)."""
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref.strip():
            return ref.strip()
    return None


def json_objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (anything else in it, or a non-array: nothing)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def claim_references(claim: dict[str, Any]) -> list[str]:
    """What a Claim references that the rules read, in claim order."""
    refs: list[str | None] = [reference_of(claim.get("patient"))]
    refs += [reference_of(i.get("coverage")) for i in json_objects(claim.get("insurance"))]
    refs += [reference_of(d.get("diagnosisReference")) for d in json_objects(claim.get("diagnosis"))]
    refs += [reference_of(p.get("procedureReference")) for p in json_objects(claim.get("procedure"))]
    refs += [reference_of(s.get("valueReference")) for s in json_objects(claim.get("supportingInfo"))]
    for item in json_objects(claim.get("item")):
        refs += [reference_of(e) for e in json_objects(item.get("encounter"))]
    return list(dict.fromkeys(r for r in refs if r))


def second_round_references(resource: dict[str, Any]) -> list[str]:
    """What a read resource references in turn: Coverage.payor, Procedure.focalDevice.manipulated."""
    rtype = resource.get("resourceType")
    if rtype == "Coverage":
        return [r for r in (reference_of(p) for p in json_objects(resource.get("payor"))) if r]
    if rtype == "Procedure":
        return [
            r
            for r in (reference_of(d.get("manipulated")) for d in json_objects(resource.get("focalDevice")))
            if r
        ]
    return []
