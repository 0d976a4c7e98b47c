"""Turn a login JSON file into a SQLAlchemy engine, never exposing the password."""

import json
import math
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from imaging_db.defaults import default_sqlite_path
from imaging_db.errors import DatabaseError, InputError
from imaging_db.metadata.json_files import load_json_file

LOGIN_KEYS = ("drivername", "username", "password", "host", "port", "dbname")
# The seed's examples say "postgres", which SQLAlchemy 1.4+ no longer accepts.
_POSTGRES_NAMES = {"postgres", "postgresql", "postgresql+psycopg2", "psycopg2"}
_SQLITE_NAMES = {"sqlite", "sqlite3", "sqlite+pysqlite"}


def url_from_login(login: dict, source: str = "<login>") -> URL:
    """Build a database URL from a login dict.

    Parameters
    ----------
    login : dict
        Keys ``drivername``, ``username``, ``password``, ``host``, ``port``,
        ``dbname``. For ``drivername: sqlite`` only ``dbname`` (a file path) is used.
    source : str
        Where the login came from, for error messages.

    Raises
    ------
    InputError
        On a missing key, an unknown driver or a bad port. The message never
        contains the password.
    """
    if not isinstance(login, dict):
        raise InputError(f"login file {source!r} must hold a JSON object")
    unknown = sorted(set(login) - set(LOGIN_KEYS))
    if unknown:
        raise InputError(f"login file {source!r}: unknown key(s) {unknown}; allowed keys are {list(LOGIN_KEYS)}")
    driver = str(login.get("drivername") or "").strip().lower()
    if driver in _SQLITE_NAMES:
        dbname = login.get("dbname")
        if not dbname:
            raise InputError(f"login file {source!r}: drivername sqlite needs dbname, the database file path")
        path = Path(str(dbname)).expanduser()
        if not path.is_absolute() and source != "<login>":
            path = Path(source).parent / path
        return URL.create("sqlite+pysqlite", database=str(path))
    if driver in _POSTGRES_NAMES:
        missing = [k for k in ("username", "host", "dbname") if not login.get(k)]
        if missing:
            raise InputError(f"login file {source!r}: drivername {driver!r} needs key(s) {missing}")
        port = login.get("port")
        if port in (None, ""):
            port = None
        else:
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise InputError(f"login file {source!r}: port {port!r} is not an integer") from None
        return URL.create(
            "postgresql+psycopg2",
            username=str(login["username"]),
            password=None if login.get("password") in (None, "") else str(login["password"]),
            host=str(login["host"]),
            port=port,
            database=str(login["dbname"]),
        )
    raise InputError(
        f"login file {source!r}: unknown drivername {login.get('drivername')!r}; use 'postgres' or 'sqlite'"
    )


def load_login(path: str | Path | None) -> URL:
    """Read a login file; with no path, return the embedded SQLite database's URL.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a valid login.
    """
    if path is None:
        return URL.create("sqlite+pysqlite", database=str(default_sqlite_path()))
    return url_from_login(load_json_file(path, "login"), str(path))


def safe_url(url: URL) -> str:
    """Return the URL as text with the password hidden."""
    return url.render_as_string(hide_password=True)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _json_compatible(value):
    """Return ``value`` with NaN/Infinity as None and NUL characters removed.

    PostgreSQL's JSON types refuse both (a whole dataset would fail at its final
    commit), and they are not valid JSON for other readers of SQLite either; doing
    it on every backend keeps SQLite and PostgreSQL storing the same metadata.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_json_compatible(k) if isinstance(k, str) else k: _json_compatible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_compatible(v) for v in value]
    return value


def _json_dumps(value) -> str:
    """Serialize a metadata_json value the same way for every backend; see :func:`_json_compatible`."""
    # Fast path in C for the usual clean metadata; walk the value only when it needs cleaning.
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_json_compatible(value), allow_nan=False)
    if "\\u0000" in text:
        return json.dumps(_json_compatible(value), allow_nan=False)
    return text


def make_engine(url: URL) -> Engine:
    """Create an engine for the URL; for SQLite, create the file's folder.

    Raises
    ------
    DatabaseError
        If the SQLite folder cannot be created.
    """
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            folder = Path(url.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create database folder {str(folder)!r}: {exc.strerror}") from None
        engine = sa.create_engine(url, json_serializer=_json_dumps)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10}, json_serializer=_json_dumps)
