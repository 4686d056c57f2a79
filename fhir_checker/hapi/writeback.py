"""Write a check's result back to the FHIR server: a ``Task`` and ``meta.tag`` on the Claim.

- Error/warning findings: one ``Task`` per Claim (identifier ``Claim/<id>``, so a redelivery or
  a retry finds and updates it instead of creating a second one), ``focus`` = the checked
  Claim version, ``for`` = the patient, the OperationOutcome contained and referenced from
  ``output``. A later clean version completes that Task instead of leaving it open.
- Every checked Claim gets two tags: the status (``passed`` / ``findings``) and the hash of
  the content that was checked. The hash tag is what makes the result version-bound even on
  servers whose tags survive updates (HAPI), and what lets the worker recognise a
  notification caused by its own tag update (servers without ``$meta-add``).
- Tags go on with ``$meta-add`` / ``$meta-delete`` (no new Claim version on HAPI, so no new
  notification); where the server lacks them, with a PUT guarded by ``If-Match``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..fhirclient import FhirClient, FhirError, invoke_operation, update_if_match
from ..values import as_list

log = logging.getLogger("fhir_checker.hapi")

#: Our CodeSystems. Documented in README "HAPI FHIR integration".
STATUS_SYSTEM = "https://fhir-checker.dev/CodeSystem/precheck-status"
CHECKED_SYSTEM = "https://fhir-checker.dev/CodeSystem/precheck-checked-content"
TASK_CODE_SYSTEM = "https://fhir-checker.dev/CodeSystem/precheck-task"
TASK_IDENTIFIER_SYSTEM = "https://fhir-checker.dev/NamingSystem/precheck-task"
TASK_CODE = "claim-precheck-findings"
OUTPUT_CODE = "precheck-outcome"
OUR_TAG_SYSTEMS = frozenset({STATUS_SYSTEM, CHECKED_SYSTEM})

PASSED, FINDINGS = "passed", "findings"
_STATUS_DISPLAY = {PASSED: "Claim pre-check passed", FINDINGS: "Claim pre-check findings"}
#: Statuses meaning "someone may be working on it": a Task in any other state is closed.
_OPEN_TASK = frozenset({"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"})
#: Answers meaning "this server has no such operation" (as opposed to a failed call).
_NO_OPERATION = frozenset({400, 404, 405, 501})


def content_hash(claim: dict[str, Any]) -> str:
    """A short hash of what the rules read: the Claim without ``meta``.

    ``meta`` is left out because our own tag update changes it (and, on servers without
    ``$meta-add``, its ``versionId``) without changing what was checked.
    """
    body = {k: v for k, v in claim.items() if k != "meta"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta")
    return meta if isinstance(meta, dict) else {}


def our_tags(resource: dict[str, Any]) -> list[dict[str, Any]]:
    tags = _meta(resource).get("tag")
    return [t for t in tags or () if isinstance(t, dict) and t.get("system") in OUR_TAG_SYSTEMS]


def checked_hash(claim: dict[str, Any]) -> str | None:
    """The content hash the Claim's tags say was checked, if any."""
    for tag in our_tags(claim):
        if tag.get("system") == CHECKED_SYSTEM and isinstance(tag.get("code"), str):
            return str(tag["code"])
    return None


def has_result(claim: dict[str, Any]) -> bool:
    """True when this very content was checked and the result written back."""
    has_status = any(t.get("system") == STATUS_SYSTEM for t in our_tags(claim))
    return has_status and checked_hash(claim) == content_hash(claim)


def result_tags(status: str, digest: str) -> list[dict[str, Any]]:
    return [
        {"system": STATUS_SYSTEM, "code": status, "display": _STATUS_DISPLAY[status]},
        {"system": CHECKED_SYSTEM, "code": digest, "display": "claim content checked by fhir-checker"},
    ]


@dataclass
class Summary:
    errors: int = 0
    warnings: int = 0
    rules: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return FINDINGS if self.errors or self.warnings else PASSED

    def text(self) -> str:
        if self.status == PASSED:
            return "passed: no error or warning findings"
        return f"{self.errors} error(s), {self.warnings} warning(s)"


def summarize(outcome: dict[str, Any]) -> Summary:
    """Count error (fatal included) and warning issues of an OperationOutcome."""
    s = Summary()
    for issue in outcome.get("issue") or []:
        sev = issue.get("severity") if isinstance(issue, dict) else None
        if sev in ("fatal", "error"):
            s.errors += 1
        elif sev == "warning":
            s.warnings += 1
        else:
            continue
        for coding in (issue.get("details") or {}).get("coding") or []:
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str) and code not in s.rules and "rule" in str(coding.get("system", "")):
                s.rules.append(code)
    return s


def task_identifier(claim_id: str) -> dict[str, str]:
    return {"system": TASK_IDENTIFIER_SYSTEM, "value": f"Claim/{claim_id}"}


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def claim_focus(claim: dict[str, Any]) -> str:
    version = _meta(claim).get("versionId")
    return f"Claim/{claim['id']}/_history/{version}" if version else f"Claim/{claim['id']}"


