"""The mypyc build (setup.py): what it leaves for a developer in a source checkout."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import fhir_checker
from fhir_checker import _warn_if_stale
from fhir_checker.registry import _source_docstrings, get_rule

PACKAGE = Path(fhir_checker.__file__).resolve().parent


def test_a_source_newer_than_its_compiled_module_warns() -> None:
    source = PACKAGE / "values.py"
    before = source.stat()
    try:
        os.utime(source, (before.st_atime, before.st_mtime + 3600))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _warn_if_stale()
        stale = [w for w in caught if "fhir_checker/values.py changed after it was compiled" in str(w.message)]
        # Only a compiled build has something to be stale against.
        assert len(stale) == (1 if fhir_checker.compiled() else 0)
    finally:
        os.utime(source, (before.st_atime, before.st_mtime))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_if_stale()
    assert not [w for w in caught if "changed after it was compiled" in str(w.message)]


def test_rule_docs_come_from_the_source_when_compiled_functions_have_none() -> None:
    docs = _source_docstrings("fhir_checker.rules.ptp")
    rule = get_rule("PTP001")
    assert rule.check.__name__ in docs
    assert rule.doc.startswith(docs[rule.check.__name__].strip().splitlines()[0].strip())
    assert "How to fix" in rule.doc or "Fix" in rule.doc
    assert _source_docstrings("fhir_checker.no_such_module") == {}
