"""schemathesis against the service's own OpenAPI document (in-process ASGI transport).

Every operation of ``create_app(...)`` is called with generated requests. The properties:
no 5xx other than a deliberate 503 "incomplete" (none is expected here), and every 4xx/5xx
body is an OperationOutcome (``application/fhir+json``) that validates.

The CDS Hooks routes read their JSON body themselves, so FastAPI's document declares no body
for them, and ``$precheck`` declares just "an object". The test's copy of the document adds
the CDS Hooks request and feedback shapes and a Claim / Bundle / Parameters shape (real codes),
so schemathesis sends hook calls, feedback and checkable claims, not only empty POSTs.
``-m fuzz`` runs many more examples per operation than the unit suite.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
import schemathesis
from conftest import assert_valid_outcome
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from fhir_checker.service import ServiceConfig, create_app

PRECHECK = "/fhir/Claim/$precheck"
HOOK = "/cds-services/claim-precheck"
FEEDBACK = "/cds-services/claim-precheck/feedback"

_CDS_REQUEST = {
    "type": "object",
    "required": ["hook", "hookInstance", "context"],
    "properties": {
        "hook": {"type": "string", "enum": ["org.fhir-checker.claim-create"]},
        "hookInstance": {"type": "string"},
        "fhirServer": {"type": "string"},
        "context": {
            "type": "object",
            "required": ["patientId", "claim"],
            "properties": {
                "patientId": {"type": "string"},
                "claimId": {"type": "string"},
                "claim": {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "properties": {
                                "resourceType": {"type": "string", "enum": ["Claim", "Patient"]},
                                "id": {"type": "string"},
                                "item": {"type": "array", "items": {"type": "object"}},
                            },
                        },
                    ]
                },
            },
        },
        "prefetch": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}
_FEEDBACK = {
    "type": "object",
    "required": ["feedback"],
    "properties": {
        "feedback": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["card", "outcome"],
                "properties": {
                    "card": {"type": "string"},
                    "outcome": {"type": "string", "enum": ["accepted", "overridden", "ignored"]},
                    "acceptedSuggestions": {"type": "array", "items": {"type": "object"}},
                    "overrideReason": {"type": "object"},
                    "outcomeTimestamp": {"type": "string"},
                },
            },
        }
    },
}
_CODING = {
    "type": "object",
    "properties": {
        "system": {
            "type": "string",
            "enum": ["http://www.ama-assn.org/go/cpt", "http://hl7.org/fhir/sid/icd-10-cm", "x"],
        },
        "code": {"type": "string", "enum": ["36561", "77001", "C1788", "C92.00", "C92.0", "J0690", "0"]},
    },
}
_CONCEPT = {"type": "object", "properties": {"coding": {"type": "array", "items": _CODING}}}
_CLAIM = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["Claim"]},
        "id": {"type": "string"},
        "status": {"type": "string"},
        "use": {"type": "string"},
        "type": _CONCEPT,
        "created": {"type": "string", "format": "date"},
        "patient": {"type": "object", "properties": {"reference": {"type": "string"}}},
        "billablePeriod": {"type": "object", "properties": {"start": {"type": "string", "format": "date"}}},
        "diagnosis": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sequence": {"type": "integer"}, "diagnosisCodeableConcept": _CONCEPT},
            },
        },
        "item": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sequence": {"type": "integer"},
                    "productOrService": _CONCEPT,
                    "modifier": {"type": "array", "items": _CONCEPT},
                    "quantity": {"type": "object", "properties": {"value": {"type": "number"}}},
                    "servicedDate": {"type": "string", "format": "date"},
                    "diagnosisSequence": {"type": "array", "items": {"type": "integer"}},
                },
            },
        },
    },
}
#: What $precheck takes, closer than FastAPI's "object": a Claim, or a Bundle / Parameters of one.
_PRECHECK = {
    "anyOf": [
        _CLAIM,
        {
            "type": "object",
            "required": ["resourceType", "entry"],
            "properties": {
                "resourceType": {"type": "string", "enum": ["Bundle"]},
                "type": {"type": "string"},
                "entry": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"fullUrl": {"type": "string"}, "resource": _CLAIM},
                    },
                },
            },
        },
        {
            "type": "object",
            "required": ["resourceType", "parameter"],
            "properties": {
                "resourceType": {"type": "string", "enum": ["Parameters"]},
                "parameter": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "resource": _CLAIM},
                    },
                },
            },
        },
    ]
}


def _with_cds_bodies(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for path, body in ((HOOK, _CDS_REQUEST), (FEEDBACK, _FEEDBACK)):
        op = doc["paths"][path]["post"]
        op.setdefault(
            "requestBody",
            {"required": True, "content": {"application/json": {"schema": body}}},
        )
    for media in doc["paths"][PRECHECK]["post"]["requestBody"]["content"].values():
        media["schema"] = _PRECHECK
    return doc


def service_schema(*, coverage: bool) -> Any:
    # auth off: the JWT checks have their own tests; here the routes behind them are the target.
    app = create_app(ServiceConfig(auth=False, max_body_bytes=256 * 1024))
    schema = schemathesis.openapi.from_dict(_with_cds_bodies(app.openapi()))
    schema.app = app
    # The coverage phase (schemathesis's deterministic edge cases, some hundreds for $precheck)
    # runs in the fuzz job; the unit suite keeps to a few generated examples.
    schema.config.phases.coverage.enabled = coverage
    return schema


schema = service_schema(coverage=False)
fuzz_schema = service_schema(coverage=True)


def errors_are_outcomes(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer is a valid OperationOutcome sent as application/fhir+json."""
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/fhir+json"), (
        response.status_code,
        response.headers,
    )
    body = response.json()
    assert isinstance(body, dict) and body.get("resourceType") == "OperationOutcome", body
    assert_valid_outcome(body)
    return None


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    return None


