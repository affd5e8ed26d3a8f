"""The `medspa drills` command group: `run` (a table of results; exit 1 when a drill misses a target)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.common import CommandError
from scripts.drills.environment import COLUMNS, RECOVERY_TARGET_S, SCALES
from scripts.drills.runner import DRILLS, FAULTS, run_drills


# ------------------------------------------------------------------ CLI
def register(subparsers: Any) -> None:
    drills = subparsers.add_parser(
        "drills",
        help="fault drills against a throwaway copy of the service",
        description="Fault drills: each starts its own stack (embedded Postgres and Redis in a temporary "
        "folder, the app, two worker process groups, the scheduler, fake Twilio and OpenAI), breaks "
        "something mid-load and reports what patients saw.",
    )
    sub = drills.add_subparsers(dest="drills_command", metavar="SUBCOMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="run the drills and print a table (exit 1 if a target is missed)",
        description=f"Drills: {', '.join(DRILLS)}. Targets: 0 lost, 0 duplicate replies, recovery <= "
        f"{RECOVERY_TARGET_S:.0f} s; exits 1 when any drill misses one.",
    )
    run.add_argument("--only", metavar="NAME,...", help="run only these drills (comma-separated)")
    run.add_argument(
        "--scale", choices=sorted(SCALES), default="full", help="load size: small (the test suite's) or full (default)"
    )
    run.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    run.set_defaults(handler=drills_run)


def drills_run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(DRILLS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise CommandError(f"unknown drill(s) {', '.join(unknown)} (drills: {', '.join(DRILLS)})")
    scale = SCALES[args.scale]
    started = datetime.now(UTC)
    results = run_drills(names, args.scale)
    from scripts.common import print_table

    print(
        f"Fault drills, {started:%Y-%m-%d %H:%M} UTC, scale {args.scale}: {scale.conversations} conversations x "
        f"{scale.per_conversation} messages over {scale.load_s:.0f}s; 2 worker groups x 1 process x 4 threads; "
        f"targets: 0 lost, 0 duplicates, recovery <= {RECOVERY_TARGET_S:.0f}s"
    )
    print_table([r.row() for r in results], COLUMNS)
    for result in results:
        if result.notes:
            print(f"  {result.drill}: {'; '.join(result.notes)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "started_at": started.isoformat(),
                    "scale": args.scale,
                    "scale_params": asdict(scale),
                    "results": [r.as_json() for r in results],
                },
                indent=2,
            )
        )
    return 0 if all(r.passed for r in results) else 1
