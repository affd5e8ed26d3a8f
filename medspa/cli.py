"""``medspa``: the one console entry point for staff and developers.

Each command group lives in a module under ``scripts/`` that exposes
``register(subparsers)``; every subcommand has ``--help``.  Errors are one
clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "scripts.dev",
    "scripts.clinic",
    "scripts.clients",
    "scripts.appointments",
    "scripts.kb",
    "scripts.campaigns",
    "scripts.staff",
    "scripts.chat_sessions",
    "scripts.staff_users",
    "scripts.drills",
    "scripts.eval",
)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def add_clinic_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--clinic SLUG`` every clinic-scoped command takes (row-level security needs the clinic)."""
    parser.add_argument("--clinic", required=True, metavar="SLUG", help="clinic slug (see: medspa clinic list)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medspa", description="MedSpa Agent: run the service and manage clinics from the command line."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a command group not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from medspa.settings import ConfigurationError

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
    # Run through the importable module so ``CommandError`` is the class the command modules raise.
    from medspa import cli as _cli

    sys.exit(_cli.main())
