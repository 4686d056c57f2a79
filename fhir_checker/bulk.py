"""Bulk checking: FHIR Bulk Data NDJSON in (one Claim, Bundle or Parameters per line),
NDJSON out (one OperationOutcome per input line, in input order).

Contract (also in the README, "Bulk checking (NDJSON)"):

- Output has exactly as many lines as the input. Every input line, blank ones included,
  gets one OperationOutcome on the same output line number.
- A blank line, a line that is not JSON, or JSON that holds no claim gets a ``fatal``
  outcome (the engine's own answer for unreadable input); the run goes on.
- Every outcome names its claim (``precheck-context`` extension, ``claim`` reference); an
  outcome whose claim id cannot be read names the 1-based input ``line`` instead.
- Exit code: 2 if any line was unreadable (fatal), else 1 if any claim has an error
  finding, else 0.

Work is spread over processes in blocks of whole lines (1 MiB, cut by the parent at a newline
without splitting lines); at most a few blocks per worker are in flight, so memory stays
flat whatever the input size, and results are written back in input order.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from .loader import MAX_BYTES
from .outcome import CONTEXT_EXTENSION, fatal
from .tally import Tally

EXIT_CLEAN, EXIT_ERRORS, EXIT_BAD_LINES = 0, 1, 2

log = logging.getLogger("fhir_checker.bulk")

#: Bytes of input per block handed to a worker (whole lines; a block holds ~250 claims).
BLOCK_BYTES = 1024 * 1024
#: Blocks in flight per worker: enough to keep every core busy, few enough to bound memory.
INFLIGHT_PER_JOB = 3

_ITEM_RE = re.compile(r"^Claim\.item\[(\d+)\]")
_DX_RE = re.compile(r"^Claim\.diagnosis\[(\d+)\]")


@dataclass(frozen=True)
class BulkOptions:
    """What every line is checked with (picklable: it goes to the workers)."""

    profile: str | None = None
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None
    today: date | None = None
    validation: str = "auto"
    max_line_bytes: int = MAX_BYTES


class Block(NamedTuple):
    """Whole input lines, as read: the unit of work sent to a worker.

    The parent never splits lines (a block is one C-level read, cut at its last newline),
    so reading stays cheap however many workers it feeds.
    """

    first_line: int  # 1-based number of the block's first line
    data: bytes  # complete lines, each ending in b"\n" (the input's last line may not)
    oversize: int = 0  # > 0: the block stands for one line of this many bytes, not kept


@dataclass
class ChunkResult:
    """A block's output lines (NDJSON bytes) and its share of the run's tally."""

    first_line: int
    lines: int
    output: bytes
    input_bytes: int = 0
    tally: Tally = field(default_factory=Tally)


@dataclass(frozen=True)
class RawLine:
    number: int  # 1-based line number in the input
    data: bytes  # without the line ending
    oversize: int = 0  # bytes the line really had when it was over the limit (then data is empty)


# ---------------------------------------------------------------- reading


def read_blocks(
    stream: IO[bytes], block_bytes: int | None = None, max_line_bytes: int = MAX_BYTES
) -> Iterator[Block]:
    """Blocks of whole lines from a binary stream, in constant memory.

    A line longer than ``max_line_bytes`` is skipped over without being kept and becomes
    an ``oversize`` block of its own (its outcome says so): one huge line cannot exhaust
    memory. Memory held: at most ``block_bytes + max_line_bytes``.
    """
    size = block_bytes or BLOCK_BYTES
    carry = b""  # the start of a line whose end has not been read yet
    line_no = 1
    while True:
        buf = stream.read(size)
        if not buf:
            if carry:
                yield Block(line_no, carry)
            return
        data = carry + buf if carry else buf
        cut = data.rfind(b"\n")
        if cut >= 0:
            block, carry = data[: cut + 1], data[cut + 1 :]
            yield Block(line_no, block)
            line_no += block.count(b"\n")
        else:
            carry = data
        while len(carry) > max_line_bytes:
            # a line over the limit and still going: count it through, keep nothing
            seen, carry = len(carry), b""
            while True:
                buf = stream.read(size)
                if not buf:
                    yield Block(line_no, b"", seen)
                    return
                nl = buf.find(b"\n")
                if nl >= 0:
                    break
                seen += len(buf)
            yield Block(line_no, b"", seen + nl)
            line_no += 1
            rest = buf[nl + 1 :]
            cut = rest.rfind(b"\n")
            if cut >= 0:
                yield Block(line_no, rest[: cut + 1])
                line_no += rest.count(b"\n", 0, cut + 1)
            carry = rest[cut + 1 :]


def split_block(block: Block, max_line_bytes: int = MAX_BYTES) -> list[RawLine]:
    """A block's lines, numbered; CRLF endings allowed."""
    if block.oversize:
        return [RawLine(block.first_line, b"", block.oversize)]
    parts = block.data.split(b"\n")
    if block.data.endswith(b"\n"):
        parts.pop()
    out = []
    for i, raw in enumerate(parts):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > max_line_bytes:
            out.append(RawLine(block.first_line + i, b"", len(raw)))
        else:
            out.append(RawLine(block.first_line + i, raw))
    return out


