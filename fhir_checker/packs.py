"""Rule packs: versioned YAML files under ``profiles/`` that say which tables, which
setting, which rules at which severity, and which payer policies apply.

A malformed pack fails at load with the file, line and field, never half-loaded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
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
#: The payer -> pack mapping lives next to the packs but is not one.
PAYER_MAP = "payers.yaml"
TABLE_SETTINGS = ("practitioner", "outpatient-hospital", "auto")


class PackError(ValueError):
    """A rule pack that cannot be loaded: names the file, line and field."""


@dataclass(frozen=True)
class RulePack:
    id: str
    version: str
    title: str
    setting: str = "auto"  # "auto": from Claim.type (professional/institutional)
    tables: dict[str, str] = field(default_factory=dict)  # table role -> table setting (or "auto")
    select: tuple[str, ...] = ("ALL",)
    ignore: tuple[str, ...] = ()
    severity: dict[str, Severity] = field(default_factory=dict)  # rule id -> severity
    policies: dict[str, Any] = field(default_factory=dict)  # compiled (see policies.py)
    sources: tuple[str, ...] = ()
    path: Path | None = None
    description: str = ""
    tables_effective: str | None = None  # the edit tables' effective date the pack was written for
    extends: tuple[str, ...] = ()  # the chain of packs this one builds on, nearest first
    files: tuple[Path, ...] = ()  # this pack's file and those of the packs it extends

    def label(self) -> str:
        return f"{self.id}@{self.version}"

    def table_setting(self, role: str, claim_setting: str) -> str:
        """The setting of the edit table for ``role`` (``ptp``, ``mue``): the pack's, or
        the claim's when the pack says ``auto`` or nothing."""
        named = self.tables.get(role)
        return named if named in ("practitioner", "outpatient-hospital") else claim_setting


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
            if p.name != PAYER_MAP:
                found.setdefault(p.stem, p)
    return found


def _fail(path: Path, node: yaml.Node | None, fieldname: str, msg: str) -> PackError:
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return PackError(f"{path}{line}: {fieldname}: {msg}")


