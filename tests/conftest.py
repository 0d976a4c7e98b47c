"""Shared fixtures: temporary databases (SQLite, PostgreSQL), storages (local, S3 over moto), TIFF inputs.

PostgreSQL tests use the server at 127.0.0.1:5432 (user postgres): each test
gets a database of its own, dropped afterwards. Without a server they are
skipped, saying so, unless IMAGING_DB_REQUIRE_POSTGRES=1 (as in .ci/run),
which turns the skip into a failure.
"""

import json
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from imaging_db.database.db_ops import Database

PG_HOST = os.environ.get("IMAGING_DB_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("IMAGING_DB_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("IMAGING_DB_TEST_PG_USER", "postgres")
REQUIRE_POSTGRES = os.environ.get("IMAGING_DB_REQUIRE_POSTGRES") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "postgresql: needs a PostgreSQL server")
    config.addinivalue_line("markers", "s3: needs the moto S3 server")
    config.addinivalue_line("markers", "large: writes and uploads gigabytes; deselected unless asked (make test-large)")
    config.addinivalue_line("markers", "slow: a minute or two (installs in new venvs); runs in make test")


def pytest_collection_modifyitems(config, items):
    """The modules with slow tests first, so that over make test's workers (-n auto) they do not end the run
    alone; the Docker image's tests on one worker (--dist loadgroup) and together, so that its module-scoped
    install in a new venv is made once."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    for item in items:
        if item.path.name == "test_docker.py":
            item.add_marker(pytest.mark.xdist_group("docker_image"))
    items.sort(key=lambda item: item.path not in slow_modules)  # stable: each module's tests stay in order


# --------------------------------------------------------------------------- environment
@pytest.fixture(autouse=True)
def imaging_home(tmp_path, monkeypatch) -> Path:
    """Point $IMAGING_DB_HOME at a temporary folder so no test touches ~/.imaging_db."""
    home = tmp_path / "imaging_db_home"
    monkeypatch.setenv("IMAGING_DB_HOME", str(home))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return home


# --------------------------------------------------------------------------- PostgreSQL
def _pg_admin_url(port: int = PG_PORT, host: str = PG_HOST, user: str = PG_USER) -> URL:
    return URL.create("postgresql+psycopg2", username=user, host=host, port=port, database="postgres")


def _server_reachable(url: URL) -> str | None:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_admin_url():
    """URL of a PostgreSQL maintenance database on a running server, or skip (fail in CI)."""
    url = _pg_admin_url()
    problem = _server_reachable(url)
    if problem is None:
        yield url
        return
    fallback = None
    if os.geteuid() != 0:  # initdb refuses to run as root
        try:
            import testing.postgresql

            fallback = testing.postgresql.Postgresql()
        except Exception as exc:  # not installed or cannot start: report below
            problem += f"; testing.postgresql fallback failed: {exc}"
    if fallback is not None:
        params = fallback.dsn()
        yield _pg_admin_url(port=params["port"], host=params["host"], user=params["user"])
        fallback.stop()
        return
    message = f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} ({problem})"
    if REQUIRE_POSTGRES:
        pytest.fail(message + " and IMAGING_DB_REQUIRE_POSTGRES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pg_url(pg_admin_url):
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"imaging_db_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_admin_url.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _login_dict(url: URL) -> dict:
    if url.get_backend_name() == "sqlite":
        return {"drivername": "sqlite", "dbname": url.database}
    return {
        "drivername": "postgres",
        "username": url.username,
        "password": url.password or "",
        "host": url.host,
        "port": url.port,
        "dbname": url.database,
    }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request, tmp_path) -> URL:
    """URL of an empty database: SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return URL.create("sqlite+pysqlite", database=str(tmp_path / "test.sqlite"))
    return request.getfixturevalue("pg_url")


@pytest.fixture
def database(db_url):
    """A Database with the imaging_db tables, on each backend."""
    db = Database(db_url)
    db.create_tables()
    yield db
    db.dispose()


@pytest.fixture
def login_file(db_url, tmp_path) -> Path:
    """A login JSON file for ``db_url``, as data_uploader --login takes it."""
    path = tmp_path / "db_credentials.json"
    path.write_text(json.dumps(_login_dict(db_url)))
    return path


# --------------------------------------------------------------------------- S3 (moto server over HTTP)
@pytest.fixture(scope="session")
def moto_endpoint():
    """Endpoint URL of a moto S3 server on loopback, with fake credentials in the environment."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret",
                      AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(moto_endpoint) -> str:
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"imaging-db-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_spec(request, tmp_path) -> dict:
    """How to reach an empty storage: kind, access and endpoint, for each backend."""
    if request.param == "local":
        return {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return {"storage": "s3", "storage_access": bucket, "s3_endpoint_url": endpoint}


@pytest.fixture
def storage(storage_spec):
    """A DataStorage for each backend."""
    from imaging_db.filestorage import make_storage

    return make_storage(storage_spec["storage"], storage_spec["storage_access"],
                        s3_endpoint_url=storage_spec["s3_endpoint_url"])
