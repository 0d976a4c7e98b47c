"""Credentials never appear in output, logs or exceptions; a login file others can read gets a warning.

The database password is tried against a server that really rejects it
(:class:`FakePostgres`: the local PostgreSQL trusts every connection), and on
a real server that accepts the connection, with ``--verbose`` and without.
S3 credentials are tried on the moto server with botocore's DEBUG logging on,
which writes every request's headers.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy.engine import URL

from imaging_db.cli import cli_common, data_downloader, data_uploader
from imaging_db.database.connection import load_login, url_from_login
from imaging_db.database.db_ops import Database
from imaging_db.errors import DatabaseError
from imaging_db.example_data import write_mm_ometiff
from tests.security.cli_helpers import ID, storage_args, write_config, write_csv
from tests.security.fake_postgres import FakePostgres

# Characters that URLs, DSNs and JSON each escape differently, so every spelling of it is looked for.
PASSWORD = "S3cr3t:@/%?#'\" pw-ü"
USER = "lab_user"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY-SECRET"
AWS_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789"


def spellings(secret: str) -> list[str]:
    """The ways a secret may be written out: as is, percent-encoded, JSON-escaped."""
    return sorted({secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
                   json.dumps(secret, ensure_ascii=False)[1:-1]})


def assert_hidden(secret: str, *texts: str) -> None:
    for text in texts:
        for form in spellings(secret):
            assert form not in text, f"{form!r} shown in:\n{text}"


def write_login(path: Path, port: int, mode: int = 0o600, password: str = PASSWORD) -> Path:
    path.write_text(json.dumps({"drivername": "postgres", "username": USER, "password": password,
                                "host": "127.0.0.1", "port": port, "dbname": "imaging"}))
    path.chmod(mode)
    return path


def _upload_inputs(tmp_path: Path) -> tuple[Path, Path]:
    write_mm_ometiff(tmp_path / "acq", ["GFP"], nbr_slices=2, nbr_times=1, nbr_positions=1, shape=(8, 6))
    spec = {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff")
    return write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}]), config


def _cli_args(cli: str, tmp_path: Path, login: Path) -> list[str]:
    if cli == "data_uploader":
        csv_path, config = _upload_inputs(tmp_path)
        return ["--csv", str(csv_path), "--config", str(config), "--login", str(login), "--no-progress"]
    return ["--id", ID, "--dest", str(tmp_path / "dl"), "--login", str(login), "--no-progress"]


# --------------------------------------------------------------------------- a server that rejects the password
@pytest.mark.parametrize("cli, verbose, auth", [
    ("data_uploader", False, "cleartext"), ("data_uploader", True, "md5"),
    ("data_downloader", False, "md5"), ("data_downloader", True, "cleartext"),
])
def test_rejected_password_is_never_shown_by_the_cli(cli, verbose, auth, tmp_path):
    """Run as a user would: the server asks for the password and rejects it; it appears nowhere.

    Quiet runs use a login file others can read: the permission warning is one
    line of its own, beside the error line. Verbose runs print the traceback.
    """
    with FakePostgres(auth) as server:
        login = write_login(tmp_path / "db.json", server.port, mode=0o600 if verbose else 0o644)
        command = [sys.executable, "-m", f"imaging_db.cli.{cli}", *_cli_args(cli, tmp_path, login)]
        run = subprocess.run(command + (["--verbose"] if verbose else []), capture_output=True, text=True,
                             timeout=120, env={k: v for k, v in os.environ.items() if k != "PGPASSWORD"})
        assert server.received_password(USER, PASSWORD), "the password was never offered to the server"
    assert run.returncode == 1, run.stderr
    assert f'password authentication failed for user "{USER}"' in run.stderr
    assert_hidden(PASSWORD, run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    if verbose:
        assert "Traceback" in run.stderr and "psycopg2.OperationalError" in run.stderr
        assert "chmod" not in run.stderr
    else:
        assert len(lines) == 2, run.stderr
        assert "WARNING" in lines[0] and repr(str(login)) in lines[0] and f"chmod 600 {login}" in lines[0]
        assert lines[1].startswith(f"{cli}: error: database postgresql+psycopg2://{USER}:***@127.0.0.1:")
    assert not (tmp_path / "storage").exists() and not (tmp_path / "dl").exists()


@pytest.mark.parametrize("cli", ["data_uploader", "data_downloader"])
def test_rejected_password_is_in_no_log_record(cli, tmp_path, capsys, caplog):
    """In process, every log record (message, exception text) and every printed line is free of the password."""
    caplog.set_level(logging.DEBUG)
    main = {"data_uploader": data_uploader.main, "data_downloader": data_downloader.main}[cli]
    with FakePostgres("md5") as server:
        login = write_login(tmp_path / "db.json", server.port, mode=0o640)
        assert main([*_cli_args(cli, tmp_path, login), "--verbose"]) == 1
        assert server.received_password(USER, PASSWORD)
    out, err = capsys.readouterr()
    assert "password authentication failed" in err
    records = [(r.name, r.levelno, r.getMessage(), r.exc_text or "") for r in caplog.records]
    assert_hidden(PASSWORD, out, err, caplog.text, repr(records))
    warnings = [r for r in records if r[1] == logging.WARNING and "chmod 600" in r[2]]
    assert len(warnings) == 1 and warnings[0][0] == "imaging_db.database.connection"
    assert str(login) in warnings[0][2] and "mode 0640" in warnings[0][2]


@pytest.mark.parametrize("auth", ["cleartext", "md5"])
def test_rejected_password_is_not_in_the_exception(auth, tmp_path):
    """The library's error and its whole chain (what --verbose prints) are free of the password."""
    with FakePostgres(auth) as server:
        database = Database(load_login(write_login(tmp_path / "db.json", server.port)))
        try:
            with pytest.raises(DatabaseError, match=r'password authentication failed for user "lab_user"') as info:
                database.check_connection()
        finally:
            database.dispose()
        assert server.received_password(USER, PASSWORD)
    assert_hidden(PASSWORD, str(info.value), repr(info.value), "".join(traceback.format_exception(info.value)),
                  repr(database), database.describe())


