"""The original imagingDB's ``db_utils`` module path, kept for its notebooks: the compatibility layer.

    import imaging_db.utils.db_utils as db_utils
    credentials_str = db_utils.get_connection_str("db_credentials.json")

Not the recommended API: new code uses :func:`imaging_db.connect`. Defined in
:mod:`imaging_db.compat.db_utils`.
"""

from imaging_db.compat.db_utils import check_connection, get_connection_str, json_to_uri

__all__ = ["check_connection", "get_connection_str", "json_to_uri"]
