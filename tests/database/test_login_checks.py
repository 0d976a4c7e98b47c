"""url_from_login refuses values of the wrong type or that no driver takes, naming the key, never the value."""

import pytest

from imaging_db.database.connection import url_from_login
from imaging_db.errors import InputError

PG = {"drivername": "postgres", "username": "lab", "password": "s3cret-pass", "host": "db.lab", "dbname": "imaging"}


@pytest.mark.parametrize("key, value, problem", [
    ("username", ["lab"], "username must be a string, not list"),
    ("password", 12345678, "password must be a string, not int"),
    ("password", {"a": 1}, "password must be a string, not dict"),
    ("host", 10, "host must be a string, not int"),
    ("dbname", True, "dbname must be a string, not bool"),
    ("drivername", 5, "drivername must be a string, not int"),
    ("password", "s3cret\x00pass", "password holds a NUL character"),
    ("password", "s3cret\udc80pass", "password is not valid Unicode"),
    ("host", "db\x00.lab", "host holds a NUL character"),
])
def test_values_must_be_text_every_driver_takes(key, value, problem):
    with pytest.raises(InputError, match=rf"^login file 'db.json': {problem}") as info:
        url_from_login({**PG, key: value}, "db.json")
    assert "s3cret" not in str(info.value) and "12345678" not in str(info.value)


@pytest.mark.parametrize("port, problem", [
    (True, "port True is not an integer"),
    (54.32, "port 54.32 is not an integer"),
    ("54a", "port '54a' is not an integer"),
    ([5432], r"port \[5432\] is not an integer"),
    (0, r"port 0 is not within 1\.\.65535"),
    (70000, r"port 70000 is not within 1\.\.65535"),
    ("70000", r"port '70000' is not within 1\.\.65535"),
])
def test_port(port, problem):
    with pytest.raises(InputError, match=rf"^login file 'db.json': {problem}$"):
        url_from_login({**PG, "port": port}, "db.json")


@pytest.mark.parametrize("port, expected", [(5433, 5433), ("5433", 5433), (" 5433 ", 5433), (None, None), ("", None)])
def test_good_ports(port, expected):
    assert url_from_login({**PG, "port": port}).port == expected


def test_sqlite_dbname_with_nul():
    with pytest.raises(InputError, match=r"^login file 'db.json': dbname holds a NUL character$"):
        url_from_login({"drivername": "sqlite", "dbname": "a\x00b.db"}, "db.json")


def test_null_values_are_absent_values():
    url = url_from_login({**PG, "password": None, "port": None})
    assert url.password is None and url.port is None and url.host == "db.lab"