def blocks_of(lines: Iterable[bytes], per_block: int = 200) -> Iterator[Block]:
    """Blocks from lines already in memory (the Python API, tests)."""
    batch: list[bytes] = []
    first = 1
    for line in lines:
        batch.append(line)
        if len(batch) >= per_block:
            yield Block(first, b"\n".join(batch) + b"\n")
            first += len(batch)
            batch = []
    if batch:
        yield Block(first, b"\n".join(batch) + b"\n")


# ---------------------------------------------------------------- checking one line


def _claim_id_of(data: bytes) -> str | None:
    """Best effort, for lines the engine rejected: the id of the Claim in the line."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict) and doc.get("resourceType") == "Parameters":
        parts = doc.get("parameter")
        doc = (
            next(
                (p["resource"] for p in parts if isinstance(p, dict) and isinstance(p.get("resource"), dict)),
                None,
            )
            if isinstance(parts, list)
            else None
        )
    if not isinstance(doc, dict):
        return None
    if doc.get("resourceType") == "Bundle" and isinstance(doc.get("entry"), list):
        claims = [
            e["resource"]
            for e in doc["entry"]
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == "Claim"
        ]
        doc = claims[0] if len(claims) == 1 else None
    if isinstance(doc, dict) and doc.get("resourceType") == "Claim" and isinstance(doc.get("id"), str):
        cid: str = doc["id"]
        return cid
    return None


def _tag(outcome: dict[str, Any], claim_id: str | None, line: int) -> None:
    """Make sure the outcome names its claim, or failing that its input line."""
    exts: list[dict[str, Any]] = outcome.setdefault("extension", [])
    ctx = next((e for e in exts if e.get("url") == CONTEXT_EXTENSION), None)
    if ctx is None:
        ctx = {"url": CONTEXT_EXTENSION, "extension": []}
        exts.insert(0, ctx)
        # keep resourceType first in the JSON for people reading it
        for key in ("issue",):
            if key in outcome:
                outcome[key] = outcome.pop(key)
    subs: list[dict[str, Any]] = ctx["extension"]
    if any(s.get("url") == "claim" for s in subs):
        return
    if claim_id:
        subs.insert(0, {"url": "claim", "valueReference": {"reference": f"Claim/{claim_id}"}})
    else:
        subs.insert(0, {"url": "line", "valueInteger": line})


def validate_options(options: BulkOptions) -> tuple[Any, list[str] | None, list[str] | None]:
    """The pack and selectors of ``options``; raises PackError / KeyError when they are bad."""
    from .packs import load_pack
    from .registry import select_rules

    pack = load_pack(options.profile) if options.profile else None
    select = list(options.select) if options.select else None
    ignore = list(options.ignore) if options.ignore else None
    select_rules(select, ignore)
    return pack, select, ignore


class LineChecker:
    """Checks lines with fixed options; one per process (tables and pack load once)."""

    def __init__(self, options: BulkOptions) -> None:
        from .engine import run
        from .tables import get_tables

        self.options = options
        self._run = run
        self.pack, self.select, self.ignore = validate_options(options)
        get_tables().warm()

    def check(self, line: RawLine, tally: Tally) -> bytes:
        """One input line -> one NDJSON output line (with its newline)."""
        data = line.data.strip()
        if line.oversize:
            outcome = fatal(
                f"line {line.number} is {line.oversize:,} bytes, over the limit of "
                f"{self.options.max_line_bytes:,} bytes",
                code="too-costly",
            )
            return self._bad(outcome, None, line, tally)
        if not data:
            outcome = fatal(f"line {line.number} is blank: expected a Claim, Bundle or Parameters as JSON")
            return self._bad(outcome, None, line, tally)
        try:
            res = self._run(
                data,
                profile=self.pack,
                select=self.select,
                ignore=self.ignore,
                today=self.options.today,
                validation=self.options.validation,
            )
        except Exception as exc:  # a rule bug must not sink the other lines of the run
            claim_id = _claim_id_of(data)
            # claim id, line and exception type only: messages may quote claim data (PHI)
            log.error("internal error on line %d (claim %s): %s", line.number, claim_id, type(exc).__name__)
            outcome = fatal(
                f"internal error while checking line {line.number} ({type(exc).__name__}); "
                "the other lines were checked",
                code="exception",
            )
            return self._bad(outcome, claim_id, line, tally, internal=True)
        if res.fatal:
            return self._bad(res.outcome, _claim_id_of(data), line, tally)
        claim_id = res.claim_id
        if not claim_id:
            _tag(res.outcome, None, line.number)
        tally.add_claim(res.findings, _codes_by_index(res) if res.findings else _no_code, line.number)
        return orjson.dumps(res.outcome) + b"\n"

    @staticmethod
    def _bad(
        outcome: dict[str, Any],
        claim_id: str | None,
        line: RawLine,
        tally: Tally,
        internal: bool = False,
    ) -> bytes:
        _tag(outcome, claim_id, line.number)
        tally.add_bad(line.number, internal=internal)
        return orjson.dumps(outcome) + b"\n"

    def check_block(self, block: Block) -> ChunkResult:
        tally = Tally()
        lines = split_block(block, self.options.max_line_bytes)
        out = b"".join([self.check(ln, tally) for ln in lines])
        return ChunkResult(block.first_line, len(lines), out, len(block.data) or block.oversize, tally)


def _no_code(expression: str, line: int | None) -> str | None:
    return None


def _codes_by_index(res: Any) -> Callable[[str, int | None], str | None]:
    """finding expression/line -> the code it involves (billed code or diagnosis)."""
    ctx = res.context
    items = {ln.index: ln.code for ln in ctx.lines} if ctx else {}
    dxs = {d.index: d.code for d in ctx.diagnoses} if ctx else {}

    def code_of(expression: str, line: int | None) -> str | None:
        if line is not None:
            return items.get(line)
        m = _ITEM_RE.match(expression)
        if m:
            return items.get(int(m.group(1)))
        m = _DX_RE.match(expression)
        if m:
            return dxs.get(int(m.group(1)))
        return None

    return code_of


# ---------------------------------------------------------------- worker processes

_worker: LineChecker | None = None


def _init_worker(options: BulkOptions, parent: int) -> None:
    global _worker
    _die_with_parent(parent)
    _worker = LineChecker(options)


def _die_with_parent(parent: int) -> None:
    """Linux: end this worker when the parent process dies (even by SIGKILL), instead of
    waiting on its work queue forever."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _work(block: Block) -> ChunkResult:
    assert _worker is not None, "worker not initialised"
    return _worker.check_block(block)


