"""The visit lifecycle's worker side (rules: ``domain/visits.py``).

- ``transitions``: check in, complete, no-show, late cancel — each one transaction that also records what
  follows (deposit kept or due for refund, a fee due, reminders withdrawn, the calendar update); the texts that
  follow a visit (aftercare, review request, no-show follow-up) are the automations of ``worker/automations.py``,
  which fire on the new status at their moment;
- ``cards``: the card a patient saves at deposit time for the clinic's fees (recorded from Stripe's webhooks);
- ``fees``: the off-session charge of a fee that is due (run by the ``charge_visit_fee`` actor);
- ``end_of_day``: the day's unresolved visits for staff, auto no-show after the clinic's grace period.

Actors are in ``worker/visit_actors.py``; commands in ``scripts/visits.py``.
"""
