"""``medspa drills run``: fault drills against a throwaway copy of the whole service.

Each drill starts its own stack — the webhook app, two worker process groups and the scheduler as separate
OS processes over an embedded Postgres and Redis in a temporary folder, with local fakes for Twilio and
OpenAI (a scripted model that echoes a marker of every patient message it answers) — puts it under load,
breaks something mid-load, and measures what the patients experienced:

- messages in: patient messages the webhook acknowledged (2xx) — the load generator retries a rejected
  webhook with the same MessageSid, as a provider would;
- turns: turns committed for the drill's conversations;
- replies sent: SMS the fake Twilio accepted for the drill's patients;
- duplicates: reply markers Twilio received more than once (or more sends than outbox rows);
- lost: acknowledged messages that never got a turn (a turn that apologised and handed off counts as handled);
- recovery time: from the fault clearing (the kill, the service back up, the storm over) until every
  acknowledged message had its turn and every reply was sent.

Two drills slow a provider down instead of breaking something: ``slow_sms_provider`` (Twilio takes 2 s per
call while a campaign sends, so a chunk of claimed campaign rows outlives the sweeper's deadline; its campaign
texts count in every column: each recipient one text, none twice) and ``slow_model_beyond_lease`` (the model
takes longer than the conversation lease for some patients; one turn per conversation at a time: no model call
of a conversation starts while another of the same conversation is in flight).

Targets: 0 lost, 0 duplicates, recovery ≤ 90 s; in the drills where the fault is not the database's
(``restart_redis``, ``freeze_redis``, ``poisoned_batch``), also every text acknowledged 2xx at its first attempt
within 2 s (neither Redis nor another request is ever in the way of recording a message), and in
``poisoned_batch`` every poisoned request answered 400.  The command exits 1 when a drill misses one.  The drills are
a developer tool: they reuse the test harness (tests/support, tests/fakes) and need the repository checkout.
Modules: ``command`` (the CLI group), ``runner`` (the catalogue and one drill's run), ``faults`` (what breaks),
``slow_providers`` (the brown-out and slow-model drills), ``measure`` (the load and what patients saw) and
``environment`` (scales, targets, results).
"""

from __future__ import annotations

from scripts.drills.command import register
from scripts.drills.environment import (
    RECOVERY_TARGET_S,
    SCALES,
    DrillEnvironment,
    DrillResult,
    Scale,
    drill_environment,
)
from scripts.drills.runner import DRILLS, FAULTS, run_drill, run_drills

__all__ = [
    "DRILLS",
    "FAULTS",
    "RECOVERY_TARGET_S",
    "SCALES",
    "DrillEnvironment",
    "DrillResult",
    "Scale",
    "drill_environment",
    "register",
    "run_drill",
    "run_drills",
]