# --------------------------------------------------------------------------- a server that accepts it
@pytest.mark.postgresql
def test_password_not_shown_on_a_successful_verbose_round_trip(tmp_path, pg_url, capsys, caplog):
    """The local server trusts the connection, so the password travels but is never checked: nothing may show it."""
    caplog.set_level(logging.DEBUG)
    login = tmp_path / "db.json"
    login.write_text(json.dumps({"drivername": "postgres", "username": pg_url.username, "password": PASSWORD,
                                 "host": pg_url.host, "port": pg_url.port, "dbname": pg_url.database}))
    login.chmod(0o600)
    csv_path, config = _upload_inputs(tmp_path)
    assert data_uploader.main(["--csv", str(csv_path), "--config", str(config), "--login", str(login),
                               "--no-progress", "--verbose"]) == 0
    assert data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl"), "--login", str(login), "--no-progress",
                                 "--storage_access", str(tmp_path / "storage"), "--verbose"]) == 0
    assert len(list((tmp_path / "dl" / ID).glob("*.png"))) == 2
    out, err = capsys.readouterr()
    assert f"{ID}: 2 frames" in out
    assert_hidden(PASSWORD, out, err, caplog.text,
                  repr([(r.getMessage(), r.exc_text) for r in caplog.records]))
    assert not [r for r in caplog.records if "chmod" in r.getMessage()]


# --------------------------------------------------------------------------- the login file's permissions
@pytest.mark.parametrize("mode, warned", [(0o600, False), (0o400, False), (0o640, True), (0o604, True),
                                          (0o620, True), (0o644, True), (0o666, True)])
def test_login_file_others_can_access_gets_one_warning(mode, warned, tmp_path, caplog):
    path = write_login(tmp_path / "db.json", 5432, mode=mode)
    with caplog.at_level(logging.WARNING):
        url = load_login(path)
    assert url.password == PASSWORD  # a warning, not an error
    messages = [r.getMessage() for r in caplog.records]
    if not warned:
        assert messages == []
        return
    assert len(messages) == 1 and caplog.records[0].levelno == logging.WARNING
    assert messages[0] == (f"login file {str(path)!r} holds a database password and other users can access it "
                           f"(mode {mode:04o}): run chmod 600 {path}")
    assert_hidden(PASSWORD, messages[0])


@pytest.mark.parametrize("login", [{"drivername": "sqlite", "dbname": "lab.sqlite"},
                                   {"drivername": "postgres", "username": "u", "host": "h", "dbname": "d"},
                                   {"drivername": "postgres", "username": "u", "password": "", "host": "h",
                                    "dbname": "d"}], ids=["sqlite", "no-password", "empty-password"])
def test_login_file_without_a_password_is_not_warned_about(login, tmp_path, caplog):
    path = tmp_path / "db.json"
    path.write_text(json.dumps(login))
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load_login(path)
    assert caplog.records == []


# --------------------------------------------------------------------------- S3 credentials
def _s3_env(moto_endpoint: str, tmp_path: Path, from_file: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    credentials = {"aws_access_key_id": "AKIAEXAMPLEKEYID", "aws_secret_access_key": AWS_SECRET,
                   "aws_session_token": AWS_TOKEN}
    if from_file:  # a profile: the values are in no variable the CLI could know to hide
        path = tmp_path / "aws_credentials"
        path.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in credentials.items()))
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(path)
        env["AWS_CONFIG_FILE"] = str(tmp_path / "no_aws_config")
    else:
        env.update({k.upper(): v for k, v in credentials.items()})
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    return env