def _node_map(node: yaml.Node | None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[str(k.value)] = (k, v)
    return out


def _read_yaml(path: Path, what: str) -> tuple[yaml.Node | None, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as unreadable:
        raise PackError(f"{path}: cannot read {what}: {unreadable.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise PackError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return root, data


def _iso_date(value: Any) -> str | None:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            return None
    return None


def load_pack_file(path: Path, _chain: tuple[Path, ...] = ()) -> RulePack:
    """Load and validate one pack file (and the packs it extends); raises :class:`PackError`.

    Everything is validated before the pack is built: a malformed pack is never half-loaded.
    """
    root, data = _read_yaml(path, "rule pack")
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise _fail(path, root, "(top)", "a rule pack is a mapping with id, version, rules ...")
    nodes = _node_map(root)

    def node(key: str) -> yaml.Node | None:
        return nodes.get(key, (None, None))[1]

    for key, (knode, _) in nodes.items():
        if key not in TOP_KEYS:
            raise _fail(path, knode, key, f"unknown field (allowed: {', '.join(sorted(TOP_KEYS))})")
    for req in ("id", "version", "title"):
        if req not in data:
            raise _fail(path, root, req, "required field is missing")
        if not isinstance(data[req], str | int | float) or isinstance(data[req], bool):
            raise _fail(path, node(req), req, "must be a string")
    if str(data["id"]) != path.stem:
        raise _fail(path, node("id"), "id", f"must match the file name {path.stem!r}")
    for key in ("title", "description"):
        if key in data and not isinstance(data[key], str):
            raise _fail(path, node(key), key, "must be a string")

    parent: RulePack | None = None
    if "extends" in data:
        name = data["extends"]
        if not isinstance(name, str) or not name:
            raise _fail(path, node("extends"), "extends", "must name one rule pack")
        if name == path.stem or any(p.stem == name for p in _chain):
            cycle = " -> ".join([*(p.stem for p in _chain), path.stem, name])
            raise _fail(path, node("extends"), "extends", f"packs extend each other in a cycle: {cycle}")
        target = _find_pack(name, path.parent)
        if target is None:
            known = ", ".join(sorted(available_packs())) or "none"
            raise _fail(path, node("extends"), "extends", f"no rule pack named {name!r} (available: {known})")
        try:
            parent = load_pack_file(target, (*_chain, path))
        except PackError as exc:
            raise _fail(
                path, node("extends"), "extends", f"the pack it extends is malformed: {exc}"
            ) from None

    setting = data.get("setting", parent.setting if parent else "auto")
    if setting not in SETTINGS:
        raise _fail(path, node("setting"), "setting", f"must be one of {', '.join(SETTINGS)}")

    tables_raw = data.get("tables") or {}
    if not isinstance(tables_raw, dict):
        raise _fail(
            path,
            node("tables"),
            "tables",
            "must map a table role (ptp, mue) to a setting, and effective to a date",
        )
    tnodes = _node_map(node("tables"))
    tables = dict(parent.tables) if parent else {}
    effective = parent.tables_effective if parent else None
    for role, value in tables_raw.items():
        vnode = tnodes.get(str(role), (None, node("tables")))[1]
        if role == "effective":
            effective = _iso_date(value)
            if effective is None:
                raise _fail(path, vnode, "tables.effective", "must be a date (YYYY-MM-DD)")
        elif value not in TABLE_SETTINGS:
            raise _fail(path, vnode, f"tables.{role}", f"must be one of {', '.join(TABLE_SETTINGS)}")
        else:
            tables[str(role)] = str(value)

    if effective is not None:
        _check_tables_effective(
            path, tnodes.get("effective", (None, node("tables") or root))[1], effective, tables, setting
        )

    rules = data.get("rules") or {}
    rules_node = node("rules")
    if not isinstance(rules, dict):
        raise _fail(path, rules_node, "rules", "must be a mapping with select / ignore / severity")
    rule_nodes = _node_map(rules_node)
    for key in rules:
        if key not in ("select", "ignore", "severity"):
            raise _fail(
                path, rule_nodes[str(key)][0], f"rules.{key}", "unknown field (select, ignore, severity)"
            )
    from .registry import select_rules  # late: the registry imports the rules

    select = rules.get("select", list(parent.select) if parent else ["ALL"])
    ignore = rules.get("ignore", [])
    for name, value in (("select", select), ("ignore", ignore)):
        vnode = rule_nodes.get(name, (None, rules_node))[1]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(path, vnode, f"rules.{name}", "must be a list of rule ids, prefixes or categories")
        try:
            select_rules(value if name == "select" else ["ALL"], [] if name == "select" else value)
        except KeyError as unknown:
            raise _fail(path, vnode, f"rules.{name}", str(unknown.args[0])) from None
    if parent:  # a child's ignore adds to its parent's
        ignore = [*parent.ignore, *(i for i in ignore if i not in parent.ignore)]
    severity: dict[str, Severity] = dict(parent.severity) if parent else {}
    sev_raw = rules.get("severity", {}) or {}
    if not isinstance(sev_raw, dict):
        raise _fail(path, rule_nodes["severity"][1], "rules.severity", "must map rule ids to severities")
    sev_nodes = _node_map(rule_nodes.get("severity", (None, None))[1])
    for rid, sev in sev_raw.items():
        pair = sev_nodes.get(str(rid))
        sev_key: yaml.Node | None = pair[0] if pair else rules_node
        sev_value: yaml.Node | None = pair[1] if pair else rules_node
        try:
            matched = select_rules([str(rid)])
        except KeyError:
            raise _fail(path, sev_key, f"rules.severity.{rid}", "no such rule") from None
        if sev not in ("error", "warning", "information"):
            raise _fail(path, sev_value, f"rules.severity.{rid}", "must be error, warning or information")
        for r in matched:
            severity[r.id] = Severity(sev)

    policies_raw = data.get("policies") or {}
    if not isinstance(policies_raw, dict):
        raise _fail(path, node("policies"), "policies", "must be a mapping")
    from .policies import merge_policies, validate_policies  # late: keeps pack loading import-light

    policies = validate_policies(path, policies_raw, node("policies"))
    if parent:
        policies = merge_policies(parent.policies, policies)

    sources_raw = data.get("sources") or []
    if not isinstance(sources_raw, list | str) or (
        isinstance(sources_raw, list) and not all(isinstance(s, str) for s in sources_raw)
    ):
        raise _fail(path, node("sources"), "sources", "must be a list of strings")
    own_sources = (sources_raw,) if isinstance(sources_raw, str) else tuple(sources_raw)
    sources = (*own_sources, *(s for s in (parent.sources if parent else ()) if s not in own_sources))
    return RulePack(
        id=str(data["id"]),
        version=str(data["version"]),
        title=str(data["title"]),
        setting=setting,
        tables=tables,
        select=tuple(select),
        ignore=tuple(ignore),
        severity=severity,
        policies=policies,
        sources=sources,
        path=path,
        description=str(data.get("description", "")).strip(),
        tables_effective=effective,
        extends=(parent.id, *parent.extends) if parent else (),
        files=(path, *(parent.files if parent else ())),
    )


def edit_tables(tables: Mapping[str, str], setting: str) -> list[str]:
    """The packed NCCI tables a pack can use: PTP and MUE of each setting its claims may
    have (both when the setting or the table role is ``auto``), and the add-on file."""
    names: list[str] = []
    for role in ("ptp", "mue"):
        named = tables.get(role, "auto")
        chosen = named if named != "auto" else setting
        settings = ("practitioner", "outpatient-hospital") if chosen == "auto" else (chosen,)
        names.extend(f"{role}_{s.replace('-', '_')}" for s in settings)
    return [*names, "addon_codes"]


def _check_tables_effective(
    path: Path, vnode: yaml.Node | None, effective: str, tables: Mapping[str, str], setting: str
) -> None:
    """``tables.effective`` is the oldest edit-table release the pack was written for:
    every NCCI table it uses must be effective on that date or later (a quarterly
    ``data import`` only makes them newer). Checked against the tables in force."""
    from .tables import get_tables  # late: packs load without the tables otherwise

    try:
        manifest = get_tables().manifest["tables"]
    except (OSError, ValueError, KeyError):
        return  # no readable manifest: the engine reports that when it loads a table
    for name in edit_tables(tables, setting):
        loaded = str((manifest.get(name) or {}).get("effective", ""))
        if loaded and loaded < effective:
            raise _fail(
                path,
                vnode,
                "tables.effective",
                f"the pack is written for edit tables effective {effective} or later, but the "
                f"loaded {name} is effective {loaded} (see fhir-checker data info; "
                f"update with fhir-checker data import)",
            )


def _find_pack(name: str, near: Path) -> Path | None:
    """A pack by name: next to the pack that names it first, then the profile dirs."""
    sibling = near / f"{name}.yaml"
    if sibling.is_file():
        return sibling
    return available_packs().get(name)


def _mtimes(files: tuple[Path, ...]) -> tuple[float, ...] | None:
    try:
        return tuple(f.stat().st_mtime for f in files)
    except OSError:
        return None


#: Loaded packs by resolved path, with the modification times of the pack and of every
#: pack it extends: a few stat calls tell whether any of them changed.
_LOADED: dict[Path, tuple[tuple[float, ...], RulePack]] = {}


def load_pack(name_or_path: str | Path) -> RulePack:
    """A pack by name (``cms-practitioner``) or by path to a YAML file."""
    p = Path(name_or_path)
    try:
        is_path = p.suffix in (".yaml", ".yml") or p.exists()
    except OSError:  # e.g. a name too long for a path: then it is no file, just an unknown name
        is_path = False
    if is_path:
        path = p
    else:
        packs = available_packs()
        if str(name_or_path) not in packs:
            known = ", ".join(sorted(packs)) or "none"
            raise PackError(f"no rule pack named {name_or_path!r} (available: {known})")
        path = packs[str(name_or_path)]
    if not path.is_file():
        raise PackError(f"{path}: rule pack file not found")
    resolved = path.resolve()
    hit = _LOADED.get(resolved)
    if hit is not None and _mtimes(hit[1].files) == hit[0]:
        return hit[1]
    pack = load_pack_file(resolved)
    stamp = _mtimes(pack.files)
    if stamp is not None:
        if len(_LOADED) > 64:
            _LOADED.clear()
        _LOADED[resolved] = (stamp, pack)
    return pack


# --- which pack for a claim --------------------------------------------------------

DEFAULT_PACK_FOR_SETTING = {
    "institutional": "cms-outpatient-hospital",
}
DEFAULT_PACK = "cms-practitioner"
CLAIM_TYPES = ("institutional", "professional")


@dataclass(frozen=True)
class PayerRoute:
    name: str
    match: frozenset[str]  # casefolded payer keys: reference, Type/id, system|value, value, name
    packs: Mapping[str, str]  # claim type ("institutional", "professional", "*") -> pack


@dataclass(frozen=True)
class PayerMap:
    path: Path | None
    version: str
    routes: tuple[PayerRoute, ...]

    def pack_for(self, payer_keys: Iterable[str], claim_type: str | None) -> str | None:
        keys = {k.casefold() for k in payer_keys}
        if not keys:
            return None
        for route in self.routes:
            if route.match & keys:
                return route.packs.get(claim_type or "") or route.packs.get("*")
        return None


EMPTY_PAYER_MAP = PayerMap(None, "", ())


def payer_map_path() -> Path | None:
    for d in profile_dirs():
        p = d / PAYER_MAP
        if p.is_file():
            return p
    return None


def load_payer_map(path: Path) -> PayerMap:
    """Load and validate a payer -> pack mapping; raises :class:`PackError`.

    Format (``profiles/payers.yaml``)::

        version: "2026.1"
        payers:
          - name: Example Oncology Health Plan
            match: [Organization/org-oncology-plan, "http://hl7.org/fhir/sid/us-npi|1234567893"]
            pack: port-and-infusion               # every claim type, or per claim type:
            # packs: {institutional: port-and-infusion, professional: cms-practitioner}
    """
    root, data = _read_yaml(path, "payer map")
    if not isinstance(data, dict):
        raise _fail(path, root, "(top)", "a payer map is a mapping with version and payers")
    nodes = _node_map(root)
    for key, (knode, _) in nodes.items():
        if key not in ("version", "description", "payers"):
            raise _fail(path, knode, key, "unknown field (version, description, payers)")
    payers = data.get("payers")
    pnode = nodes.get("payers", (None, root))[1]
    if not isinstance(payers, list):
        raise _fail(path, pnode, "payers", "must be a list of {name, match, pack | packs}")
    items = list(pnode.value) if isinstance(pnode, yaml.SequenceNode) else []
    known = available_packs()
    routes: list[PayerRoute] = []
    for i, entry in enumerate(payers):
        enode = items[i] if i < len(items) else pnode
        where = f"payers[{i}]"
        if not isinstance(entry, dict):
            raise _fail(path, enode, where, "must be a mapping with name, match and pack")
        enodes = _node_map(enode)
        for key in entry:
            if key not in ("name", "match", "pack", "packs"):
                raise _fail(
                    path, enodes[str(key)][0], f"{where}.{key}", "unknown field (name, match, pack, packs)"
                )
        match = entry.get("match")
        if isinstance(match, str):
            match = [match]
        if not isinstance(match, list) or not match or not all(isinstance(m, str) and m for m in match):
            raise _fail(
                path,
                enodes.get("match", (None, enode))[1],
                f"{where}.match",
                "must be a list of payer references, identifiers or names",
            )
        if ("pack" in entry) == ("packs" in entry):
            raise _fail(path, enode, where, "give exactly one of pack or packs")
        raw_packs = {"*": entry["pack"]} if "pack" in entry else entry["packs"]
        fname = "pack" if "pack" in entry else "packs"
        vnode = enodes.get(fname, (None, enode))[1]
        if not isinstance(raw_packs, dict):
            raise _fail(
                path, vnode, f"{where}.packs", "must map claim types (institutional, professional) to packs"
            )
        for ctype, pack in raw_packs.items():
            if ctype != "*" and ctype not in CLAIM_TYPES:
                raise _fail(
                    path, vnode, f"{where}.packs.{ctype}", f"not a claim type ({', '.join(CLAIM_TYPES)})"
                )
            if not isinstance(pack, str) or pack not in known:
                raise _fail(
                    path,
                    vnode,
                    f"{where}.{fname}",
                    f"no rule pack named {pack!r} (available: {', '.join(sorted(known))})",
                )
        routes.append(
            PayerRoute(
                name=str(entry.get("name", "")),
                match=frozenset(m.strip().casefold() for m in match),
                packs={str(k): str(v) for k, v in raw_packs.items()},
            )
        )
    return PayerMap(path, str(data.get("version", "")), tuple(routes))


@lru_cache(maxsize=8)
def _payer_map_cached(path: Path, mtime: float) -> PayerMap:
    return load_payer_map(path)


_PAYER_MAP_SEEN: list[Any] = [-1.0, None, EMPTY_PAYER_MAP]  # [checked at, env, map]
PAYER_MAP_RECHECK_SECONDS = 1.0


def payer_map() -> PayerMap:
    """The payer mapping in force (the first ``payers.yaml`` in the profile dirs).

    Looked up again at most once a second (a few stat calls), not per claim.
    """
    return payer_map_under(os.environ.get("FHIR_CHECKER_PROFILES"))


def payer_map_under(env: str | None) -> PayerMap:
    """:func:`payer_map` for a ``FHIR_CHECKER_PROFILES`` value the caller has already read
    (the engine reads it once a claim: a lookup of an unset variable costs ~1.5 us)."""
    now = time.monotonic()
    if now - _PAYER_MAP_SEEN[0] < PAYER_MAP_RECHECK_SECONDS and env == _PAYER_MAP_SEEN[1]:
        found: PayerMap = _PAYER_MAP_SEEN[2]
        return found
    found = _find_payer_map()
    _PAYER_MAP_SEEN[:] = [now, env, found]
    return found


def _find_payer_map() -> PayerMap:
    path = payer_map_path()
    if path is None:
        return EMPTY_PAYER_MAP
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return EMPTY_PAYER_MAP
    return _payer_map_cached(path.resolve(), mtime)


def reference_keys(ref: Any) -> list[str]:
    """The keys a payer Reference can be matched by: the reference (and its Type/id
    tail), ``system|value`` and ``value`` of its identifier, and its display."""
    if not isinstance(ref, dict):
        return []
    keys: list[str] = []
    r = ref.get("reference")
    if isinstance(r, str) and r:
        keys.append(r)
        parts = r.rstrip("/").split("/")
        if len(parts) >= 2:
            keys.append(f"{parts[-2]}/{parts[-1]}")
    ident = ref.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        keys.append(str(ident["value"]))
        if isinstance(ident.get("system"), str):
            keys.append(f"{ident['system']}|{ident['value']}")
    if isinstance(ref.get("display"), str):
        keys.append(str(ref["display"]))
    return keys


def _claim_type(claim: dict[str, Any]) -> str | None:
    ctype = claim.get("type")
    coding = ctype.get("coding") if isinstance(ctype, dict) else None
    for c in coding if isinstance(coding, list) else []:
        if isinstance(c, dict) and isinstance(c.get("code"), str):
            return str(c["code"])
    return None


def default_pack_for(
    claim: dict[str, Any], payer_keys: Iterable[str] = (), payers: PayerMap | None = None
) -> str:
    """The pack for a claim when the caller names none: the payer mapping (Coverage.payor
    of the focal insurance, then Claim.insurer), else by the claim's type. ``payers``: the
    mapping to use, if the caller has it already (else :func:`payer_map`)."""
    ctype = _claim_type(claim)
    routed = (
        (payers if payers is not None else payer_map()).pack_for(payer_keys, ctype) if payer_keys else None
    )
    if routed:
        return routed
    return DEFAULT_PACK_FOR_SETTING.get(ctype or "", DEFAULT_PACK)


def claim_payer_keys(claim: dict[str, Any], resolve: Any) -> list[str]:
    """Payer keys of a claim: the focal insurance's ``Coverage.payor`` (resolved with
    ``resolve(reference) -> resource dict | None``), then ``Claim.insurer``."""
    keys: list[str] = []
    raw = claim.get("insurance")
    insurance = [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
    focal = [i for i in insurance if i.get("focal") is True] or insurance[:1]
    for ins in focal:
        cov_ref = ins.get("coverage")
        ref = cov_ref.get("reference") if isinstance(cov_ref, dict) else None
        coverage = resolve(ref) if isinstance(ref, str) else None
        if isinstance(coverage, dict) and coverage.get("resourceType") == "Coverage":
            payors = coverage.get("payor")
            for payor in payors if isinstance(payors, list) else []:
                keys.extend(reference_keys(payor))
    keys.extend(reference_keys(claim.get("insurer")))
    return keys
