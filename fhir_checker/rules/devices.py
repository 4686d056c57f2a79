"""[device] I/OCE device edits on outpatient hospital claims: device-intensive procedures
without a device (edit 92), device-dependent procedures without their device (edit 135),
pass-through devices without their procedure (edit 98)."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import OUTPATIENT_HOSPITAL, ClaimContext, ClaimLine
from ..findings import Finding
from ..registry import Rule, rule

#: Discontinued or reduced procedures: the device edits do not apply (I/OCE modifier flag
#: device_req_exclusion: 52, 73, 74).
TERMINATED_PROCEDURE = frozenset({"52", "73", "74"})


def _terminated(ctx: ClaimContext, ln: ClaimLine) -> bool:
    mods = ctx.tables.modifiers
    return any(
        m.code in TERMINATED_PROCEDURE or ((info := mods.get(m.code)) is not None and info.device_exclusion)
        for m in ln.modifiers
    )


@rule(
    id="DEV001",
    name="device-intensive-without-device",
    category="device",
    severity="error",
    issue_type="business-rule",
    summary="A device-intensive procedure has no device code on the same day",
    settings=(OUTPATIENT_HOSPITAL,),
    ioce_edit="92",
)
def device_intensive_without_device(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    On outpatient hospital claims, each device-intensive procedure (the I/OCE 27.1.0 list of
    834 codes, e.g. 33208 dual-chamber pacemaker insertion) needs at least one device HCPCS
    code (one of the 176 codes with the I/OCE ``device`` flag, e.g. C1785, C1898) on a line
    of the same date of service. Not raised when the procedure line carries modifier 52, 73
    or 74 (discontinued or reduced), nor when it carries CG and the procedure is one of the
    358 for which the I/OCE lets CG bypass the edit (no device was used, e.g. a device
    furnished at no cost). 36561 (tunneled port) is not device-intensive in 27.1.0.

    ## Why payers deny it
    The APC payment of a device-intensive procedure includes the device cost; CMS requires
    the device code so that cost is recorded. The I/OCE returns the claim to the provider
    (edit 92, device-intensive procedure reported without device code).

    ## Example
    33208 on 2026-03-10 with no C-code for the pacemaker (C1785) or leads (C1898) that day.

    ## How to fix
    Add the device HCPCS codes for the devices implanted (with their charges), or CG where
    no device was used and the procedure allows it, or 73/74 if the procedure was stopped.
    """
    table = ctx.tables.procedure_attributes
    for day, lines in ctx.lines_by_date.items():
        devices = [ln.code for ln in lines if ln.code and table.get(ln.code).device]
        if devices:
            continue
        for ln in lines:
            assert ln.code is not None
            a = table.get(ln.code)
            if not a.device_intensive or _terminated(ctx, ln):
                continue
            if a.e92_cg_bypass and "CG" in ln.modifier_codes:
                continue
            n = ln.number
            yield r.finding(
                expression=ln.code_path,
                line=ln.index,
                message=(
                    f"Line {n}: {ln.code} is a device-intensive procedure, but no device code is billed on "
                    f"{day.isoformat()}."
                ),
                evidence=f"{ln.code} device-intensive; no code with the I/OCE device flag on {day.isoformat()}"
                f"{'; CG bypasses it for this code' if a.e92_cg_bypass else ''}; {ctx.tables.cite('procedure_attributes')}; I/OCE edit 92",
            )


@rule(
    id="DEV002",
    name="device-dependent-without-its-device",
    category="device",
    severity="error",
    issue_type="business-rule",
    summary="A device-dependent procedure lacks its required device code on the same day",
    settings=(OUTPATIENT_HOSPITAL,),
    ioce_edit="135",
)
def device_dependent_without_device(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    On outpatient hospital claims, the procedures that need one specific device (I/OCE
    27.1.0 device-procedure map: 0308T needs C1840 telescopic intraocular lens, 66683 needs
    C1839 iris prosthesis) have that device code on a line of the same date of service.
    Not raised when the procedure carries modifier 52, 73 or 74.

    ## Why payers deny it
    The procedure cannot be done without the device and is paid with it; the I/OCE returns
    the claim (edit 135, claim day lacks required device code).

    ## Example
    66683 (iris prosthesis implantation) on 2026-03-10 without C1839.

    ## How to fix
    Add the device code on the same date, or 73/74 if the procedure was stopped before the
    device was implanted.
    """
    needs = ctx.tables.device_pairs.dependent
    for day, lines in ctx.lines_by_date.items():
        codes = {ln.code for ln in lines}
        for ln in lines:
            assert ln.code is not None
            devices = needs.get(ln.code)
            if not devices or codes.intersection(devices) or _terminated(ctx, ln):
                continue
            n = ln.number
            yield r.finding(
                expression=ln.code_path,
                line=ln.index,
                message=f"Line {n}: {ln.code} needs the device code {' or '.join(devices)} on {day.isoformat()}.",
                evidence=f"{ln.code} requires {', '.join(devices)} the same day; none billed on {day.isoformat()}; "
                f"{ctx.tables.cite('device_procedure_pairs')}; I/OCE edit 135",
            )


@rule(
    id="DEV003",
    name="pass-through-device-without-procedure",
    category="device",
    severity="error",
    issue_type="business-rule",
    summary="A pass-through device code is billed without any procedure it may be billed with",
    settings=(OUTPATIENT_HOSPITAL,),
    ioce_edit="98",
)
def passthrough_device_without_procedure(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    On outpatient hospital claims, each transitional pass-through device code (the 23 codes
    with the I/OCE ``passthrough_device`` flag, e.g. C1739 tissue marker, C9610 coronary
    drug-delivery catheter) needs one of the procedures the I/OCE pairs it with (170 pairs,
    27.1.0) somewhere on the claim. The I/OCE's edit 105 (device before the procedure's FDA
    approval date) reads the pairs' activation dates, which are empty for every pair in
    27.1.0, so it has no data and is not checked.

    ## Why payers deny it
    A pass-through device is paid separately only together with the procedure that implants
    or uses it; alone it cannot be paid and the I/OCE returns the claim (edit 98, pass-through
    device lacks required procedure).

    ## Example
    C1739 (tissue marker with detection probe) billed with no breast localization procedure
    (19081, 19083, 19085 ...).

    ## How to fix
    Add the procedure that used the device, or remove the device line if it was not used.
    """
    pairs = ctx.tables.device_pairs.passthrough
    table = ctx.tables.procedure_attributes
    codes = {ln.code for ln in ctx.lines if ln.code}
    for ln in ctx.coded_lines():
        assert ln.code is not None
        if not table.get(ln.code).passthrough:
            continue
        allowed = sorted({p.procedure for p in pairs.get(ln.code, ())})
        if not allowed or codes.intersection(allowed):
            continue
        shown = ", ".join(allowed[:8]) + (f" and {len(allowed) - 8} more" if len(allowed) > 8 else "")
        n = ln.number
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            message=f"Line {n}: pass-through device {ln.code} is billed without a procedure it belongs to.",
            evidence=f"{ln.code} may be billed with {shown}; none on the claim; {ctx.tables.cite('device_procedure_pairs')}; I/OCE edit 98",
        )
