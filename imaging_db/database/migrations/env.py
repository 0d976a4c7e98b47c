"""Alembic's environment for imaging_db: migrations run on the connection imaging_db hands over.

imaging_db runs them itself (:mod:`imaging_db.database.migrate`, the
``imaging_db_migrate`` command), under its schema lock, so this file takes the
connection from ``config.attributes`` rather than from an ``alembic.ini``.
"""

from alembic import context

from imaging_db.database import schema
from imaging_db.database.migrate import include_object

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters a table by copying it, which batch mode does for it.
context.configure(connection=connection, target_metadata=schema.metadata, render_as_batch=True,
                  include_object=include_object)
with context.begin_transaction():
    context.run_migrations()
