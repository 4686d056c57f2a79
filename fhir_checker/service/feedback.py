"""CDS Hooks feedback: which cards were accepted or overridden (and why), counted per rule.

The cards issued (card uuid -> rule id, the most recent ``max_cards``) and the counts: in
memory here (one worker process), in a SQLite file all workers share with ``state_dir``
(:mod:`.shared_state`). Free-text override comments are never logged or kept (they
may hold patient details); reason codes are.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..values import as_list
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
    #: Seconds feedback on a card this store does not know should wait, once, before the card
    #: counts as unknown (0 here: every card this process issued is known at once).
    settle_delay = 0.0

    def __init__(self, max_cards: int = 100_000) -> None:
        self.max_cards = max_cards
        self._cards: OrderedDict[str, str] = OrderedDict()
        self._rules: dict[str, RuleFeedback] = {}

    def remember(self, cards: Iterable[dict[str, Any]]) -> None:
        pairs: list[tuple[str, str]] = []
        for c in cards:
            rule_id = c.get("source", {}).get("topic", {}).get("code")
            if isinstance(c.get("uuid"), str) and isinstance(rule_id, str):
                pairs.append((c["uuid"], rule_id))
        self._keep(pairs)

    # Storage: in this process's memory here; shared_state.SqliteFeedbackStore keeps the same
    # in a file every worker process shares (serve --workers N).
    def _keep(self, pairs: list[tuple[str, str]]) -> None:
        self._cards.update(pairs)
        while len(self._cards) > self.max_cards:
            self._cards.popitem(last=False)

    def _rule_of(self, card_id: str) -> str | None:
        return self._cards.get(card_id)

    def _count(self, rule_id: str, accepted: bool, suggestions: int, reason_code: str | None) -> None:
        stats = self._rules.setdefault(rule_id, RuleFeedback())
        if accepted:
            stats.accepted += 1
            stats.suggestions_accepted += suggestions
        else:
            stats.overridden += 1
            stats.override_reasons[reason_code or "(no reason given)"] += 1

    def _all_rules(self) -> dict[str, RuleFeedback]:
        return self._rules

    def _cards_remembered(self) -> int:
        return len(self._cards)

    def knows(self, card_id: str) -> bool:
        return self._rule_of(card_id) is not None

    def record(self, body: Any) -> int:
        """Validate and count one feedback request; how many entries it held."""
        return self.add(self.parse(body))

    @staticmethod
    def parse(body: Any) -> list[tuple[str, str, dict[str, Any]]]:
        """(card uuid, outcome, entry) for each entry of a feedback request; 400 when invalid."""
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
        return parsed

    def add(self, parsed: list[tuple[str, str, dict[str, Any]]]) -> int:
        """Count parsed feedback entries under their cards' rules; how many."""
        for card_id, outcome, e in parsed:
            rule_id = self._rule_of(card_id) or UNKNOWN_RULE
            reason_code = None
            suggestions = 0
            if outcome == "accepted":
                suggestions = len(as_list(e.get("acceptedSuggestions")))
            else:
                reason = (
                    (e.get("overrideReason") or {}).get("reason")
                    if isinstance(e.get("overrideReason"), dict)
                    else None
                )
                code = reason.get("code") if isinstance(reason, dict) else None
                reason_code = str(code)[:64] if code else "(no reason given)"
            self._count(rule_id, outcome == "accepted", suggestions, reason_code)
            log.info(
                "card feedback",
                extra={"card": card_id[:64], "rule_id": rule_id, "outcome": outcome, "reason": reason_code},
            )
        return len(parsed)

    def stats(self) -> dict[str, Any]:
        return {
            "rules": {rid: s.as_json() for rid, s in sorted(self._all_rules().items())},
            "cardsRemembered": self._cards_remembered(),
        }
