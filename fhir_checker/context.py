"""ClaimContext: everything rules read, computed once per claim from the raw input.

Rules never walk raw JSON: they read claim lines, diagnoses, the patient and the clinical
record from here. The builder is defensive: a malformed element becomes ``None`` (and a
``structure`` finding elsewhere), never an exception.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, TypeVar, overload

from mypy_extensions import mypyc_attr

from .clinical import RecordAdministration, RecordProcedure, build_administration, build_procedure
from .codes import DIAGNOSIS_SYSTEMS, normalise_icd10, procedure_kind
from .loader import Entry, InputDocument
from .packs import RulePack
from .references import ReferenceIndex, Resolved
from .tables import Tables
from .values import as_dict as _dict
from .values import as_list as _list
from .values import is_present, parse_date

PRACTITIONER = "practitioner"
OUTPATIENT_HOSPITAL = "outpatient-hospital"

BIRTHSEX_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"

T = TypeVar("T")


# Python classes, not mypyc native ones, where a value is kept in the instance's __dict__
# (this module is compiled with mypyc: see setup.py).
@mypyc_attr(native_class=False)
class cached_property(Generic[T]):  # a drop-in for functools.cached_property
    """``functools.cached_property`` without its lock.

    On Python 3.11 the stdlib one takes a lock shared by every instance on each first read
    (about 1 us; a dozen reads a claim) and so also serialises threads. A context belongs
    to one check in one thread, so computing once and keeping the value in the instance's
    ``__dict__`` is enough.
    """

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = getattr(func, "__name__", "")  # __set_name__ sets it in any case
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> cached_property[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | cached_property[T]:
        if obj is None:
            return self
        value = self.func(obj)
        obj.__dict__[self.name] = value
        return value


def _positive_ints(value: Any) -> tuple[int, ...]:
    if not value or not isinstance(value, list):
        return ()
    return tuple([v for v in value if isinstance(v, int) and not isinstance(v, bool)])


@dataclass(frozen=True, slots=True)
class Coding:
    system: str | None
    code: str
    path: str  # FHIRPath of the Coding

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(self, system: str | None, code: str, path: str) -> None:
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "path", path)


def _coded(concept: Any) -> Iterator[tuple[int, str | None, str]]:
    """(index, system, code) of each coding in a CodeableConcept that has a code."""
    if not isinstance(concept, dict):
        return
    cs = concept.get("coding")
    if not isinstance(cs, list):
        return
    for i, c in enumerate(cs):
        if isinstance(c, dict):
            code = c.get("code")
            if isinstance(code, str) and (code := code.strip()):
                system = c.get("system")
                yield i, (system if isinstance(system, str) else None), code


def codings(concept: Any, path: str) -> list[Coding]:
    return [Coding(system, code, f"{path}.coding[{i}]") for i, system, code in _coded(concept)]


@dataclass(frozen=True, slots=True)
class Modifier:
    code: str
    path: str  # e.g. Claim.item[2].modifier[0]

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(self, code: str, path: str) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "path", path)


@dataclass
class ClaimLine:
    """One ``Claim.item``: what was billed, on which date, for what."""

    index: int  # 0-based position in Claim.item
    path: str  # "Claim.item[2]"
    sequence: int | None
    system: str | None
    code: str | None
    code_path: str  # FHIRPath of the billed code (the Coding, or productOrService)
    kind: str | None  # "cpt", "hcpcs" (Level II) or None (unknown system)
    modifiers: tuple[Modifier, ...]
    units: float | None
    service_date: date | None  # date of service: item date, else claim billablePeriod start
    service_end: date | None
    date_from_claim: bool  # True when the line has no date of its own
    diagnosis_sequences: tuple[int, ...]
    procedure_sequences: tuple[int, ...]
    information_sequences: tuple[int, ...]
    care_team_sequences: tuple[int, ...]
    revenue: str | None
    raw: dict[str, Any]
    modifier_codes: frozenset[str]  # the codes of ``modifiers``

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        index: int,
        path: str,
        sequence: int | None,
        system: str | None,
        code: str | None,
        code_path: str,
        kind: str | None,
        modifiers: tuple[Modifier, ...],
        units: float | None,
        service_date: date | None,
        service_end: date | None,
        date_from_claim: bool,
        diagnosis_sequences: tuple[int, ...],
        procedure_sequences: tuple[int, ...],
        information_sequences: tuple[int, ...],
        care_team_sequences: tuple[int, ...],
        revenue: str | None,
        raw: dict[str, Any],
        modifier_codes: frozenset[str],
    ) -> None:
        self.index = index
        self.path = path
        self.sequence = sequence
        self.system = system
        self.code = code
        self.code_path = code_path
        self.kind = kind
        self.modifiers = modifiers
        self.units = units
        self.service_date = service_date
        self.service_end = service_end
        self.date_from_claim = date_from_claim
        self.diagnosis_sequences = diagnosis_sequences
        self.procedure_sequences = procedure_sequences
        self.information_sequences = information_sequences
        self.care_team_sequences = care_team_sequences
        self.revenue = revenue
        self.raw = raw
        self.modifier_codes = modifier_codes

    @property
    def number(self) -> int:
        """The line number a coder sees: the item's sequence, else its 1-based position."""
        return self.sequence or self.index + 1

    @property
    def is_level2(self) -> bool:
        return self.kind == "hcpcs"

    @property
    def quantity_path(self) -> str:
        """Where UNI001 and TIM001 point: ``Claim.item[n].quantity`` when the element is
        present (:func:`.values.is_present`: not null, not empty), else the billed code. (The
        MUE rules use ``ncci_common.units_path``: the quantity only when it holds a value.)"""
        return f"{self.path}.quantity" if is_present(self.raw.get("quantity")) else self.code_path


