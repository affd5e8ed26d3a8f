"""The outbox's one owner: it alone queues, claims, sends, marks, reconciles, releases and withdraws outbox rows,
and decides whether a recipient may receive a text (``domain.audience.decide``, the one decision).

- ``rows``: what travels (a row to queue, a claimed row, a claim, a send's outcome);
- ``writes``: writes in the caller's transaction — queueing (also the turn's fenced commit, which imports its
  statements from here), withdrawing, the sweeper's take-back;
- ``store``: the senders' own transactions (claim, record, release, renew; the carrier's verdicts on a number);
- ``decisions``: can this person receive this text now;
- ``planning``: what the planners of clinic-initiated texts (campaigns, automations) read before they queue;
- ``sender``: the state machine — one row, a row the turn's commit claimed, a campaign's rows in chunks;
- ``ports``: what the senders are given (never the worker's whole container).

The rules (statuses and their order, the claim rule) are ``domain.outbox``'s; the delivery-status callback's
statement is ``db.outbox_status`` (the webhook app executes it).
"""
