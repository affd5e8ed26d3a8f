"""The scheduler process: enqueues scheduled actors, once per slot across replicas.

State lives in Postgres: a job runs for slot ``floor(now / every) * every`` only
if this replica inserted the ``(job_name, slot_start)`` row — the unique key,
not luck, makes two replicas enqueue it once.  Nothing scheduled depends on a
long-delayed Redis message: jobs read what is due from the database, so a
restart (of the scheduler or of Redis) loses nothing; a slot missed while no
scheduler ran is simply covered by the next one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy import text

from db.engine import Database
from medspa.broker import message_for
from worker.schedule import SCHEDULE, ScheduledJob, schedule

log = logging.getLogger(__name__)


def slot_start(now: datetime, every_s: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % every_s, UTC)


def claim_due_jobs(database: Database, now: datetime, jobs: Iterable[ScheduledJob], runner: str) -> list[ScheduledJob]:
    """The jobs whose current slot this replica claimed (and must enqueue)."""
    claimed: list[ScheduledJob] = []
    with database.directory_scope() as session:
        for job in jobs:
            inserted = session.execute(
                text(
                    """INSERT INTO scheduler_runs (job_name, slot_start, runner) VALUES (:job, :slot, :runner)
                       ON CONFLICT (job_name, slot_start) DO NOTHING RETURNING id"""
                ),
                {"job": job.name, "slot": slot_start(now, job.every_s), "runner": runner},
            ).scalar_one_or_none()
            if inserted is not None:
                claimed.append(job)
        if now.second == 0:  # once a minute is plenty to keep the bookkeeping table small
            session.execute(text("DELETE FROM scheduler_runs WHERE slot_start < now() - interval '2 days'"))
    return claimed


def run_scheduler(
    database: Database,
    enqueue: Callable[[ScheduledJob], None],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stop: threading.Event | None = None,
    tick_s: float = 1.0,
    jobs: Iterable[ScheduledJob] = SCHEDULE,
) -> None:
    stop = stop or threading.Event()
    runner = f"{socket.gethostname()}:{os.getpid()}"
    jobs = tuple(jobs)
    log.info("scheduler started", extra={"jobs": [j.name for j in jobs]})
    while not stop.is_set():
        try:
            for job in claim_due_jobs(database, clock(), jobs, runner):
                enqueue(job)
        except Exception:
            log.exception("scheduler tick failed; retrying next tick")
        stop.wait(tick_s)
    log.info("scheduler stopped")


def main() -> None:
    from db.engine import make_engine
    from medspa.broker import build_broker
    from medspa.logs import configure_logging
    from medspa.secrets import startup_settings

    settings = startup_settings("scheduler")  # exits (one line, non-zero) on an unsafe production configuration
    configure_logging(settings.log_level, json_output=settings.log_json)
    if not settings.database_url or not settings.redis_url:
        raise SystemExit("DATABASE_URL and REDIS_URL must be set (medspa dev up sets them)")
    database = Database(make_engine(settings.database_url, pool_size=2, application_name="medspa-scheduler"))
    broker = build_broker(settings.redis_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def enqueue(job: ScheduledJob) -> None:
        broker.enqueue(message_for(job.actor_name, job.queue_name))

    run_scheduler(database, enqueue, stop=stop, jobs=schedule(settings.sweep_every_s))


if __name__ == "__main__":
    main()
