"""The Dockerfile and the compose file, checked without a Docker engine.

Cheap checks parse both files and run the image's HEALTHCHECK command against a real
``serve``; the slow one (``-m slow``, or ``python scripts/dockerfile_smoke.py`` in CI) does
what the Dockerfile does in a clean virtual environment and probes the result.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import dockerfile_smoke  # noqa: E402

DOCKERFILE = dockerfile_smoke.parse((ROOT / "Dockerfile").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_slim_base_non_root_user_one_serve_entry_point() -> None:
    assert DOCKERFILE.base.startswith("python:") and DOCKERFILE.base.endswith("-slim")
    assert DOCKERFILE.user is not None
    uid = DOCKERFILE.user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000  # numeric: runAsNonRoot can check it
    assert DOCKERFILE.cmd is not None and DOCKERFILE.cmd[:2] == ["fhir-checker", "serve"]
    assert "--port" in DOCKERFILE.cmd and "8000" in DOCKERFILE.cmd


def test_install_is_non_editable_and_checks_the_baked_in_tables() -> None:
    runs = [str(payload) for _, kind, payload in DOCKERFILE.steps if kind == "RUN"]
    steps = [step.strip() for r in runs for step in r.split("&&")]
    assert "pip install ." in steps
    assert not any("install -e" in r or "--editable" in r for r in runs)
    checks = [(workdir, str(p)) for workdir, kind, p in DOCKERFILE.steps if kind == "RUN"]
    # The build-time checks run outside /src, so they import the installed package.
    assert any("fhir-checker data info" in r and w != "/src" for w, r in checks)
    assert any("warm()" in r and w != "/src" for w, r in checks)
    # The image runs the mypyc build: the compiler is there for the install and gone after it.
    assert any("fhir_checker.compiled()" in r and w != "/src" for w, r in checks)
    assert steps.index("apt-get install -y --no-install-recommends gcc libc6-dev") < steps.index("pip install .")
    assert steps.index("pip install .") < steps.index("apt-get purge -y gcc libc6-dev")


def test_healthcheck_probes_healthz_with_python_not_curl() -> None:
    assert DOCKERFILE.healthcheck is not None
    assert DOCKERFILE.healthcheck[:2] == ["python", "-c"]
    assert "/healthz" in DOCKERFILE.healthcheck[2] and "curl" not in " ".join(DOCKERFILE.healthcheck)
    assert set(DOCKERFILE.healthcheck_options) >= {"interval", "timeout", "start-period"}


def test_compose_builds_the_checker_from_the_dockerfile() -> None:
    services = COMPOSE["services"]
    checker = services["checker"]
    assert checker["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert checker["command"][:2] == ["fhir-checker", "serve"]
    # The one-shot subscribe uses the same image and waits for the checker's HEALTHCHECK.
    assert services["subscribe"]["image"] == checker["image"]
    assert services["subscribe"]["depends_on"]["checker"]["condition"] == "service_healthy"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = _free_port()
    exe = str(Path(sys.executable).with_name("fhir-checker"))
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port)],
        cwd=tmp_path_factory.mktemp("serve"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    assert DOCKERFILE.healthcheck is not None
    cmd = [sys.executable if a == "python" else a.replace("8000", str(port)) for a in DOCKERFILE.healthcheck]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def test_the_healthcheck_command_passes_against_serve_and_fails_without_it(serving: int) -> None:
    deadline = time.monotonic() + 60
    while _healthcheck(serving).returncode != 0:
        assert time.monotonic() < deadline, "HEALTHCHECK never passed"
        time.sleep(0.2)
    assert _healthcheck(_free_port()).returncode != 0  # nothing listens there


@pytest.mark.slow
def test_dockerfile_steps_in_a_clean_venv(tmp_path: Path) -> None:
    """pip install . (from PyPI), the build-time checks, CMD, HEALTHCHECK, /readyz."""
    dockerfile_smoke.smoke(tmp_path)
