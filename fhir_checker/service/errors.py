"""Every error the service answers is an OperationOutcome (``application/fhir+json``).

Also the CDS Hooks 3.0 ballot's convention for hook errors. No traceback ever reaches a
client: unexpected exceptions are logged here and answered with a plain 500 outcome.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("fhir_checker.service")

FHIR_JSON = "application/fhir+json"

#: FHIR IssueType for the HTTP statuses we answer with.
_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    412: "not-found",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    502: "transient",
    504: "timeout",
}


class ServiceError(Exception):
    """Raised anywhere in a request: becomes one OperationOutcome with ``status``."""

    def __init__(
        self,
        status: int,
        text: str,
        *,
        code: str | None = None,
        diagnostics: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code or _ISSUE_CODE.get(status, "processing")
        self.diagnostics = diagnostics
        self.headers = headers


def error_outcome(
    text: str, *, code: str = "processing", diagnostics: str | None = None, severity: str = "error"
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "details": {"text": text}}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome_response(exc: ServiceError) -> Response:
    return fhir_response(
        error_outcome(exc.text, code=exc.code, diagnostics=exc.diagnostics), exc.status, exc.headers
    )


def install_handlers(app: FastAPI) -> None:
    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return outcome_response(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        text = {404: f"no such endpoint: {request.method} {request.url.path}"}.get(
            exc.status_code, str(exc.detail)
        )
        return outcome_response(ServiceError(exc.status_code, text, headers=dict(exc.headers or {})))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()[:5]
        )
        return outcome_response(ServiceError(400, "the request is not valid", diagnostics=where))

    async def unexpected(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log (it holds code locations, not request bodies).
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return outcome_response(
            ServiceError(500, "internal error: the request could not be processed", code="exception")
        )

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
