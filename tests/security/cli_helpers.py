"""Small helpers the security tests share: configs, CSVs, running the CLIs, and what a folder holds."""

import csv
import os
from pathlib import Path

import sqlalchemy as sa

from imaging_db.cli import data_downloader, data_uploader
from tests.cli.test_end_to_end import write_config  # noqa: F401 - the security tests' configs are the same

ID = "ML-2018-11-07-09-35-54-0010"


def write_csv(folder: Path, rows: list[dict], name: str = "files.csv") -> Path:
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.DictWriter(handle, fieldnames=["dataset_id", "file_name", "description"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in ("dataset_id", "file_name", "description")})
    return path


def storage_args(storage_spec: dict) -> list[str]:
    args = ["--storage", storage_spec["storage"], "--storage_access", storage_spec["storage_access"]]
    if storage_spec["s3_endpoint_url"]:
        args += ["--s3_endpoint_url", storage_spec["s3_endpoint_url"]]
    return args


def upload(csv_path: Path, config: Path, login: Path, *extra: str) -> int:
    return data_uploader.main(["--csv", str(csv_path), "--config", str(config), "--login", str(login),
                               "--no-progress", *extra])


def download(dest: Path, login: Path, storage_spec: dict, *extra: str, dataset_id: str = ID) -> int:
    return data_downloader.main(["--id", dataset_id, "--dest", str(dest), "--login", str(login), "--no-progress",
                                 *storage_args(storage_spec), *extra])


def execute(db_url, sql: str, **params) -> list[dict]:
    """Run one statement on the database (as someone editing it by hand would) and return its rows."""
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return [dict(r) for r in result.mappings()] if result.returns_rows else []
    finally:
        engine.dispose()


def files_under(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``root`` (symlinks not followed): relative path -> content (None for folders)."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]