def call_and_check(case: Any) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error, no_server_error, errors_are_outcomes])


_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "suppress_health_check": list(HealthCheck),
}
QUICK_EXAMPLES = 8
FUZZ_EXAMPLES = int(os.environ.get("FHIR_CHECKER_SCHEMATHESIS_EXAMPLES", "200"))


@schema.parametrize()
@settings(max_examples=QUICK_EXAMPLES, **_COMMON)
def test_api_quick(case: Any) -> None:
    call_and_check(case)


@pytest.mark.fuzz
@pytest.mark.slow
@fuzz_schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, **_COMMON)
def test_api_fuzz(case: Any) -> None:
    call_and_check(case)


def test_every_operation_is_exercised() -> None:
    """The document names the routes that matter, and the CDS ones carry a body here."""
    paths = {op.ok().path for op in schema.get_all_operations()}
    assert {"/fhir/Claim/$precheck", HOOK, FEEDBACK, "/fhir/metadata", "/cds-services"} <= paths
    bodies = {op.ok().path for op in schema.get_all_operations() if op.ok().body}
    assert {"/fhir/Claim/$precheck", HOOK, FEEDBACK} <= bodies


def test_the_checks_catch_a_plain_error_body_and_a_500() -> None:
    """The checks above can fail: a FastAPI-style JSON error or a 500 is caught."""
    from types import SimpleNamespace

    plain = SimpleNamespace(
        status_code=404,
        headers={"content-type": ["application/json"]},
        json=lambda: {"detail": "Not Found"},
        text='{"detail": "Not Found"}',
    )
    with pytest.raises(AssertionError):
        errors_are_outcomes(None, plain, None)
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
    crashed = SimpleNamespace(
        status_code=500,
        headers={"content-type": ["application/fhir+json"]},
        json=lambda: outcome,
        text="",
    )
    errors_are_outcomes(None, crashed, None)  # a valid outcome ...
    with pytest.raises(AssertionError):
        no_server_error(None, crashed, None)  # ... but a 500 all the same
