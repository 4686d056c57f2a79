"""Write fixtures/port-placement-miscoded.json: the port-placement claim with the coding
mistakes coders really make, for the README's first command and the demo.

Derived from fixtures/port-placement-aml.json (run scripts/make_fixtures.py first):
- J0690 billed x2 for 2 g of cefazolin (500 mg per unit: must be x4)     -> units
- 99152 dropped while its add-on 99153 stays                              -> add-on
- 77001 documented but not billed                                         -> unbilled-procedure
- modifier 11 (there is none) on 76937                                    -> modifier
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _code(item: dict[str, Any]) -> str:
    return str(item["productOrService"]["coding"][0]["code"])


def miscode(bundle: dict[str, Any]) -> dict[str, Any]:
    claim = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Claim")
    claim["id"] = "claim-port-miscoded"
    items = []
    for item in claim["item"]:
        code = _code(item)
        if code in ("99152", "77001"):
            continue
        if code == "J0690":
            item["quantity"] = {"value": 2}
        if code == "76937":
            item["modifier"] = [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "11"}]}]
        items.append(item)
    for seq, item in enumerate(items, start=1):
        item["sequence"] = seq
    claim["item"] = items
    return bundle


def main() -> None:
    source = json.loads((FIXTURES / "port-placement-aml.json").read_text())
    out = FIXTURES / "port-placement-miscoded.json"
    out.write_text(json.dumps(miscode(source), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
