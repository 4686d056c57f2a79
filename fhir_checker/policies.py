"""Payer policies carried as data in rule packs, validated and compiled at pack load.

One policy kind so far: ``medical_necessity``, per procedure code the ICD-10-CM codes or
ranges that support it::

    policies:
      medical_necessity:
        "36561":
          accept: [C00-D49, Z45.2, Z51.11]
          label: active malignancy, or a condition that needs long-term venous access
          source: https://...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .codes import is_cpt_format, is_hcpcs_level2_format

_ICD = re.compile(r"^[A-Z]\d[0-9A-Z](?:\.?[0-9A-Z]{1,4})?$")


@dataclass(frozen=True, slots=True)
class IcdRange:
    """An ICD-10-CM code (matches it and every code below it) or a range ``C00-D49``
    (matches codes whose leading characters fall between the bounds, inclusive)."""

    low: str  # undotted, upper case
    high: str
    text: str  # as written in the pack

    def matches(self, code: str) -> bool:
        c = code.replace(".", "").upper()
        return c[: len(self.low)] >= self.low and c[: len(self.high)] <= self.high


@dataclass(frozen=True, slots=True)
class NecessityPolicy:
    code: str  # the procedure code
    accept: tuple[IcdRange, ...]
    label: str  # what the accepted diagnoses are, in words
    source: str

    def supports(self, icd10: str) -> bool:
        return any(r.matches(icd10) for r in self.accept)

    @property
    def accepted_text(self) -> str:
        return ", ".join(r.text for r in self.accept)


@dataclass(frozen=True)
class MedicalNecessity:
    """Per procedure code, the diagnoses that support it."""

    by_code: dict[str, NecessityPolicy]

    def get(self, code: str) -> NecessityPolicy | None:
        return self.by_code.get(code)

    def merged_over(self, parent: MedicalNecessity) -> MedicalNecessity:
        """This pack's policies over its parent's (a child's policy for a code wins)."""
        return MedicalNecessity({**parent.by_code, **self.by_code})


def _fail(path: Path, node: yaml.Node | None, fieldname: str, msg: str) -> Exception:
    from .packs import PackError

    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return PackError(f"{path}{line}: {fieldname}: {msg}")


def _mapping(node: yaml.Node | None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): (k, v) for k, v in node.value}


def _sequence(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def parse_icd_range(text: str) -> IcdRange | None:
    parts = [p.strip().upper() for p in text.split("-")]
    if len(parts) not in (1, 2) or not all(_ICD.match(p) for p in parts):
        return None
    low, high = (p.replace(".", "") for p in (parts[0], parts[-1]))
    if high[: len(low)] < low[: len(high)]:
        return None
    return IcdRange(low, high, text.strip().upper())


def _medical_necessity(path: Path, body: Any, node: yaml.Node | None) -> MedicalNecessity:
    where = "policies.medical_necessity"
    if not isinstance(body, dict):
        raise _fail(path, node, where, "must map procedure codes to {accept, label, source}")
    nodes = _mapping(node)
    out: dict[str, NecessityPolicy] = {}
    for code, spec in body.items():
        knode, vnode = nodes.get(str(code), (node, node))
        field = f"{where}.{code}"
        c = str(code).strip().upper()
        if not (is_cpt_format(c) or is_hcpcs_level2_format(c)):
            raise _fail(path, knode, field, "not a CPT or HCPCS code")
        if not isinstance(spec, dict):
            raise _fail(path, vnode, field, "must be a mapping with accept, label, source")
        snodes = _mapping(vnode)
        for key in spec:
            if key not in ("accept", "label", "source"):
                raise _fail(
                    path, snodes[str(key)][0], f"{field}.{key}", "unknown field (accept, label, source)"
                )
        accept = spec.get("accept")
        anode = snodes.get("accept", (vnode, vnode))[1]
        if not isinstance(accept, list) or not accept:
            raise _fail(
                path, anode, f"{field}.accept", "must be a non-empty list of ICD-10-CM codes or ranges"
            )
        items = _sequence(anode)
        ranges: list[IcdRange] = []
        for i, text in enumerate(accept):
            r = parse_icd_range(str(text)) if isinstance(text, str) else None
            if r is None:
                inode = items[i] if i < len(items) else anode
                raise _fail(
                    path,
                    inode,
                    f"{field}.accept[{i}]",
                    f"{text!r} is not an ICD-10-CM code or range (e.g. C92.00, C00-D49)",
                )
            ranges.append(r)
        for key in ("label", "source"):
            if key in spec and not isinstance(spec[key], str):
                raise _fail(path, snodes[key][1], f"{field}.{key}", "must be a string")
        out[c] = NecessityPolicy(c, tuple(ranges), str(spec.get("label", "")), str(spec.get("source", "")))
    return MedicalNecessity(out)


#: policy name -> compiler(path, body, yaml node) -> compiled policy
KNOWN_POLICIES: dict[str, Callable[[Path, Any, yaml.Node | None], Any]] = {
    "medical_necessity": _medical_necessity,
}


def validate_policies(path: Path, policies: dict[str, Any], node: yaml.Node | None) -> dict[str, Any]:
    """Reject unknown policy names; compile each policy (raises PackError naming the
    file, line and field)."""
    nodes = _mapping(node)
    compiled: dict[str, Any] = {}
    for name, body in policies.items():
        if name not in KNOWN_POLICIES:
            knode = nodes.get(str(name), (node, node))[0]
            raise _fail(
                path,
                knode,
                f"policies.{name}",
                f"unknown policy (known: {', '.join(sorted(KNOWN_POLICIES))})",
            )
        compiled[name] = KNOWN_POLICIES[name](path, body, nodes.get(str(name), (node, node))[1])
    return compiled


def merge_policies(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A child pack's policies over its parent's, policy by policy."""
    out = dict(parent)
    for name, policy in child.items():
        base = out.get(name)
        merge = getattr(policy, "merged_over", None)
        out[name] = merge(base) if base is not None and callable(merge) else policy
    return out


def describe(policies: dict[str, Any]) -> Iterable[str]:
    """Lines for ``fhir-checker rules --profile``."""
    mn = policies.get("medical_necessity")
    if isinstance(mn, MedicalNecessity):
        for code, p in sorted(mn.by_code.items()):
            label = f" ({p.label})" if p.label else ""
            yield f"medical necessity {code}: {p.accepted_text}{label}"