def _pool_context() -> Any:
    # fork: workers start in milliseconds with the code already imported
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_stream(blocks: Iterable[Block], options: BulkOptions, jobs: int = 0) -> Iterator[ChunkResult]:
    """Check blocks of NDJSON lines with ``jobs`` processes; results in input order.

    At most ``jobs * INFLIGHT_PER_JOB`` blocks are read ahead of the output, so memory is
    bounded by block size, not by input size. A worker process that dies (killed, out of
    memory) does not hang or sink the run: the blocks in flight are checked again one at a
    time, and a block that kills its worker alone gets a fatal outcome for each line.
    """
    jobs = jobs or default_jobs()
    if jobs == 1:
        checker = LineChecker(options)
        for block in blocks:
            yield checker.check_block(block)
        return
    validate_options(options)  # a bad pack or selector fails here, not in every worker
    limit = jobs * INFLIGHT_PER_JOB
    pool = _new_pool(jobs, options)
    pending: deque[tuple[Block, Future[ChunkResult]]] = deque()
    source = iter(blocks)
    try:
        while True:
            while len(pending) < limit:
                nxt = next(source, None)
                if nxt is None:
                    break
                pending.append((nxt, _submit(pool, nxt)))
            if not pending:
                return
            try:
                result = pending[0][1].result()
            except BrokenProcessPool:
                # a worker died: every block in flight is suspect; check them one by one
                pool.shutdown(wait=False, cancel_futures=True)
                suspects = [b for b, _ in pending]
                pending.clear()
                log.warning("a worker process died; re-checking %d blocks one at a time", len(suspects))
                yield from _isolate(suspects, options)
                pool = _new_pool(jobs, options)
                continue
            pending.popleft()
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(pool: ProcessPoolExecutor, block: Block) -> Future[ChunkResult]:
    """Submit a block; a pool already broken gives a failed future (handled like the rest)."""
    try:
        return pool.submit(_work, block)
    except BrokenProcessPool as exc:
        failed: Future[ChunkResult] = Future()
        failed.set_exception(exc)
        return failed


