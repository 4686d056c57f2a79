"""CDS Hooks feedback: which cards were accepted or overridden (and why), counted per rule.

In memory, per process: the cards this process issued (card uuid -> rule id, the most recent
``max_cards``) and the counts. Free-text override comments are never logged or kept (they
may hold patient details); reason codes are.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ServiceError

log = logging.getLogger("fhir_checker.service.feedback")

OUTCOMES = ("accepted", "overridden")
UNKNOWN_RULE = "(unknown card)"


@dataclass
class RuleFeedback:
    accepted: int = 0
    overridden: int = 0
    suggestions_accepted: int = 0
    override_reasons: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "overridden": self.overridden,
            "suggestionsAccepted": self.suggestions_accepted,
            "overrideReasons": dict(sorted(self.override_reasons.items())),
        }


class FeedbackStore:
    def __init__(self, max_cards: int = 100_000) -> None:
        self.max_cards = max_cards
        self._cards: OrderedDict[str, str] = OrderedDict()
        self._rules: dict[str, RuleFeedback] = {}

    def remember(self, cards: Iterable[dict[str, Any]]) -> None:
        for c in cards:
            rule_id = c.get("source", {}).get("topic", {}).get("code")
            if isinstance(c.get("uuid"), str) and isinstance(rule_id, str):
                self._cards[c["uuid"]] = rule_id
        while len(self._cards) > self.max_cards:
            self._cards.popitem(last=False)

    def record(self, body: Any) -> int:
        """Validate and count one feedback request; how many entries it held."""
        entries = body.get("feedback") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ServiceError(400, "feedback must be an object with a non-empty 'feedback' array")
        parsed: list[tuple[str, str, dict[str, Any]]] = []
        for n, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("card"), str):
                raise ServiceError(400, f"feedback[{n}].card must be the card's uuid")
            if e.get("outcome") not in OUTCOMES:
                raise ServiceError(400, f"feedback[{n}].outcome must be accepted or overridden")
            if e["outcome"] == "accepted" and not isinstance(e.get("acceptedSuggestions", []), list):
                raise ServiceError(400, f"feedback[{n}].acceptedSuggestions must be an array")
            parsed.append((e["card"], e["outcome"], e))
        for card_id, outcome, e in parsed:
            rule_id = self._cards.get(card_id, UNKNOWN_RULE)
            stats = self._rules.setdefault(rule_id, RuleFeedback())
            reason_code = None
            if outcome == "accepted":
                stats.accepted += 1
                stats.suggestions_accepted += len(e.get("acceptedSuggestions") or [])
            else:
                stats.overridden += 1
                reason = (
                    (e.get("overrideReason") or {}).get("reason")
                    if isinstance(e.get("overrideReason"), dict)
                    else None
                )
                code = reason.get("code") if isinstance(reason, dict) else None
                reason_code = str(code)[:64] if code else "(no reason given)"
                stats.override_reasons[reason_code] += 1
            log.info(
                "card feedback",
                extra={"card": card_id[:64], "rule_id": rule_id, "outcome": outcome, "reason": reason_code},
            )
        return len(parsed)

    def stats(self) -> dict[str, Any]:
        return {
            "rules": {rid: s.as_json() for rid, s in sorted(self._rules.items())},
            "cardsRemembered": len(self._cards),
        }
