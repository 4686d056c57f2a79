"""From a Claim on a FHIR server to the complete input the engine takes.

HAPI cannot ``_include`` what a Claim references through ``diagnosisReference``,
``procedureReference`` or ``supportingInfo``, so those are read by id (batched with
:meth:`FhirClient.read_many`), then one more round for what *they* reference (a
Coverage's payor, a Procedure's devices). Whatever the caller already has (CDS Hooks
prefetch) or the Claim contains is not read again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .fhirclient import FhirClient, FhirError
from .references import claim_references, resource_key, second_round_references

__all__ = ["Gathered", "claim_references", "gather_claim", "second_round_references"]


@dataclass
class Gathered:
    bundle: dict[str, Any]  # collection Bundle: the Claim + everything found, fullUrl = base/Type/id
    missing: list[str] = field(default_factory=list)  # e.g. "Procedure/p1 (404)"
    #: Why each unread reference was not read (reference as the Claim wrote it -> the error):
    #: a caller tells "deleted" (404/410) from "try again later" (timeout, 5xx, bad JSON).
    errors: dict[str, FhirError] = field(default_factory=dict)

    @property
    def unreadable(self) -> dict[str, FhirError]:
        """The references that could not be read for a reason other than not being there."""
        return {ref: e for ref, e in self.errors.items() if not e.gone}


class _Found:
    """Resources found so far, by every key a reference may use for them."""

    def __init__(self, client: FhirClient) -> None:
        self.client = client
        self.by_key: dict[str, dict[str, Any]] = {}
        self.order: list[tuple[str, dict[str, Any]]] = []  # (fullUrl, resource), first seen first

    def add(self, resource: dict[str, Any], *, as_key: str | None = None) -> None:
        key = resource_key(resource)
        known = self.by_key.get(key) if key else None
        known = known or next((r for _, r in self.order if r is resource), None)
        if known is not None:
            if as_key:
                self.by_key.setdefault(as_key, known)
                if as_key.startswith("urn:"):
                    # References use this urn: it must be the entry's fullUrl for them to resolve.
                    self.order = [(as_key if r is known else u, r) for u, r in self.order]
            return
        if as_key and as_key.startswith("urn:"):
            full_url = as_key  # the Claim says urn:uuid:...; keep it so the engine resolves it
        elif key:
            full_url = f"{self.client.base_url}/{key}"
        elif as_key and "://" in as_key:
            full_url = as_key
        else:
            full_url = f"{self.client.base_url}/{as_key}" if as_key else ""
        self.order.append((full_url, resource))
        for k in (key, as_key):
            if k:
                self.by_key.setdefault(k, resource)

    def has(self, reference: str) -> bool:
        if reference in self.by_key:
            return True
        try:
            rel = self.client.relative(reference)
        except FhirError:
            return False
        return rel in self.by_key or rel.split("/_history/", 1)[0] in self.by_key


async def _round(
    client: FhirClient,
    found: _Found,
    refs: Iterable[str],
    missing: list[str],
    errors: dict[str, FhirError],
) -> None:
    todo: list[str] = []
    for ref in dict.fromkeys(refs):
        if ref.startswith("#") or found.has(ref):
            continue
        if ref.startswith("urn:"):
            missing.append(f"{ref} (not on the server: only the sender can resolve it)")
            continue
        todo.append(ref)
    if not todo:
        return
    results = await client.read_many(todo)
    for ref in todo:
        got = results[ref]
        if isinstance(got, FhirError):
            try:
                shown = client.relative(ref)
            except FhirError:
                shown = "(a reference to another server)"
            missing.append(f"{shown} ({got.reason})")
            errors[ref] = got
            continue
        found.add(got, as_key=ref)


async def gather_claim(
    client: FhirClient,
    claim: dict[str, Any],
    *,
    have: Mapping[str, dict[str, Any]] | None = None,
) -> Gathered:
    """The Claim and every resource the rules read, as one collection Bundle.

    ``have`` maps references (``Patient/p1``, or any key the Claim uses) to resources the
    caller already holds; they are put in the Bundle and not read again.
    """
    found = _Found(client)
    found.add(claim, as_key=None)
    for key, resource in (have or {}).items():
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            found.add(resource, as_key=key)
    missing: list[str] = []
    errors: dict[str, FhirError] = {}
    # _round skips every "#id" reference: contained ones are never read from the server.
    await _round(client, found, claim_references(claim), missing, errors)
    # Second round: what the first-round resources (and the prefetched ones) point at.
    second = [r for _, res in found.order for r in second_round_references(res)]
    await _round(client, found, second, missing, errors)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            ({"fullUrl": url, "resource": res} if url else {"resource": res}) for url, res in found.order
        ],
    }
    return Gathered(bundle=bundle, missing=missing, errors=errors)
