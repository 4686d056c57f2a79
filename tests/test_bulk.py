"""Bulk NDJSON: one outcome per input line, in order, bad lines fatal, exit codes, summary."""

from __future__ import annotations

import copy
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import assert_valid_outcome, load_fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_checker import bulk
from fhir_checker.bulk import Block, BulkOptions, blocks_of, check_stream, read_blocks, split_block
from fhir_checker.cli import main
from fhir_checker.outcome import CONTEXT_EXTENSION

TODAY = date(2026, 11, 22)
OPTIONS = BulkOptions(today=TODAY)


def _claim(n: int, *, bad_code: bool = False) -> dict[str, Any]:
    c = copy.deepcopy(load_fixture("bare-claim.json"))
    c["id"] = f"claim-{n}"
    if bad_code:
        c["item"][0]["productOrService"]["coding"][0]["code"] = "3656"  # malformed: COD002 error
    return c


def _line(doc: Any) -> bytes:
    return orjson.dumps(doc)


def _context(outcome: dict[str, Any]) -> dict[str, Any]:
    ctx = next(e for e in outcome.get("extension", []) if e["url"] == CONTEXT_EXTENSION)
    return {e["url"]: e for e in ctx["extension"]}


def _claim_ref(outcome: dict[str, Any]) -> str | None:
    claim = _context(outcome).get("claim")
    return claim["valueReference"]["reference"] if claim else None


def _line_no(outcome: dict[str, Any]) -> int | None:
    ln = _context(outcome).get("line")
    return int(ln["valueInteger"]) if ln else None


def _mixed_input(n: int) -> list[bytes]:
    """Clean claims, error claims, a bundle, and every kind of bad line."""
    bundle = load_fixture("port-flush-visit.json")
    out: list[bytes] = []
    for i in range(n):
        kind = i % 10
        if kind == 3:
            out.append(_line(_claim(i, bad_code=True)))
        elif kind == 5:
            out.append(b"{not json")
        elif kind == 7:
            out.append(b"")
        elif kind == 8:
            out.append(b'{"resourceType":"Patient","id":"p1"}')
        elif kind == 9:
            b = copy.deepcopy(bundle)
            b["entry"][0]["resource"]["id"] = f"claim-{i}"
            out.append(_line(b))
        else:
            out.append(_line(_claim(i)))
    return out


def _run(lines: list[bytes], jobs: int, per_block: int = 200) -> tuple[list[dict[str, Any]], bulk.Tally]:
    tally = bulk.Tally()
    text = b""
    for res in check_stream(blocks_of(lines, per_block), OPTIONS, jobs):
        text += res.output
        tally.merge(res.tally)
    return [orjson.loads(x) for x in text.splitlines()], tally


def test_two_jobs_keep_input_order_and_line_count() -> None:
    lines = _mixed_input(60)
    parallel, tally2 = _run(lines, jobs=2, per_block=3)  # many small blocks: finished out of order
    serial, tally1 = _run(lines, jobs=1)
    assert len(parallel) == len(lines) == 60
    assert parallel == serial
    for i, outcome in enumerate(parallel):
        kind = i % 10
        if kind in (5, 7, 8):
            assert _line_no(outcome) == i + 1
            assert outcome["issue"][0]["severity"] == "fatal"
        else:
            assert _claim_ref(outcome) == f"Claim/claim-{i}"
    assert tally2.lines == tally1.lines == 60
    assert (tally2.bad_lines, tally2.error_claims, tally2.claims) == (18, 6, 42)
    assert tally2.bad_line_numbers == tally1.bad_line_numbers
    assert tally2.rule_claims == tally1.rule_claims


def test_bad_lines_get_their_own_fatal_outcome_and_the_run_goes_on() -> None:
    lines = [b"", b"   ", b"[1, 2]", b'{"resourceType": "Claim"', _line(_claim(1)), b'"text"']
    outcomes, tally = _run(lines, jobs=1)
    assert len(outcomes) == 6
    for i in (0, 1, 2, 3, 5):
        assert [x["severity"] for x in outcomes[i]["issue"]] == ["fatal"], outcomes[i]
        assert _line_no(outcomes[i]) == i + 1
        assert_valid_outcome(outcomes[i])
    assert "blank" in outcomes[0]["issue"][0]["details"]["text"]
    assert "not valid JSON" in outcomes[3]["issue"][0]["details"]["text"]
    assert _claim_ref(outcomes[4]) == "Claim/claim-1"
    assert outcomes[4]["issue"][0]["severity"] == "information"
    assert tally.bad_lines == 5 and tally.claims == 1