@dataclass
class Diagnosis:
    index: int
    path: str  # Claim.diagnosis[0]
    sequence: int | None
    code: str | None  # dotted ICD-10-CM, upper case
    code_path: str
    system: str | None
    raw: dict[str, Any]
    condition: Resolved | None = None

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        index: int,
        path: str,
        sequence: int | None,
        code: str | None,
        code_path: str,
        system: str | None,
        raw: dict[str, Any],
        condition: Resolved | None = None,
    ) -> None:
        self.index = index
        self.path = path
        self.sequence = sequence
        self.code = code
        self.code_path = code_path
        self.system = system
        self.raw = raw
        self.condition = condition

    @property
    def number(self) -> int:
        """The diagnosis number a coder sees: its sequence, else its 1-based position."""
        return self.sequence or self.index + 1


@dataclass
class ClaimProcedure:
    """A ``Claim.procedure`` entry and the Procedure it points at, if any."""

    index: int
    path: str
    sequence: int | None
    reference: str | None
    resolved: Resolved | None
    codes: tuple[Coding, ...]
    date: date | None

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        index: int,
        path: str,
        sequence: int | None,
        reference: str | None,
        resolved: Resolved | None,
        codes: tuple[Coding, ...],
        date: datetime.date | None,  # qualified: in this class, ``date`` is the field
    ) -> None:
        self.index = index
        self.path = path
        self.sequence = sequence
        self.reference = reference
        self.resolved = resolved
        self.codes = codes
        self.date = date


@dataclass
class Patient:
    birth_date: date | None
    sex: str | None  # "male", "female" or None (unknown/other)
    resolved: Resolved | None

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(self, birth_date: date | None, sex: str | None, resolved: Resolved | None) -> None:
        self.birth_date = birth_date
        self.sex = sex
        self.resolved = resolved

    def age_on(self, on: date | None) -> int | None:
        """Age in whole years on a date of service."""
        b = self.birth_date
        if b is None or on is None:
            return None
        years = on.year - b.year - ((on.month, on.day) < (b.month, b.day))
        return years if years >= 0 else None


