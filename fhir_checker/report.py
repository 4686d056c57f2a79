"""The bulk run's summary: counts gathered while checking (:class:`Tally`), and the report
written from them (JSON, or one self-contained HTML page with inline SVG charts).

The tally holds counts only (per rule, category and code), never claims, so it stays
small whatever the input size, and it is cheap to send back from worker processes.
"""

from __future__ import annotations

import html
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .files import atomic_write, mode_open_would_give
from .tally import Tally

TOP_CODES = 25
TOP_RULES_CHART = 15


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def summarize(
    tally: Tally,
    *,
    source: str = "",
    elapsed_s: float | None = None,
    jobs: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (the ``.json`` summary; the HTML page renders it)."""
    clean = tally.claims - tally.error_claims
    by_rule = [
        {
            "rule": rid,
            "name": tally.rule_meta.get(rid, ("", "", ""))[0],
            "category": tally.rule_meta.get(rid, ("", "", ""))[1] or None,
            "severity": tally.rule_meta.get(rid, ("", "", ""))[2],
            "findings": tally.rule_findings[rid],
            "claims": n,
        }
        for rid, n in sorted(tally.rule_claims.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    by_category = [
        {"category": cat, "findings": tally.category_findings[cat], "claims": n}
        for cat, n in sorted(tally.category_claims.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    rules_of: dict[str, list[tuple[str, int]]] = {}
    for (code, rid), n in tally.code_rules.items():
        rules_of.setdefault(code, []).append((rid, n))
    top_codes = [
        {
            "code": code,
            "claims": n,
            "findings": tally.code_findings[code],
            "rules": [
                {"rule": rid, "findings": k}
                for rid, k in sorted(rules_of.get(code, []), key=lambda x: (-x[1], x[0]))[:5]
            ],
        }
        for code, n in sorted(tally.code_claims.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CODES]
    ]
    out: dict[str, Any] = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "options": options or {},
        "lines": tally.lines,
        "claims_checked": tally.claims,
        "unreadable_lines": tally.bad_lines,
        "unreadable_line_numbers": tally.bad_line_numbers,
        "internal_errors": tally.internal_errors,
        "clean_claims": clean,
        "clean_claim_rate": _rate(clean, tally.claims),
        "claims_without_findings": tally.without_findings,
        "claims_with_errors": tally.error_claims,
        "claims_with_warnings_only": tally.warning_claims,
        "findings": {"total": sum(tally.severities.values()), **dict(sorted(tally.severities.items()))},
        "by_category": by_category,
        "by_rule": by_rule,
        "top_codes": top_codes,
    }
    if elapsed_s is not None:
        out["elapsed_s"] = round(elapsed_s, 3)
        out["lines_per_s"] = round(tally.lines / elapsed_s, 1) if elapsed_s > 0 else None
    if jobs is not None:
        out["jobs"] = jobs
    return out


# ---------------------------------------------------------------- HTML

_COLOURS = {
    "error": "#c0392b",
    "fatal": "#6c3483",
    "warning": "#d68910",
    "information": "#2874a6",
    "clean": "#1e8449",
}


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def svg_bars(rows: Sequence[tuple[str, int, str]], *, unit: str = "claims", width: int = 960) -> str:
    """A horizontal bar chart as inline SVG: (label, value, colour) per row, largest first."""
    if not rows:
        return '<p class="none">Nothing to chart: no findings.</p>'
    label_w, value_w, bar_h, gap = 260, 90, 22, 8
    top = max(v for _, v, _ in rows) or 1
    plot_w = width - label_w - value_w
    height = len(rows) * (bar_h + gap) + gap
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" '
        f'style="max-width:{width}px" role="img" aria-label="bar chart of {unit}">'
    ]
    for i, (label, value, colour) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = max(2, round(plot_w * value / top)) if value else 0
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end" class="lbl">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" rx="3" fill="{colour}">'
            f"<title>{_e(label)}: {value:,} {unit}</title></rect>"
            f'<text x="{label_w + w + 6}" y="{y + bar_h * 0.7:.1f}" class="val">{value:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def svg_split(parts: Iterable[tuple[str, int, str]], *, width: int = 960) -> str:
    """One stacked bar: how the claims checked split (clean / warnings / errors)."""
    items = [(label, n, c) for label, n, c in parts if n > 0]
    total = sum(n for _, n, _ in items)
    if not total:
        return '<p class="none">No claim was checked.</p>'
    h, legend_y = 34, 58
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} 76" role="img" aria-label="claims by outcome">'
    ]
    x = 0.0
    lx = 0
    for label, n, colour in items:
        w = width * n / total
        out.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{h}" fill="{colour}"><title>{_e(label)}: {n:,}</title></rect>'
        )
        if w > 48:
            out.append(
                f'<text x="{x + w / 2:.1f}" y="22" text-anchor="middle" class="in">{100 * n / total:.1f}%</text>'
            )
        x += w
        out.append(f'<rect x="{lx}" y="{legend_y - 11}" width="12" height="12" fill="{colour}"/>')
        text = f"{label} {n:,}"
        out.append(f'<text x="{lx + 16}" y="{legend_y}" class="lbl">{_e(text)}</text>')
        lx += 16 + 8 * len(text) + 18
    out.append("</svg>")
    return "".join(out)


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1c2833;margin:2rem auto;max-width:64rem;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin:2rem 0 .6rem;border-bottom:1px solid #d5d8dc;padding-bottom:.2rem}
.meta{color:#566573;font-size:.9rem}
.tiles{display:flex;gap:1rem;flex-wrap:wrap;margin:1.2rem 0}
.tile{border:1px solid #d5d8dc;border-radius:8px;padding:.7rem 1rem;min-width:10rem}
.tile .n{font-size:1.7rem;font-weight:650}.tile .k{color:#566573;font-size:.85rem}
.good .n{color:#1e8449}.bad .n{color:#c0392b}.warn .n{color:#d68910}
svg text{font:13px system-ui,sans-serif;fill:#1c2833}svg .in{fill:#fff;font-weight:600}svg .val{fill:#424949}
table{border-collapse:collapse;width:100%;font-size:.92rem}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #eaeded}
th{background:#f4f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.95em}
.none{color:#566573;font-style:italic}
"""


def _rule_list(rules: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['rule']} ({r['findings']:,})" for r in rules)


def render_html(summary: dict[str, Any]) -> str:
    """One self-contained page: no scripts, no external files."""
    s = summary
    checked = s["claims_checked"]
    split = svg_split(
        [
            ("clean (no findings)", s["claims_without_findings"], _COLOURS["clean"]),
            (
                "clean with information only",
                s["clean_claims"] - s["claims_without_findings"] - s["claims_with_warnings_only"],
                "#52be80",
            ),
            ("warnings only", s["claims_with_warnings_only"], _COLOURS["warning"]),
            ("errors", s["claims_with_errors"], _COLOURS["error"]),
        ]
    )
    cats = svg_bars([(c["category"], c["claims"], "#2e86c1") for c in s["by_category"]])
    rules = svg_bars(
        [
            (f"{r['rule']} {r['name']}", r["claims"], _COLOURS.get(r["severity"], "#2e86c1"))
            for r in s["by_rule"][:TOP_RULES_CHART]
        ]
    )
    rule_rows = "".join(
        f"<tr><td><code>{_e(r['rule'])}</code></td><td>{_e(r['name'])}</td><td>{_e(r['category'] or '')}</td>"
        f"<td>{_e(r['severity'])}</td><td class=num>{r['claims']:,}</td><td class=num>{r['findings']:,}</td></tr>"
        for r in s["by_rule"]
    )
    code_rows = "".join(
        f"<tr><td><code>{_e(c['code'])}</code></td><td class=num>{c['claims']:,}</td><td class=num>{c['findings']:,}</td>"
        f"<td>{_e(_rule_list(c['rules']))}</td></tr>"
        for c in s["top_codes"]
    )
    speed = ""
    if s.get("elapsed_s") is not None:
        speed = f" · {s['lines']:,} lines in {s['elapsed_s']:.1f} s ({s.get('lines_per_s') or 0:,.0f}/s, {s.get('jobs', '?')} processes)"
    bad = ""
    if s["unreadable_lines"]:
        nums = ", ".join(str(n) for n in s["unreadable_line_numbers"])
        more = " …" if s["unreadable_lines"] > len(s["unreadable_line_numbers"]) else ""
        bad = f"<p>Unreadable lines (each has its own fatal outcome in the output): {_e(nums)}{more}</p>"
    opts = " · ".join(f"{_e(k)}: {_e(v)}" for k, v in s.get("options", {}).items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fhir-checker bulk summary</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>Claim pre-check summary</h1>
<p class="meta">{_e(s.get("source", ""))} · {_e(s["generated"])}{_e(speed)}<br>{opts}</p>
<div class="tiles">
<div class="tile"><div class="n">{checked:,}</div><div class="k">claims checked</div></div>
<div class="tile good"><div class="n">{100 * s["clean_claim_rate"]:.1f}%</div><div class="k">clean-claim rate (no error finding)</div></div>
<div class="tile bad"><div class="n">{s["claims_with_errors"]:,}</div><div class="k">claims a payer would deny</div></div>
<div class="tile warn"><div class="n">{s["claims_with_warnings_only"]:,}</div><div class="k">claims with warnings only</div></div>
<div class="tile"><div class="n">{s["unreadable_lines"]:,}</div><div class="k">unreadable lines</div></div>
</div>
{bad}
<h2>Claims checked, by outcome</h2>
{split}
<h2>Claims affected, by category</h2>
{cats}
<h2>Claims affected, by rule (top {TOP_RULES_CHART})</h2>
{rules}
<h2>Every rule that fired</h2>
<table><thead><tr><th>rule</th><th>name</th><th>category</th><th>severity</th><th>claims</th><th>findings</th></tr></thead>
<tbody>{rule_rows or "<tr><td colspan=6 class=none>No findings.</td></tr>"}</tbody></table>
<h2>Codes most involved in findings (top {TOP_CODES})</h2>
<table><thead><tr><th>code</th><th>claims</th><th>findings</th><th>rules</th></tr></thead>
<tbody>{code_rows or "<tr><td colspan=4 class=none>No findings on a coded line.</td></tr>"}</tbody></table>
<p class="meta">Clean-claim rate: share of the claims checked with no error finding (warnings and
information allowed). Unreadable lines are not claims and are not in the rate.</p>
</body></html>
"""


def summary_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot take a summary, or None: checked before a bulk run, not after it.

    Missing folders are fine (:func:`write_summary` creates them), as long as the nearest
    existing one is a folder this process may write in."""
    if path.is_dir():
        return f"--summary {path}: is a directory"
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        return f"--summary {path}: {parent} is not a directory"
    try:  # a real file, not os.access: that says yes to root, even where nothing can be made
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".fhir-checker-probe."):
            pass
    except OSError as exc:
        return f"--summary {path}: cannot write in {parent} ({exc.strerror or exc})"
    return None


def write_summary(path: Path, tally: Tally, **meta: Any) -> dict[str, Any]:
    """Write the summary as JSON or HTML (by suffix), atomically; returns the summary.
    Raises OSError when it cannot be written."""
    summary = summarize(tally, **meta)
    if path.suffix.lower() == ".json":
        data = orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
    else:
        data = render_html(summary).encode("utf-8")
    # A report is for whoever publishes it: the mode open() would give, not mkstemp's 0600.
    atomic_write(path, lambda fh: fh.write(data), mode=mode_open_would_give())
    return summary
