"""The declarative base, the naming convention and the column helpers every table uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    MetaData,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domain.appointments import ALL_STATUSES, OCCUPYING_STATUSES

EMBEDDING_DIMENSIONS = 384

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Appointment statuses (``domain/appointments.py``): the check constraint names them all; the exclusion
# constraint covers the ones that occupy the provider.  A new status also needs an Alembic revision for the constraint.
_STATUS_LIST = "(" + ",".join(f"'{s}'" for s in ALL_STATUSES) + ")"
_OCCUPYING_LIST = "(" + ",".join(f"'{s}'" for s in OCCUPYING_STATUSES) + ")"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
    }


def _created() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


def _clinic_fk(*, index: bool = True) -> Mapped[int]:
    return mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=index)


def _clinic_column() -> Mapped[int]:
    """``clinic_id`` of a high-volume append table (messages, turns, outbox, ...): pinned to the transaction's
    clinic by the row-level-security WITH CHECK, but neither a foreign key nor indexed on its own.

    A foreign key makes every insert lock the clinic's one row FOR KEY SHARE, and concurrent lockers of a row
    share a MultiXact that Postgres rewrites per locker: a hotspot every writer of a clinic queues on.  An
    index on clinic_id alone selects nothing (a clinic's queries always narrow further), costs a write per
    insert, and — the RLS predicate being indexable — lures the planner away from the right index whenever
    statistics are stale.  See migration 0002."""
    return mapped_column(BigInteger)