@mypyc_attr(native_class=False)
@dataclass
class ClaimContext:
    doc: InputDocument
    refs: ReferenceIndex
    tables: Tables
    pack: RulePack
    today: date
    setting: str
    claim_type: str | None
    created: date | None
    lines: list[ClaimLine]
    diagnoses: list[Diagnosis]
    procedures: list[ClaimProcedure]
    patient: Patient
    care_team_sequences: frozenset[int]
    supporting_info_sequences: frozenset[int]
    extra: dict[str, Any] = field(default_factory=dict)

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        doc: InputDocument,
        refs: ReferenceIndex,
        tables: Tables,
        pack: RulePack,
        today: date,
        setting: str,
        claim_type: str | None,
        created: date | None,
        lines: list[ClaimLine],
        diagnoses: list[Diagnosis],
        procedures: list[ClaimProcedure],
        patient: Patient,
        care_team_sequences: frozenset[int],
        supporting_info_sequences: frozenset[int],
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.doc = doc
        self.refs = refs
        self.tables = tables
        self.pack = pack
        self.today = today
        self.setting = setting
        self.claim_type = claim_type
        self.created = created
        self.lines = lines
        self.diagnoses = diagnoses
        self.procedures = procedures
        self.patient = patient
        self.care_team_sequences = care_team_sequences
        self.supporting_info_sequences = supporting_info_sequences
        self.extra = {} if extra is None else extra

    @property
    def claim(self) -> dict[str, Any]:
        return self.doc.claim

    @property
    def claim_id(self) -> str | None:
        return self.doc.claim_id

    @property
    def is_professional(self) -> bool:
        return self.setting == PRACTITIONER

    @property
    def is_institutional(self) -> bool:
        return self.setting == OUTPATIENT_HOSPITAL

    def resolve(self, reference: Any, container: str = "Claim") -> Resolved | None:
        ref = _dict(reference).get("reference")
        return self.refs.resolve(ref, container) if isinstance(ref, str) else None

    def resources(self, resource_type: str) -> list[Entry]:
        """Every resource of that type in the input (bundle entries and contained)."""
        return self.refs.of_type(resource_type)

    def coded_lines(self) -> Iterator[ClaimLine]:
        """Lines with a billed code."""
        return (ln for ln in self.lines if ln.code)

    @cached_property
    def lines_by_date(self) -> dict[date, list[ClaimLine]]:
        out: dict[date, list[ClaimLine]] = {}
        for ln in self.lines:
            if ln.code and ln.service_date is not None:
                out.setdefault(ln.service_date, []).append(ln)
        return out

    def diagnosis_by_sequence(self, seq: int) -> Diagnosis | None:
        for d in self.diagnoses:
            if d.sequence == seq:
                return d
        return None

    def procedure_by_sequence(self, seq: int) -> ClaimProcedure | None:
        for p in self.procedures:
            if p.sequence == seq:
                return p
        return None

    # --- the clinical record behind the claim (read by the record rules only; lazy) ---
    @cached_property
    def record_procedures(self) -> list[RecordProcedure]:
        """Every Procedure in the input (bundle entries and contained), with its FHIRPath."""
        return [build_procedure(e, self.refs) for e in self.resources("Procedure")]

    @cached_property
    def administrations(self) -> list[RecordAdministration]:
        """Every MedicationAdministration in the input, with its dose."""
        return [build_administration(e, self.refs) for e in self.resources("MedicationAdministration")]

    @cached_property
    def has_record(self) -> bool:
        """Whether the input carries any clinical record to compare the bill with."""
        return bool(self.record_procedures or self.administrations)

    @cached_property
    def billed_codes(self) -> frozenset[str]:
        return frozenset(ln.code for ln in self.lines if ln.code)

    @cached_property
    def _record_procedure_by_resource(self) -> dict[int, RecordProcedure]:
        return {id(p.entry.resource): p for p in self.record_procedures}

    @cached_property
    def _line_record_cache(self) -> dict[tuple[str, int], list[Any]]:
        return {}

    def linked_procedures(self, line: ClaimLine) -> list[RecordProcedure]:
        """Procedures the line points at: ``item.procedureSequence`` -> ``Claim.procedure``."""
        key = ("linked", line.index)
        hit = self._line_record_cache.get(key)
        if hit is not None:
            return hit
        out: list[RecordProcedure] = []
        for seq in line.procedure_sequences:
            cp = self.procedure_by_sequence(seq)
            if cp is None or cp.resolved is None:
                continue
            rp = self._record_procedure_by_resource.get(id(cp.resolved.resource))
            if rp is not None and rp not in out:
                out.append(rp)
        self._line_record_cache[key] = out
        return out

    def matching_procedures(self, line: ClaimLine) -> list[RecordProcedure]:
        """Procedures with the line's code performed on the line's date(s)."""
        if not line.code:
            return []
        key = ("matching", line.index)
        hit = self._line_record_cache.get(key)
        if hit is None:
            hit = [
                p
                for p in self.record_procedures
                if line.code in p.code_set and on_line_dates(line, p.performed_date)
            ]
            self._line_record_cache[key] = hit
        return hit

    def procedures_for(self, line: ClaimLine) -> list[RecordProcedure]:
        """The Procedures behind a line: the linked ones, else those matching code and date."""
        return self.linked_procedures(line) or self.matching_procedures(line)

    @cached_property
    def _claim_span(self) -> tuple[date, date] | None:
        days = [d for ln in self.lines for d in (ln.service_date, ln.service_end) if d is not None]
        return (min(days), max(days)) if days else None

    @cached_property
    def _claim_procedure_resources(self) -> frozenset[int]:
        return frozenset(id(p.resolved.resource) for p in self.procedures if p.resolved is not None)

    def on_claim(self, procedure: RecordProcedure) -> bool:
        """Whether a record Procedure belongs to this claim: referenced from
        ``Claim.procedure``, or performed within the claim's dates of service."""
        if id(procedure.entry.resource) in self._claim_procedure_resources:
            return True
        span, day = self._claim_span, procedure.performed_date
        return span is not None and day is not None and span[0] <= day <= span[1]

    def supporting_resource(self, seq: int) -> Resolved | None:
        """What ``Claim.supportingInfo[sequence=seq].valueReference`` points at."""
        for si in _list(self.claim.get("supportingInfo")):
            si = _dict(si)
            if si.get("sequence") == seq and "valueReference" in si:
                return self.resolve(si.get("valueReference"))
        return None

    @cached_property
    def _administration_by_resource(self) -> dict[int, RecordAdministration]:
        return {id(a.entry.resource): a for a in self.administrations}

    def linked_administrations(self, line: ClaimLine) -> list[RecordAdministration]:
        """MedicationAdministrations linked by ``item.informationSequence``."""
        out: list[RecordAdministration] = []
        for seq in line.information_sequences:
            res = self.supporting_resource(seq)
            if res is None:
                continue
            a = self._administration_by_resource.get(id(res.resource))
            if a is not None and a not in out:
                out.append(a)
        return out

    def administrations_for(self, line: ClaimLine) -> list[RecordAdministration]:
        """Administrations behind a drug line: linked ones, else same HCPCS code and date."""
        linked = self.linked_administrations(line)
        if linked or not line.code:
            return linked
        return [
            a
            for a in self.administrations
            if any(c.code == line.code for c in a.codes) and on_line_dates(line, a.effective_date)
        ]


