"""Input: JSON text, bytes or a parsed dict -> the Claim and the resources behind it.

Accepts a bare ``Claim``, a ``Bundle`` (collection, transaction, searchset, batch ...)
holding the Claim, or a ``Parameters`` whose ``resource`` part holds either (the shape
FHIR's ``$validate`` takes). Anything else is a :class:`BadInput` with a clear message;
it never raises past :func:`load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

#: Defaults for hostile input; every door may tighten them.
MAX_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64
MAX_LINES = 450  # the I/OCE's limit on lines per claim


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_lines: int = MAX_LINES
    #: Seconds one check may take, from the start of :func:`fhir_checker.engine.run`. Past it
    #: the engine stops between rules and answers "incomplete"; None = no budget.
    time_budget_seconds: float | None = None


#: Shared by every call without limits of its own (frozen: one instance serves all; a
#: frozen dataclass costs ~1 us to build, per claim).
_DEFAULT_LIMITS = Limits()


class BadInput(Exception):
    """Input that cannot be checked at all: becomes one ``fatal`` issue."""

    def __init__(self, message: str, *, code: str = "invalid", expression: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code  # FHIR IssueType: invalid, structure, too-costly, not-supported
        self.expression = expression


@dataclass
class Entry:
    """A resource of the input, with the FHIRPath that reaches it."""

    resource: dict[str, Any]
    path: str  # e.g. "Bundle.entry[3].resource", "Claim.contained[0]", "Claim"
    full_url: str | None = None

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(self, resource: dict[str, Any], path: str, full_url: str | None = None) -> None:
        self.resource = resource
        self.path = path
        self.full_url = full_url


@dataclass
class InputDocument:
    root: dict[str, Any]  # what the expressions of non-Claim resources are rooted at
    claim: dict[str, Any]
    claim_entry: Entry
    entries: list[Entry] = field(default_factory=list)  # every resource, the Claim included
    bundle: dict[str, Any] | None = None

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        root: dict[str, Any],
        claim: dict[str, Any],
        claim_entry: Entry,
        entries: list[Entry] | None = None,
        bundle: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.claim = claim
        self.claim_entry = claim_entry
        self.entries = [] if entries is None else entries
        self.bundle = bundle

    @property
    def claim_id(self) -> str | None:
        cid = self.claim.get("id")
        return cid if isinstance(cid, str) else None


def parse_json(data: str | bytes | bytearray | memoryview | dict[str, Any], limits: Limits) -> Any:
    if isinstance(data, dict):
        return data
    if isinstance(data, str):
        raw: bytes = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, bytes) or isinstance(data, bytearray) or isinstance(data, memoryview):
        raw = bytes(data)
    else:
        raise BadInput(f"input must be JSON text, bytes or a dict, not {type(data).__name__}")
    if len(raw) > limits.max_bytes:
        raise BadInput(
            f"input is {len(raw):,} bytes, over the limit of {limits.max_bytes:,} bytes",
            code="too-costly",
        )
    if not raw.strip():
        raise BadInput("input is empty: expected a FHIR Claim, Bundle or Parameters as JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = str(exc)
        if "depth" in msg or "recursion" in msg:
            raise BadInput(f"JSON nested deeper than {limits.max_depth} levels", code="too-costly") from None
        raise BadInput(f"input is not valid JSON: {msg}") from None


def check_depth(value: Any, max_depth: int) -> None:
    """Reject nesting deeper than ``max_depth``.

    Recursive (a call per container is several times faster than an explicit stack),
    and safe: the recursion stops at ``max_depth`` levels.
    """
    if not _depth_ok(value, max_depth):
        raise BadInput(f"JSON nested deeper than {max_depth} levels", code="too-costly")


# mypyc: ``isinstance(v, dict) or isinstance(v, list)`` compiles to two type tests, where
# ``isinstance(v, dict | list)`` builds a union object on every call (8x slower here). One
# loop per container type, not one over either: a loop over a value of no one type is a
# generic iteration (1.2-1.8x slower, measured).
def _depth_ok(node: object, left: int) -> bool:
    """True when no container under ``node`` (itself included) is ``left`` or more levels deep."""
    if isinstance(node, dict):
        if left <= 0:
            return False
        for v in node.values():
            if (isinstance(v, dict) or isinstance(v, list)) and not _depth_ok(v, left - 1):
                return False
    elif isinstance(node, list):
        if left <= 0:
            return False
        for v in node:
            if (isinstance(v, dict) or isinstance(v, list)) and not _depth_ok(v, left - 1):
                return False
    return True


def load(
    data: str | bytes | bytearray | memoryview | dict[str, Any],
    limits: Limits | None = None,
    *,
    parsed_json: bool = False,
) -> InputDocument:
    """The input document of a Claim, Bundle or Parameters; :class:`BadInput` if it is none.

    ``parsed_json``: ``data`` is a dict that orjson parsed (the HTTP doors parse the body
    themselves). orjson refuses lone surrogates, so the re-encoding check a dict from any
    other Python caller gets (:func:`_check_text`, ~4 % of a check) is skipped.
    """
    limits = limits or _DEFAULT_LIMITS
    parsed = parse_json(data, limits)
    if not isinstance(parsed, dict):
        raise BadInput(f"input is a JSON {_json_kind(parsed)}, not a FHIR resource object")
    check_depth(parsed, limits.max_depth)
    if isinstance(data, dict) and not parsed_json:
        _check_text(parsed)
    rtype = parsed.get("resourceType")
    if rtype == "Parameters":
        parsed = _unwrap_parameters(parsed)
        rtype = parsed.get("resourceType")
    if rtype == "Claim":
        doc = _from_claim(parsed)
    elif rtype == "Bundle":
        doc = _from_bundle(parsed)
    elif rtype is None:
        raise BadInput("input has no resourceType: expected a Claim, Bundle or Parameters")
    else:
        raise BadInput(
            f"resourceType is {str(rtype)[:80]!r}: expected a Claim, or a Bundle or "
            "Parameters that holds one",
            code="not-supported",
        )
    items = doc.claim.get("item")
    if isinstance(items, list) and len(items) > limits.max_lines:
        raise BadInput(
            f"the claim has {len(items)} lines, over the limit of {limits.max_lines}",
            code="too-costly",
            expression="Claim.item",
        )
    return doc


def _check_text(doc: dict[str, Any]) -> None:
    """A dict from a Python caller may hold strings no JSON can carry (lone surrogates); parsed
    JSON never does. Refused here: echoed into the outcome, they made it unsendable."""
    try:
        orjson.dumps(doc)
    except orjson.JSONEncodeError as exc:
        if "surrogates" in str(exc):
            raise BadInput(
                "input holds a string that is not valid Unicode (a lone surrogate), which JSON cannot carry"
            ) from None


def _json_kind(v: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(v), "null"
    )


def _unwrap_parameters(params: dict[str, Any]) -> dict[str, Any]:
    parts = params.get("parameter")
    if not isinstance(parts, list):
        raise BadInput("Parameters has no parameter holding a resource")
    resources = [p.get("resource") for p in parts if isinstance(p, dict) and p.get("resource")]
    named = [
        p.get("resource")
        for p in parts
        if isinstance(p, dict) and p.get("name") == "resource" and p.get("resource")
    ]
    chosen = named or resources
    if not chosen or not isinstance(chosen[0], dict):
        raise BadInput("Parameters has no 'resource' part holding a Claim or Bundle")
    return chosen[0]


def _contained(resource: dict[str, Any], path: str) -> list[Entry]:
    out: list[Entry] = []
    contained = resource.get("contained")
    if isinstance(contained, list):
        for i, c in enumerate(contained):
            if isinstance(c, dict):
                out.append(Entry(c, f"{path}.contained[{i}]"))
    return out


def _from_claim(claim: dict[str, Any]) -> InputDocument:
    entry = Entry(claim, "Claim")
    return InputDocument(
        root=claim, claim=claim, claim_entry=entry, entries=[entry, *_contained(claim, "Claim")]
    )


def _from_bundle(bundle: dict[str, Any]) -> InputDocument:
    raw_entries = bundle.get("entry")
    if not isinstance(raw_entries, list):
        raise BadInput("Bundle has no entry array: expected a Bundle holding a Claim")
    entries: list[Entry] = []
    claims: list[Entry] = []
    for i, e in enumerate(raw_entries):
        if not isinstance(e, dict):
            continue
        res = e.get("resource")
        if not isinstance(res, dict):
            continue
        full_url = e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None
        entry = Entry(res, f"Bundle.entry[{i}].resource", full_url)
        entries.append(entry)
        entries.extend(_contained(res, entry.path))
        if res.get("resourceType") == "Claim":
            claims.append(entry)
    if not claims:
        raise BadInput("Bundle holds no Claim resource", code="required", expression="Bundle")
    if len(claims) > 1:
        raise BadInput(
            f"Bundle holds {len(claims)} Claims; send one claim per request (or NDJSON for many)",
            code="not-supported",
        )
    claim_entry = claims[0]
    # Rules address the Claim as "Claim.…"; other resources keep their Bundle path.
    claim_entry = Entry(claim_entry.resource, "Claim", claim_entry.full_url)
    entries = [
        (claim_entry if en.resource is claim_entry.resource else en)
        for en in entries
        if not en.path.startswith(claims[0].path + ".contained")
    ]
    entries.extend(_contained(claim_entry.resource, "Claim"))
    return InputDocument(
        root=bundle,
        claim=claim_entry.resource,
        claim_entry=claim_entry,
        entries=entries,
        bundle=bundle,
    )
