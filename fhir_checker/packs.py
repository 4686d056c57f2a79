"""Rule packs: versioned YAML files under ``profiles/`` that say which tables, which
setting, which rules at which severity, and which payer policies apply.

A malformed pack fails at load with the file, line and field, never half-loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .findings import Severity

REPO_PROFILES = Path(__file__).resolve().parent.parent / "profiles"
PACKAGED_PROFILES = Path(__file__).resolve().parent / "profiles"

SETTINGS = ("auto", "practitioner", "outpatient-hospital")
TOP_KEYS = {
    "id",
    "version",
    "title",
    "description",
    "setting",
    "tables",
    "rules",
    "policies",
    "sources",
    "extends",
}


class PackError(ValueError):
    """A rule pack that cannot be loaded: names the file, line and field."""


@dataclass(frozen=True)
class RulePack:
    id: str
    version: str
    title: str
    setting: str = "auto"  # "auto": from Claim.type (professional/institutional)
    tables: dict[str, str] = field(default_factory=dict)  # table role -> table setting
    select: tuple[str, ...] = ("ALL",)
    ignore: tuple[str, ...] = ()
    severity: dict[str, Severity] = field(default_factory=dict)  # rule id -> severity
    policies: dict[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    path: Path | None = None

    def label(self) -> str:
        return f"{self.id}@{self.version}"


def profile_dirs() -> list[Path]:
    dirs: list[Path] = []
    env = os.environ.get("FHIR_CHECKER_PROFILES")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.extend(d for d in (REPO_PROFILES, PACKAGED_PROFILES) if d.is_dir())
    return dirs


def available_packs() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in profile_dirs():
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return found


def _fail(path: Path, node: yaml.Node | None, fieldname: str, msg: str) -> PackError:
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return PackError(f"{path}{line}: {fieldname}: {msg}")


def _node_map(node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        out[str(k.value)] = (k, v)
    return out


def load_pack_file(path: Path) -> RulePack:
    """Load and validate one pack file; raises :class:`PackError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PackError(f"{path}: cannot read rule pack: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise PackError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise _fail(path, root, "(top)", "a rule pack is a mapping with id, version, rules ...")
    nodes = _node_map(root)
    for key, (knode, _) in nodes.items():
        if key not in TOP_KEYS:
            raise _fail(path, knode, key, f"unknown field (allowed: {', '.join(sorted(TOP_KEYS))})")
    for req in ("id", "version", "title"):
        if req not in data:
            raise _fail(path, root, req, "required field is missing")
        if not isinstance(data[req], str | int | float):
            raise _fail(path, nodes[req][1], req, "must be a string")
    if str(data["id"]) != path.stem:
        raise _fail(path, nodes["id"][1], "id", f"must match the file name {path.stem!r}")
    setting = data.get("setting", "auto")
    if setting not in SETTINGS:
        raise _fail(path, nodes["setting"][1], "setting", f"must be one of {', '.join(SETTINGS)}")
    tables = data.get("tables") or {}
    if not isinstance(tables, dict) or not all(isinstance(v, str) for v in tables.values()):
        raise _fail(
            path, nodes.get("tables", (None, None))[1], "tables", "must map a table role to a setting"
        )
    rules = data.get("rules") or {}
    rules_node = nodes.get("rules", (None, None))[1]
    if not isinstance(rules, dict):
        raise _fail(path, rules_node, "rules", "must be a mapping with select / ignore / severity")
    rule_nodes = _node_map(rules_node) if isinstance(rules_node, yaml.MappingNode) else {}
    for key in rules:
        if key not in ("select", "ignore", "severity"):
            raise _fail(path, rule_nodes[key][0], f"rules.{key}", "unknown field (select, ignore, severity)")
    from .registry import select_rules  # late: the registry imports the rules

    select = rules.get("select", ["ALL"])
    ignore = rules.get("ignore", [])
    for name, value in (("select", select), ("ignore", ignore)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(
                path,
                rule_nodes.get(name, (None, rules_node))[1],
                f"rules.{name}",
                "must be a list of rule ids",
            )
        try:
            select_rules(value if name == "select" else ["ALL"], [] if name == "select" else value)
        except KeyError as exc:
            raise _fail(path, rule_nodes[name][1], f"rules.{name}", str(exc.args[0])) from None
    severity: dict[str, Severity] = {}
    sev_raw = rules.get("severity", {}) or {}
    if not isinstance(sev_raw, dict):
        raise _fail(path, rule_nodes["severity"][1], "rules.severity", "must map rule ids to severities")
    sev_nodes = (
        _node_map(rule_nodes["severity"][1])
        if "severity" in rule_nodes and isinstance(rule_nodes["severity"][1], yaml.MappingNode)
        else {}
    )
    for rid, sev in sev_raw.items():
        try:
            matched = select_rules([str(rid)])
        except KeyError:
            raise _fail(
                path, sev_nodes.get(str(rid), (None, None))[0], f"rules.severity.{rid}", "no such rule"
            ) from None
        if sev not in ("error", "warning", "information"):
            raise _fail(
                path,
                sev_nodes.get(str(rid), (None, None))[1],
                f"rules.severity.{rid}",
                "must be error, warning or information",
            )
        for r in matched:
            severity[r.id] = Severity(sev)
    policies = data.get("policies") or {}
    if not isinstance(policies, dict):
        raise _fail(path, nodes["policies"][1], "policies", "must be a mapping")
    from .policies import validate_policies  # late: keeps pack loading import-light

    validate_policies(path, policies, nodes.get("policies", (None, None))[1])
    sources = data.get("sources") or []
    return RulePack(
        id=str(data["id"]),
        version=str(data["version"]),
        title=str(data["title"]),
        setting=setting,
        tables=dict(tables),
        select=tuple(select),
        ignore=tuple(ignore),
        severity=severity,
        policies=dict(policies),
        sources=tuple(str(s) for s in sources) if isinstance(sources, list) else (str(sources),),
        path=path,
    )


@lru_cache(maxsize=64)
def _load_cached(path: Path, mtime: float) -> RulePack:
    return load_pack_file(path)


def load_pack(name_or_path: str | Path) -> RulePack:
    """A pack by name (``cms-practitioner``) or by path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        path = p
    else:
        packs = available_packs()
        if str(name_or_path) not in packs:
            known = ", ".join(sorted(packs)) or "none"
            raise PackError(f"no rule pack named {name_or_path!r} (available: {known})")
        path = packs[str(name_or_path)]
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise PackError(f"{path}: rule pack file not found") from None
    return _load_cached(path.resolve(), mtime)


DEFAULT_PACK_FOR_SETTING = {
    "institutional": "cms-outpatient-hospital",
}
DEFAULT_PACK = "cms-practitioner"


def default_pack_for(claim: dict[str, Any]) -> str:
    """The pack for a claim when the caller names none: by its type."""
    for c in (claim.get("type") or {}).get("coding") or [] if isinstance(claim.get("type"), dict) else []:
        if isinstance(c, dict) and c.get("code") in DEFAULT_PACK_FOR_SETTING:
            return DEFAULT_PACK_FOR_SETTING[c["code"]]
    return DEFAULT_PACK
