"""Structured logs for every entry point: one JSON object per line, or readable text.

Every door (``check``, ``check --ndjson``, ``serve``, the subscription worker, ``sweep``)
calls :func:`configure_logging` once. Log calls pass their facts as ``extra`` fields
(``claim_id``, ``rule_ids``, ``elapsed_ms``, ``route``, ``status``, ``job``, ...); the
formatters write them as JSON keys or ``key=value`` pairs.

No PHI: log calls carry Claim ids, rule ids, counts, timings, routes and statuses only,
never a resource, a name, a birth date, an identifier, an address or a token. The one
place a library could slip resource text into a log is an exception's message (e.g.
``ValueError: invalid literal for int(): 'Smith'``), so tracebacks are written as the
exception type and the frames (file, line, function) without the message.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

import orjson

FORMAT_ENV = "FHIR_CHECKER_LOG_FORMAT"
LEVEL_ENV = "FHIR_CHECKER_LOG_LEVEL"
FORMATS = ("json", "text")
LEVELS = ("debug", "info", "warning", "error")

#: LogRecord attributes of the logging machinery itself; everything else is an ``extra`` field.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}

#: Third-party loggers that repeat, at INFO, what our own logs already say (one line per
#: HTTP call to the FHIR server): quiet unless debugging.
_CHATTY = ("httpx", "httpcore", "hpack", "multipart", "asyncio")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, in the order they were given."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}


def exception_summary(exc_info: ExcInfo) -> tuple[str, list[str]]:
    """(exception type, frames as ``file:line in function``), innermost last; no message."""
    exc_type, _, tb = exc_info
    name = exc_type.__qualname__ if exc_type is not None else "Exception"
    frames = [f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]
    return name, frames[-20:]


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra fields, "exc_type"?, "stack"?}``, one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc_type"], out["stack"] = exception_summary(record.exc_info)
        if record.stack_info:
            out["stack_info"] = record.stack_info
        return orjson.dumps(out, default=str).decode()


_BARE = re.compile(r"^[A-Za-z0-9_.:/|@+\-,{}$]{1,200}$")


def _text_value(value: Any) -> str:
    """Bare when plainly safe, else a JSON string: a value never breaks the line in two."""
    if isinstance(value, list | tuple | set | frozenset):
        value = ",".join(str(v) for v in value) or "-"
    text = str(value)
    return text if _BARE.match(text) else orjson.dumps(text).decode()


class TextFormatter(logging.Formatter):
    """``2026-03-10T08:00:00.123Z INFO logger: msg key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            name, frames = exception_summary(record.exc_info)
            line += f" exc_type={name}" + "".join(f"\n    at {f}" for f in frames)
        return line


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is now (a test's capture, a redirected stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


_MARK = "_fhir_checker_handler"


def resolve_format(fmt: str | None = None) -> str:
    """``fmt``, else ``$FHIR_CHECKER_LOG_FORMAT``, else ``text``."""
    chosen = (fmt or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"log format {chosen!r}: use one of {', '.join(FORMATS)}")
    return chosen


def resolve_level(level: str | None, default: str = "info") -> str:
    """``level``, else ``$FHIR_CHECKER_LOG_LEVEL``, else ``default``."""
    chosen = (level or os.environ.get(LEVEL_ENV) or default).strip().lower()
    if chosen not in LEVELS:
        raise ValueError(f"log level {chosen!r}: use one of {', '.join(LEVELS)}")
    return chosen


def configure_logging(
    level: str | None = None, format: str | None = None, *, default_level: str = "info"
) -> None:
    """One handler on the root logger, to stderr (stdout carries the OperationOutcomes).

    Calling it again replaces the handler it installed before (and no other handler).
    """
    fmt = resolve_format(format)
    lvl = getattr(logging, resolve_level(level, default_level).upper())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(lvl if lvl <= logging.DEBUG else max(lvl, logging.WARNING))


def add_logging_options(parser: Any, *, default_level: str = "info") -> None:
    """``--log-level`` and ``--log-format`` for a subcommand (env vars as defaults)."""
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        default=None,
        help=f"log level (default: ${LEVEL_ENV}, else {default_level})",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None,
        help=f"log lines on stderr as JSON objects or text (default: ${FORMAT_ENV}, else text)",
    )
    parser.set_defaults(log_default_level=default_level)


def configure_from_args(args: Any) -> str:
    """:func:`configure_logging` from the options :func:`add_logging_options` added; the
    level in force. A bad ``$FHIR_CHECKER_LOG_*`` value ends the command with a message."""
    try:
        level = resolve_level(getattr(args, "log_level", None), getattr(args, "log_default_level", "info"))
        configure_logging(level, getattr(args, "log_format", None))
    except ValueError as exc:
        # Exit 2 like any other usage error: for ``check``, 1 would read as "error findings".
        print(f"fhir-checker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return level
