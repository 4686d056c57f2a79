"""HAPI FHIR integration: check every Claim the server announces, write the result back.

- :mod:`.receiver`: rest-hook routes (``PUT /subscription/Claim/{id}``), enqueue only.
- :mod:`.queue`: the durable SQLite queue (claim ids and versions only, no payloads).
- :mod:`.worker`: claim -> :func:`~fhir_checker.gather.gather_claim` -> engine -> write-back.
- :mod:`.writeback`: the ``Task`` for the billing work queue and the ``meta.tag`` on the Claim.
- :mod:`.subscribe`: create or find the ``Subscription``.
- :mod:`.sweep`: catch up on claims whose notification was lost.
"""
