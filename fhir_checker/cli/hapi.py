"""``fhir-checker subscribe`` and ``fhir-checker sweep``: the HAPI FHIR integration's commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

from ..logs import add_logging_options, configure_from_args

TOKEN_ENV = "FHIR_CHECKER_FHIR_TOKEN"
SECRET_ENV = "FHIR_CHECKER_SUBSCRIPTION_SECRET"


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fhir-base", required=True, metavar="URL", help="FHIR server base URL (e.g. http://hapi:8080/fhir)"
    )
    p.add_argument(
        "--fhir-token",
        default=os.environ.get(TOKEN_ENV),
        metavar="TOKEN",
        help=f"bearer token for the FHIR server (default: ${TOKEN_ENV})",
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="per-request timeout (default 30)"
    )
    add_logging_options(p)


def register(sub: Any) -> None:
    p = sub.add_parser("subscribe", help="create (or find) the rest-hook Subscription for new Claims")
    _server_args(p)
    p.add_argument(
        "--endpoint",
        required=True,
        metavar="URL",
        help="the checker's receiver, e.g. http://checker:8000/subscription",
    )
    p.add_argument(
        "--criteria",
        default="Claim?status=active",
        help="Subscription.criteria (default Claim?status=active)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=None,
        metavar="'Name: value'",
        help="channel header the server sends with each notification (repeatable)",
    )
    p.add_argument(
        "--subscription-secret",
        default=os.environ.get(SECRET_ENV),
        metavar="SECRET",
        help="the receiver's shared secret (`serve --subscription-secret`): the Subscription "
        f"carries it as the header 'Authorization: Bearer SECRET' (default: ${SECRET_ENV})",
    )
    p.add_argument(
        "--wait", type=float, default=10.0, metavar="S", help="wait this long for status active (default 10)"
    )
    p.set_defaults(func=run_subscribe)

    p = sub.add_parser("sweep", help="check claims updated since TIME that have no result yet")
    _server_args(p)
    p.add_argument(
        "--since",
        required=True,
        metavar="TIME",
        help="2026-03-01, 2026-03-01T08:00:00Z, or back from now: 90m, 24h, 7d",
    )
    p.add_argument(
        "--status", default="active", help="only claims with this status ('' for any; default active)"
    )
    p.add_argument("--profile", help="rule pack (default: chosen per claim)")
    p.set_defaults(func=run_sweep)


def _fail(message: str) -> int:
    print(f"fhir-checker: {message}", file=sys.stderr)
    return 2


def run_subscribe(args: argparse.Namespace) -> int:
    configure_from_args(args)
    from ..fhirclient import FhirClient, FhirError
    from ..hapi.subscribe import ensure_subscription

    headers = list(args.header or [])
    if args.subscription_secret:  # the secret's header replaces any other Authorization header
        headers = [h for h in headers if not h.lower().startswith("authorization:")]
        headers.append(f"Authorization: Bearer {args.subscription_secret}")

    async def go() -> int:
        async with FhirClient(args.fhir_base, token=args.fhir_token, timeout=args.timeout) as client:
            done = await ensure_subscription(
                client, args.endpoint, criteria=args.criteria, headers=headers or None, wait=args.wait
            )
        sub = done.subscription
        print(
            json.dumps(
                {
                    "subscription": f"Subscription/{sub.get('id')}",
                    "created": done.created,
                    "status": done.status,
                    "criteria": sub.get("criteria"),
                    "endpoint": (sub.get("channel") or {}).get("endpoint"),
                    **({"error": sub["error"]} if sub.get("error") else {}),
                }
            )
        )
        return 1 if done.status in ("error", "off") else 0

    try:
        return asyncio.run(go())
    except FhirError as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc))


def run_sweep(args: argparse.Namespace) -> int:
    configure_from_args(args)
    from ..fhirclient import FhirClient, FhirError
    from ..hapi.sweep import parse_since, sweep
    from ..hapi.worker import Checker

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        return _fail(str(exc))

    async def go() -> int:
        async with FhirClient(args.fhir_base, token=args.fhir_token, timeout=args.timeout) as client:
            checker = Checker(client, profile=args.profile)

            async def handle(claim: dict[str, Any]) -> str:
                return await checker.check(claim["id"], claim)

            report = await sweep(client, since, handle, status=args.status or None)
        logging.getLogger("fhir_checker.hapi").info(
            "sweep done",
            extra={"seen": report.seen, "unchanged": report.unchanged, "failed": len(report.failed)},
        )
        print(json.dumps(report.as_dict()))
        return 1 if report.failed else 0

    try:
        return asyncio.run(go())
    except FhirError as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc))
