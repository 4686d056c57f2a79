"""The packed NCCI tables: code encoding, the PTP pack format, and facts of the shipped tables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_checker import files
from fhir_checker.tables import Tables, get_tables
from fhir_checker.tables.ncci import (
    NO_START,
    OPEN_END,
    AddonRow,
    AddonTable,
    Mue,
    MueTable,
    PtpRow,
    PtpTable,
    decode_codes,
    encode_code,
    write_addons,
    write_mue,
    write_ptp,
)

CODE = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=5, max_size=5)


@given(st.lists(CODE, min_size=1, max_size=50))
def test_code_encoding_is_lossless_and_keeps_order(codes: list[str]) -> None:
    values = np.asarray([encode_code(c) for c in codes], dtype=np.int32)
    assert decode_codes(values) == codes
    assert [c for _, c in sorted(zip(values.tolist(), codes, strict=True))] == sorted(codes)


@pytest.mark.parametrize("bad", ["3656", "365611", "36-61", "j0690", ""])
def test_encode_rejects_what_is_not_a_five_character_code(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_code(bad)


def _pack(tmp_path: Path, rows: list[PtpRow]) -> PtpTable:
    path = tmp_path / "t.ptp"
    assert write_ptp(rows, path, {"effective": "2024-07-01"}) == len(rows)
    return PtpTable(path)


def test_ptp_pack_keys_rows_by_effective_and_deletion_date(tmp_path: Path) -> None:
    t = _pack(
        tmp_path,
        [
            PtpRow("0007U", "0328U", 20230101, 20230630, 0, "HCPCS/CPT procedure code definition"),
            PtpRow("0007U", "0328U", 20230701, OPEN_END, 1, "Misuse of Column Two code with Column One code"),
            PtpRow("96413", "96374", NO_START, OPEN_END, 1, "Misuse of Column Two code with Column One code"),
            PtpRow("0143U", "80305", NO_START, 20230630, 0, "HCPCS/CPT procedure code definition"),
            PtpRow("0143U", "80305", 20230701, OPEN_END, 9, "Sequential procedure"),
        ],
    )
    assert len(t) == 5
    assert t.edit("0007U", "0328U", date(2022, 12, 31)) is None  # before it took effect
    first = t.edit("0007U", "0328U", date(2023, 6, 30))
    assert first is not None and first.indicator == 0
    later = t.edit("0007U", "0328U", date(2023, 7, 1))
    assert later is not None and later.indicator == 1
    assert t.edit("0328U", "0007U", date(2023, 7, 1)) is None  # pairs are ordered
    # indicator 9 is kept in the table but never returned as an edit in force
    assert [e.indicator for e in t.edits_among(["0143U", "80305"], date(2023, 6, 30))] == [0]
    assert t.edits_among(["0143U", "80305"], date(2024, 1, 1)) == []
    found = t.edits_among(["96374", "99999", "96413", "0007U"], date(2024, 1, 1))
    assert [(e.column1, e.column2, e.indicator) for e in found] == [("96413", "96374", 1)]


def test_ptp_pack_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.ptp"
    write_ptp([PtpRow("96413", "96374", 0, OPEN_END, 1, "x")], path, {})
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_ptp([PtpRow("96413", "BAD", 0, OPEN_END, 1, "x")], path, {})

    def disk_full(fd: int) -> None:  # the body is written; making it durable fails
        raise OSError(28, "No space left on device")

    # os.fsync, not a function of ncci: that module is compiled (setup.py), and calls
    # inside it do not go through its module attributes. The write itself is files.atomic_write.
    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_ptp([PtpRow("36561", "96523", 0, OPEN_END, 0, "y")], path, {})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.ptp"]  # no temporary left behind


def test_mue_and_addon_tables_round_trip(tmp_path: Path) -> None:
    write_mue([Mue("J0690", 16, 3, "Clinical: Society Comment")], tmp_path / "m.tsv.gz")
    m = MueTable(tmp_path / "m.tsv.gz").get("J0690")
    assert m == Mue("J0690", 16, 3, "Clinical: Society Comment")
    write_addons(
        [
            AddonRow("99153", "99152", 1),
            AddonRow("99153", "99151", 1),
            AddonRow("96371", "96369", 1, 20130101, 20231231),
            AddonRow("0054T", None, 2),
        ],
        tmp_path / "a.tsv.gz",
    )
    a = AddonTable(tmp_path / "a.tsv.gz")
    e = a.edit("99153", date(2026, 3, 10))
    assert e is not None and e.edit_type == 1 and e.primaries == ("99151", "99152")
    assert a.edit("96371", date(2024, 1, 1)) is None  # deleted before the date
    t2 = a.edit("0054T", date(2026, 3, 10))
    assert t2 is not None and t2.edit_type == 2 and t2.primaries == ()


# --- facts of the shipped tables the rules' tests rely on (each checked here) ---

DOS = date(2026, 3, 10)


@pytest.fixture(scope="module")
def tables() -> Tables:
    return get_tables()


def test_shipped_practitioner_pairs(tables: Tables) -> None:
    t = tables.ptp("practitioner")
    assert len(t) == 2_546_017
    e = t.edit("36561", "96523", DOS)
    assert e is not None and e.indicator == 0
    e = t.edit("96413", "96374", DOS)
    assert e is not None and e.indicator == 1
    e = t.edit("36560", "36561", DOS)
    assert e is not None and e.indicator == 1 and e.rationale == "Mutually exclusive procedures"
    assert t.edits_among(["36561", "76937", "77001"], DOS) == []
    # deleted 2023-12-31: in force on 2023-12-31, not on 2024-01-01
    assert t.edit("0001A", "96160", date(2023, 12, 31)) is not None
    assert t.edits_among(["0001A", "96160"], date(2024, 1, 1)) == []
    # a pair whose row on that date has modifier indicator 9
    nine = t.edit("0143U", "80305", date(2023, 7, 1))
    assert nine is not None and nine.indicator == 9
    assert t.edits_among(["0143U", "80305"], date(2023, 7, 1)) == []


def test_shipped_outpatient_hospital_pairs(tables: Tables) -> None:
    t = tables.ptp("outpatient-hospital")
    assert t.edit("36561", "96523", DOS) is None  # a practitioner-only pair
    e = t.edit("96413", "96374", DOS)
    assert e is not None and e.indicator == 1
    # I/OCE spans: 0007U/0328U started 2023-01-01 (indicator 0), indicator 1 from 2023-07-01
    assert t.edit("0007U", "0328U", date(2022, 12, 31)) is None
    early = t.edit("0007U", "0328U", date(2023, 3, 1))
    assert early is not None and early.indicator == 0
    late = t.edit("0007U", "0328U", date(2023, 8, 1))
    assert late is not None and late.indicator == 1
    # active pairs on 2026-04-01 match the I/OCE 27.1.0 count (1,401,094) plus CMS-only pairs
    assert len(t) >= 1_594_456


def test_shipped_mue_and_addon_facts(tables: Tables) -> None:
    assert tables.mue("practitioner").get("J0690") == Mue("J0690", 16, 3, "Clinical: Society Comment")
    m = tables.mue("practitioner").get("A6460")
    assert m is not None and m.mai == 1 and m.value == 1
    m = tables.mue("practitioner").get("30110")
    assert m is not None and m.mai == 2
    e = tables.addons.edit("96371", DOS)
    assert e is not None and e.edit_type == 1 and e.primaries == ("96369",)
    e = tables.addons.edit("99153", DOS)
    assert e is not None and e.primaries == ("99151", "99152", "G0500")
    e = tables.addons.edit("96161", DOS)
    assert e is not None and e.edit_type == 3 and "99213" in e.primaries
    e = tables.addons.edit("0054T", DOS)
    assert e is not None and e.edit_type == 2


def test_manifest_names_source_and_effective_date_of_each_ncci_table(tables: Tables) -> None:
    for name in (
        "ptp_practitioner",
        "ptp_outpatient_hospital",
        "mue_practitioner",
        "mue_outpatient_hospital",
        "addon_codes",
    ):
        info = tables.info(name)
        assert info["source"] and info["effective"] and info["rows"] > 0
        assert tables.path(name).exists()
    assert tables.info("ptp_practitioner")["effective"] == "2024-07-01"
    assert tables.info("ptp_outpatient_hospital")["effective"] == "2026-04-01"
