"""[sole-service] Codes CPT says are reported only when no other service is billed that day."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import ClaimContext
from ..findings import Finding, Fix
from ..registry import Rule, rule
from .ncci_common import same_day_groups

#: Code -> the instruction behind it. 96523: CPT's parenthetical "Do not report 96523 in
#: conjunction with any other service on the same date by the same provider" (summarised).
SOLE_SERVICES: dict[str, str] = {
    "96523": "96523 is reported only when it is the sole service of the day by the provider (CPT instruction)",
}


@rule(
    id="SOL001",
    name="sole-service-with-others",
    category="sole-service",
    severity="error",
    issue_type="business-rule",
    summary="96523 (port irrigation) billed with other services by the same provider on the same day",
    settings=("practitioner",),
)
def sole_service_with_others(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    On professional claims, a line coded 96523 (a port flush) when any other service is billed by the same rendering provider on the same
    date of service. It does not depend on the NCCI PTP table: it holds for every other
    code, paired in the table or not.

    ## Why payers deny it
    CPT instructs that 96523 is reported only when no other service is reported on the same
    day by the same provider: flushing a port is part of any other service that uses it
    (drug administration, a blood draw through the port, a visit). The NCCI table encodes
    that for many pairs (36561 + 96523, indicator 0), but not for every service, so payers
    that follow the CPT instruction deny 96523 with, e.g., a lab draw the table does not pair
    with it. Institutional claims are out of scope: hospitals report 96523 with other
    services under OPPS packaging rules instead.

    ## Example
    96523 and 99213 (an office visit) by the same practitioner on 2026-04-02.

    ## How to fix
    Remove the 96523 line: the port flush is included in the other service. Bill 96523 only
    on a day when the flush is the only service.
    """
    for (_day, _provider), lines in same_day_groups(ctx).items():
        for ln in lines:
            if ln.code not in SOLE_SERVICES:
                continue
            others = sorted({o.code for o in lines if o.code and o.code != ln.code})
            if not others:
                continue
            n = ln.number
            yield r.finding(
                expression=ln.code_path,
                line=ln.index,
                message=(
                    f"Line {n}: {ln.code} is reported only when it is the provider's sole service of the "
                    f"day, but {', '.join(others)} {'is' if len(others) == 1 else 'are'} also billed on "
                    f"{ln.service_date}."
                ),
                evidence=f"{SOLE_SERVICES[ln.code]}; other services that day: {', '.join(others)}",
                fix=Fix(kind="remove-line", line=ln.index, label=f"Remove line {n} ({ln.code})"),
            )
