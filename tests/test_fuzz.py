"""The fuzz job: >= 10,000 generated inputs through the engine and through the CLI.

Inputs (``strategies.fuzz_inputs``): realistic claims and bundles, the same with elements
broken or missing, hostile ones (numbers as strings, odd unicode, huge arrays, deep nesting,
references in loops), arbitrary FHIR-ish objects and raw bytes. The property: never an
exception, always one OperationOutcome that validates (fhir.resources), and for the CLI an
exit code that matches it (2 fatal, 1 errors, 0 clean).

``-m fuzz`` runs the long profile (CI: its own step, fixed seed; ``FHIR_CHECKER_FUZZ=random``
explores new examples). The ``*_quick`` tests run a few examples in the unit suite.
``FHIR_CHECKER_FUZZ_EXAMPLES`` (engine, default 10,000) and ``FHIR_CHECKER_FUZZ_CLI_EXAMPLES``
(CLI calls, default 4,000) scale the long runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import assert_valid_outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import SLOW_DERANDOMIZE, TODAY, fuzz_inputs, hostile

import fhir_checker
from fhir_checker.cli import main
from fhir_checker.cli.check import EXIT_BAD_INPUT, EXIT_CLEAN, EXIT_ERRORS

FUZZ_EXAMPLES = int(os.environ.get("FHIR_CHECKER_FUZZ_EXAMPLES", "10000"))
#: A CLI example is one to three inputs (about 1.5 on average) and costs about three engine
#: examples: 4,000 calls (~6,000 inputs) keep the whole job under 8 minutes on 2 cores.
CLI_FUZZ_EXAMPLES = int(os.environ.get("FHIR_CHECKER_FUZZ_CLI_EXAMPLES", "4000"))

_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
}
QUICK = settings(max_examples=15, derandomize=True, print_blob=False, **_COMMON)
FUZZ = settings(max_examples=FUZZ_EXAMPLES, derandomize=SLOW_DERANDOMIZE, print_blob=True, **_COMMON)


def as_sent(data: Any) -> bytes:
    """The bytes a file or stdin would hold (raw bytes as they are)."""
    # json, not orjson: orjson refuses to write past 255 levels, and deep input is the point.
    return data if isinstance(data, bytes) else json.dumps(data).encode()


def assert_outcome_contract(outcome: Any, *, fatal: bool) -> None:
    assert isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome", outcome
    assert_valid_outcome(outcome)
    orjson.dumps(outcome)  # JSON-ready, as every door sends it
    severities = [i["severity"] for i in outcome["issue"]]
    if fatal:
        assert severities == ["fatal"], severities
    else:
        assert "fatal" not in severities, severities


# ============================================================================ engine


def engine_answers(data: Any) -> None:
    # Dicts and bytes both: the CLI run below sends every input as bytes (and
    # test_properties checks that dict, text and bytes agree).
    result = fhir_checker.run(data, today=TODAY)  # an exception fails the test
    assert_outcome_contract(result.outcome, fatal=result.fatal)


test_engine_fuzz_quick = QUICK(given(fuzz_inputs())(engine_answers))
test_engine_fuzz = pytest.mark.fuzz(pytest.mark.slow(FUZZ(given(fuzz_inputs())(engine_answers))))


@QUICK
@given(hostile())
def test_hostile_shapes_quick(data: Any) -> None:
    engine_answers(data)


# ============================================================================ CLI (in process)


@contextlib.contextmanager
def stdin_bytes(data: bytes) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        yield
    finally:
        sys.stdin = saved


def run_cli(argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
    out = io.StringIO()
    with stdin_bytes(stdin), contextlib.redirect_stdout(out):
        code = main(argv)  # an exception fails the test
    return code, out.getvalue()


def expected_exit(outcome: dict[str, Any]) -> int:
    severities = {i["severity"] for i in outcome["issue"]}
    if "fatal" in severities:
        return EXIT_BAD_INPUT
    return EXIT_ERRORS if "error" in severities else EXIT_CLEAN


@st.composite
def cli_calls(draw: st.DrawFn) -> tuple[str, list[Any]]:
    """How the input reaches the CLI: one file, stdin, or several files (NDJSON out)."""
    how = draw(st.sampled_from(["file", "stdin", "files"]))
    n = draw(st.integers(min_value=2, max_value=3)) if how == "files" else 1
    return how, [draw(fuzz_inputs()) for _ in range(n)]


def make_cli_prop(workdir: Callable[[], Path]) -> Callable[[tuple[str, list[Any]]], None]:
    def cli_answers(call: tuple[str, list[Any]]) -> None:
        how, inputs = call
        base = ["check", "--today", TODAY.isoformat()]
        if how == "stdin":
            code, out = run_cli([*base, "-"], stdin=as_sent(inputs[0]))
        else:
            paths = []
            for n, data in enumerate(inputs):
                path = workdir() / f"in-{n}.json"
                path.write_bytes(as_sent(data))
                paths.append(str(path))
            code, out = run_cli([*base, *paths])
        # NDJSON lines end at "\n" only: str.splitlines() also splits at U+0085, U+2028 ...,
        # which JSON strings carry unescaped (orjson escapes only control characters).
        lines = [out] if len(inputs) == 1 else out.removesuffix("\n").split("\n")
        assert len(lines) == len(inputs), out[:500]
        outcomes = [orjson.loads(line) for line in lines]
        for outcome in outcomes:
            assert_outcome_contract(outcome, fatal=expected_exit(outcome) == EXIT_BAD_INPUT)
        assert code == max(expected_exit(o) for o in outcomes), (code, out[:500])

    return cli_answers


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fhir-checker-fuzz-") as d:
        yield Path(d)


def test_cli_fuzz_quick(workdir: Path) -> None:
    QUICK(given(cli_calls())(make_cli_prop(lambda: workdir)))()


@pytest.mark.fuzz
@pytest.mark.slow
def test_cli_fuzz(workdir: Path) -> None:
    settings(FUZZ, max_examples=CLI_FUZZ_EXAMPLES)(given(cli_calls())(make_cli_prop(lambda: workdir)))()


def test_cli_table_format_answers_hostile_input(workdir: Path) -> None:
    """The people format too: no exception on hostile input, the exit code as for JSON."""

    @settings(QUICK, max_examples=5)
    @given(hostile())
    def prop(data: Any) -> None:
        path = workdir / "table.json"
        path.write_bytes(as_sent(data))
        json_code, out = run_cli(["check", "--today", TODAY.isoformat(), str(path)])
        table_code, table = run_cli(["check", "--today", TODAY.isoformat(), "--format", "table", str(path)])
        assert table_code == json_code == expected_exit(orjson.loads(out))
        assert table.strip()

    prop()
