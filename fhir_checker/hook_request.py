"""A CDS hook call's body -> what the check needs: the Claim, the prefetched resources, and
what is still missing (compiled with mypyc: it runs on every hook call).

No I/O and no web framework here (the compiled build type-checks what it imports, in pip's
isolated build environment, which has none): :mod:`.service.cds_hooks` reads whatever is
missing from ``fhirServer``, runs the engine and answers. A body that is not a valid call
raises :class:`HookCallError`, which the service answers as an OperationOutcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .references import claim_references, reference_of, resource_key, second_round_references

HOOK = "org.fhir-checker.claim-create"


class HookCallError(Exception):
    """The request is not a valid call: ``status`` 400 (or 403 for a server off the allowlist)."""

    def __init__(self, status: int, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


class HookCall:
    """The parts of a valid hook request the check reads."""

    def __init__(
        self,
        hook_instance: str,
        server: str | None,
        token: str | None,
        have: dict[str, dict[str, Any]],
        failed: list[str],
        claim: dict[str, Any] | None,
        claim_ref: str | None,
    ) -> None:
        self.hook_instance = hook_instance
        self.server = server  # fhirServer: where missing data may be read (if allowed)
        self.token = token  # fhirAuthorization.access_token, for ``server`` only
        self.have = have  # prefetched resources by Type/id and fullUrl, Claims left out
        self.failed = failed  # prefetch keys the client sent as OperationOutcome
        self.claim = claim  # the Claim, when the context or the prefetch holds it
        self.claim_ref = claim_ref  # else: the reference to read it by


def parse_call(body: Any, server_allowed: Callable[[str], bool]) -> HookCall:
    """Validate a hook request (parsed JSON) and pick out its parts: HookCallError 400 when it is
    not valid, 403 when its ``fhirServer`` is not one ``server_allowed`` accepts."""
    if not isinstance(body, dict):
        raise HookCallError(400, "a CDS Hooks request is a JSON object")
    hook = body.get("hook")
    if hook is None:
        raise HookCallError(400, f"hook is required: this service answers the hook {HOOK!r}")
    if hook != HOOK:
        raise HookCallError(400, f"this service answers the hook {HOOK!r}, not {str(hook)[:80]!r}")
    hook_instance = body.get("hookInstance")
    if not isinstance(hook_instance, str):
        raise HookCallError(400, "hookInstance is required")
    context = body.get("context")
    if not isinstance(context, dict):
        raise HookCallError(400, "context is required")
    if not isinstance(context.get("patientId"), str):
        raise HookCallError(400, "context.patientId is required")
    server, token = fhir_auth(body)
    if server is not None and not server_allowed(server):
        # Never call it: otherwise this service is a proxy into any network it can reach.
        raise HookCallError(403, "fhirServer is not on this service's allowlist", code="forbidden")
    have, failed = prefetched(body.get("prefetch"))
    claim, claim_ref = claim_in(context)
    if claim is None and claim_ref is not None:
        claim = have.get(claim_ref) or have.get("/".join(claim_ref.rstrip("/").split("/")[-2:]))
    # One claim per check: the prefetch's Claim is the claim itself, or not ours to check.
    others = {k: v for k, v in have.items() if v.get("resourceType") != "Claim"}
    return HookCall(hook_instance, server, token, others, failed, claim, claim_ref)


def prefetched(prefetch: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Resources by ``Type/id`` (and by fullUrl); the prefetch keys that came as OperationOutcome."""
    have: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    if prefetch is None:
        return have, failed
    if not isinstance(prefetch, dict):
        raise HookCallError(400, "prefetch must be an object")
    for name, value in prefetch.items():
        if value is None:
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise HookCallError(400, f"prefetch.{str(name)[:40]} is not a FHIR resource")
        rtype = value["resourceType"]
        if rtype == "OperationOutcome":
            failed.append(str(name)[:40])  # the client could not prefetch it: we read it ourselves
            continue
        if rtype == "Bundle":
            entries = value.get("entry")
            if entries is not None and not isinstance(entries, list):
                raise HookCallError(400, f"prefetch.{str(name)[:40]} is a Bundle whose entry is not an array")
            for entry in entries or []:
                if not isinstance(entry, dict):
                    continue
                res = entry.get("resource")
                if not isinstance(res, dict) or res.get("resourceType") == "OperationOutcome":
                    continue
                key = resource_key(res)
                if key:
                    have.setdefault(key, res)
                full_url = entry.get("fullUrl")
                if isinstance(full_url, str):
                    have.setdefault(full_url, res)
            continue
        key = resource_key(value)
        if key:
            have.setdefault(key, value)
    return have, failed


