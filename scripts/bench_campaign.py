"""Campaign fan-out benchmark (``scripts/bench.py --only campaign`` calls ``run_campaign_bench``).

Starts its own embedded Postgres and Redis in a temporary folder, migrates and
seeds them, inserts N synthetic clients for a bench clinic, and runs a real
campaign through the real path: segment query → recipients → consent, quiet
hour and frequency-cap decisions → render → outbox → Dramatiq worker
processes → the outbox claim → a zero-latency SMS sink (``SMS_PROVIDER=sink``).
Times come from the outbox's ``sent_at`` (stamped right after each send).

- ``recipients_per_s``: recipients handled (sent or excluded) per second, from
  enqueueing the campaign until the last send;
- ``capped_max_rate_per_s``: with a cap, the most sends in any sliding
  one-second window.  A capped run lasts about ``recipients / cap`` seconds,
  so run it with a few hundred recipients (e.g. 600 at 30/s ≈ 20 s).

Run alone: ``python scripts/bench_campaign.py --recipients 50000 [--cap 30]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from db.engine import Database, make_engine  # noqa: E402

OPTED_OUT_EVERY = 50  # 2 % of the synthetic clients opted out: excluded at send time
WORKER_PROCESSES = 2
WORKER_THREADS = 8


# The same throwaway infrastructure as the other benchmarks (Postgres with fsync on).
from scripts import bench_measure as measure  # noqa: E402
from scripts.bench import BenchInfra, bench_infrastructure  # noqa: E402


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon now, so no recipient is deferred by quiet hours."""
    offset = 12 - now.astimezone(UTC).hour
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # POSIX sign


def create_bench_clinic(owner_url: str, recipients: int) -> tuple[int, str]:
    engine = make_engine(owner_url, pool_size=1)
    slug = "bench-" + uuid.uuid4().hex[:8]
    try:
        with engine.begin() as conn:
            clinic_id = int(
                conn.execute(
                    text(
                        """INSERT INTO clinics (slug, name, timezone, public_key, phone, policies)
                       VALUES (:slug, 'Bench Spa', :tz, :slug, '+15550000000',
                               '{"marketing_cap_per_week": 2, "opt_out_footer": "Reply STOP to opt out."}'::jsonb)
                       RETURNING id"""
                    ),
                    {"slug": slug, "tz": daytime_zone(datetime.now(UTC))},
                ).scalar_one()
            )
            conn.execute(
                text("INSERT INTO clinic_phone_numbers (clinic_id, e164) VALUES (:c, '+15550000001')"), {"c": clinic_id}
            )
            conn.execute(
                text(
                    # Every bench client granted marketing (a campaign needs it); every n-th has since opted out.
                    """INSERT INTO clients (clinic_id, phone_e164, name, consent_state, marketing_consent, tags)
                       SELECT :c, '+1777' || lpad(n::text, 7, '0'), 'Client' || n || ' Bench',
                              CASE WHEN n % :every = 0 THEN 'opted_out' ELSE 'opted_in' END, 'granted',
                              ARRAY['bench']
                       FROM generate_series(1, :n) AS n"""
                ),
                {"c": clinic_id, "n": recipients, "every": OPTED_OUT_EVERY},
            )
            conn.execute(text("ANALYZE clients"))
    finally:
        engine.dispose()
    return clinic_id, slug


def start_workers(infra: BenchInfra, sms_rate: float, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "OPENAI_", "STRIPE_", "GOOGLE_", "DATABASE_", "REDIS_", "MIGRATION_"))
    }
    env.update(
        {
            "DATABASE_URL": infra.app_url,
            "MIGRATION_DATABASE_URL": infra.owner_url,
            "REDIS_URL": infra.redis_url,
            "SMS_RATE_PER_NUMBER_PER_S": str(sms_rate),
            "SMS_PROVIDER": "sink",
            "WORKER_METRICS_PORT": "0",
            "MODEL_PROVIDER": "offline",
            "LOCAL_EMBEDDINGS": "false",
            "LOG_LEVEL": "WARNING",
            "WORKER_THREADS": str(WORKER_THREADS),
            "DATA_DIR": str(infra.data_dir),
            "ENVIRONMENT": "development",
        }
    )
    handle = open(log_path, "wb")  # noqa: SIM115 - lives as long as the workers
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "worker.actors",
            "--processes",
            str(WORKER_PROCESSES),
            "--threads",
            str(WORKER_THREADS),
            "--queues",
            "bulk",
            "outbox",
            "scheduled",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=handle,
        start_new_session=True,
    )


