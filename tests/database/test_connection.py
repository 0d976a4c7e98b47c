"""Login JSON -> database URL, and keeping the password out of every message."""

import json
import re
import sqlite3
import traceback

import pytest
from sqlalchemy.engine import URL

from imaging_db.database.connection import load_login, make_engine, safe_url, url_from_login
from imaging_db.database.db_ops import Database
from imaging_db.errors import DatabaseError, InputError, NotFoundError

PASSWORD = "S3cr3tPassw0rd"

PG_LOGIN = {
    "drivername": "postgres",
    "username": "lab_user",
    "password": PASSWORD,
    "host": "db.example.org",
    "port": 5433,
    "dbname": "imaging",
}


def _write_login(path, login) -> str:
    path.write_text(json.dumps(login))
    return str(path)


# --------------------------------------------------------------------------- PostgreSQL logins
@pytest.mark.parametrize("driver", ["postgres", "postgresql", "PostgreSQL", "postgresql+psycopg2", " postgres "])
def test_postgres_driver_names_map_to_psycopg2(driver):
    url = url_from_login({**PG_LOGIN, "drivername": driver})
    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "lab_user", PASSWORD, "db.example.org", 5433, "imaging")


def test_port_may_be_a_string_or_absent():
    assert url_from_login({**PG_LOGIN, "port": "5432"}).port == 5432
    assert url_from_login({**PG_LOGIN, "port": ""}).port is None
    login = dict(PG_LOGIN)
    del login["port"]
    assert url_from_login(login).port is None


def test_empty_password_means_none():
    assert url_from_login({**PG_LOGIN, "password": ""}).password is None


@pytest.mark.parametrize("port", ["five", "54.32", [5432]])
def test_bad_port(port):
    with pytest.raises(InputError, match=rf"^login file 'db.json': port {re.escape(repr(port))} is not an integer$"):
        url_from_login({**PG_LOGIN, "port": port}, "db.json")


@pytest.mark.parametrize("key", ["username", "host", "dbname"])
def test_postgres_needs_user_host_dbname(key):
    login = {**PG_LOGIN, key: ""}
    with pytest.raises(InputError, match=rf"^login file 'db.json': drivername 'postgres' needs key\(s\) \['{key}'\]$"):
        url_from_login(login, "db.json")


def test_unknown_driver():
    with pytest.raises(InputError, match=r"^login file 'db.json': unknown drivername 'mysql'; use 'postgres' or 'sqlite'$"):
        url_from_login({**PG_LOGIN, "drivername": "mysql"}, "db.json")


def test_missing_driver():
    with pytest.raises(InputError, match=r"unknown drivername None"):
        url_from_login({"dbname": "x"}, "db.json")


def test_unknown_keys():
    with pytest.raises(InputError, match=r"^login file 'db.json': unknown key\(s\) \['database', 'user'\]; allowed keys are"):
        url_from_login({**PG_LOGIN, "user": "x", "database": "y"}, "db.json")


def test_login_must_be_an_object():
    with pytest.raises(InputError, match=r"^login file 'db.json' must hold a JSON object$"):
        url_from_login(["postgres"], "db.json")


def test_input_errors_never_show_the_password():
    for login in ({**PG_LOGIN, "port": "x"}, {**PG_LOGIN, "host": ""}, {**PG_LOGIN, "drivername": "oracle"},
                  {**PG_LOGIN, "pasword": 1}):
        with pytest.raises(InputError) as info:
            url_from_login(login, "db.json")
        assert PASSWORD not in str(info.value)


# --------------------------------------------------------------------------- SQLite logins
def test_sqlite_needs_only_dbname(tmp_path):
    db_path = tmp_path / "lab.sqlite"
    url = url_from_login({"drivername": "sqlite", "dbname": str(db_path)})
    assert url.drivername == "sqlite+pysqlite"
    assert url.database == str(db_path)
    assert url.username is None and url.password is None and url.host is None


