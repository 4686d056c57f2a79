"""Payer policies carried as data in rule packs (validated at pack load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KNOWN_POLICIES: dict[str, str] = {}


def validate_policies(path: Path, policies: dict[str, Any], node: yaml.Node | None) -> None:
    """Reject unknown policy names; each policy kind validates its own body."""
    from .packs import PackError

    for name in policies:
        if name not in KNOWN_POLICIES:
            line = f":{node.start_mark.line + 1}" if node is not None else ""
            known = ", ".join(sorted(KNOWN_POLICIES)) or "none yet"
            raise PackError(f"{path}{line}: policies.{name}: unknown policy (known: {known})")
