"""``fhir-checker serve``: the HTTP service (FHIR ``$precheck``, CDS Hooks, rule docs)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from typing import Any

from ..logs import add_logging_options, configure_from_args


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
    add_logging_options(p)
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
    # Server process options (see README "Performance").
    p.add_argument(
        "--workers",
        type=worker_count,
        default=os.environ.get("FHIR_CHECKER_WORKERS", "1"),
        metavar="N",
        help="worker processes (default 1, or $FHIR_CHECKER_WORKERS; 'cores' = one per CPU). "
        "Several workers share the JWT replay cache and the card feedback through a SQLite "
        "file in --state-dir",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where several workers keep their shared state (default: a new temporary directory)",
    )
    p.add_argument("--backlog", type=int, default=2048, help="listen backlog (default 2048)")
    p.add_argument(
        "--loop",
        default="asyncio",
        choices=("asyncio", "uvloop", "auto"),
        help="event loop (default asyncio: with uvloop, p99 at 50 clients was 5-10x worse here)",
    )
    p.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"), help="HTTP parser")
    p.set_defaults(func=run)


def worker_count(value: str) -> int:
    """``N`` >= 1, or ``cores``: one worker per CPU this process may use."""
    if value.strip().lower() == "cores":
        return max(
            1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        )
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers (or 'cores')") from None
    if count < 1:
        raise argparse.ArgumentTypeError("--workers must be at least 1")
    return count


#: How the parent hands its parsed arguments to uvicorn's worker processes (``--workers`` > 1).
ARGS_ENV = "FHIR_CHECKER_SERVE_ARGS"


def app_from_environment() -> Any:
    """The app factory each worker process calls: the parent's arguments, from ``ARGS_ENV``."""
    args = argparse.Namespace(**json.loads(os.environ[ARGS_ENV]))
    configure_from_args(args)  # a new process: its logging is not the parent's
    return build_app(args)


def build_config(args: argparse.Namespace) -> Any:
    """The service config: the file (or env), then the command line on top."""
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
    if getattr(args, "state_dir", None):
        cfg = replace(cfg, state_dir=args.state_dir)
    return cfg


def build_app(args: argparse.Namespace) -> Any:
    from ..service.app import create_app

    app = create_app(build_config(args))
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

    from ..service.protocol import protocol_for

    level = configure_from_args(args)
    cfg = build_config(args)  # a bad config stops here, before any worker starts
    if not cfg.auth:
        print(
            "\n*** WARNING: CDS client authentication is OFF (--no-auth / auth: false). ***\n"
            "*** Anyone who can reach this port can call the CDS service. Local use only. ***\n",
            file=sys.stderr,
            flush=True,
        )
    server: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": level,
        "log_config": None,  # uvicorn's loggers propagate to ours: one format for every line
        "access_log": False,  # one line per request costs CPU and may carry ids in URLs
        "backlog": args.backlog,
        "loop": args.loop,
        "http": protocol_for(args.http),  # uvicorn's, with TCP_NODELAY (see service/protocol.py)
        "ws": "none",
    }
    if args.workers <= 1:
        uvicorn.run(build_app(args), **server)
        return 0
    # Several processes: uvicorn starts each from an import string, so the arguments travel in
    # the environment, and the state that must hold across workers (JWT jti replay cache, card
    # feedback) lives in a SQLite file that all of them open.
    from ..service import workers

    factory = "fhir_checker.cli.serve:app_from_environment"
    with tempfile.TemporaryDirectory(prefix="fhir-checker-state-") as scratch:
        state_dir = args.state_dir or scratch  # the scratch one goes when the server stops
        shared = {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | None)}
        os.environ[ARGS_ENV] = json.dumps({**shared, "state_dir": state_dir})
        if workers.supported():  # one shared socket, connections balanced over the workers
            return workers.run_workers(args.workers, factory, server)
        uvicorn.run(factory, factory=True, workers=args.workers, **server)
    return 0
