"""Shared plumbing for the command modules: the error they raise, the ``--clinic`` argument, resolved
infrastructure, database handles, enqueueing after a commit, output helpers.  Commands read the same settings
as the services."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from db.engine import Database, make_engine
from medspa.services import Infrastructure, resolve_infrastructure
from medspa.settings import get_settings

if TYPE_CHECKING:
    import dramatiq


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2 (``scripts.cli.main``)."""


def add_clinic_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--clinic SLUG`` every clinic-scoped command takes (row-level security needs the clinic)."""
    parser.add_argument("--clinic", required=True, metavar="SLUG", help="clinic slug (see: medspa clinic list)")


@lru_cache(maxsize=1)
def infrastructure() -> Infrastructure:
    infra = resolve_infrastructure(get_settings())
    # Child processes and later get_settings() calls see the same resolved URLs.
    os.environ.update(infra.as_env())
    get_settings.cache_clear()
    return infra


@lru_cache(maxsize=1)
def app_database() -> Database:
    """The app role (row-level security applies): what day-to-day staff commands use."""
    return Database(make_engine(infrastructure().database_url, pool_size=2, application_name="medspa-cli"))


@lru_cache(maxsize=1)
def owner_database() -> Database:
    """The owner role: onboarding (creating clinics) and migrations only."""
    return Database(make_engine(infrastructure().migration_database_url, pool_size=2, application_name="medspa-admin"))


def enqueue_by_name(messages: Sequence[dramatiq.Message]) -> None:
    """Hand committed work to the workers: messages built by actor name (``medspa.broker.message_for``), as the
    webhook app does; commands never import the worker's actors.  Call it after the commit only."""
    from medspa.broker import build_broker

    broker = build_broker(infrastructure().redis_url)
    try:
        for message in messages:
            broker.enqueue(message)
    finally:
        broker.close()


def clinic_id_for(slug: str) -> int:
    from db.clinics import clinic_id_for_slug

    with app_database().directory_scope() as session:
        clinic_id = clinic_id_for_slug(session, slug)
    if clinic_id is None:
        raise CommandError(f"no clinic with slug {slug!r} (see: medspa clinic list)")
    return int(clinic_id)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