def build_task(
    claim: dict[str, Any],
    outcome: dict[str, Any],
    summary: Summary,
    *,
    existing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The billing work-queue Task for one Claim (a new one, or ``existing`` brought up to date)."""
    now = _now()
    contained = dict(outcome, id="outcome")
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [task_identifier(claim["id"])],
        # Findings: open work. A later clean version closes the Task rather than deleting
        # it, so the billing team keeps the history of what was found.
        "status": "requested" if summary.status == FINDINGS else "completed",
        "intent": "order",
        "code": {
            "coding": [
                {"system": TASK_CODE_SYSTEM, "code": TASK_CODE, "display": "Claim pre-check findings"}
            ],
            "text": "Claim pre-check findings",
        },
        "businessStatus": {"text": summary.text()},
        "description": (
            f"fhir-checker found {summary.text()} on Claim/{claim['id']}"
            + (f" ({', '.join(summary.rules[:10])})" if summary.rules else "")
            + "; see the contained OperationOutcome."
        ),
        "focus": {"reference": claim_focus(claim)},
        "authoredOn": now,
        "lastModified": now,
        "contained": [contained],
        "output": [
            {
                "type": {"coding": [{"system": TASK_CODE_SYSTEM, "code": OUTPUT_CODE}]},
                "valueReference": {"reference": "#outcome"},
            }
        ],
    }
    patient = claim.get("patient")
    if isinstance(patient, dict) and isinstance(patient.get("reference"), str):
        ref = patient["reference"]
        if not ref.startswith(("#", "urn:")):  # a reference only the claim's sender can resolve
            task["for"] = {"reference": ref}
    if existing is not None:
        task["id"] = existing["id"]
        task["authoredOn"] = existing.get("authoredOn", now)
        if summary.status == FINDINGS and existing.get("status") in _OPEN_TASK:
            task["status"] = existing["status"]  # keep the billing team's progress
        if isinstance(existing.get("meta"), dict):
            task["meta"] = {
                k: v for k, v in existing["meta"].items() if k not in ("versionId", "lastUpdated")
            }
    return task


async def find_task(client: FhirClient, claim_id: str) -> dict[str, Any] | None:
    ident = task_identifier(claim_id)
    async for task in client.search("Task", {"identifier": f"{ident['system']}|{ident['value']}"}):
        if task.get("resourceType") == "Task":
            return task
    return None


@dataclass
class WriteBack:
    """Writes results to one server; learns once whether it does ``$meta-add``."""

    client: FhirClient
    meta_add: bool | None = None  # None: not tried yet

    async def write(self, claim: dict[str, Any], outcome: dict[str, Any]) -> Summary:
        """Task (when needed) first, tags last: the tags mark the claim done, so a failure
        in between leaves it untagged and it is retried (or found by the sweep)."""
        summary = summarize(outcome)
        existing = await find_task(self.client, claim["id"])
        if summary.status == FINDINGS or existing is not None:
            task = build_task(claim, outcome, summary, existing=existing)
            if existing is None:
                ident = task_identifier(claim["id"])
                # Conditional create: two workers racing on one claim still make one Task.
                await self.client.create(task, if_none_exist=f"identifier={ident['system']}|{ident['value']}")
            else:
                await self.client.update(task)
        await self.tag(claim, result_tags(summary.status, content_hash(claim)))
        log.info("Claim/%s: %s", claim["id"], summary.status)
        return summary

    async def tag(self, claim: dict[str, Any], wanted: list[dict[str, Any]]) -> None:
        keys = {(t["system"], t["code"]) for t in wanted}
        stale = [t for t in our_tags(claim) if (t.get("system"), t.get("code")) not in keys]
        if self.meta_add is not False:
            try:
                await self._meta_op(claim["id"], "$meta-add", wanted)
                if stale:
                    await self._meta_op(claim["id"], "$meta-delete", stale)
                self.meta_add = True
                return
            except FhirError as exc:
                if self.meta_add is True or exc.status not in _NO_OPERATION:
                    raise
                log.info("FHIR server has no $meta-add (HTTP %s): tagging with a guarded PUT", exc.status)
                self.meta_add = False
        await self._put_tags(claim, wanted)

    async def _meta_op(self, claim_id: str, op: str, tags: list[dict[str, Any]]) -> None:
        params = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": tags}}]}
        await invoke_operation(self.client, f"Claim/{claim_id}/{op}", params)

    async def _put_tags(self, claim: dict[str, Any], wanted: list[dict[str, Any]]) -> None:
        meta = dict(claim.get("meta") or {})
        others = [
            t for t in as_list(meta.get("tag")) if isinstance(t, dict) and t.get("system") not in OUR_TAG_SYSTEMS
        ]
        meta["tag"] = others + wanted
        version = meta.get("versionId")
        updated = dict(claim, meta=meta)
        # If-Match: never overwrite an edit made since we read the claim (412 -> retried,
        # and the newer version is checked on its own).
        await update_if_match(self.client, updated, str(version) if version else None)
