"""Structural validation: a fast shape check, and the fhir.resources (R4B) models when
the fast check finds something off, or always in ``full`` mode.

Model validation costs ~2 ms per claim; the shape check a few microseconds. The fast
path checks what the R4 models would reject in the elements claims really get wrong
(required elements, cardinality, primitive types of the elements the rules read). When
it is unsure, the models decide, and their errors become findings with FHIRPath.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .loader import Entry, InputDocument
from .values import memoised_match

_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_DATETIME = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")

# Date shapes, remembered by the text (values.memoised_match): the same dates come back claim
# after claim. Only texts of a date's length (40) are kept; each memo is cleared when full.
_DATES_SEEN: dict[str, bool] = {}
_DATETIMES_SEEN: dict[str, bool] = {}
_SEEN_LIMIT = 50_000


def _is_date(v: Any) -> bool:
    return isinstance(v, str) and memoised_match(_DATES_SEEN, _DATE, v, 40, _SEEN_LIMIT)


def _is_datetime(v: Any) -> bool:
    return isinstance(v, str) and memoised_match(_DATETIMES_SEEN, _DATETIME, v, 40, _SEEN_LIMIT)


_CLAIM_STATUS = {"active", "cancelled", "draft", "entered-in-error"}
_CLAIM_USE = {"claim", "preauthorization", "predetermination"}
_CHECKED_TYPES = {
    "Claim",
    "Patient",
    "Condition",
    "Procedure",
    "Coverage",
    "Device",
    "Encounter",
    "MedicationAdministration",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Medication",
    "Observation",
}


@dataclass(frozen=True, slots=True)
class StructureError:
    expression: str
    message: str
    kind: str  # "missing", "type", "value", "unknown-element"


_PROCEDURE_STATUS = frozenset(
    {
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    }
)


def _member(v: Any, allowed: frozenset[str] | set[str]) -> bool:
    """``v in allowed`` for any JSON value (a list or object is unhashable, and never allowed)."""
    return isinstance(v, str) and v in allowed


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _reference_ok(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    if "reference" in v and not isinstance(v["reference"], str):
        return False
    return "display" not in v or isinstance(v["display"], str)


def _concept_ok(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    cs = v.get("coding", [])
    if not isinstance(cs, list):
        return False
    for c in cs:
        if not isinstance(c, dict):
            return False
        if "system" in c and not isinstance(c["system"], str):
            return False
        if "code" in c and not isinstance(c["code"], str):
            return False
    return True


def _positive_ints_ok(v: Any) -> bool:
    if not isinstance(v, list):
        return False
    for x in v:  # noqa: SIM110 - a loop: all() over a generator costs more on these short lists
        if not isinstance(x, int) or isinstance(x, bool) or x <= 0:
            return False
    return True


_ITEM_SEQUENCES = ("diagnosisSequence", "procedureSequence", "careTeamSequence", "informationSequence")
_CLAIM_LISTS = ("diagnosis", "procedure", "careTeam", "supportingInfo", "item", "contained")


def quick_claim_ok(claim: dict[str, Any]) -> bool:
    """True when the Claim looks right in every element the fast path can vouch for.

    Written as plain loops: this runs on every claim, and generator expressions cost
    more than the checks themselves.
    """
    if not (_member(claim.get("status"), _CLAIM_STATUS) and _member(claim.get("use"), _CLAIM_USE)):
        return False
    if not (_concept_ok(claim.get("type")) and _concept_ok(claim.get("priority"))):
        return False
    if not (_reference_ok(claim.get("patient")) and _reference_ok(claim.get("provider"))):
        return False
    created = claim.get("created")
    if not _is_datetime(created):
        return False
    ins = claim.get("insurance")
    if not isinstance(ins, list) or not ins:
        return False
    for i in ins:
        if not (
            isinstance(i, dict)
            and _is_int(i.get("sequence"))
            and isinstance(i.get("focal"), bool)
            and _reference_ok(i.get("coverage"))
        ):
            return False
    for key in _CLAIM_LISTS:
        v = claim.get(key, [])
        if not isinstance(v, list):
            return False
        for x in v:
            if not isinstance(x, dict):
                return False
    # Typed: checked above to be lists of objects, and typed, mypyc reads them with dict
    # primitives instead of generic method calls.
    diagnoses: list[dict[str, Any]] = claim.get("diagnosis", [])
    items: list[dict[str, Any]] = claim.get("item", [])
    for d in diagnoses:
        if not _is_int(d.get("sequence")) or not (
            _concept_ok(d.get("diagnosisCodeableConcept")) ^ _reference_ok(d.get("diagnosisReference"))
        ):
            return False
    for item in items:
        seq: Any = item.get("sequence")
        if not _is_int(seq) or seq < 1:
            return False
        if not _concept_ok(item.get("productOrService")):
            return False
        for k in _ITEM_SEQUENCES:
            if k in item and not _positive_ints_ok(item[k]):
                return False
        if "modifier" in item:
            mods = item["modifier"]
            if not isinstance(mods, list):
                return False
            for m in mods:
                if not _concept_ok(m):
                    return False
        q = item.get("quantity")
        if q is not None:
            if not isinstance(q, dict):
                return False
            qv = q.get("value", 0)
            if not (isinstance(qv, int) or isinstance(qv, float)) or isinstance(qv, bool):
                return False
        sd = item.get("servicedDate")
        if sd is not None and not _is_date(sd):
            return False
        if "servicedDate" in item and "servicedPeriod" in item:
            return False
        sp = item.get("servicedPeriod")
        if sp is not None and not _period_ok(sp):
            return False
    bp = claim.get("billablePeriod")
    return bp is None or _period_ok(bp)


def _period_ok(p: Any) -> bool:
    if not isinstance(p, dict):
        return False
    return ("start" not in p or _is_datetime(p["start"])) and ("end" not in p or _is_datetime(p["end"]))


def quick_resource_ok(res: dict[str, Any]) -> bool:
    """Cheap checks on the supporting resources the rules read."""
    rt = res.get("resourceType")
    if rt == "Patient":
        bd = res.get("birthDate")
        return (bd is None or _is_date(bd)) and res.get("gender", "unknown") in (
            "male",
            "female",
            "other",
            "unknown",
        )
    if rt == "Procedure":
        return (
            _member(res.get("status"), _PROCEDURE_STATUS)
            and _reference_ok(res.get("subject"))
            and (res.get("code") is None or _concept_ok(res.get("code")))
        )
    if rt == "Condition":
        return _reference_ok(res.get("subject")) and (res.get("code") is None or _concept_ok(res.get("code")))
    return isinstance(rt, str)


def _loc_to_path(root: str, loc: tuple[Any, ...]) -> tuple[str, str]:
    """pydantic loc -> (FHIRPath of the element, its last field name)."""
    path = root
    last = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "root":  # pydantic's RootModel wrapper, not a FHIR element
            continue
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            name = part[:-2] if part.endswith("__ext") else part
            if name.startswith("_"):
                name = name[1:]
            path += f".{name}"
            last = name
    return path, last


def _value_at(resource: dict[str, Any], loc: tuple[Any, ...]) -> tuple[bool, Any]:
    """(found, value) of a pydantic loc in the JSON as written."""
    node: Any = resource
    for part in loc:
        if part == "root":
            continue
        in_list = isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node)
        if not (in_list or (isinstance(part, str) and isinstance(node, dict) and part in node)):
            return False, None
        node = node[part]
    return True, node


def _visible(resource: dict[str, Any], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The loc, cut back to an element FHIRPath can see: a ``null`` or ``[]`` is no node,
    so an error on one points at the element that holds it."""
    while loc:
        found, value = _value_at(resource, loc)
        if not found or (value is not None and value != []):
            break
        loc = loc[:-1]
    return loc