def _reference(value: Any) -> str | None:
    """``context.claim`` as a reference: ``"Claim/123"`` or ``{"reference": ...}``."""
    if isinstance(value, str):
        return value.strip() or None
    return reference_of(value)


def claim_in(context: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the Claim resource, or None) and the reference to read it by."""
    claim = context.get("claim")
    if isinstance(claim, dict) and claim.get("resourceType") == "Claim":
        return claim, None
    if isinstance(claim, dict) and claim.get("resourceType") is not None:
        raise HookCallError(400, "context.claim must be a Claim or a reference to one")
    ref = _reference(claim)
    claim_id = context.get("claimId")
    if ref is None and isinstance(claim_id, str):
        ref = f"Claim/{claim_id}"
    if ref is None:
        raise HookCallError(400, "context.claim is required: the Claim resource or a reference to it")
    return None, ref


def fhir_auth(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(fhirServer, the bearer token for it), each None when not given."""
    server = body.get("fhirServer")
    if server is not None and not isinstance(server, str):
        raise HookCallError(400, "fhirServer must be a URL")
    auth = body.get("fhirAuthorization")
    if auth is None:
        return server, None
    if not isinstance(auth, dict) or not isinstance(auth.get("access_token"), str):
        raise HookCallError(400, "fhirAuthorization must be an object with access_token")
    if str(auth.get("token_type", "Bearer")).lower() != "bearer":
        raise HookCallError(400, "fhirAuthorization.token_type must be Bearer")
    if server is None:
        raise HookCallError(400, "fhirAuthorization was given without fhirServer")
    token: str = auth["access_token"]
    return server, token


def local_gather(claim: dict[str, Any], have: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """What we can assemble without a FHIR server: a collection Bundle of the Claim and the
    prefetch, and the references still missing."""
    entries: list[dict[str, Any]] = [{"resource": claim}]
    urls: dict[int, str | None] = {}  # resource -> a fullUrl (urn: or absolute) it was given as
    resources: dict[int, dict[str, Any]] = {}
    for key, res in have.items():
        rid = id(res)
        resources[rid] = res
        if ":" in key and urls.get(rid) is None:
            urls[rid] = key
        elif rid not in urls:
            urls[rid] = None
    refs = claim_references(claim)
    for rid, res in resources.items():
        url = urls[rid]
        entries.append({"fullUrl": url, "resource": res} if url else {"resource": res})
        refs.extend(second_round_references(res))
    missing: list[str] = []
    for ref in dict.fromkeys(refs):
        # A local reference ("#id") is never fetched from anywhere: one that does not resolve
        # is the claim's own defect, for the engine to report (REF001), as gather_claim does.
        if ref.startswith("#") or ref in have:
            continue
        parts = ref.rstrip("/").split("/")
        if len(parts) >= 2 and f"{parts[-2]}/{parts[-1]}" in have:
            continue
        missing.append(f"{ref} (not in the prefetch; no fhirServer to read it from)")
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, missing


def required_missing(missing: list[str]) -> list[str]:
    """Missing data the check cannot do without. A Coverage's payor Organization is not needed."""
    return [m for m in missing if not m.startswith("Organization/")]
