# fhir-checker: the HTTP service ($precheck, CDS Hooks) and the HAPI subscription receiver.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY fhir_checker ./fhir_checker
COPY profiles ./profiles
# setup.py copies profiles/*.yaml into the wheel (fhir_checker/profiles), so the packs ship.
RUN pip install . \
    && useradd --system --home-dir /var/lib/fhir-checker --create-home fhir-checker

USER fhir-checker
WORKDIR /var/lib/fhir-checker
# The subscription queue (SQLite) lives here: mount a volume so it survives restarts.
VOLUME ["/var/lib/fhir-checker"]
EXPOSE 8000
CMD ["fhir-checker", "serve", "--host", "0.0.0.0", "--port", "8000"]