def _parent(path: str) -> str:
    """'Claim.item[0].productOrService' -> 'Claim.item[0]'."""
    head, _, _ = path.rpartition(".")
    return head or path


#: Required primitive elements. The models check these only once every complex element
#: validates, so a claim missing both would be reported in two rounds; we report both now.
_REQUIRED_PRIMITIVES: dict[str, tuple[str, ...]] = {
    "Claim": ("status", "use", "created"),
    "Procedure": ("status",),
    "Coverage": ("status",),
    "MedicationAdministration": ("status",),
    "Encounter": ("status",),
}


def model_errors(entry: Entry) -> list[StructureError]:
    """Validate one resource with its fhir.resources R4B model."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    rtype = entry.resource.get("resourceType")
    try:
        model = get_fhir_model_class(str(rtype))
    except (KeyError, ValueError):
        return [StructureError(entry.path, f"unknown FHIR resource type {str(rtype)[:60]!r}", "value")]
    # contained resources are entries of their own, validated on their own
    body = {k: v for k, v in entry.resource.items() if k != "contained"}
    try:
        model.model_validate(body)
    except ValidationError as exc:
        out: list[StructureError] = []
        seen: set[tuple[str, str]] = set()
        for err in exc.errors()[:50]:
            path, _ = _loc_to_path(entry.path, tuple(err.get("loc", ())))
            etype = str(err.get("type", ""))
            msg = str(err.get("msg", "invalid"))
            if etype.endswith("missing"):
                message = f"{path} is required but missing"
                path, kind = _parent(path), "missing"
            elif etype in ("extra_forbidden",):
                message = f"{path} is not an element of {rtype}"
                path, kind = _parent(path), "unknown-element"
            else:
                message = f"{path}: {msg}"
                kind = "type"
                path = _loc_to_path(entry.path, _visible(entry.resource, tuple(err.get("loc", ()))))[0]
            if (path, message) not in seen:
                seen.add((path, message))
                out.append(StructureError(path, message, kind))
        for name in _REQUIRED_PRIMITIVES.get(str(rtype), ()):
            message = f"{entry.path}.{name} is required but missing"
            if entry.resource.get(name) in (None, "") and (entry.path, message) not in seen:
                seen.add((entry.path, message))
                out.append(StructureError(entry.path, message, "missing"))
        return out
    except (RecursionError, TypeError, ValueError) as crash:  # defensive: models must not crash us
        return [
            StructureError(entry.path, f"{rtype} could not be validated: {type(crash).__name__}", "value")
        ]
    return []


def structure_errors(doc: InputDocument, full: bool = False) -> Iterator[StructureError]:
    """Model errors of every resource in the input that the fast path does not vouch for."""
    for entry in doc.entries:
        res = entry.resource
        rt = res.get("resourceType")
        if rt == "Claim":
            ok = quick_claim_ok(res)
        elif isinstance(rt, str) and rt in _CHECKED_TYPES:
            ok = quick_resource_ok(res)
        else:
            ok = isinstance(rt, str)
        if full or not ok:
            yield from model_errors(entry)
