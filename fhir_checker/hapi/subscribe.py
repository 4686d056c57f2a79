"""Create, or find, the rest-hook Subscription that tells the checker about new Claims.

Per HAPI's documented flow the Subscription is created ``requested`` and the server
activates it (``active``) once it has set up delivery, or sets ``error``. An existing
Subscription with the same criteria and endpoint is reused rather than duplicated (so
running ``fhir-checker subscribe`` again, e.g. from docker-compose, is harmless); one in
``off`` or ``error`` is set back to ``requested``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ..fhirclient import FhirClient

DEFAULT_CRITERIA = "Claim?status=active"
PAYLOAD = "application/fhir+json"
REASON = "fhir-checker: pre-check every new or changed Claim"


@dataclass
class Subscribed:
    subscription: dict[str, Any]
    created: bool

    @property
    def status(self) -> str:
        return str(self.subscription.get("status", "?"))


def subscription_resource(endpoint: str, criteria: str, headers: list[str] | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint, "payload": PAYLOAD}
    if headers:
        channel["header"] = headers
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": REASON,
        "criteria": criteria,
        "channel": channel,
    }


def _same(sub: dict[str, Any], endpoint: str, criteria: str) -> bool:
    channel = sub.get("channel")
    if not isinstance(channel, dict):
        return False
    return (
        sub.get("criteria") == criteria
        and channel.get("type") == "rest-hook"
        and str(channel.get("endpoint", "")).rstrip("/") == endpoint.rstrip("/")
    )


async def find_subscription(client: FhirClient, endpoint: str, criteria: str) -> dict[str, Any] | None:
    # Search by endpoint, then match the rest here: servers differ in how they search criteria.
    async for sub in client.search("Subscription", {"url": endpoint}):
        if sub.get("resourceType") == "Subscription" and _same(sub, endpoint, criteria):
            return sub
    return None


async def ensure_subscription(
    client: FhirClient,
    endpoint: str,
    *,
    criteria: str = DEFAULT_CRITERIA,
    headers: list[str] | None = None,
    wait: float = 0.0,
) -> Subscribed:
    """The Subscription for ``endpoint``; waits up to ``wait`` s for the server to activate it."""
    existing = await find_subscription(client, endpoint, criteria)
    if existing is None:
        sub = await client.create(subscription_resource(endpoint, criteria, headers))
        created = True
    else:
        sub, created = existing, False
        if existing.get("status") in ("off", "error") or (
            headers and existing["channel"].get("header") != headers
        ):
            wanted = dict(existing, status="requested", channel=dict(existing["channel"]))
            wanted.pop("error", None)
            if headers:
                wanted["channel"]["header"] = headers
            sub = await client.update(wanted) or wanted
    deadline = time.monotonic() + wait
    while sub.get("status") == "requested" and isinstance(sub.get("id"), str) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        sub = await client.read("Subscription", sub["id"])
    return Subscribed(sub, created)
