"""Shared test helpers: fixture loading, FHIRPath resolution and outcome validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fhirpathpy
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def claim_of(data: dict[str, Any]) -> dict[str, Any]:
    """The Claim inside a Claim, Bundle or Parameters input."""
    if data.get("resourceType") == "Parameters":
        data = next(p["resource"] for p in data["parameter"] if "resource" in p)
    if data.get("resourceType") == "Bundle":
        return next(
            e["resource"] for e in data["entry"] if e.get("resource", {}).get("resourceType") == "Claim"
        )
    return data


def bundle_of(data: dict[str, Any]) -> dict[str, Any] | None:
    if data.get("resourceType") == "Parameters":
        data = next(p["resource"] for p in data["parameter"] if "resource" in p)
    return data if data.get("resourceType") == "Bundle" else None


def assert_expressions_resolve(outcome: dict[str, Any], data: dict[str, Any]) -> None:
    """Every issue.expression evaluates (FHIRPath engine) to a node of the input."""
    claim = claim_of(data)
    bundle = bundle_of(data)
    for issue in outcome["issue"]:
        for expr in issue.get("expression", []):
            root = claim if expr.startswith("Claim") else bundle
            assert root is not None, f"{expr}: no resource to evaluate against"
            result = fhirpathpy.evaluate(root, expr)
            assert result, f"expression {expr!r} does not resolve in the input ({issue['details']})"


def assert_valid_outcome(outcome: dict[str, Any]) -> None:
    OperationOutcome.model_validate(outcome)  # raises on an invalid OperationOutcome
    assert outcome["issue"], "an OperationOutcome needs at least one issue"


@pytest.fixture
def port_bundle() -> dict[str, Any]:
    return load_fixture("port-placement-aml.json")
