"""``medspa``: the one console entry point for staff and developers (``python -m scripts.cli``).

Each command group lives in a module under ``scripts/`` that exposes
``register(subparsers)``; every subcommand has ``--help``.  Errors are one
clear line on stderr and a non-zero exit: a command raises
``scripts.common.CommandError``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medspa.settings import ConfigurationError
from scripts import (
    appointments,
    campaigns,
    chat_sessions,
    clients,
    clinic,
    dev,
    drills,
    eval,
    kb,
    staff,
    staff_users,
    waitlist,
)
from scripts.common import CommandError

# The command groups, in the order `medspa --help` lists them.
COMMAND_MODULES = (
    dev,
    clinic,
    clients,
    appointments,
    waitlist,
    kb,
    campaigns,
    staff,
    chat_sessions,
    staff_users,
    drills,
    eval,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medspa", description="MedSpa Agent: run the service and manage clinics from the command line."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except (CommandError, ConfigurationError) as exc:  # e.g. ENVIRONMENT=prod: one line, not a traceback
        print(f"medspa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `medspa ... | head`
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
