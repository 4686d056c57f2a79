"""Integration fixtures (see :mod:`.fhir_server`).

``tests/integration`` is a package so that this conftest is ``integration.conftest`` and does
not shadow ``tests/conftest.py``, whose helpers the unit tests import as ``conftest``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

from .fhir_server import FHIR_JSON, Checker


@pytest.fixture(scope="session")
def fhir_base() -> str:
    base = os.environ.get("FHIR_BASE_URL", "").rstrip("/")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("FHIR_BASE_URL is not set: CI must run the integration tests against a server")
        pytest.skip("FHIR_BASE_URL is not set (see tests/integration/conftest.py)")
    return base


@pytest.fixture(scope="session")
def fhir(fhir_base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fhir_base, headers=FHIR_JSON, timeout=15) as client:
        client.get("/metadata").raise_for_status()
        yield client


@pytest.fixture(scope="module")
def checker(fhir_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checker]:
    c = Checker(fhir_base, tmp_path_factory.mktemp("checker"))
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]
