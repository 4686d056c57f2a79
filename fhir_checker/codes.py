"""Code systems in real use on US claims, and the shape of their codes."""

from __future__ import annotations

import re

from .values import memoised_match

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
HCPCS_OID = "urn:oid:2.16.840.1.113883.6.285"
HCPCS_OLD = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10CM_OID = "urn:oid:2.16.840.1.113883.6.90"
MODIFIER_SYSTEMS = frozenset(
    {
        CPT,
        HCPCS,
        HCPCS_OID,
        HCPCS_OLD,
        "http://terminology.hl7.org/CodeSystem/modifiers",
        "urn:oid:2.16.840.1.113883.6.12",
    }
)

#: Procedure code systems: system URI -> our kind ("cpt" or "hcpcs").
PROCEDURE_SYSTEMS: dict[str, str] = {
    CPT: "cpt",
    "urn:oid:2.16.840.1.113883.6.12": "cpt",
    HCPCS: "hcpcs",
    HCPCS_OID: "hcpcs",
    HCPCS_OLD: "hcpcs",
    "http://www.cms.gov/medicare/coding/hcpcsreleasecodesets": "hcpcs",
}
DIAGNOSIS_SYSTEMS = frozenset({ICD10CM, ICD10CM_OID})

_CPT_RE = re.compile(r"^(?:\d{5}|\d{4}[FTUAM])$")
_HCPCS_L2_RE = re.compile(r"^[A-V]\d{4}$")
_ICD10_RE = re.compile(r"^[A-Z]\d[0-9A-Z](?:\.?[0-9A-Z]{1,4})?$")


#: Shape answers by code, one memo per pattern: the rules ask about the same codes on every
#: claim (a dict hit costs a fraction of a regex match; keyed by the code alone, no tuple
#: is built per question). Bounded: each is cleared when full.
_CPT_SHAPES: dict[str, bool] = {}
_HCPCS_L2_SHAPES: dict[str, bool] = {}
_ICD10_SHAPES: dict[str, bool] = {}
_SHAPES_LIMIT = 100_000


def _shape(memo: dict[str, bool], pattern: re.Pattern[str], code: str) -> bool:
    # No code is over 16 characters: such a text is answered, not kept.
    return memoised_match(memo, pattern, code, 16, _SHAPES_LIMIT)


def is_cpt_format(code: str) -> bool:
    """CPT: five digits (Category I), or four digits + F (II), T (III), U (PLA), A (vaccine
    administration, 0001A) or M (multianalyte assays, 0001M)."""
    return _shape(_CPT_SHAPES, _CPT_RE, code)


def is_hcpcs_level2_format(code: str) -> bool:
    return _shape(_HCPCS_L2_SHAPES, _HCPCS_L2_RE, code)


def procedure_kind(system: str | None, code: str) -> str | None:
    """'cpt', 'hcpcs' or None for a code outside the procedure systems we know.

    Many EHRs send Level I (CPT) codes under the HCPCS system, since HCPCS Level I *is*
    CPT; the code's shape decides between the two within the HCPCS systems.
    """
    kind = PROCEDURE_SYSTEMS.get(system or "")
    if kind == "hcpcs" and code[:1].isdigit():
        return "cpt"
    return kind


def normalise_icd10(code: str) -> str:
    """ICD-10-CM in dotted form, upper case (``c9200`` -> ``C92.00``)."""
    c = code.strip().upper().replace(".", "")
    return c if len(c) <= 3 else f"{c[:3]}.{c[3:]}"


def is_icd10_format(code: str) -> bool:
    return _shape(_ICD10_SHAPES, _ICD10_RE, code.strip().upper())
