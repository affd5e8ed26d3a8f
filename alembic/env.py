"""Alembic environment: migrations run as the owner role (MIGRATION_DATABASE_URL,
or the embedded server's owner), never as the app role."""

from __future__ import annotations

from sqlalchemy import create_engine, pool

from alembic import context
from db.models import Base

target_metadata = Base.metadata


def _url() -> str:
    url = context.config.attributes.get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        from medspa.services import owner_database_url

        url = owner_database_url()
    return str(url)


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Computed columns and the exclusion constraint are compared by name only; Alembic cannot diff their bodies.
    return True


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool, hide_parameters=True)  # no row values in error text
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
