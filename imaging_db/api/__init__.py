"""The Python API, for notebooks and scripts: :func:`connect`, then find datasets and read them.

    import imaging_db
    db = imaging_db.connect()
    stack = db.get_stack("ML-2018-11-07-09-35-54-0010", channels=["GFP"])

Importing it loads pandas and xarray; ``import imaging_db`` alone does not
(``imaging_db.connect`` imports this module on first use).
"""

from imaging_db.api.connection import Connection, connect

__all__ = ["Connection", "connect"]