def test_fatal_claim_still_names_its_claim() -> None:
    big = _claim(7)
    big["item"] = big["item"] * 451  # over the 450-line limit: fatal too-costly
    (outcome,), _ = _run([_line(big)], jobs=1)
    assert outcome["issue"][0]["code"] == "too-costly"
    assert _claim_ref(outcome) == "Claim/claim-7"
    assert _line_no(outcome) is None


def test_claim_without_id_is_named_by_line() -> None:
    c = _claim(1)
    del c["id"]
    outcomes, _ = _run([_line(_claim(0)), _line(c)], jobs=1)
    assert _line_no(outcomes[1]) == 2
    assert _context(outcomes[1])["rulePack"]  # the engine's context is kept
    assert _line_no(outcomes[0]) is None


def test_a_rule_crash_is_one_fatal_line_not_a_dead_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import fhir_checker.engine as engine

    real = engine.run

    def flaky(data: Any, **kw: Any) -> Any:
        if b"claim-2" in data:
            raise ZeroDivisionError("boom")
        return real(data, **kw)

    monkeypatch.setattr(engine, "run", flaky)
    outcomes, tally = _run([_line(_claim(i)) for i in range(4)], jobs=1)
    assert [o["issue"][0]["severity"] for o in outcomes] == [
        "information",
        "information",
        "fatal",
        "information",
    ]
    assert outcomes[2]["issue"][0]["code"] == "exception"
    assert _claim_ref(outcomes[2]) == "Claim/claim-2"
    assert "boom" not in json.dumps(outcomes[2])  # no internals (or PHI) in the output
    assert tally.internal_errors == 1 and tally.bad_lines == 1


def _lines_of(data: bytes, block: int, limit: int = 10_000) -> list[tuple[int, bytes, int]]:
    return [
        (ln.number, ln.data, ln.oversize)
        for b in read_blocks(io.BytesIO(data), block, limit)
        for ln in split_block(b, limit)
    ]


def test_a_dying_worker_costs_only_its_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block that kills its worker process gets fatal outcomes; the run neither hangs nor
    loses the blocks that were in flight with it."""
    real = bulk.LineChecker.check_block

    def crashing(self: bulk.LineChecker, block: Block) -> bulk.ChunkResult:
        if b'"claim-13"' in block.data:
            os._exit(3)  # the worker process dies (workers are forked: they see this patch)
        return real(self, block)

    monkeypatch.setattr(bulk.LineChecker, "check_block", crashing)
    lines = [_line(_claim(i)) for i in range(30)]
    outcomes, tally = _run(lines, jobs=2, per_block=4)  # claim-13 is in the block of lines 13-16
    assert len(outcomes) == 30
    for i, o in enumerate(outcomes):
        assert _claim_ref(o) == f"Claim/claim-{i}"
        expected = "fatal" if 12 <= i < 16 else "information"
        assert o["issue"][0]["severity"] == expected, (i, o)
    assert outcomes[13]["issue"][0]["code"] == "exception"
    assert tally.internal_errors == 4 and tally.claims == 26


def test_workers_that_cannot_run_stop_the_run_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Not every line marked fatal: a broken environment is an error of the run."""

    def dead(options: BulkOptions, parent: int) -> None:
        os._exit(4)

    monkeypatch.setattr(bulk, "_init_worker", dead)
    path = _write(tmp_path, [_line(_claim(i)) for i in range(5)])
    assert main(["check", "--ndjson", str(path), "--jobs", "2"]) == 2
    err = capfd.readouterr().err
    assert "worker processes die before checking anything" in err


@pytest.mark.parametrize("block", [1, 3, 7, 1024])
def test_read_blocks_counts_every_line_whatever_the_block_size(block: int) -> None:
    assert _lines_of(b"a\nb\n", block) == [(1, b"a", 0), (2, b"b", 0)]
    assert _lines_of(b"a\r\n\nbc", block) == [(1, b"a", 0), (2, b"", 0), (3, b"bc", 0)]
    assert _lines_of(b"", block) == []
    assert _lines_of(b"\n", block) == [(1, b"", 0)]
    many = b"".join(b"%d\n" % i for i in range(1, 300))
    assert _lines_of(many, block) == [(i, b"%d" % i, 0) for i in range(1, 300)]


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_huge_lines_are_counted_not_kept(block: int) -> None:
    data = b"{}\n" + b"x" * 5000 + b"\n{}\n" + b"y" * 300 + b"\n" + b"z" * 1000
    got = _lines_of(data, block, limit=100)
    assert got == [(1, b"{}", 0), (2, b"", 5000), (3, b"{}", 0), (4, b"", 300), (5, b"", 1000)]
    held = [len(b.data) for b in read_blocks(io.BytesIO(data), block, 100)]
    assert max(held) <= block + 100


