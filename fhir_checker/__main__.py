"""``python -m fhir_checker`` runs the ``fhir-checker`` command."""

import sys

from .cli import main

sys.exit(main())
