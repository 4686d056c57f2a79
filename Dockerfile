# fhir-checker: the HTTP service ($precheck, CDS Hooks), /healthz and /readyz, and the HAPI
# subscription receiver. One entry point: `fhir-checker serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY fhir_checker ./fhir_checker
COPY profiles ./profiles
# A regular (non-editable) install: the CMS tables and the rule packs ship inside the wheel
# as package data, and the hot path is compiled with mypyc (setup.py), which needs a C
# compiler for the build only: it is removed again in the same layer.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

# The build fails here if they did not: `data info` reads the manifest, warm() loads every
# table, every rule pack must load, and the compiled modules must be what is imported. From
# /, so Python imports the installed package and not the sources in /src.
WORKDIR /
RUN fhir-checker data info \
    && python -c "import fhir_checker, sys; sys.exit(0 if fhir_checker.compiled() else 'the hot path is not compiled')" \
    && python -c "from fhir_checker.tables import get_tables; get_tables().warm()" \
    && python -c "from fhir_checker.packs import available_packs, load_pack; assert available_packs(); [load_pack(n) for n in available_packs()]" \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/fhir-checker --create-home fhir-checker \
    && rm -rf /src

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/fhir-checker
# The subscription queue (SQLite) lives here: mount a volume so it survives restarts.
VOLUME ["/var/lib/fhir-checker"]
# One JSON object per log line (claim ids, rule ids, timings; never PHI).
ENV FHIR_CHECKER_LOG_FORMAT=json
EXPOSE 8000
# Liveness only (slim has no curl). /readyz is for an orchestrator's readiness probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["fhir-checker", "serve", "--host", "0.0.0.0", "--port", "8000"]