def on_line_dates(line: ClaimLine, day: date | None) -> bool:
    """Whether a record date falls on the line's date of service (or within its period)."""
    if day is None or line.service_date is None:
        return False
    return line.service_date <= day <= (line.service_end or line.service_date)


def _setting(claim: dict[str, Any], pack: RulePack) -> tuple[str, str | None]:
    claim_type = _first_code(claim.get("type"))
    if pack.setting in (PRACTITIONER, OUTPATIENT_HOSPITAL):
        return pack.setting, claim_type
    if claim_type == "institutional":
        return OUTPATIENT_HOSPITAL, claim_type
    return PRACTITIONER, claim_type


def _billed_coding(concept: Any, path: str) -> tuple[Coding | None, str | None]:
    """The line's billed coding and its kind: the first coding in a procedure system, else
    the first coding (as ``codings`` would list them, without building the whole list)."""
    first: Coding | None = None
    for i, system, code in _coded(concept):
        kind = procedure_kind(system, code)
        if kind:
            return Coding(system, code, f"{path}.coding[{i}]"), kind
        if first is None:
            first = Coding(system, code, f"{path}.coding[{i}]")
    return first, (procedure_kind(first.system, first.code) if first else None)


def _first_code(concept: Any) -> str | None:
    """The code of the first coding with one (``codings(concept)[0].code``), no paths built."""
    return next((code for _, _, code in _coded(concept)), None)


def _line(index: int, item: dict[str, Any], claim_start: date | None, claim_end: date | None) -> ClaimLine:
    path = f"Claim.item[{index}]"
    pos = item.get("productOrService")
    chosen, kind = _billed_coding(pos, f"{path}.productOrService")
    code = chosen.code.upper() if chosen else None
    mods: tuple[Modifier, ...] = ()
    raw_mods = item.get("modifier")
    if raw_mods and isinstance(raw_mods, list):
        found: list[Modifier] = []
        for i, m in enumerate(raw_mods):
            mc = _first_code(m)
            if mc:
                found.append(Modifier(mc.upper(), f"{path}.modifier[{i}]"))
        mods = tuple(found)
    q = item.get("quantity")
    qty = q.get("value") if isinstance(q, dict) else None
    units = (
        float(qty) if (isinstance(qty, int) or isinstance(qty, float)) and not isinstance(qty, bool) else None
    )
    period = item.get("servicedPeriod")
    if isinstance(period, dict):
        own = parse_date(item.get("servicedDate")) or parse_date(period.get("start"))
        own_end = parse_date(period.get("end")) if period else None
    else:
        own, own_end = parse_date(item.get("servicedDate")), None
    seq = item.get("sequence")
    rev_concept = item.get("revenue")
    get = item.get
    return ClaimLine(
        index,
        path,
        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        chosen.system if chosen else None,
        code,
        chosen.path if chosen else f"{path}.productOrService" if is_present(pos) else path,
        kind,
        mods,
        units,
        own or claim_start,
        own_end or (None if own else claim_end),
        own is None,
        _positive_ints(v) if (v := get("diagnosisSequence")) else (),
        _positive_ints(v) if (v := get("procedureSequence")) else (),
        _positive_ints(v) if (v := get("informationSequence")) else (),
        _positive_ints(v) if (v := get("careTeamSequence")) else (),
        _first_code(rev_concept) if rev_concept is not None else None,
        item,
        frozenset([m.code for m in mods]),
    )


