"""``fhir-checker serve``: the HTTP service (FHIR ``$precheck``, CDS Hooks, rule docs)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP service ($precheck, CDS Hooks)",
        description="Serve POST /fhir/Claim/$precheck, the CDS Hooks service at /cds-services and "
        "the rule docs at /rules (OpenAPI at /docs). Configuration: --config FILE (YAML) or "
        "FHIR_CHECKER_SERVICE_CONFIG, then FHIR_CHECKER_* environment variables.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--config", metavar="FILE", help="service configuration (YAML)")
    p.add_argument("--public-url", help="this service's URL as clients see it (JWT aud, card links)")
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="do not verify CDS client JWTs (local development only; warned loudly)",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    # The HAPI subscription receiver (mounted only when --fhir-base is given).
    p.add_argument("--fhir-base", metavar="URL", help="FHIR server to receive Claim subscriptions from")
    p.add_argument(
        "--fhir-token",
        default=os.environ.get("FHIR_CHECKER_FHIR_TOKEN"),
        help="bearer token for --fhir-base (default: $FHIR_CHECKER_FHIR_TOKEN)",
    )
    p.add_argument(
        "--subscription-secret",
        default=os.environ.get("FHIR_CHECKER_SUBSCRIPTION_SECRET"),
        metavar="SECRET",
        help="require 'Authorization: Bearer SECRET' on /subscription (default: "
        "$FHIR_CHECKER_SUBSCRIPTION_SECRET); give `subscribe` the same",
    )
    p.add_argument("--queue", default="fhir-checker-queue.sqlite", metavar="PATH")
    p.add_argument("--sweep-interval", type=float, default=None, metavar="SECONDS")
    p.set_defaults(func=run)


def build_app(args: argparse.Namespace) -> Any:
    from ..service.app import create_app
    from ..service.config import ConfigError, ServiceConfig, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"fhir-checker serve: {exc}") from None
    if args.public_url:
        cfg = replace(cfg, public_url=args.public_url)
    elif cfg.public_url == ServiceConfig.public_url:
        # Neither the config file nor the env named it: where we listen is the best guess
        # (the JWT aud and card links must match the port actually served).
        cfg = replace(cfg, public_url=f"http://{args.host}:{args.port}")
    if args.no_auth:
        cfg = replace(cfg, auth=False)
    app = create_app(cfg)
    if args.fhir_base:
        from ..hapi.receiver import install  # lazily: only this branch needs it

        install(
            app,
            fhir_base=args.fhir_base,
            queue_path=args.queue,
            token=args.fhir_token,
            sweep_interval=args.sweep_interval,
            secret=args.subscription_secret or None,
        )
    return app


def run(args: argparse.Namespace) -> int:
    import uvicorn

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = build_app(args)
    if not app.state.config.auth:
        print(
            "\n*** WARNING: CDS client authentication is OFF (--no-auth / auth: false). ***\n"
            "*** Anyone who can reach this port can call the CDS service. Local use only. ***\n",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
