"""The clinical record behind a claim: Procedures, MedicationAdministrations and Devices.

Built lazily by :class:`~fhir_checker.context.ClaimContext` (only the record rules read
it), each resource with the FHIRPath that reaches it in the input. Defensive like the rest
of the context: malformed elements become ``None``, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .codes import procedure_kind
from .loader import Entry
from .references import ReferenceIndex, Resolved
from .values import as_dict as _dict
from .values import as_list as _list
from .values import parse_date as _date
from .values import parse_datetime as _datetime

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

#: SNOMED CT laterality qualifiers (and the body-site concepts payers see most).
LATERALITY_CODES: dict[str, str] = {
    "7771000": "left",
    "24028007": "right",
    "51440002": "bilateral",
}
_LATERALITY_WORDS = re.compile(r"\b(left|right|bilateral|both)\b", re.I)

#: Procedure.status values that mean the procedure was not (validly) performed.
NOT_PERFORMED = frozenset({"not-done", "entered-in-error", "stopped"})
#: ... and those that mean it is not finished (or not known to be).
NOT_COMPLETED = frozenset({"preparation", "in-progress", "on-hold", "unknown"})


_KINDS: dict[str, str] = {}


def service_kind(code: str) -> str:
    """What a billed code is, by code range (memoised: the same codes come back on every
    claim; see :func:`_service_kind`)."""
    hit = _KINDS.get(code)
    if hit is None:
        hit = _service_kind(code)
        if len(code) <= 16:
            if len(_KINDS) >= 100_000:
                _KINDS.clear()
            _KINDS[code] = hit
    return hit


def _service_kind(code: str) -> str:
    """What a billed code is, decided by code range (no descriptors needed).

    ``procedure`` (needs a Procedure in the record), ``visit`` (E/M: documented by an
    Encounter), ``lab``, ``drug`` (drugs, biologicals, blood products), ``device``,
    ``supply`` or ``other``.

    - CPT 80000-89999 and PLA codes (....U): laboratory and pathology.
    - CPT 90281-90399 (immune globulins) and 90476-90759 (vaccines, toxoids): products.
    - CPT 99202-99499 except 99151-99157 (moderate sedation, a procedure): E/M visits.
    - CPT Category II (....F): performance measures, not services.
    - HCPCS J (drugs), P (pathology, blood products), Q (drugs, biosimilars, supplies),
      C9000-C9499 (pass-through drugs and biologicals), A9500-A9999 (radiopharmaceuticals
      and contrast): drugs.
    - HCPCS C1000-C2999: devices. A, E, K, L, B: supplies and DME.
    - Other HCPCS Level II (G, C5000-C8999, C9500-C9999, S, T ...) and all other CPT:
      procedures.
    """
    c = code.upper()
    if not c or len(c) != 5:
        return "other"
    if c[0].isdigit():
        if c.endswith("F"):
            return "other"
        if c.endswith("U"):
            return "lab"
        if c.endswith("T"):
            return "procedure"
        if not c.isdigit():
            return "other"
        n = int(c)
        if 80000 <= n <= 89999:
            return "lab"
        if 90281 <= n <= 90399 or 90476 <= n <= 90759:
            return "drug"
        if 99202 <= n <= 99499 and not 99151 <= n <= 99157:
            return "visit"
        return "procedure"
    head, digits = c[0], c[1:]
    if not digits.isdigit():
        return "other"
    n = int(digits)
    if head in "JPQ":
        return "drug"
    if head == "C":
        if 1000 <= n <= 2999:
            return "device"
        if 9000 <= n <= 9499:
            return "drug"
        return "procedure"
    if head == "A" and n >= 9500:
        return "drug"
    if head in "AEKLB":
        return "supply"
    return "procedure"


@dataclass(frozen=True, slots=True)
class RecordCode:
    code: str  # upper case
    system: str | None
    kind: str  # "cpt" or "hcpcs"
    path: str  # FHIRPath of the Coding

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(self, code: str, system: str | None, kind: str, path: str) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "path", path)


def billing_codes(concept: Any, path: str) -> tuple[RecordCode, ...]:
    """The CPT/HCPCS codings of a CodeableConcept."""
    out: list[RecordCode] = []
    for i, c in enumerate(_list(_dict(concept).get("coding"))):
        c = _dict(c)
        code, system = c.get("code"), c.get("system")
        if not isinstance(code, str) or not code.strip():
            continue
        system = system if isinstance(system, str) else None
        kind = procedure_kind(system, code.strip())
        if kind:
            out.append(RecordCode(code.strip().upper(), system, kind, f"{path}.coding[{i}]"))
    return tuple(out)


def _period_minutes(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None or (start.tzinfo is None) != (end.tzinfo is None):
        return None
    minutes = (end - start).total_seconds() / 60
    return minutes if minutes >= 0 else None


_TIME_UNITS = {
    "min": 1.0,
    "mins": 1.0,
    "minute": 1.0,
    "minutes": 1.0,
    "h": 60.0,
    "hr": 60.0,
    "hrs": 60.0,
    "hour": 60.0,
    "hours": 60.0,
    "s": 1 / 60,
    "sec": 1 / 60,
}
_NOTE_MINUTES = re.compile(r"(\d+(?:\.\d+)?)\s*(minutes?|mins?|hours?|hrs?)\b", re.I)


def _quantity_minutes(q: dict[str, Any]) -> float | None:
    value = q.get("value")
    unit = q.get("code") or q.get("unit")
    if not isinstance(value, int | float) or isinstance(value, bool) or not isinstance(unit, str):
        return None
    factor = _TIME_UNITS.get(unit.strip().lower())
    return float(value) * factor if factor is not None and value >= 0 else None


def documented_minutes(resource: dict[str, Any], path: str) -> tuple[float, str, str] | None:
    """(minutes, how it was documented, FHIRPath of the evidence), or None.

    In order: ``performedPeriod`` (or ``effectivePeriod``) with start and end times; an
    extension carrying a Duration or a time Quantity; a note that says "38 minutes".
    """
    for key in ("performedPeriod", "effectivePeriod"):
        period = resource.get(key)
        if not period or not isinstance(period, dict):
            continue  # nothing to read (most Procedures carry performedDateTime)
        minutes = _period_minutes(_datetime(period.get("start")), _datetime(period.get("end")))
        if minutes is not None:
            return minutes, key, f"{path}.{key}"
    for i, ext in enumerate(_list(resource.get("extension"))):
        ext = _dict(ext)
        for vkey in ("valueDuration", "valueQuantity"):
            if vkey in ext:
                minutes = _quantity_minutes(_dict(ext[vkey]))
                if minutes is not None:
                    return minutes, f"extension {ext.get('url', '')}".strip(), f"{path}.extension[{i}]"
    for i, note in enumerate(_list(resource.get("note"))):
        text = _dict(note).get("text")
        if isinstance(text, str) and (m := _NOTE_MINUTES.search(text)):
            factor = _TIME_UNITS[m.group(2).lower()]
            return float(m.group(1)) * factor, "note", f"{path}.note[{i}]"
    return None


@dataclass(frozen=True, slots=True)
class FocalDevice:
    path: str  # Procedure.focalDevice[i]
    device: Resolved | None  # the manipulated Device, when it resolves
    codes: tuple[RecordCode, ...]  # HCPCS codings of Device.type


@dataclass(frozen=True, slots=True)
class Laterality:
    side: str  # "left", "right" or "bilateral"
    path: str  # FHIRPath of the bodySite (or its coding) that says so


@dataclass
class RecordProcedure:
    """A ``Procedure`` in the input."""

    entry: Entry
    status: str | None
    codes: tuple[RecordCode, ...]  # CPT / HCPCS codings (one Procedure may carry several)
    code_set: frozenset[str]
    performed_date: date | None
    performed_end: date | None  # last day, for a performedPeriod
    performed_path: str | None  # FHIRPath of performed[x]
    minutes: float | None  # documented duration
    minutes_source: str | None
    minutes_path: str | None
    focal_devices: tuple[FocalDevice, ...]
    laterality: Laterality | None

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        entry: Entry,
        status: str | None,
        codes: tuple[RecordCode, ...],
        code_set: frozenset[str],
        performed_date: date | None,
        performed_end: date | None,
        performed_path: str | None,
        minutes: float | None,
        minutes_source: str | None,
        minutes_path: str | None,
        focal_devices: tuple[FocalDevice, ...],
        laterality: Laterality | None,
    ) -> None:
        self.entry = entry
        self.status = status
        self.codes = codes
        self.code_set = code_set
        self.performed_date = performed_date
        self.performed_end = performed_end
        self.performed_path = performed_path
        self.minutes = minutes
        self.minutes_source = minutes_source
        self.minutes_path = minutes_path
        self.focal_devices = focal_devices
        self.laterality = laterality

    @property
    def path(self) -> str:
        return self.entry.path

    @property
    def id(self) -> str | None:
        rid = self.entry.resource.get("id")
        return rid if isinstance(rid, str) else None

    @property
    def label(self) -> str:
        return f"Procedure/{self.id}" if self.id else self.path


@dataclass
class RecordAdministration:
    """A ``MedicationAdministration`` in the input, with its dose."""

    entry: Entry
    status: str | None
    codes: tuple[RecordCode, ...]  # HCPCS codings of the medication (or its Medication)
    effective_date: date | None
    dose_value: float | None
    dose_unit: str | None  # UCUM code, else the unit text
    dose_path: str | None  # FHIRPath of dosage.dose

    @property
    def path(self) -> str:
        return self.entry.path

    @property
    def label(self) -> str:
        rid = self.entry.resource.get("id")
        return f"MedicationAdministration/{rid}" if isinstance(rid, str) else self.path


def _laterality(resource: dict[str, Any], path: str) -> Laterality | None:
    for i, site in enumerate(_list(resource.get("bodySite"))):
        site = _dict(site)
        spath = f"{path}.bodySite[{i}]"
        for j, c in enumerate(_list(site.get("coding"))):
            c = _dict(c)
            if c.get("system") == SNOMED and (side := LATERALITY_CODES.get(str(c.get("code")))):
                return Laterality(side, f"{spath}.coding[{j}]")
        texts = [site.get("text"), *(_dict(c).get("display") for c in _list(site.get("coding")))]
        sides = {
            "bilateral" if w.lower() in ("bilateral", "both") else w.lower()
            for t in texts
            if isinstance(t, str)
            for w in _LATERALITY_WORDS.findall(t)
        }
        if sides:
            side = sides.pop() if len(sides) == 1 else "bilateral"
            return Laterality(side, spath)
    return None


def build_procedure(entry: Entry, refs: ReferenceIndex) -> RecordProcedure:
    res, path = entry.resource, entry.path
    status = res.get("status") if isinstance(res.get("status"), str) else None
    performed_date: date | None = None
    performed_end: date | None = None
    performed_path: str | None = None
    if "performedDateTime" in res:
        performed_date, performed_path = _date(res.get("performedDateTime")), f"{path}.performedDateTime"
    elif "performedPeriod" in res:
        period = _dict(res.get("performedPeriod"))
        performed_date, performed_end = _date(period.get("start")), _date(period.get("end"))
        performed_path = f"{path}.performedPeriod"
    timing = documented_minutes(res, path)
    codes = billing_codes(res.get("code"), f"{path}.code")
    devices: list[FocalDevice] = []
    for i, fd in enumerate(_list(res.get("focalDevice"))):
        ref = _dict(_dict(fd).get("manipulated")).get("reference")
        dev = refs.resolve(ref, path) if isinstance(ref, str) else None
        if dev is not None and dev.resource_type != "Device":
            dev = None
        dev_codes = billing_codes(dev.resource.get("type"), f"{dev.entry.path}.type") if dev else ()
        devices.append(FocalDevice(f"{path}.focalDevice[{i}]", dev, dev_codes))
    return RecordProcedure(
        entry=entry,
        status=status,
        codes=codes,
        code_set=frozenset(c.code for c in codes),
        performed_date=performed_date if performed_path else None,
        performed_end=performed_end or performed_date,
        performed_path=performed_path if performed_date else None,
        minutes=timing[0] if timing else None,
        minutes_source=timing[1] if timing else None,
        minutes_path=timing[2] if timing else None,
        focal_devices=tuple(devices),
        laterality=_laterality(res, path),
    )


def build_administration(entry: Entry, refs: ReferenceIndex) -> RecordAdministration:
    res, path = entry.resource, entry.path
    status = res.get("status") if isinstance(res.get("status"), str) else None
    codes = billing_codes(res.get("medicationCodeableConcept"), f"{path}.medicationCodeableConcept")
    if not codes:
        ref = _dict(res.get("medicationReference")).get("reference")
        med = refs.resolve(ref, path) if isinstance(ref, str) else None
        if med is not None and med.resource_type == "Medication":
            codes = billing_codes(med.resource.get("code"), f"{med.entry.path}.code")
    when = _date(res.get("effectiveDateTime")) or _date(_dict(res.get("effectivePeriod")).get("start"))
    dose = _dict(_dict(res.get("dosage")).get("dose"))
    value = dose.get("value")
    unit = dose.get("code") if dose.get("system") == UCUM else None
    unit = unit or dose.get("unit") or dose.get("code")
    amount = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    ok = amount is not None and isinstance(unit, str)
    return RecordAdministration(
        entry=entry,
        status=status,
        codes=codes,
        effective_date=when,
        dose_value=amount if ok else None,
        dose_unit=str(unit).strip() if ok else None,
        dose_path=f"{path}.dosage.dose" if dose else None,
    )
