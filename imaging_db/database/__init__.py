"""Database layer: the tables (SQLAlchemy Core), connections from login files, and row-level operations.

ORM classes mapped onto the same tables, for notebooks, are in :mod:`imaging_db.database.models`.
"""