@pytest.mark.s3
@pytest.mark.parametrize("from_file", [False, True], ids=["environment", "profile"])
def test_s3_credentials_never_logged_with_verbose(from_file, tmp_path, moto_endpoint, s3_bucket):
    """botocore's DEBUG log writes each request's headers and canonical request: the secret and token stay hidden."""
    spec = {"storage": "s3", "storage_access": s3_bucket, "s3_endpoint_url": moto_endpoint}
    write_mm_ometiff(tmp_path / "acq", ["GFP"], nbr_slices=2, nbr_times=1, nbr_positions=1, shape=(8, 6))
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    login = tmp_path / "db.json"
    login.write_text(json.dumps({"drivername": "sqlite", "dbname": str(tmp_path / "db.sqlite")}))
    env = _s3_env(moto_endpoint, tmp_path, from_file)
    runs = [
        subprocess.run([sys.executable, "-m", "imaging_db.cli.data_uploader", "--csv", str(csv_path),
                        "--config", str(config), "--login", str(login), "--no-progress", "--verbose"],
                       capture_output=True, text=True, env=env, timeout=120),
        subprocess.run([sys.executable, "-m", "imaging_db.cli.data_downloader", "--id", ID, "--dest",
                        str(tmp_path / "dl"), "--login", str(login), "--no-progress", *storage_args(spec),
                        "--verbose"], capture_output=True, text=True, env=env, timeout=120),
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        # The test means something only if botocore really logged the signed requests.
        assert "DEBUG botocore.endpoint: Sending http request" in run.stderr
        assert "x-amz-security-token" in run.stderr.lower()
        assert_hidden(AWS_SECRET, run.stdout, run.stderr)
        assert_hidden(AWS_TOKEN, run.stdout, run.stderr)
    assert len(list((tmp_path / "dl" / ID).glob("*.png"))) == 2


# --------------------------------------------------------------------------- the scrubber itself
def test_scrubber_masks_known_values_and_credential_shapes():
    scrubber = cli_common.SecretScrubber(["hunter2-long", "", "ab"])
    assert scrubber.scrub("pw hunter2-long ab") == "pw *** ab"
    assert scrubber.scrub("postgresql://u:p%40ss@host:5432/db") == "postgresql://u:***@host:5432/db"
    assert scrubber.scrub("user=u password='a b\\'c' host=h") == "user=u password=*** host=h"
    assert scrubber.scrub("password=xyz dbname=d") == "password=*** dbname=d"
    assert scrubber.scrub("{'X-Amz-Security-Token': b'TOKEN123', 'X-Amz-Date': b'2018'}") == \
        "{'X-Amz-Security-Token': b'***', 'X-Amz-Date': b'2018'}"
    assert scrubber.scrub("x-amz-security-token:TOKEN123\nx-amz-date:2018") == \
        "x-amz-security-token:***\nx-amz-date:2018"
    assert scrubber.scrub("?X-Amz-Security-Token=TOKEN123&X-Amz-Date=1") == "?X-Amz-Security-Token=***&X-Amz-Date=1"
    # What must stay readable: a URL with a port and no password, an endpoint, the masked URL itself.
    for text in ("http://127.0.0.1:9000/bucket", "postgresql+psycopg2://u:***@h:5432/d", "s3://bucket/key"):
        assert scrubber.scrub(text) == text


def test_scrubber_rewrites_records_messages_exceptions_and_stacks():
    scrubber = cli_common.SecretScrubber(["hunter2-long"])
    try:
        raise RuntimeError("failed with hunter2-long")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login %s", ("hunter2-long",),
                                   sys.exc_info(), sinfo="stack hunter2-long")
    assert scrubber.filter(record) is True
    text = logging.Formatter().format(record)
    assert "hunter2-long" not in text and "login ***" in text and "failed with ***" in text and "stack ***" in text


def test_run_masks_the_error_line_and_traceback_and_removes_its_filter(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    login = tmp_path / "db.json"
    login.write_text(json.dumps({"password": PASSWORD}))
    handlers = logging.getLogger().handlers
    before = [list(h.filters) for h in handlers]

    def main(args):
        logging.getLogger("imaging_db.test").warning("secret %s and %s", AWS_SECRET, PASSWORD)
        raise DatabaseError(f"failed: {PASSWORD} {AWS_SECRET}")

    args = argparse.Namespace(verbose=True, login=str(login))
    assert cli_common.run(main, args, "prog") == cli_common.EXIT_FAILED
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("prog: error: failed: *** ***")
    assert_hidden(PASSWORD, err)
    assert_hidden(AWS_SECRET, err)
    assert [list(h.filters) for h in logging.getLogger().handlers] == before


def test_url_from_login_keeps_the_password_out_of_the_url_text():
    url = url_from_login({"drivername": "postgres", "username": USER, "password": PASSWORD, "host": "h",
                          "dbname": "d"})
    assert isinstance(url, URL) and url.password == PASSWORD
    assert_hidden(PASSWORD, str(url), repr(url))