class WorkersKeepDying(RuntimeError):
    """Worker processes cannot run at all (environment, not input): the run stops, loudly,
    rather than marking every line fatal."""


def _ping() -> bool:
    return _worker is not None


def _healthy_pool(options: BulkOptions) -> ProcessPoolExecutor:
    """A fresh one-worker pool that has shown it can start and answer."""
    pool = _new_pool(1, options)
    try:
        pool.submit(_ping).result()
    except BrokenProcessPool:
        pool.shutdown(wait=False, cancel_futures=True)
        raise WorkersKeepDying("worker processes die before checking anything") from None
    return pool


def _isolate(blocks: list[Block], options: BulkOptions) -> Iterator[ChunkResult]:
    """Check blocks one at a time in a one-worker pool: a block that kills a healthy worker
    alone is the culprit, and its lines get fatal outcomes; the others are checked as usual."""
    pool = _healthy_pool(options)
    try:
        for block in blocks:
            try:
                result = pool.submit(_work, block).result()
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                yield _lost_block(block, options)
                pool = _healthy_pool(options)
                continue
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _new_pool(jobs: int, options: BulkOptions) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        jobs, mp_context=_pool_context(), initializer=_init_worker, initargs=(options, os.getpid())
    )


def _lost_block(block: Block, options: BulkOptions) -> ChunkResult:
    """Fatal outcomes for a block whose worker process died on it."""
    log.error("a worker process died on the input lines from %d; they are reported fatal", block.first_line)
    tally = Tally()
    out = []
    for ln in split_block(block, options.max_line_bytes):
        outcome = fatal(
            f"line {ln.number} could not be checked: the checking process died on its block of input",
            code="exception",
        )
        _tag(outcome, _claim_id_of(ln.data) if ln.data else None, ln.number)
        tally.add_bad(ln.number, internal=True)
        out.append(orjson.dumps(outcome) + b"\n")
    return ChunkResult(block.first_line, tally.lines, b"".join(out), len(block.data) or block.oversize, tally)


# ---------------------------------------------------------------- command line


