"""Database layer: ORM tables, connections from login files, and row-level operations."""