def test_oversize_line_gets_a_too_costly_outcome() -> None:
    blocks = [Block(1, b"", oversize=20_000_000), Block(2, _line(_claim(2)) + b"\n")]
    text = b"".join(r.output for r in check_stream(blocks, OPTIONS, 1))
    first, second = (orjson.loads(x) for x in text.splitlines())
    assert first["issue"][0]["code"] == "too-costly" and _line_no(first) == 1
    assert "20,000,000 bytes" in first["issue"][0]["details"]["text"]
    assert _claim_ref(second) == "Claim/claim-2"


def test_input_is_read_only_a_few_blocks_ahead_of_the_output() -> None:
    """Constant memory: the reader is never more than the in-flight window ahead."""
    consumed = 0
    line = _line(_claim(1))

    def endless() -> Iterator[Block]:
        nonlocal consumed
        for i in range(10_000):
            consumed += 1
            yield Block(4 * i + 1, (line + b"\n") * 4)

    window = 2 * bulk.INFLIGHT_PER_JOB
    results = check_stream(endless(), OPTIONS, jobs=2)
    for seen, res in enumerate(results, start=1):
        assert res.lines == 4
        assert consumed - seen <= window
        if seen >= 20:
            break
    results.close()  # type: ignore[attr-defined]
    assert consumed <= 20 + window


# ---------------------------------------------------------------- the command line


def _write(tmp_path: Path, lines: list[bytes], name: str = "in.ndjson") -> Path:
    p = tmp_path / name
    p.write_bytes(b"".join(x + b"\n" for x in lines))
    return p


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([_line(_claim(1)), _line(_claim(2))], 0),
        ([_line(_claim(1)), _line(_claim(2, bad_code=True))], 1),
        ([_line(_claim(1, bad_code=True)), b"oops"], 2),
        ([_line(_claim(1)), b""], 2),  # a blank line is a bad line too
        ([], 0),
    ],
)
def test_exit_codes(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes], lines: list[bytes], code: int
) -> None:
    path = _write(tmp_path, lines)
    assert main(["check", "--ndjson", str(path), "--jobs", "1", "--today", "2026-11-22"]) == code
    out = capfdbinary.readouterr().out
    assert out.count(b"\n") == len(lines)