def test_sqlite_without_dbname():
    with pytest.raises(InputError, match=r"^login file 'db.json': drivername sqlite needs dbname"):
        url_from_login({"drivername": "sqlite"}, "db.json")


def test_relative_sqlite_path_is_beside_the_login_file(tmp_path, monkeypatch):
    login_dir = tmp_path / "logins"
    login_dir.mkdir()
    path = _write_login(login_dir / "db.json", {"drivername": "sqlite", "dbname": "data/lab.sqlite"})
    monkeypatch.chdir(tmp_path)
    assert load_login(path).database == str(login_dir / "data" / "lab.sqlite")


def test_absolute_sqlite_path_is_kept(tmp_path):
    target = tmp_path / "elsewhere" / "lab.sqlite"
    path = _write_login(tmp_path / "db.json", {"drivername": "sqlite", "dbname": str(target)})
    assert load_login(path).database == str(target)


def test_no_login_gives_the_embedded_database(imaging_home):
    url = load_login(None)
    assert url.drivername == "sqlite+pysqlite"
    assert url.database == str(imaging_home / "imaging_db.sqlite")


def test_login_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError, match=rf"^login file {re.escape(repr(str(missing)))} does not exist$"):
        load_login(missing)
    path = _write_login(tmp_path / "db.json", {**PG_LOGIN, "port": "x"})
    with pytest.raises(InputError, match=rf"^login file {re.escape(repr(path))}: port 'x'"):
        load_login(path)


def test_sqlite_engine_creates_the_folder_and_enforces_foreign_keys(tmp_path):
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "new" / "sub" / "db.sqlite"))
    engine = make_engine(url)
    try:
        assert (tmp_path / "new" / "sub").is_dir()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_readers_do_not_create_a_missing_sqlite_file(tmp_path):
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "none" / "db.sqlite"))
    with pytest.raises(NotFoundError, match=r"the SQLite database .*db\.sqlite' does not exist"):
        make_engine(url, create=False)
    assert not (tmp_path / "none").exists()
    (tmp_path / "none").mkdir()
    sqlite3.connect(tmp_path / "none" / "db.sqlite").close()
    make_engine(url, create=False).dispose()  # an existing file is fine


def test_sqlite_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    url = URL.create("sqlite+pysqlite", database=str(blocker / "db.sqlite"))
    with pytest.raises(DatabaseError, match=rf"^cannot create database folder {re.escape(repr(str(blocker)))}"):
        make_engine(url)


# --------------------------------------------------------------------------- the password stays hidden
def test_safe_url_hides_the_password():
    url = url_from_login(PG_LOGIN)
    text = safe_url(url)
    assert PASSWORD not in text
    assert text == "postgresql+psycopg2://lab_user:***@db.example.org:5433/imaging"


def test_database_describe_and_repr_hide_the_password():
    database = Database(url_from_login(PG_LOGIN))
    try:
        assert PASSWORD not in database.describe()
        assert PASSWORD not in repr(database)
        assert "lab_user:***@db.example.org:5433/imaging" in repr(database)
    finally:
        database.dispose()


def test_failed_connection_names_the_server_not_the_password():
    login = {**PG_LOGIN, "host": "127.0.0.1", "port": 1}
    database = Database(url_from_login(login))
    try:
        with pytest.raises(DatabaseError, match=r"^database postgresql\+psycopg2://lab_user:\*\*\*@127\.0\.0\.1:1/imaging: "
                                                 r"connecting failed: .*127\.0\.0\.1.*port 1") as info:
            database.check_connection()
    finally:
        database.dispose()
    assert "\n" not in str(info.value)
    # Not in the message, nor anywhere in the traceback that --verbose would print.
    full = "".join(traceback.format_exception(info.value))
    assert PASSWORD not in full


def test_check_connection_on_a_reachable_database(tmp_path):
    database = Database(URL.create("sqlite+pysqlite", database=str(tmp_path / "ok.sqlite")))
    try:
        database.check_connection()
    finally:
        database.dispose()
