"""Property-based tests of the engine's contract, on realistic and on broken claims.

Every property runs in two profiles: ``quick`` (a few derandomized examples, part of the
unit suite) and ``slow`` (many random examples; ``pytest -m slow``, run by ``.ci/run``).
A failing slow run prints a ``@reproduce_failure`` blob; add the example it shrinks to as a
plain regression test (see ``test_hostile_input.py``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import fhirpathpy
import orjson
import pytest
from conftest import assert_expressions_resolve, assert_valid_outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import SLOW_DERANDOMIZE, TODAY, claims, fhirish, mutated, raw_bytes

import fhir_checker
from fhir_checker import CATEGORIES, get_rule
from fhir_checker.loader import parse_json
from fhir_checker.outcome import CATEGORY_SYSTEM, RULE_SYSTEM

_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
}
QUICK = settings(max_examples=10, derandomize=True, print_blob=False, **_COMMON)
SLOW_EXAMPLES = 2000  # per property: about 90 s for all of them on 2 cores


def slow(n: int = SLOW_EXAMPLES) -> settings:
    return settings(max_examples=n, derandomize=SLOW_DERANDOMIZE, print_blob=True, **_COMMON)


def profiles(
    strategy: st.SearchStrategy[Any], prop: Callable[[Any], None], slow_examples: int = SLOW_EXAMPLES
) -> tuple[Callable[..., None], Callable[..., None]]:
    """The same property as a quick unit test and a long ``slow`` one."""
    quick_test = QUICK(given(strategy)(prop))
    slow_test = pytest.mark.slow(slow(slow_examples)(given(strategy)(prop)))
    return quick_test, slow_test


def check(data: Any) -> fhir_checker.Result:
    return fhir_checker.run(data, today=TODAY)


anything = st.one_of(claims(), mutated(), fhirish(), raw_bytes())
claim_like = st.one_of(claims(), mutated())


# ----------------------------------------------------------------------------- properties


def never_raises_and_outcome_validates(data: Any) -> None:
    result = check(data)  # an exception here fails the test: run() must never raise
    assert_valid_outcome(result.outcome)
    assert result.outcome["resourceType"] == "OperationOutcome"
    orjson.dumps(result.outcome)  # JSON-ready, as every door sends it
    if result.fatal:
        assert [i["severity"] for i in result.outcome["issue"]] == ["fatal"]


def expressions_resolve(data: Any) -> None:
    result = check(data)
    if not result.fatal:
        assert_expressions_resolve(result.outcome, data)
        return
    # A fatal outcome may point into the input too (e.g. "Bundle", "Claim.item"): then it resolves.
    root = parse_json(data, fhir_checker.Limits()) if not isinstance(data, dict) else data
    for issue in result.outcome["issue"]:
        for expr in issue.get("expression", []):
            assert isinstance(root, dict), expr
            if root.get("resourceType") == "Parameters":
                root = next(
                    p["resource"] for p in root["parameter"] if isinstance(p, dict) and p.get("resource")
                )
            assert fhirpathpy.evaluate(root, expr), f"fatal expression {expr!r} does not resolve"


def issues_carry_rule_and_category(data: Any) -> None:
    result = check(data)
    for issue in result.outcome["issue"]:
        coding = issue["details"]["coding"]
        rule_codes = [c["code"] for c in coding if c["system"] == RULE_SYSTEM]
        assert len(rule_codes) == 1, issue
        if issue["severity"] == "fatal":
            assert rule_codes == ["INPUT"]
            continue
        if rule_codes == ["CLEAN"]:
            continue
        get_rule(rule_codes[0])  # a registered rule id (KeyError otherwise)
        categories = [c["code"] for c in coding if c["system"] == CATEGORY_SYSTEM]
        assert len(categories) == 1 and categories[0] in CATEGORIES, issue
        assert issue["details"]["text"].strip(), issue
        assert issue["severity"] in ("error", "warning", "information"), issue


def clean_means_one_information_issue(data: Any) -> None:
    result = check(data)
    if result.fatal:
        return
    issues = result.outcome["issue"]
    clean = [i for i in issues if i["details"]["coding"][0]["code"] == "CLEAN"]
    if not result.findings:
        assert len(issues) == 1 and issues[0]["severity"] == "information" and clean, issues
    else:
        assert not clean and len(issues) == len(result.findings), issues


def deterministic_and_input_untouched(data: Any) -> None:
    before = copy.deepcopy(data)
    first = orjson.dumps(check(data).outcome)
    assert data == before, "checking a claim must not change the input"
    assert orjson.dumps(check(data).outcome) == first


def dict_text_and_bytes_agree(data: Any) -> None:
    text = json.dumps(data)
    from_dict = check(data).outcome
    assert check(text).outcome == from_dict
    assert check(text.encode()).outcome == from_dict


test_never_raises_quick, test_never_raises_slow = profiles(anything, never_raises_and_outcome_validates)
test_expressions_resolve_quick, test_expressions_resolve_slow = profiles(claim_like, expressions_resolve)
test_issue_codings_quick, test_issue_codings_slow = profiles(claim_like, issues_carry_rule_and_category)
test_clean_outcome_quick, test_clean_outcome_slow = profiles(claim_like, clean_means_one_information_issue)
test_deterministic_quick, test_deterministic_slow = profiles(
    claim_like, deterministic_and_input_untouched, 1000
)
test_input_forms_agree_quick, test_input_forms_agree_slow = profiles(
    claim_like, dict_text_and_bytes_agree, 1000
)


def test_generated_claims_reach_the_rules() -> None:
    """The strategies are worth their cost only if realistic claims trip real rules."""
    fired: set[str] = set()
    clean = 0

    @QUICK
    @given(claims())
    def collect(data: Any) -> None:
        nonlocal clean
        result = check(data)
        assert not result.fatal, result.outcome
        fired.update(f.rule_id for f in result.findings)
        clean += not result.findings

    collect()
    # codes from the packed tables and fixtures, links and dates: several rule families fire
    families = {r[:3] for r in fired}
    assert len(families) >= 3, fired
