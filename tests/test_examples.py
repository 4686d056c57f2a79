"""The README's first command: the bundled port-placement claim, billed right and miscoded."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

from conftest import FIXTURES, assert_expressions_resolve, assert_valid_outcome, load_fixture

from fhir_checker import run

TODAY = date(2026, 11, 22)


def test_correctly_billed_port_placement_is_clean() -> None:
    result = run(load_fixture("port-placement-aml.json"), today=TODAY)
    assert [f.rule_id for f in result.findings] == []
    assert result.outcome["issue"][0]["details"]["coding"][0]["code"] == "CLEAN"


def test_miscoded_port_placement_finds_each_mistake() -> None:
    data = load_fixture("port-placement-miscoded.json")
    result = run(data, today=TODAY)
    got = {(f.rule_id, f.severity.value, f.expression) for f in result.findings}
    assert got == {
        ("MOD001", "error", "Claim.item[1].modifier[0]"),  # modifier 11 does not exist
        # 99153 without 99152: a warning on an OPPS claim (the I/OCE runs edit 106 on non-OPPS only)
        ("ADD001", "warning", "Claim.item[4].productOrService.coding[0]"),
        ("UNI001", "error", "Claim.item[5].quantity"),  # 2 g cefazolin billed J0690 x2
        ("UNB001", "warning", "Bundle.entry[8].resource.code.coding[0]"),  # 77001 not billed
    }
    units = next(f for f in result.findings if f.rule_id == "UNI001")
    assert units.fix is not None and units.fix.kind == "set-units" and units.fix.value == 4
    assert_valid_outcome(result.outcome)
    assert_expressions_resolve(result.outcome, data)


def test_readme_first_command_exit_code_and_output() -> None:
    files = [str(FIXTURES / "port-placement-aml.json"), str(FIXTURES / "port-placement-miscoded.json")]
    proc = subprocess.run(
        [sys.executable, "-m", "fhir_checker", "check", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr  # error findings on the miscoded claim
    outcomes = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(outcomes) == 2
    assert outcomes[0]["issue"][0]["details"]["coding"][0]["code"] == "CLEAN"
    assert {i["details"]["coding"][0]["code"] for i in outcomes[1]["issue"]} == {
        "MOD001",
        "ADD001",
        "UNI001",
        "UNB001",
    }


def test_readme_first_command_as_a_table_piped() -> None:
    """The README's own command (--format table), its output piped: 160 columns, not rich's
    80 (which folds each finding into a tall narrow cell), unless COLUMNS says otherwise."""
    import os

    from fhir_checker.cli.table import PIPED_WIDTH

    files = [str(FIXTURES / "port-placement-aml.json"), str(FIXTURES / "port-placement-miscoded.json")]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    widths = {}
    for columns in (None, "100"):
        proc = subprocess.run(
            [sys.executable, "-m", "fhir_checker", "check", *files, "--format", "table"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env if columns is None else {**env, "COLUMNS": columns},
        )
        assert proc.returncode == 1, proc.stderr
        for code in ("CLEAN", "MOD001", "ADD001", "UNI001", "UNB001"):
            assert code in proc.stdout
        widths[columns] = max(len(line) for line in proc.stdout.splitlines())
    assert 80 < widths[None] <= PIPED_WIDTH
    assert widths["100"] <= 100
