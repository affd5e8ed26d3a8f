"""What the scheduler runs, and how often.  Each entry enqueues the named actor
once per time slot, however many scheduler replicas run (see ``scheduler.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    actor_name: str
    queue_name: str
    every_s: int


SCHEDULE: tuple[ScheduledJob, ...] = (
    ScheduledJob("sweep", "sweep", "scheduled", 10),
)
