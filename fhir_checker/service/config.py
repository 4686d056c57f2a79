"""Service configuration: a YAML file, then environment variables on top.

```yaml
public_url: https://precheck.example.org      # this service's URL: JWT aud, links in cards
auth: true                                    # false = no JWT check (local use only; warned)
issuers:                                      # CDS clients we trust, by JWT iss
  https://ehr.example.org:
    jku: [https://ehr.example.org/.well-known/jwks.json]   # allowed jku header values
    jwks_url: https://ehr.example.org/.well-known/jwks.json  # used when a token has no jku
fhir_servers: [https://ehr.example.org/fhir]  # fhirServer values we may call (exact base URLs)
cors_origins: [https://ehr.example.org]
max_body_bytes: 10485760
fhir_timeout: 5          # seconds per FHIR request
fhir_deadline: 10        # seconds for all the reads of one hook call
time_budget_seconds: 15  # one request (reads + check); past it: 503, outcome "incomplete"
state_dir: /var/lib/fhir-checker  # shared by worker processes (serve --workers N sets one)
```

Environment (overrides the file): ``FHIR_CHECKER_SERVICE_CONFIG`` (the file),
``FHIR_CHECKER_PUBLIC_URL``, ``FHIR_CHECKER_AUTH`` (``off`` to disable),
``FHIR_CHECKER_FHIR_SERVERS`` and ``FHIR_CHECKER_CORS_ORIGINS`` (comma-separated),
``FHIR_CHECKER_MAX_BODY_BYTES``, ``FHIR_CHECKER_TIME_BUDGET``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..loader import MAX_BYTES


class ConfigError(ValueError):
    """A configuration that cannot be used: names the field."""


@dataclass(frozen=True)
class TrustedIssuer:
    """A CDS client allowed to call us: where its signing keys may come from."""

    jku: tuple[str, ...] = ()  # allowed values of the JWT header's jku
    jwks_url: str | None = None  # the key set for tokens without jku
    jwks: dict[str, Any] | None = None  # or the key set itself (no fetch)


@dataclass(frozen=True)
class ServiceConfig:
    public_url: str = "http://127.0.0.1:8080"
    auth: bool = True
    issuers: dict[str, TrustedIssuer] = field(default_factory=dict)
    fhir_servers: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = MAX_BYTES
    fhir_timeout: float = 5.0
    fhir_deadline: float = 10.0
    time_budget_seconds: float = 15.0  # one request, gather + check; past it 503 "incomplete"
    jwks_cache_seconds: float = 3600.0
    jwt_leeway_seconds: float = 30.0
    jwt_max_lifetime_seconds: float = 3600.0  # longer-lived tokens are refused (jti cache bound)
    default_profile: str | None = None
    # A directory for state several worker processes share (JWT jti replay cache, card
    # feedback) in one SQLite file; None = in this process's memory (one worker).
    state_dir: str | None = None

    @property
    def base(self) -> str:
        return self.public_url.rstrip("/")

    def fhir_server_allowed(self, url: str) -> bool:
        return normalise_base(url) in {normalise_base(u) for u in self.fhir_servers}


def normalise_base(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, no trailing slash."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)):
        host = f"{host}:{port}"
    return f"{parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"


def _list(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{name}: must be a list of strings")


def _url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}: {value!r} is not an absolute http(s) URL")
    return value


def _issuers(raw: Any) -> dict[str, TrustedIssuer]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("issuers: must map each iss to {jku: [...], jwks_url: ...}")
    out: dict[str, TrustedIssuer] = {}
    for iss, spec in raw.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigError(f"issuers.{iss}: must be a mapping")
        unknown = set(spec) - {"jku", "jwks_url", "jwks"}
        if unknown:
            raise ConfigError(f"issuers.{iss}: unknown field {sorted(unknown)[0]!r} (jku, jwks_url, jwks)")
        jku = tuple(_url(u, f"issuers.{iss}.jku") for u in _list(spec.get("jku"), f"issuers.{iss}.jku"))
        jwks_url = spec.get("jwks_url")
        if jwks_url is not None:
            jwks_url = _url(str(jwks_url), f"issuers.{iss}.jwks_url")
        jwks = spec.get("jwks")
        if jwks is not None and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list)):
            raise ConfigError(f"issuers.{iss}.jwks: must be a JWK Set ({{keys: [...]}})")
        if not (jku or jwks_url or jwks):
            raise ConfigError(f"issuers.{iss}: give jku, jwks_url or jwks: where its keys come from")
        out[str(iss)] = TrustedIssuer(jku=jku, jwks_url=jwks_url, jwks=jwks)
    return out


_NUMBERS = {
    "max_body_bytes",
    "fhir_timeout",
    "fhir_deadline",
    "time_budget_seconds",
    "jwks_cache_seconds",
    "jwt_leeway_seconds",
    "jwt_max_lifetime_seconds",
}


def config_from_mapping(data: Mapping[str, Any], base: ServiceConfig | None = None) -> ServiceConfig:
    known = {f.name for f in fields(ServiceConfig)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown field (allowed: {', '.join(sorted(known))})")
    cfg = base or ServiceConfig()
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key == "issuers":
            changes[key] = _issuers(value)
        elif key in ("fhir_servers", "cors_origins"):
            values = _list(value, key)
            if key == "fhir_servers":
                values = tuple(_url(v, key) for v in values)
            changes[key] = values
        elif key == "auth":
            if isinstance(value, str):
                value = value.strip().lower() not in ("off", "false", "0", "no")
            if not isinstance(value, bool):
                raise ConfigError("auth: must be true or false")
            changes[key] = value
        elif key in _NUMBERS:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{key}: must be a number") from None
            if number <= 0:
                raise ConfigError(f"{key}: must be positive")
            changes[key] = int(number) if key == "max_body_bytes" else number
        elif key == "public_url":
            changes[key] = _url(str(value), key)
        else:
            changes[key] = None if value is None else str(value)
    return replace(cfg, **changes)


ENV = {
    "FHIR_CHECKER_PUBLIC_URL": "public_url",
    "FHIR_CHECKER_AUTH": "auth",
    "FHIR_CHECKER_FHIR_SERVERS": "fhir_servers",
    "FHIR_CHECKER_CORS_ORIGINS": "cors_origins",
    "FHIR_CHECKER_MAX_BODY_BYTES": "max_body_bytes",
    "FHIR_CHECKER_TIME_BUDGET": "time_budget_seconds",
}


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> ServiceConfig:
    """The file (``path``, else ``$FHIR_CHECKER_SERVICE_CONFIG``, else none), then the env."""
    env = os.environ if env is None else env
    cfg = ServiceConfig()
    path = path or env.get("FHIR_CHECKER_SERVICE_CONFIG")
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must be a mapping")
        try:
            cfg = config_from_mapping(data, cfg)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    overrides = {name: env[var] for var, name in ENV.items() if env.get(var)}
    return config_from_mapping(overrides, cfg) if overrides else cfg
