"""The engine's speed devices give the answers of the plain code they stand in for.

(The speed figures themselves are in benchmarks/bench_engine.py, not here.)
"""

from __future__ import annotations

import gc
import random
from datetime import date
from typing import Any

import orjson
import pytest

from fhir_checker.loader import BadInput, check_depth
from fhir_checker.tables import get_tables
from fhir_checker.tables.ncci import PtpEdit, PtpTable

DOS = date(2026, 3, 10)
#: Codes of the example claims and common companions: pairs with every indicator meet here.
CODES = ["36561", "76937", "77001", "96523", "99152", "99153", "36000", "96374", "96413", "99213", "J0690"]


def _nested(rnd: random.Random, depth: int) -> Any:
    if depth == 0 or rnd.random() < 0.2:
        return rnd.choice([1, "x", None, [], {}, "a\n" + " " * 40])
    if rnd.random() < 0.5:
        return [_nested(rnd, depth - 1) for _ in range(rnd.randint(0, 3))]
    return {f"k{i}": _nested(rnd, depth - 1) for i in range(rnd.randint(0, 3))}


def _depth(value: Any) -> int:
    """Containers on the deepest path (the plain definition the check stands in for)."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_the_depth_check_agrees_with_the_plain_definition() -> None:
    rnd = random.Random(5)
    refused = 0
    for _ in range(5000):
        value = _nested(rnd, rnd.randint(1, 10))
        limit = rnd.randint(0, 8)
        too_deep = _depth(value) > limit
        try:
            check_depth(value, limit)
        except BadInput:
            refused += 1
            assert too_deep, (value, limit)
        else:
            assert not too_deep, (value, limit)
    assert 500 < refused < 4500  # both answers were tried


def test_depth_limit_still_rejects_deep_input() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(70):
        deep = {"x": deep}
    with pytest.raises(BadInput):
        check_depth(deep, 64)
    check_depth(deep, 80)  # within a wider limit: fine


def _brute_force(table: PtpTable, codes: list[str], on: date) -> set[PtpEdit]:
    found = set()
    for c1 in codes:
        for c2 in codes:
            e = table.edit(c1, c2, on) if c1 != c2 else None
            if e is not None and e.indicator != 9:
                found.add(e)
    return found


@pytest.mark.parametrize("setting", ["practitioner", "outpatient-hospital"])
def test_ptp_row_cache_gives_every_pair_in_force(setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = get_tables().ptp(setting)
    # a tiny cache limit makes it start over on nearly every code: the answers must not change
    monkeypatch.setattr(table, "ROWS_CACHE_LIMIT", 300)
    rnd = random.Random(3)
    for _ in range(40):
        codes = rnd.sample(CODES, rnd.randint(2, 6))
        on = date(rnd.randint(2020, 2026), rnd.randint(1, 12), 1)
        got = table.edits_among(codes, on)
        assert len(got) == len(set(got))
        assert set(got) == _brute_force(table, codes, on)


def test_ptp_pairs_come_in_billed_order() -> None:
    """Not a set's order (which changes with the hash seed from process to process)."""
    table = get_tables().ptp("practitioner")
    codes = ["99213", "96374", "96413", "36000", "36561", "96523"]
    for order in (codes, codes[::-1]):
        col1 = [e.column1 for e in table.edits_among(order, DOS)]
        assert col1, "the sample must hold PTP pairs"
        assert col1 == sorted(col1, key=order.index)


def test_code_validity_memo_answers_as_the_spans_do() -> None:
    spans = get_tables().hcpcs_validity
    rnd = random.Random(9)
    asks = [
        (code, date(rnd.choice((2019, 2022, 2024, 2026)), 7, 1))
        for code in [*rnd.sample(spans.codes(), 200), "J2001", "ZZZZZ", "36561"]
    ]
    for _ in range(2):  # the second pass reads the memo
        for code, on in asks:
            assert spans.validity(code, on) == spans._validity(code, on)


def test_warm_tables_are_out_of_the_collectors_sight() -> None:
    get_tables().warm()
    assert gc.get_freeze_count() > 100_000


def test_the_local_reference_check_agrees_with_the_walk_that_reports() -> None:
    """REF001's fast check (no paths) answers True exactly when its reporting walk finds
    no dangling local reference: references put at random places and depths, some resolvable,
    some dangling, some under ``contained`` (which the walk leaves to the contained resource)."""
    from conftest import load_fixture

    from fhir_checker.loader import load
    from fhir_checker.references import ReferenceIndex, is_local_only
    from fhir_checker.rules.references import _all_references, _local_references_resolve

    rnd = random.Random(11)
    base = load_fixture("port-placement-aml.json")
    kinds = {"dangling": 0, "clean": 0}
    for _ in range(400):
        bundle: dict[str, Any] = orjson.loads(orjson.dumps(base))
        claim = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Claim")
        urls = [e["fullUrl"] for e in bundle["entry"] if str(e.get("fullUrl", "")).startswith("urn:")]
        for _ in range(rnd.randint(0, 3)):
            ref = rnd.choice([*urls, "urn:uuid:nowhere", "#nothing", "Patient/remote"])
            target = claim
            for _ in range(rnd.randint(0, 3)):  # somewhere deeper
                key = rnd.choice(["item", "extension", "contained", "supportingInfo"])
                child: dict[str, Any] = {}
                target.setdefault(key, []).append(child)
                target = child
            target["reference"] = ref
        doc = load(bundle)
        refs = ReferenceIndex(doc)
        walked = [r for _, r in _all_references(doc.claim, "Claim") if is_local_only(r)]
        dangling = any(refs.resolve(r, "Claim") is None for r in walked)
        assert _local_references_resolve(doc.claim, refs) is not dangling
        kinds["dangling" if dangling else "clean"] += 1
    assert min(kinds.values()) > 25, kinds  # both answers were tried


def test_the_date_shape_memo_answers_as_the_patterns_do() -> None:
    from fhir_checker import validation

    rnd = random.Random(3)
    pieces = ["2026", "-03", "-10", "T09:30", ":00", ".5", "Z", "+01:00", "\n", "x", "-1", " "]
    texts = ["".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 6))) for _ in range(3000)]
    texts += ["2026-03-10", "2026-03-10T09:30:00Z", "9" * 60]
    for _ in range(2):  # the second round answers from the memo
        for text in texts:
            assert validation._is_date(text) is bool(validation._DATE.match(text)), text
            assert validation._is_datetime(text) is bool(validation._DATETIME.match(text)), text
    assert any(validation._is_date(t) for t in texts) and not all(validation._is_date(t) for t in texts)
    assert validation._is_date(None) is False and validation._is_datetime(20260310) is False
