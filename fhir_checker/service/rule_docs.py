"""``GET /rules`` and ``GET /rules/{id}``: the rule docs cards link to.

HTML for browsers (a card's link opens in one); JSON when the client asks for it.
The docs are plain text with ``## `` headings; rendered escaped, never as raw HTML.
"""

from __future__ import annotations

import html
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from ..registry import Rule, all_rules, get_rule
from .errors import error_outcome, fhir_response

router = APIRouter(prefix="/rules", tags=["Rules"])

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}
code,pre{{background:#f4f4f4}}pre{{padding:.5rem;overflow:auto}}</style></head><body>{body}</body></html>"""


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "json" in accept and "text/html" not in accept


def rule_json(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "category": r.category,
        "severity": r.severity.value,
        "summary": r.summary,
        "ioceEdit": r.ioce_edit,
        "doc": r.doc,
    }


def doc_html(doc: str) -> str:
    """Headings and paragraphs; everything escaped."""
    out: list[str] = []
    for block in doc.split("\n\n"):
        text = block.strip()
        if not text:
            continue
        if text.startswith("## "):
            head, _, rest = text.partition("\n")
            out.append(f"<h2>{html.escape(head[3:])}</h2>")
            text = rest.strip()
            if not text:
                continue
        if text.startswith(("    ", "```")) or "\n  " in text:
            out.append(f"<pre>{html.escape(text.strip('`'))}</pre>")
        else:
            out.append(f"<p>{html.escape(text)}</p>")
    return "\n".join(out)


@router.get("", summary="Every rule", response_class=Response)
async def list_rules(request: Request) -> Response:
    rules = all_rules()
    if _wants_json(request):
        return Response(orjson.dumps([rule_json(r) for r in rules]), media_type="application/json")
    rows = "".join(
        f'<li><a href="rules/{html.escape(r.id)}">{html.escape(r.id)}</a> {html.escape(r.name)}: '
        f"{html.escape(r.summary)}</li>"
        for r in rules
    )
    return HTMLResponse(_PAGE.format(title="fhir-checker rules", body=f"<h1>Rules</h1><ul>{rows}</ul>"))


@router.get("/{rule_id}", summary="One rule's doc", response_class=Response)
async def show_rule(request: Request, rule_id: str) -> Response:
    try:
        r = get_rule(rule_id)
    except KeyError:
        return fhir_response(error_outcome(f"no rule {rule_id[:40]!r}", code="not-found"), 404)
    if _wants_json(request):
        return Response(orjson.dumps(rule_json(r)), media_type="application/json")
    title = f"{r.id} {r.name}"
    body = (
        f"<h1>{html.escape(title)}</h1><p><b>{html.escape(r.summary)}</b><br>"
        f"category {html.escape(str(r.category))}, default severity {html.escape(r.severity.value)}</p>"
        + doc_html(r.doc)
    )
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body))
