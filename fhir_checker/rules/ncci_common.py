"""What the NCCI rules share: same-day, same-provider line groups and the NCCI modifiers."""

from __future__ import annotations

from datetime import date
from typing import Any

from ..context import ClaimContext, ClaimLine
from ..values import as_list

#: NCCI-associated modifiers: on either line they bypass a PTP pair with modifier
#: indicator 1 (CMS NCCI Policy Manual, ch. I; the I/OCE ``ncci`` modifier flag).
NCCI_MODIFIERS: frozenset[str] = frozenset(
    ["24", "25", "27", "57", "58", "59", "78", "79", "91", "XE", "XP", "XS", "XU"]
    + ["E1", "E2", "E3", "E4", "FA"]
    + [f"F{i}" for i in range(1, 10)]
    + ["TA"]
    + [f"T{i}" for i in range(1, 10)]
    + ["LT", "RT", "LC", "LD", "LM", "RC", "RI"]
)

CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
HCPCS_SYSTEM = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"


def _provider_of_team(ctx: ClaimContext) -> dict[int, str]:
    team: dict[int, str] = {}
    for ct in as_list(ctx.claim.get("careTeam")):
        if isinstance(ct, dict) and isinstance(ct.get("sequence"), int):
            ref = ct.get("provider")
            if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                team[ct["sequence"]] = ref["reference"]
    return team


def same_day_groups(ctx: ClaimContext) -> dict[tuple[date, str], list[ClaimLine]]:
    """Coded lines by (date of service, provider).

    NCCI edits compare services of one provider to one patient on one day. On a
    professional claim a line's provider is its first care-team member
    (``item.careTeamSequence``), else the billing provider; an institutional claim is one
    facility, so all its lines of a day form one group.
    """
    cached: Any = ctx.extra.get("ncci.same_day_groups")
    if cached is not None:
        groups: dict[tuple[date, str], list[ClaimLine]] = cached
        return groups
    team = _provider_of_team(ctx) if ctx.is_professional else {}
    # A line without its own care-team member is the claim's rendering provider: the only
    # member when there is one.
    default = next(iter(team.values())) if len(team) == 1 else ""
    groups = {}
    for day, lines in ctx.lines_by_date.items():
        for ln in lines:
            provider = default
            if team and ln.care_team_sequences:
                provider = team.get(ln.care_team_sequences[0], default)
            groups.setdefault((day, provider), []).append(ln)
    ctx.extra["ncci.same_day_groups"] = groups
    return groups


def code_system(code: str) -> str:
    """CPT for codes starting with a digit, HCPCS Level II for a letter."""
    return CPT_SYSTEM if code[:1].isdigit() else HCPCS_SYSTEM


def units_of(ln: ClaimLine) -> float:
    """Billed units; a line without a quantity is one unit (as payers read it)."""
    return ln.units if ln.units is not None else 1.0


def units_path(ln: ClaimLine) -> str:
    """Where an MUE finding points: the quantity when the units were read from its value,
    else the billed code (no value: the line counts as one unit)."""
    q = ln.raw.get("quantity")
    return f"{ln.path}.quantity" if isinstance(q, dict) and "value" in q else ln.code_path
