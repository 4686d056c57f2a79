"""The CapabilityStatement and the ``$precheck`` OperationDefinition."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..packs import available_packs

OPERATION_ID = "claim-precheck"
OPERATION_CANONICAL = "https://fhir-checker.dev/OperationDefinition/claim-precheck"


def operation_definition(base: str) -> dict[str, Any]:
    packs = ", ".join(sorted(available_packs())) or "none"
    return {
        "resourceType": "OperationDefinition",
        "id": OPERATION_ID,
        "url": OPERATION_CANONICAL,
        "version": __version__,
        "name": "ClaimPrecheck",
        "title": "Pre-check a claim against payer coding edits",
        "status": "active",
        "kind": "operation",
        "publisher": "fhir-checker",
        "description": (
            "Checks a Claim (alone, in a Bundle with the resources it references, or in a "
            "Parameters 'resource' part) and answers with an OperationOutcome: one issue per "
            "finding. Like $validate, findings are not an HTTP error: the answer is 200."
        ),
        "affectsState": False,
        "code": "precheck",
        "resource": ["Claim"],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": [
            {
                "name": "resource",
                "use": "in",
                "min": 1,
                "max": "1",
                "documentation": "The Claim, or a Bundle holding one Claim and what it references.",
                "type": "Resource",
            },
            {
                "name": "profile",
                "use": "in",
                "min": 0,
                "max": "1",
                "documentation": f"The rule pack (default: by Claim.type). Available: {packs}.",
                "type": "string",
            },
            {
                "name": "return",
                "use": "out",
                "min": 1,
                "max": "1",
                "documentation": "One issue per finding; the precheck-context extension names the "
                "claim, the rule pack and the table versions used.",
                "type": "OperationOutcome",
            },
        ],
    }


def capability_statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": {"name": "fhir-checker", "version": __version__},
        "implementation": {"description": "fhir-checker claim pre-check service", "url": f"{base}/fhir"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Only the $precheck operation; no resources are stored.",
                "resource": [
                    {
                        "type": "Claim",
                        "operation": [{"name": "precheck", "definition": OPERATION_CANONICAL}],
                    },
                    {"type": "OperationDefinition", "interaction": [{"code": "read"}]},
                ],
            }
        ],
    }
