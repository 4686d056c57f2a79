"""Build hooks: ship the rule packs inside the package, and compile the hot path with mypyc.

- The packs live at the top of the repository (``profiles/*.yaml``, the project's layout); an
  editable install reads them there, a wheel carries a copy in ``fhir_checker/profiles``.
- The modules every check runs through (claim context, loader, shape check, rules, table
  lookups) are compiled to C extensions with mypyc: the same typed Python, about 1.5x the
  claims per second (``benchmarks/bench_engine.py`` prints which build it measured). The
  ``.py`` files ship beside the compiled modules. ``FHIR_CHECKER_PURE_PYTHON=1`` builds
  without compiling: use it for an editable install you edit, since a compiled module is
  loaded before its ``.py`` and an edit to that file would not take effect until a rebuild.
  The transports (CLI, HTTP service, FHIR client, bulk runner) stay pure Python: they are
  not where the time goes.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

#: Compiled with mypyc, in one group (calls between them are native C calls).
COMPILED = [
    "fhir_checker/engine.py",
    "fhir_checker/registry.py",
    "fhir_checker/packs.py",
    "fhir_checker/values.py",
    "fhir_checker/codes.py",
    "fhir_checker/findings.py",
    "fhir_checker/outcome.py",
    "fhir_checker/loader.py",
    "fhir_checker/references.py",
    "fhir_checker/validation.py",
    "fhir_checker/clinical.py",
    "fhir_checker/context.py",
    "fhir_checker/tally.py",
    "fhir_checker/tables/ncci.py",
    "fhir_checker/tables/codesets.py",
    "fhir_checker/tables/attributes.py",
    "fhir_checker/tables/drugs.py",
    "fhir_checker/hook_cards.py",
    "fhir_checker/hook_request.py",
    *sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "fhir_checker" / "rules").glob("*.py") if p.name != "__init__.py"
    ),
]


class BuildPyWithProfiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "fhir_checker" / "profiles"
        target.mkdir(parents=True, exist_ok=True)
        for pack in sorted((ROOT / "profiles").glob("*.yaml")):
            shutil.copy2(pack, target / pack.name)


#: The setup.py commands that build code. pip also runs setup.py for metadata only
#: (egg_info, dist_info): mypycify type-checks and writes C on every call (~1 minute), so it
#: runs only for these.
BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def _ext_modules() -> list[Any]:
    if os.environ.get("FHIR_CHECKER_PURE_PYTHON", "").strip() not in ("", "0"):
        return []
    if not BUILD_COMMANDS.intersection(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify  # a build requirement (pyproject.toml)
    except ImportError:  # built without build isolation and without mypy
        print("fhir-checker: mypyc not found, installing the pure-Python build", file=sys.stderr)
        return []
    # The mypy settings of pyproject.toml ([tool.mypy], strict) apply to the compile too.
    extensions = mypycify(COMPILED, opt_level="3", debug_level="0", group_name="fhir_checker")
    for ext in extensions:
        ext.optional = True  # no C compiler: setuptools warns and the .py files are used
    return extensions


setup(cmdclass={"build_py": BuildPyWithProfiles}, ext_modules=_ext_modules())
