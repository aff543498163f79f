"""Alembic environment: feedhook runs migrations on a connection it hands over.

``bot.storage.db.upgrade`` opens the (async) engine's connection and passes the
sync facade in ``config.attributes["connection"]``; there is no alembic.ini.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bot.storage import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by running alembic by hand
    raise RuntimeError("run migrations with `feedhook db upgrade`")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