def _patient(claim: dict[str, Any], refs: ReferenceIndex) -> Patient:
    ref = _dict(claim.get("patient")).get("reference")
    resolved = refs.resolve(ref) if isinstance(ref, str) else None
    if resolved is None or resolved.resource_type != "Patient":
        return Patient(None, None, resolved)
    p = resolved.resource
    sex: str | None = None
    for ext in _list(p.get("extension")):
        if _dict(ext).get("url") == BIRTHSEX_URL:
            sex = {"M": "male", "F": "female"}.get(str(_dict(ext).get("valueCode")))
    if sex is None:
        g = p.get("gender")
        sex = g if g in ("male", "female") else None
    return Patient(parse_date(p.get("birthDate")), sex, resolved)


def build_context(
    doc: InputDocument, tables: Tables, pack: RulePack, today: date, refs: ReferenceIndex | None = None
) -> ClaimContext:
    claim = doc.claim
    refs = refs or ReferenceIndex(doc)
    setting, claim_type = _setting(claim, pack)
    bp = _dict(claim.get("billablePeriod"))
    claim_start, claim_end = parse_date(bp.get("start")), parse_date(bp.get("end"))
    lines = [
        _line(i, item, claim_start, claim_end)
        for i, item in enumerate(_list(claim.get("item")))
        if isinstance(item, dict)
    ]
    diagnoses: list[Diagnosis] = []
    for i, d in enumerate(_list(claim.get("diagnosis"))):
        if not isinstance(d, dict):
            continue
        path = f"Claim.diagnosis[{i}]"
        seq = d.get("sequence")
        condition = None
        if "diagnosisReference" in d:
            condition = refs.resolve(str(_dict(d["diagnosisReference"]).get("reference", "")))
        if condition is not None and condition.resource_type == "Condition":
            cc = codings(condition.resource.get("code"), f"{condition.entry.path}.code")
        else:
            cc = codings(d.get("diagnosisCodeableConcept"), f"{path}.diagnosisCodeableConcept")
        dx = next((c for c in cc if c.system in DIAGNOSIS_SYSTEMS), cc[0] if cc else None)
        diagnoses.append(
            Diagnosis(
                index=i,
                path=path,
                sequence=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                code=normalise_icd10(dx.code)
                if dx and dx.system in DIAGNOSIS_SYSTEMS
                else (dx.code if dx else None),
                code_path=dx.path if dx else path,
                system=dx.system if dx else None,
                raw=d,
                condition=condition,
            )
        )
    procedures: list[ClaimProcedure] = []
    for i, p in enumerate(_list(claim.get("procedure"))):
        if not isinstance(p, dict):
            continue
        path = f"Claim.procedure[{i}]"
        seq = p.get("sequence")
        ref = _dict(p.get("procedureReference")).get("reference")
        resolved = refs.resolve(ref) if isinstance(ref, str) else None
        if resolved is not None and resolved.resource_type == "Procedure":
            pc = codings(resolved.resource.get("code"), f"{resolved.entry.path}.code")
        else:
            pc = codings(p.get("procedureCodeableConcept"), f"{path}.procedureCodeableConcept")
        procedures.append(
            ClaimProcedure(
                index=i,
                path=path,
                sequence=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                reference=ref if isinstance(ref, str) else None,
                resolved=resolved,
                codes=tuple(pc),
                date=parse_date(p.get("date")),
            )
        )
    return ClaimContext(
        doc=doc,
        refs=refs,
        tables=tables,
        pack=pack,
        today=today,
        setting=setting,
        claim_type=claim_type,
        created=parse_date(claim.get("created")),
        lines=lines,
        diagnoses=diagnoses,
        procedures=procedures,
        patient=_patient(claim, refs),
        care_team_sequences=frozenset(
            s for ct in _list(claim.get("careTeam")) if isinstance(s := _dict(ct).get("sequence"), int)
        ),
        supporting_info_sequences=frozenset(
            s for si in _list(claim.get("supportingInfo")) if isinstance(s := _dict(si).get("sequence"), int)
        ),
    )
