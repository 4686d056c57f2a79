"""``fhir-checker data info`` and ``data import`` on excerpts in CMS's own file layouts."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from conftest import ROOT

from fhir_checker import run
from fhir_checker.cli import main
from fhir_checker.tables import PACKAGE_DATA, Tables
from fhir_checker.tables.cms_import import CmsFileError, parse_cms_date, read_addons, read_mue, read_ptp

EXCERPTS = ROOT / "tests" / "data" / "cms_excerpts"
PRA = [EXCERPTS / "ccipra-v303r0-f1.txt", EXCERPTS / "ccipra-v303r0-f2.txt"]
OPH = [EXCERPTS / "ccioph-v303r0-f1.txt"]
MUE_PRA = EXCERPTS / "MCR_MUE_PractitionerServices_Eff_10-01-2024.csv"
MUE_OPH = EXCERPTS / "MCR_MUE_OutpatientHospitalServices_Eff_10-01-2024.csv"
AOC = EXCERPTS / "AOC_V2024Q4-MCR.txt"

ALL_ARGS = [
    "--ptp-practitioner",
    *map(str, PRA),
    "--ptp-outpatient",
    *map(str, OPH),
    "--mue-practitioner",
    str(MUE_PRA),
    "--mue-outpatient",
    str(MUE_OPH),
    "--addon",
    str(AOC),
]


def _claim(lines: list[tuple[str, list[str], int]], dos: str = "2026-03-10") -> dict[str, object]:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_ncci_fixtures import claim

    return claim(lines, dos=dos)  # type: ignore[arg-type]


def test_data_info_lists_every_manifest_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((PACKAGE_DATA / "manifest.json").read_text())
    for name, entry in manifest["tables"].items():
        assert f"{name}: {entry['title']}" in out
        assert entry["source"] in out and entry["file"] in out
    assert "effective: 2024-07-01   rows: 2,546,017   file: ptp_practitioner.ptp" in out


def test_data_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tables"]["ptp_outpatient_hospital"]["effective"] == "2026-04-01"
    assert data["tables"]["mue_practitioner"]["rows"] == 14_677


def test_reads_the_cms_ptp_layout() -> None:
    read = read_ptp(PRA)
    assert len(read.columns) == 9 and read.files == [p.name for p in PRA]
    assert read.latest_effective == 20230701


def test_reads_the_cms_mue_layout() -> None:
    rows = {m.code: m for m in read_mue(MUE_PRA)}
    assert set(rows) == {"30110", "36561", "96523", "A6460", "J0690"}
    assert (rows["J0690"].value, rows["J0690"].mai, rows["J0690"].rationale) == (
        16,
        3,
        "Clinical: Society Comment",
    )
    assert rows["30110"].mai == 2 and rows["A6460"].mai == 1


def test_reads_the_cms_addon_layout() -> None:
    rows = read_addons(AOC)
    assert {(r.addon, r.primary, r.edit_type) for r in rows if r.addon == "99153"} == {
        ("99153", "99151", 1),
        ("99153", "99152", 1),
        ("99153", "G0500", 1),
    }
    (t2,) = [r for r in rows if r.addon == "0054T"]
    assert t2.primary is None and t2.edit_type == 2 and t2.effective == 20130101


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("20240701", 20240701),
        ("2024183", 20240701),
        ("07/01/2024", 20240701),
        ("*", 7),
        ("", 7),
        ("99991231", 7),
    ],
)
def test_cms_dates(text: str, want: int) -> None:
    assert parse_cms_date(text, blank=7) == want


def test_import_into_a_new_directory_and_the_engine_uses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "data"
    assert main(["data", "import", *ALL_ARGS, "--effective", "2024-10-01", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ptp_practitioner" in printed and "9 rows" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    ptp = manifest["tables"]["ptp_practitioner"]
    assert ptp["effective"] == "2024-10-01" and ptp["rows"] == 9 and "ccipra-v303r0-f1.txt" in ptp["source"]
    assert manifest["tables"]["hcpcs_validity"]["file"] == "hcpcs_validity.tsv.gz"  # the rest copied
    assert (out / "hcpcs_validity.tsv.gz").exists()

    tables = Tables(out)
    assert len(tables.ptp("practitioner")) == 9
    # 99213 + 96523 is in the excerpt: PTP001 fires with the imported table's date cited
    c = _claim([("99213", [], 1), ("96523", [], 1)])
    result = run(c, tables=tables, today=date(2026, 11, 22))
    ptp_findings = [f for f in result.findings if f.rule_id == "PTP001"]
    assert [f.line for f in ptp_findings] == [1]
    assert "effective 2024-10-01" in ptp_findings[0].evidence
    # 96413/96374 (indicator 1) is in the excerpt too
    c2 = _claim([("96413", [], 1), ("96374", [], 1)])
    assert [
        f.rule_id
        for f in run(c2, tables=tables, today=date(2026, 11, 22)).findings
        if f.rule_id.startswith("PTP")
    ] == ["PTP002"]

    # and through FHIR_CHECKER_DATA, as `data info` sees it
    monkeypatch.setenv("FHIR_CHECKER_DATA", str(out))
    assert main(["data", "info", "--json"]) == 0
    seen = json.loads(capsys.readouterr().out)
    assert seen["directory"] == str(out) and seen["tables"]["mue_practitioner"]["rows"] == 5
    assert Tables().ptp("outpatient-hospital").edit("0007U", "0328U", date(2023, 3, 1)) is not None


def test_the_effective_date_comes_from_the_file_name(tmp_path: Path) -> None:
    assert main(["data", "import", "--mue-practitioner", str(MUE_PRA), "--out", str(tmp_path)]) == 0
    assert (
        json.loads((tmp_path / "manifest.json").read_text())["tables"]["mue_practitioner"]["effective"]
        == "2024-10-01"
    )


def _broken_copy(tmp_path: Path, source: Path, line_no: int, new: str) -> Path:
    lines = source.read_bytes().split(b"\r\n")
    lines[line_no - 1] = new.encode("latin-1")
    p = tmp_path / source.name
    p.write_bytes(b"\r\n".join(lines))
    return p


@pytest.mark.parametrize(
    ("source", "line_no", "text", "message"),
    [
        (PRA[0], 7, "0143U\t80305\t\t20210101\t20230630\t5\tx", "modifier indicator '5' is not 0, 1 or 9"),
        (PRA[0], 6, "0001A\t9616\t\t20220101\t20231231\t1\tx", "column 2 code '9616'"),
        (
            PRA[0],
            8,
            "0143U\t80305\t\t2023-07-01\t20230701\t9\tx",
            "effective date '2023-07-01' is not a date",
        ),
        (MUE_PRA, 6, "30110,one,2 Date of Service Edit: Policy,CMS Policy", "MUE value 'one'"),
        (MUE_PRA, 7, "36561,2,Date of Service Edit: Clinical,Clinical: Data", "MUE adjudication indicator"),
        (AOC, 3, "0054T\t20040701\t*\tCCCCC\t*\t*\tX\t20130101\t*\t", "AOC edit type 'X'"),
    ],
)
def test_malformed_input_names_file_and_line_and_replaces_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: Path, line_no: int, text: str, message: str
) -> None:
    out = tmp_path / "data"
    shutil.copytree(PACKAGE_DATA, out, ignore=shutil.ignore_patterns("ptp_*.ptp"))
    (out / "ptp_practitioner.ptp").write_bytes(b"old table")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = _broken_copy(tmp_path, source, line_no, text)
    args = {
        PRA[0]: ["--ptp-practitioner", str(bad), str(PRA[1])],
        MUE_PRA: ["--mue-practitioner", str(bad)],
        AOC: ["--addon", str(bad)],
    }[source]
    # a good file of another table in the same run must not be written either
    assert main(["data", "import", *args, "--mue-outpatient", str(MUE_OPH), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{line_no}: " in err and message in err and "nothing was replaced" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_file_that_is_not_a_cms_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello\nworld\n")
    with pytest.raises(CmsFileError, match="no PTP edit rows found"):
        read_ptp([p])
    with pytest.raises(CmsFileError, match="no MUE header"):
        read_mue(p)
    with pytest.raises(CmsFileError, match="no header naming 'Add-on Code'"):
        read_addons(p)


def test_import_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "import"]) == 2
    assert "needs at least one of" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("MCR_MUE_PractitionerServices_Eff_01-01-2025.csv", "2025-01-01"),
        ("AOC_V2024Q4-MCR.txt", "2024-10-01"),  # year and quarter
        ("ccipra-v303r0-f1.txt", "2024-10-01"),  # NCCI version 30.3
        ("ccioph-v302r0-f2.txt", "2024-07-01"),
        ("ccipra-v270r0-f1.txt", "2021-01-01"),
        ("ptp-extract.txt", None),
    ],
)
def test_release_date_from_cms_file_names(name: str, want: str | None) -> None:
    from fhir_checker.tables.cms_import import _file_date

    assert _file_date([Path(name)]) == want


def test_import_without_effective_dates_each_table_by_its_release(tmp_path: Path) -> None:
    assert main(["data", "import", *ALL_ARGS, "--out", str(tmp_path)]) == 0
    tables = json.loads((tmp_path / "manifest.json").read_text())["tables"]
    for name in ("ptp_practitioner", "ptp_outpatient_hospital", "mue_practitioner", "addon_codes"):
        assert tables[name]["effective"] == "2024-10-01", name  # not the latest row date (2023)