def _wait(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def max_rate_per_s(times: list[float]) -> int:
    """Most events in any half-open one-second window [t, t + 1)."""
    best = start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def run_campaign_bench(
    recipients: int,
    cap_per_s: float | None,
    *,
    pg_options: Sequence[str] = (),
    statements: Path | None = None,
    keep: bool = False,
) -> dict[str, object]:
    """One campaign to ``recipients`` synthetic clients, optionally capped at ``cap_per_s`` messages/s.
    ``statements``: write the statement profile of the fan-out and sends, per recipient, to this file (needs
    ``pg_options`` to preload pg_stat_statements)."""
    import redis

    from domain.audience import SegmentFilter
    from medspa.broker import BULK_QUEUE, build_broker, message_for
    from scripts import bench_measure as measure
    from worker.campaigns.lifecycle import create_campaign, schedule_campaign

    with bench_infrastructure(pg_options=pg_options, keep=keep) as infra:
        clinic_id, _ = create_bench_clinic(infra.owner_url, recipients)
        profiling = statements is not None and measure.reset_statements(infra.owner_url)
        workers = start_workers(
            infra, cap_per_s or 0, Path(os.environ.get("BENCH_WORKER_LOG", infra.data_dir / "workers.log"))
        )
        database = Database(make_engine(infra.app_url, pool_size=2))
        client = redis.Redis.from_url(infra.redis_url)
        try:
            # Ready when every worker process has its consumers heartbeating.
            _wait(
                lambda: workers.poll() is None and client.zcard("dramatiq:__heartbeats__") >= WORKER_PROCESSES,
                60,
                "worker processes",
            )
            with database.tenant_scope(clinic_id) as session:
                campaign_id = create_campaign(
                    session,
                    clinic_id,
                    name="bench",
                    template="Hi {first_name}, {clinic_name} has new spring offers this week. Reply to book!",
                    segment=SegmentFilter(tags=("bench",)),
                    rate_cap_per_s=cap_per_s,
                )
                now = datetime.now(UTC)
                schedule_campaign(session, clinic_id, campaign_id, now, now)
            broker = build_broker(infra.redis_url)
            started = time.time()
            broker.enqueue(message_for("run_campaign_slice", BULK_QUEUE, clinic_id, campaign_id))
            budget = 120 + recipients / (cap_per_s or 200) * 2

            def finished() -> bool:
                if workers.poll() is not None:
                    raise RuntimeError(f"bench workers exited; see {infra.data_dir / 'workers.log'}")
                with database.tenant_scope(clinic_id) as session:
                    return bool(
                        session.execute(
                            text(
                                """SELECT c.status = 'completed' AND NOT EXISTS (
                                          SELECT 1 FROM outbox o WHERE o.clinic_id = c.clinic_id
                                            AND o.campaign_id = c.id AND o.status IN ('queued', 'sending', 'unknown'))
                               FROM campaigns c WHERE c.id = :id"""
                            ),
                            {"id": campaign_id},
                        ).scalar_one()
                    )

            try:
                _wait(finished, budget, "the campaign to finish", interval=0.1)
            except TimeoutError:
                with database.tenant_scope(clinic_id) as session:
                    state = {
                        "campaign": session.execute(
                            text("SELECT status FROM campaigns WHERE id = :id"), {"id": campaign_id}
                        ).scalar_one(),
                        "recipients": dict(
                            session.execute(
                                text(
                                    "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = :id GROUP BY 1"
                                ),
                                {"id": campaign_id},
                            ).all()
                        ),
                        "outbox": dict(
                            session.execute(
                                text("SELECT status, count(*) FROM outbox WHERE campaign_id = :id GROUP BY 1"),
                                {"id": campaign_id},
                            ).all()
                        ),
                    }
                sys.stderr.write(f"campaign state at timeout: {state}\n")
                raise
            with database.tenant_scope(clinic_id) as session:
                sent_times = [
                    float(t)
                    for t in session.execute(
                        text("""SELECT extract(epoch FROM sent_at) FROM outbox
                            WHERE campaign_id = :id AND sent_at IS NOT NULL ORDER BY sent_at"""),
                        {"id": campaign_id},
                    ).scalars()
                ]
                last_created = float(
                    session.execute(
                        text("SELECT extract(epoch FROM max(created_at)) FROM outbox WHERE campaign_id = :id"),
                        {"id": campaign_id},
                    ).scalar_one()
                    or 0
                )
                counts: dict[str, int] = dict(
                    session.execute(
                        text(
                            "SELECT coalesce(exclusion_reason, status), count(*) FROM campaign_recipients "
                            "WHERE campaign_id = :id GROUP BY 1"
                        ),
                        {"id": campaign_id},
                    ).all()
                )
            if profiling and statements is not None:
                measure.write_statements(measure.read_statements(infra.owner_url), recipients, statements)
        except Exception:
            log = infra.data_dir / "workers.log"
            if log.exists():
                sys.stderr.write("--- bench worker log (tail) ---\n" + log.read_text()[-4000:] + "\n")
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(workers.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                workers.wait(20)
            if workers.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(workers.pid, signal.SIGKILL)
                workers.wait(10)
            client.close()
            database.dispose()
    elapsed = (sent_times[-1] - started) if sent_times else float("nan")
    return {
        "recipients": recipients,
        "recipients_per_s": round(recipients / elapsed, 1) if sent_times else 0.0,
        "cap_per_s": cap_per_s,
        "capped_max_rate_per_s": max_rate_per_s(sent_times) if cap_per_s else None,
        "max_rate_per_s": max_rate_per_s(sent_times),
        "sent": len(sent_times),
        "excluded_opted_out": int(counts.get("opted_out", 0)),
        "elapsed_s": round(elapsed, 2),
        "fanout_s": round(last_created - started, 2) if last_created else None,  # last outbox row created
        "worker_processes": WORKER_PROCESSES,
        "worker_threads": WORKER_THREADS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--cap", type=float, default=None, help="messages per second cap (default: none)")
    parser.add_argument(
        "--pg-option",
        action="append",
        default=[],
        help="a Postgres setting, e.g. shared_preload_libraries=pg_stat_statements (repeatable)",
    )
    parser.add_argument("--statements", type=Path, help="write every statement's cost per recipient to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (process logs) afterwards")
    args = parser.parse_args()
    measure.prepare_outputs(parser, args.statements)
    result = run_campaign_bench(
        args.recipients, args.cap, pg_options=args.pg_option, statements=args.statements, keep=args.keep
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    measure.stop_cleanly_on_sigterm()
    sys.exit(main())
