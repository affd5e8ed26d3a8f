"""Staff campaigns: a segment of clients, one templated marketing text each, sent in compliant, paced batches.

Life cycle (``lifecycle``): ``draft`` → ``scheduled`` (or straight to ``sending``) → ``completed``; ``paused``
and ``cancelled`` on staff request.

Fan-out (``runner.run_campaign``), restartable at any point because every step is keyed in Postgres:
1. materialise ``campaign_recipients`` from the segment (``segments``) in keyset batches
   (``INSERT … SELECT … ON CONFLICT (campaign_id, client_id) DO NOTHING``); ``campaigns.started_at`` marks the
   list as complete;
2. per batch (rows claimed ``FOR UPDATE SKIP LOCKED``, so two runners split the work): the compliance decision
   (``domain.audience``: consent, 08:00–21:00 recipient-local, weekly cap, first-message footer), render
   (``content``), one outbox row per recipient (``kind='campaign'``, dedupe key ``campaign:{id}:client:{client}``
   → at most one text per person); recipients outside the window keep ``send_after`` = their next 08:00 and are
   picked up when due (deferred, never dropped);
3. after the batch commits, its outbox ids go to ``send_campaign_batch`` actors that send through the outbox's
   own state machine (``sending`` → ``worker.outbox.sender``: claim, the decision again, provider) paced by the
   campaign's own cap.  The runner keeps at most about one batch in flight, so decisions stay close to the send
   and a pause withdraws what is still queued.

Why deferred recipients don't get an outbox row with ``not_before`` up front: the sweeper re-enqueues due queued
rows unpaced on the reply queue; creating the row when it is due keeps the campaign's cap and the bulk queue.

``report``: where every recipient stands, and what the campaign brought.
"""
