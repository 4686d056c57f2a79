"""Request bodies: content type, a size limit enforced while reading, JSON parsing."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from .errors import ServiceError

ACCEPTED_TYPES = ("application/fhir+json", "application/json")


def check_content_type(request: Request) -> None:
    raw = request.headers.get("content-type", "")
    media = raw.split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        shown = media or "none"
        raise ServiceError(
            415,
            f"content type {shown[:80]!r} is not supported: send application/fhir+json or application/json",
        )


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it passes ``limit`` bytes, not after reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ServiceError(413, f"the body is {int(declared):,} bytes, over the limit of {limit:,}")
        except ValueError:
            raise ServiceError(400, "Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    check_content_type(request)
    raw = await read_limited(request, limit)
    if not raw.strip():
        raise ServiceError(400, "the body is empty: expected JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ServiceError(400, "the body is not valid JSON", diagnostics=str(exc)[:200]) from None


async def read_json_bytes(request: Request, limit: int) -> bytes:
    """Content type and size checked; the raw bytes (the engine parses FHIR JSON itself)."""
    check_content_type(request)
    return await read_limited(request, limit)