class _Progress:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total_bytes: int | None, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]checking claims"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%" if total_bytes else ""),
            TextColumn("{task.fields[lines]:,} lines"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._task = self._progress.add_task("check", total=total_bytes, lines=0, rate="")
        self._progress.start()
        self._started = time.perf_counter()

    def update(self, lines: int, bytes_read: int) -> None:
        if not self.enabled:
            return
        rate = lines / max(time.perf_counter() - self._started, 1e-6)
        self._progress.update(self._task, completed=bytes_read, lines=lines, rate=f"{rate:,.0f}/s")

    def close(self) -> None:
        if self.enabled:
            self._progress.stop()
            self.enabled = False


def _selectors(values: list[str] | None) -> tuple[str, ...] | None:
    from .cli.check import _split  # the single-claim command's reading of --select/--ignore

    chosen = _split(values)
    return tuple(chosen) if chosen else None


def _fail(message: str) -> int:
    print(f"fhir-checker: {message}", file=sys.stderr)
    return EXIT_BAD_LINES


def run_ndjson_cli(args: argparse.Namespace) -> int:
    """``fhir-checker check --ndjson FILE|-``: see the module doc for the contract."""
    from .packs import PackError
    from .report import summary_path_problem, write_summary

    if getattr(args, "paths", None):
        return _fail("give either PATHs or --ndjson FILE, not both")
    if getattr(args, "format", "json") != "json":
        return _fail("--ndjson always writes NDJSON; --format table is for single claims")
    summary = getattr(args, "summary", None) or []
    summary_paths = [Path(s) for s in ([summary] if isinstance(summary, str) else summary)]
    for summary_path in summary_paths:
        if summary_path.suffix.lower() not in (".html", ".htm", ".json"):
            return _fail(f"--summary {summary_path}: name a .html or .json file")
        problem = summary_path_problem(summary_path)
        if problem:  # before the run: on a day's claims it would fail minutes later
            return _fail(problem)
    jobs = int(getattr(args, "jobs", 0) or 0)
    if jobs < 0:
        return _fail("--jobs must be 0 (all cores) or more")
    options = BulkOptions(
        profile=args.profile,
        select=_selectors(args.select),
        ignore=_selectors(args.ignore),
        today=args.today,
        validation=args.validation,
    )
    try:
        validate_options(options)
    except PackError as exc:
        return _fail(str(exc))
    except KeyError as exc:
        return _fail(str(exc.args[0]))
    source = args.ndjson
    total_bytes: int | None = None
    if source == "-":
        stream: IO[bytes] = sys.stdin.buffer
    else:
        try:
            stream = open(source, "rb")  # noqa: SIM115 - closed below
            total_bytes = os.fstat(stream.fileno()).st_size
        except OSError as exc:
            return _fail(f"cannot read {source}: {exc.strerror}")
    progress = _Progress(total_bytes, enabled=sys.stderr.isatty())
    out = sys.stdout.buffer
    tally = Tally()
    done_bytes = 0
    started = time.perf_counter()
    try:
        for res in check_stream(read_blocks(stream, max_line_bytes=options.max_line_bytes), options, jobs):
            out.write(res.output)
            tally.merge(res.tally)
            done_bytes += res.input_bytes
            progress.update(tally.lines, done_bytes)
        out.flush()
    except WorkersKeepDying as exc:
        out.flush()
        progress.close()
        return _fail(f"{exc}; the output stops after line {tally.lines}")
    finally:
        progress.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    elapsed = time.perf_counter() - started
    for summary_path in summary_paths:
        try:
            write_summary(
                summary_path,
                tally,
                source="<stdin>" if source == "-" else str(source),
                elapsed_s=elapsed,
                jobs=jobs or default_jobs(),
                options={
                    "profile": options.profile or "by claim type",
                    "today": (options.today or date.today()).isoformat(),
                    "validation": options.validation,
                },
            )
        except OSError as exc:  # the outcomes are out; say the report is not
            return _fail(f"cannot write the summary {summary_path}: {exc.strerror or exc}")
    if tally.bad_lines:
        return EXIT_BAD_LINES
    return EXIT_ERRORS if tally.error_claims else EXIT_CLEAN
