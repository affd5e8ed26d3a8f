"""What the scheduler runs, and how often.  Each entry enqueues the named actor
once per time slot, however many scheduler replicas run (see ``scheduler.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    actor_name: str
    queue_name: str
    every_s: int


SCHEDULE: tuple[ScheduledJob, ...] = (
    ScheduledJob("sweep", "sweep", "scheduled", 10),  # the scheduler uses SWEEP_EVERY_S (default 10): schedule()
    ScheduledJob("expire_deposit_holds", "expire_deposit_holds", "scheduled", 30),
    ScheduledJob("sweep_calendar_sync", "sweep_calendar_sync", "scheduled", 30),
    ScheduledJob("retry_deposit_refunds", "retry_deposit_refunds", "scheduled", 300),
    ScheduledJob("run_automations", "run_automations", "scheduled", 60),
    ScheduledJob("tick_campaigns", "tick_campaigns", "scheduled", 30),
    ScheduledJob("close_visit_days", "close_visit_days", "scheduled", 300),
    ScheduledJob("sweep_handoff_notifications", "sweep_handoff_notifications", "scheduled", 30),
    ScheduledJob("tick_waitlist", "tick_waitlist", "scheduled", 20),  # waitlist offers and their holds
)


def schedule(sweep_every_s: int) -> tuple[ScheduledJob, ...]:
    """``SCHEDULE`` with the recovery sweep every ``sweep_every_s`` (the ``SWEEP_EVERY_S`` setting): how soon work
    Redis lost, or a dead worker held, is picked up again.  The tests' crash and fault drills sweep every second
    or two so their recoveries take seconds, not tens of seconds."""
    return tuple(replace(job, every_s=sweep_every_s) if job.name == "sweep" else job for job in SCHEDULE)
