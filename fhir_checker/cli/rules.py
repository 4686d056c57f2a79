"""``fhir-checker rules``: list the rules, or show one rule's doc."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..packs import RulePack
    from ..registry import Rule


def register(sub: Any) -> None:
    p = sub.add_parser("rules", help="list rules, or show one rule's doc (rules ID)")
    p.add_argument("rule", nargs="?", help="rule id (e.g. PTP001) or name")
    p.add_argument("--profile", help="show what this rule pack turns on, at which severity")
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    p.set_defaults(func=run)


def _print_pack(pack: RulePack) -> None:
    from ..policies import describe

    print(f"rule pack {pack.label()}: {pack.title}")
    if pack.extends:
        print(f"  extends:  {' -> '.join(pack.extends)}")
    print(f"  file:     {pack.path}")
    print(f"  setting:  {pack.setting}" + ("  (from each claim's type)" if pack.setting == "auto" else ""))
    tables = ", ".join(f"{k}: {v}" for k, v in sorted(pack.tables.items())) or "by claim setting"
    print(
        f"  tables:   {tables}"
        + (f"  (written for releases of {pack.tables_effective} or later)" if pack.tables_effective else "")
    )
    loaded = ", ".join(f"{name} {eff}" for name, eff in _loaded_tables(pack))
    print(f"  loaded:   {loaded}")
    print(
        f"  rules:    select {', '.join(pack.select)}"
        + (f"; ignore {', '.join(pack.ignore)}" if pack.ignore else "")
    )
    for line in describe(pack.policies):
        print(f"  policy:   {line}")
    for src in pack.sources:
        print(f"  source:   {src}")
    print()


def _loaded_tables(pack: RulePack) -> list[tuple[str, str]]:
    """The edit tables this pack uses, with the effective date of the copy in force."""
    from ..packs import edit_tables
    from ..tables import get_tables

    manifest = get_tables().manifest["tables"]
    return [
        (name, str(manifest.get(name, {}).get("effective", "missing")))
        for name in edit_tables(pack.tables, pack.setting)
    ]


def _pack_json(
    pack: RulePack, rules: list[Rule], enabled: set[str], severity: dict[str, str]
) -> dict[str, Any]:
    from ..policies import MedicalNecessity

    mn = pack.policies.get("medical_necessity")
    return {
        "id": pack.id,
        "version": pack.version,
        "title": pack.title,
        "extends": list(pack.extends),
        "setting": pack.setting,
        "tables": pack.tables,
        "tables_effective": pack.tables_effective,
        "tables_loaded": dict(_loaded_tables(pack)),
        "select": list(pack.select),
        "ignore": list(pack.ignore),
        "sources": list(pack.sources),
        "policies": {
            "medical_necessity": {
                code: {"accept": [a.text for a in p.accept], "label": p.label, "source": p.source}
                for code, p in sorted(mn.by_code.items())
            }
        }
        if isinstance(mn, MedicalNecessity)
        else {},
        "rules": [
            {
                "id": r.id,
                "name": r.name,
                "category": r.category,
                "severity": severity.get(r.id, r.severity.value),
            }
            for r in rules
            if r.id in enabled
        ],
    }


def run(args: argparse.Namespace) -> int:
    import json

    from ..packs import PackError, load_pack
    from ..registry import all_rules, get_rule, select_rules

    if args.rule:
        try:
            r = get_rule(args.rule)
        except KeyError:
            print(f"fhir-checker: no rule {args.rule!r} (see 'fhir-checker rules')", file=sys.stderr)
            return 2
        print(f"{r.id}  {r.name}\n")
        print(
            f"category: {r.category or '-'}   default severity: {r.severity.value}   "
            f"issue type: {r.issue_type}   settings: {', '.join(r.settings)}"
            + (f"   I/OCE edit: {r.ioce_edit}" if r.ioce_edit else "")
        )
        print(f"\n{r.summary}\n\n{r.doc}")
        return 0
    rules = all_rules()
    enabled = {r.id for r in rules}
    severity: dict[str, str] = {}
    if args.profile:
        try:
            pack = load_pack(args.profile)
        except PackError as exc:
            print(f"fhir-checker: {exc}", file=sys.stderr)
            return 2
        enabled = {r.id for r in select_rules(pack.select, pack.ignore)}
        severity = {k: v.value for k, v in pack.severity.items()}
        if args.format == "text":
            _print_pack(pack)
    if args.format == "json":
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "name": r.name,
                        "category": r.category,
                        "severity": severity.get(r.id, r.severity.value),
                        "enabled": r.id in enabled,
                        "summary": r.summary,
                        "settings": list(r.settings),
                    }
                    for r in rules
                ],
                indent=2,
            )
            if not args.profile
            else json.dumps(_pack_json(pack, rules, enabled, severity), indent=2)
        )
        return 0
    if args.format == "markdown":
        for r in rules:
            print(
                f"## {r.id} {r.name}\n\n*{r.category or '-'}, {r.severity.value}*: {r.summary}\n\n"
                + r.doc.replace("## ", "### ")
                + "\n"
            )
        return 0
    for r in rules:
        mark = " " if r.id in enabled else "-"
        sev = severity.get(r.id, r.severity.value)
        print(f"{mark} {r.id:<7} {r.name:<34} {r.category or '-':<18} {sev:<11} {r.summary}")
    return 0
