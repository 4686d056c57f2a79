"""[date] Dates of service that cannot be right."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import ClaimContext
from ..findings import Finding
from ..registry import Rule, rule
from ..values import parse_date


@rule(
    id="DAT001",
    name="service-after-claim-created",
    category="date",
    severity="error",
    issue_type="business-rule",
    summary="A line's date of service is after the date the claim was created",
)
def service_after_claim_created(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line's date of service (its last day, for a period) is on or before
    ``Claim.created``.

    ## Why payers deny it
    A claim cannot bill a service that had not happened when the claim was made; payers
    reject such lines as billed in advance.

    ## Example
    ``created: 2026-03-01`` with a line ``servicedDate: 2026-03-04``.

    ## How to fix
    Correct the date of service, or create the claim after the service.
    """
    if ctx.created is None:
        return
    for ln in ctx.lines:
        last = ln.service_end or ln.service_date
        if last is None or last > ctx.today or last <= ctx.created:
            continue  # future dates are DAT002's
        yield r.finding(
            expression=ln.path if ln.date_from_claim is False else "Claim.billablePeriod",
            line=ln.index,
            message=f"Line {ln.number} is dated {last}, after the claim was created on {ctx.created}.",
            evidence=f"date of service {last} > Claim.created {ctx.created}",
        )


@rule(
    id="DAT002",
    name="service-in-future",
    category="date",
    severity="error",
    issue_type="business-rule",
    summary="A line's date of service is in the future",
)
def service_in_future(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line's date of service is not after today.

    ## Why payers deny it
    Services are billed after they are performed; a future date is a keying error or a
    claim built from a schedule, and payers reject it.

    ## Example
    A line dated next month.

    ## How to fix
    Bill the date the service was actually performed.
    """
    for ln in ctx.lines:
        last = ln.service_end or ln.service_date
        if last is not None and last > ctx.today:
            yield r.finding(
                expression=ln.path if ln.date_from_claim is False else "Claim.billablePeriod",
                line=ln.index,
                message=f"Line {ln.number} is dated {last}, which is in the future.",
                evidence=f"date of service {last} > today {ctx.today}",
            )


@rule(
    id="DAT004",
    name="service-outside-billable-period",
    category="date",
    severity="error",
    issue_type="business-rule",
    summary="A line's date of service falls outside the claim's billable period",
    ioce_edit="23",
)
def service_outside_billable_period(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line with a date of its own (``servicedDate`` or ``servicedPeriod``) lies within
    ``Claim.billablePeriod`` (the statement covers period, "from" and "through" on a
    UB-04), when the claim gives one.

    ## Why payers deny it
    A claim bills the services of its period; a line dated before its start or after its
    end is a keying error in one of the two dates. The I/OCE returns the whole claim
    (edit 23, invalid date: a service date outside the from/through dates), and
    professional payers reject the line.

    ## Example
    ``billablePeriod`` 2026-03-10 to 2026-03-10 with a line ``servicedDate: 2026-03-01``.

    ## How to fix
    Correct the line's date of service, or the claim's billable period, to what happened.
    """
    bp = ctx.claim.get("billablePeriod")
    if not isinstance(bp, dict):
        return
    start, end = parse_date(bp.get("start")), parse_date(bp.get("end"))
    if start is None and end is None:
        return
    for ln in ctx.lines:
        first, last = ln.service_date, ln.service_end or ln.service_date
        if ln.date_from_claim or first is None or last is None:
            continue
        if (start is None or first >= start) and (end is None or last <= end):
            continue
        period = f"{start or '...'} to {end or '...'}"
        dated = f"{first}" if first == last else f"{first} to {last}"
        yield r.finding(
            expression=ln.path,
            line=ln.index,
            message=f"Line {ln.number} is dated {dated}, outside the claim's billable period {period}.",
            evidence=f"date of service {dated}; Claim.billablePeriod {period}",
        )
