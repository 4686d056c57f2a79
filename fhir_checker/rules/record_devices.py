"""[device] / [modifier] Implanted devices and body-site laterality in the record vs the bill."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..clinical import FocalDevice, Laterality
from ..context import OUTPATIENT_HOSPITAL, ClaimContext, ClaimLine
from ..findings import Finding, Severity
from ..registry import Rule, rule
from ..values import as_list

#: Device kinds named in Device.type text / display / deviceName -> the HCPCS device code
#: (OPPS C-codes, public HCPCS Level II descriptions), for Devices not coded in HCPCS.
DEVICE_WORDS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\bport\b|port-a-cath|portacath", re.I), "C1788", "Port, indwelling (implantable)"),
    (
        re.compile(r"\bprogrammable\b.*\bpump\b|\bpump\b.*\bprogrammable\b", re.I),
        "C1772",
        "Infusion pump, programmable (implantable)",
    ),
    (
        re.compile(r"\bpicc\b|peripherally inserted central", re.I),
        "C1751",
        "Catheter, infusion, inserted peripherally, centrally or midline (other than hemodialysis)",
    ),
)
_REMOVED = re.compile(r"remov|explant", re.I)


def _device_code(fd: FocalDevice) -> tuple[str, str] | None:
    """(HCPCS device code, where it came from) for a focal device."""
    for c in fd.codes:
        if c.kind == "hcpcs" and c.code.startswith("C"):
            return c.code, f"Device.type {c.path}"
    if fd.device is None:
        return None
    dev = fd.device.resource
    texts: list[str] = []
    raw_type = dev.get("type")
    dtype: dict[str, Any] = raw_type if isinstance(raw_type, dict) else {}
    texts.append(str(dtype.get("text") or ""))
    texts.extend(str(c.get("display") or "") for c in as_list(dtype.get("coding")) if isinstance(c, dict))
    texts.extend(str(n.get("name") or "") for n in as_list(dev.get("deviceName")) if isinstance(n, dict))
    blob = " ".join(texts)
    for pattern, code, desc in DEVICE_WORDS:
        if pattern.search(blob):
            return code, f"Device type {blob.strip()!r} -> {code} ({desc})"
    return None


def _removed(resource: dict[str, object], index: int) -> bool:
    fds = resource.get("focalDevice")
    fd = fds[index] if isinstance(fds, list) and index < len(fds) and isinstance(fds[index], dict) else {}
    action = fd.get("action") if isinstance(fd, dict) else None
    if not isinstance(action, dict):
        return False
    words = [str(action.get("text") or "")] + [
        str(c.get("display") or "") for c in as_list(action.get("coding")) if isinstance(c, dict)
    ]
    return any(_REMOVED.search(w) for w in words)


@rule(
    id="RDV001",
    name="implanted-device-not-billed",
    category="device",
    severity="warning",
    issue_type="business-rule",
    summary="A Procedure's implanted device (focalDevice) has no device code on the claim",
    settings=(OUTPATIENT_HOSPITAL,),
)
def implanted_device_not_billed(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Outpatient hospital claims only. A completed Procedure of this claim with a
    ``focalDevice`` (an implanted port, pump, catheter) whose device HCPCS code is not on
    any line. The code comes from the Device's ``type`` when it is coded in HCPCS (C1788),
    else from the device kind named in ``Device.type`` / ``deviceName`` (port -> C1788,
    programmable implantable pump -> C1772, PICC -> C1751). Devices the record says were
    removed are skipped.

    ## Why payers deny it
    OPPS asks hospitals to report the device C-code with the procedure that implants it:
    device costs feed the APC rates, and device-intensive procedures are returned (I/OCE
    edit 92) or underpaid when the device code is missing.

    ## Example
    The Procedure for 36561 has ``focalDevice`` -> Device typed C1788 (implantable port);
    the claim bills 36561 but no C1788.

    ## How to fix
    Add the device line (C1788, revenue code 0278) with the procedure's date of service.
    """
    for p in ctx.record_procedures:
        if p.status != "completed" or not p.focal_devices or not ctx.on_claim(p):
            continue
        for i, fd in enumerate(p.focal_devices):
            if _removed(p.entry.resource, i):
                continue
            found = _device_code(fd)
            if found is None or found[0] in ctx.billed_codes:
                continue
            code, why = found
            yield r.finding(
                expression=fd.path,
                message=f"The Procedure for {', '.join(sorted(p.code_set)) or 'this claim'} documents an implanted "
                f"device, but its device code {code} is not billed on the claim.",
                evidence=f"{p.label} focalDevice[{i}]: {why}; billed codes: {', '.join(sorted(ctx.billed_codes))}",
                device_code=code,
            )


def _billed_side(ln: ClaimLine) -> tuple[str, str] | None:
    """(side, modifier path) the line's modifiers claim: RT, LT, 50 (or RT + LT)."""
    by_code = {m.code: m.path for m in ln.modifiers}
    if "50" in by_code or ("RT" in by_code and "LT" in by_code):
        return "bilateral", by_code.get("50") or by_code["RT"]
    if "RT" in by_code:
        return "right", by_code["RT"]
    if "LT" in by_code:
        return "left", by_code["LT"]
    return None


def _coded(lat: Laterality) -> bool:
    return ".coding[" in lat.path


@rule(
    id="RDV002",
    name="laterality-contradicts-modifier",
    category="modifier",
    severity="error",
    issue_type="business-rule",
    summary="An RT/LT/50 modifier contradicts the body site side in the Procedure",
)
def laterality_contradicts_modifier(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    A line with modifier RT, LT or 50 (or RT and LT) against the side its Procedure's
    ``bodySite`` documents: a SNOMED CT laterality qualifier (7771000 left, 24028007 right,
    51440002 right and left), else the words left / right / bilateral in the site's text
    or display. A coded side that contradicts the modifier is an error; one read from
    free text is a warning.

    ## Why payers deny it
    Laterality modifiers drive bilateral and same-site edits; a modifier that contradicts
    the record is wrong-site billing, denied in review and a compliance risk.

    ## Example
    36561 billed with RT; the Procedure's bodySite is SNOMED 7771000 (left) "left upper
    chest".

    ## How to fix
    Correct the modifier to the documented side (or correct the documentation).
    """
    for ln in ctx.lines:
        billed = _billed_side(ln)
        if billed is None:
            continue
        for p in ctx.procedures_for(ln):
            lat = p.laterality
            if lat is None or lat.side == billed[0]:
                continue
            yield r.finding(
                expression=billed[1],
                line=ln.index,
                severity=None if _coded(lat) else Severity.WARNING,
                message=f"Line {ln.number} ({ln.code}) is billed as {billed[0]}, but "
                f"the Procedure documents the {lat.side} side.",
                evidence=f"modifier side {billed[0]}; {p.label} bodySite {lat.path}: {lat.side}",
            )
            break
