"""The HTTP service: the engine as a FHIR operation (``$precheck``) and a CDS Hooks service."""

from __future__ import annotations

from .app import create_app
from .config import ServiceConfig, TrustedIssuer, load_config

__all__ = ["ServiceConfig", "TrustedIssuer", "create_app", "load_config"]
