"""The original imagingDB's ``db_utils`` for its notebooks: a login file to the database URL session_scope takes.

The login file is read as every imaging_db command reads it
(:func:`imaging_db.database.connection.load_login`): ``drivername``
``postgres`` (or ``postgresql``) or ``sqlite`` with ``dbname`` a file path,
values checked, and a warning if others can read a file holding a password.
"""

from pathlib import Path

from sqlalchemy.engine import URL

from imaging_db.compat.session import session_scope, test_connection
from imaging_db.database.connection import first_line, load_login, url_from_login


def _text(url: URL) -> str:
    # The notebooks hand this to session_scope (or to SQLAlchemy or pandas), which need the password in it.
    return url.render_as_string(hide_password=False)


def json_to_uri(credentials_json: dict) -> str:
    """The database URL of a login dict (``drivername``, ``username``, ``password``, ``host``, ``port``, ``dbname``).

    Unlike the original's, special characters in the password are escaped and
    ``postgres`` becomes SQLAlchemy's ``postgresql+psycopg2``.

    Raises
    ------
    InputError
        If the dict is not a valid login (the message never shows the password).
    """
    return _text(url_from_login(credentials_json))


def get_connection_str(credentials_filename: str | Path) -> str:
    """The database URL of a login JSON file, for :func:`imaging_db.compat.session.session_scope`.

    Returns
    -------
    str
        ``postgresql+psycopg2://user:password@host:port/dbname``, or
        ``sqlite+pysqlite:////path/to/file`` for ``drivername: sqlite``. It
        holds the password: do not print it.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a valid login.
    """
    return _text(load_login(credentials_filename))


def check_connection(db_connection: str | URL) -> None:
    """Connect to the database at ``db_connection`` once.

    Raises
    ------
    OSError
        If it cannot be reached (the original's ``IOError``), with the database's reason.
    """
    try:
        with session_scope(db_connection) as session:
            test_connection(session)
    except Exception as exc:
        raise OSError(f"Can't connect to DB: {first_line(exc)}") from exc


__all__ = ["check_connection", "get_connection_str", "json_to_uri"]
