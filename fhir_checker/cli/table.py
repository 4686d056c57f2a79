"""A readable table of an OperationOutcome, for people at a terminal."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

#: Columns when stdout is not a terminal and COLUMNS is unset (rich would take 80, which folds
#: each finding into a cell a few words wide and dozens of lines tall).
PIPED_WIDTH = 160

_STYLE = {"fatal": "bold red", "error": "red", "warning": "yellow", "information": "cyan"}


def print_table(name: str, outcome: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
        console = Console(soft_wrap=False, width=PIPED_WIDTH if piped else None)
    table = Table(title=name, show_lines=False, expand=False)
    for col in ("severity", "rule", "category", "where", "finding"):
        table.add_column(col, overflow="fold")
    for iss in outcome.get("issue", []):
        codings = iss.get("details", {}).get("coding", [])
        rule = next((c.get("code", "") for c in codings if c.get("system", "").endswith("/rule")), "")
        cat = next((c.get("code", "") for c in codings if c.get("system", "").endswith("/category")), "")
        sev = iss.get("severity", "")
        text = iss.get("details", {}).get("text", "")
        if iss.get("diagnostics"):
            text += f"\n[dim]{iss['diagnostics']}[/dim]"
        table.add_row(
            f"[{_STYLE.get(sev, '')}]{sev}[/]", rule, cat, ", ".join(iss.get("expression", [])), text
        )
    console.print(table)
