"""Build hook: ship the top-level rule packs (``profiles/*.yaml``) inside the package.

The packs live at the top of the repository (the project's layout); an editable install
reads them there, a wheel carries a copy in ``fhir_checker/profiles``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithProfiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "fhir_checker" / "profiles"
        target.mkdir(parents=True, exist_ok=True)
        for pack in sorted((ROOT / "profiles").glob("*.yaml")):
            shutil.copy2(pack, target / pack.name)


setup(cmdclass={"build_py": BuildPyWithProfiles})