def test_rule_selection_reaches_the_workers(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = _write(tmp_path, [_line(_claim(1, bad_code=True)), _line(_claim(2, bad_code=True))])
    base = ["check", "--ndjson", str(path), "--jobs", "2", "--today", "2026-11-22"]
    assert main([*base, "--ignore", "COD002,DX"]) == 0
    assert main([*base, "--select", "COD"]) == 1
    out = capfdbinary.readouterr().out.splitlines()
    assert len(out) == 4
    assert [i["details"]["coding"][0]["code"] for i in orjson.loads(out[0])["issue"]] == ["CLEAN"]
    assert [i["details"]["coding"][0]["code"] for i in orjson.loads(out[2])["issue"]] == ["COD002"]


def test_summary_json_and_html(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    lines = _mixed_input(20)
    path = _write(tmp_path, lines)
    js, page = tmp_path / "s.json", tmp_path / "out" / "s.html"
    # One run writes both reports (--summary repeats).
    both = ["--summary", str(js), "--summary", str(page)]
    rc = main(["check", "--ndjson", str(path), "--jobs", "2", "--today", "2026-11-22", *both])
    assert rc == 2
    capfdbinary.readouterr()
    s = json.loads(js.read_text())
    assert (s["lines"], s["claims_checked"], s["unreadable_lines"]) == (20, 14, 6)
    assert s["unreadable_line_numbers"] == [6, 8, 9, 16, 18, 19]
    assert s["claims_with_errors"] == 2 and s["clean_claims"] == 12
    assert s["clean_claim_rate"] == pytest.approx(12 / 14, abs=1e-4)
    (rule,) = s["by_rule"]
    assert (rule["rule"], rule["category"], rule["claims"], rule["findings"]) == (
        "COD002",
        "invalid-code",
        2,
        2,
    )
    assert s["by_category"] == [{"category": "invalid-code", "findings": 2, "claims": 2}]
    assert s["top_codes"][0]["code"] == "3656" and s["top_codes"][0]["rules"][0]["rule"] == "COD002"
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text
    assert "COD002" in text and "malformed-procedure-code" in text and "85.7%" in text
    assert "<script" not in text and "http" not in text.replace("http://www.w3.org/2000/svg", "")


def test_summary_needs_a_known_suffix(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [_line(_claim(1))])
    assert main(["check", "--ndjson", str(path), "--summary", str(tmp_path / "s.txt")]) == 2
    assert ".html or .json" in capfd.readouterr().err


@pytest.mark.parametrize("where", ["a-directory", "under-a-file", "unwritable"])
def test_an_unwritable_summary_fails_before_the_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], where: str
) -> None:
    path = _write(tmp_path, [_line(_claim(1))])
    if where == "a-directory":
        target = tmp_path / "s.json"
        target.mkdir()
    elif where == "under-a-file":
        target = path / "s.json"  # the input file taken for a folder
    else:
        # /proc takes no new files, not even root's (who would ignore a folder's mode bits)
        target = Path("/proc/fhir-checker-test/s.json")
    assert main(["check", "--ndjson", str(path), "--summary", str(target)]) == 2
    captured = capfd.readouterr()
    assert captured.out == ""  # refused before a single claim ran
    assert "--summary" in captured.err and "Traceback" not in captured.err
    assert not target.is_file()


def test_a_summary_that_fails_at_the_end_is_a_message_not_a_traceback(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhir_checker import report

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_summary", disk_full)
    path = _write(tmp_path, [_line(_claim(1)), _line(_claim(2))])
    assert main(["check", "--ndjson", str(path), "--summary", str(tmp_path / "s.json")]) == 2
    captured = capfdbinary.readouterr()
    assert len(captured.out.splitlines()) == 2  # the outcomes were written all the same
    assert b"cannot write the summary" in captured.err and b"No space left" in captured.err


def test_the_summary_gets_the_mode_open_would_give(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [_line(_claim(1))])
    old = os.umask(0o022)
    try:
        assert main(["check", "--ndjson", str(path), "--summary", str(tmp_path / "s.html")]) == 0
    finally:
        os.umask(old)
    capfd.readouterr()
    assert (tmp_path / "s.html").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_unknown_profile_fails_before_reading(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [_line(_claim(1))])
    assert main(["check", "--ndjson", str(path), "--profile", "no-such-pack"]) == 2
    captured = capfd.readouterr()
    assert captured.out == "" and "no-such-pack" in captured.err


def _cli(*args: str) -> list[str]:
    code = "import sys; from fhir_checker.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "check", *args]


def test_stdin_pipe_has_no_progress_noise_but_a_terminal_gets_a_bar(tmp_path: Path) -> None:
    lines = [_line(_claim(i)) for i in range(5)]
    payload = b"".join(x + b"\n" for x in lines)
    piped = subprocess.run(
        _cli("--ndjson", "-", "--today", "2026-11-22"), input=payload, capture_output=True, timeout=60
    )
    assert piped.returncode == 0
    assert piped.stderr == b""
    assert len(piped.stdout.splitlines()) == 5

    # the same run with stderr on a terminal shows the progress bar there, stdout unchanged
    path = _write(tmp_path, lines)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        _cli("--ndjson", str(path), "--today", "2026-11-22"),
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    seen = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0
    assert out == piped.stdout
    assert b"checking claims" in seen and b"5 lines" in seen


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")), max_size=30
    ),
    final_newline=st.booleans(),
    block=st.integers(1, 50),
    limit=st.integers(1, 60),
)
def test_read_blocks_matches_a_plain_split(
    lines: list[bytes], final_newline: bool, block: int, limit: int
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    expected = [
        (i + 1, b"", len(x)) if len(x) > limit else (i + 1, x, 0)
        for i, x in enumerate(data.split(b"\n")[: -1 if data.endswith(b"\n") else None] if data else [])
    ]
    assert _lines_of(data, block, limit) == expected
    assert all(len(b.data) <= block + limit for b in read_blocks(io.BytesIO(data), block, limit))
