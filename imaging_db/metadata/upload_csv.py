"""The upload CSV: one dataset per row."""

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from imaging_db.errors import InputError
from imaging_db.metadata.dataset_id import DatasetId, parse_dataset_id
from imaging_db.json_text import text_problem
from imaging_db.metadata.upload_config import resolve_input_path

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("dataset_id", "file_name")
OPTIONAL_COLUMNS = ("description", "parent_dataset_id", "positions", "meta_schema")
# Settings the original imagingDB's CSVs gave per row until December 2018, when they moved to its
# config: read only to check that one config can stand for every row, then ignored.
RETIRED_COLUMNS = ("upload_type", "frames_format", "microscope")
_NONE_VALUES = {"", "none", "null", "nan"}


@dataclass
class UploadRow:
    """One dataset to upload, as read and checked from the CSV."""

    line: int
    dataset_id: DatasetId
    file_name: Path
    description: str | None = None
    parent_dataset_id: DatasetId | None = None
    positions: list[int] | None = None
    meta_schema: Path | None = None


def _optional(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value.lower() in _NONE_VALUES else value


def _parse_positions(text: str, where: str) -> list[int]:
    try:
        positions = json.loads(text)
    except json.JSONDecodeError:
        positions = None
    if isinstance(positions, int) and not isinstance(positions, bool):
        positions = [positions]
    if (
        not isinstance(positions, list)
        or not positions
        or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in positions)
    ):
        raise InputError(f"{where}: positions {text!r} must be a JSON list of non-negative integers, e.g. [0, 2]")
    if len(set(positions)) != len(positions):
        raise InputError(f"{where}: positions {text!r} lists a position twice")
    return positions


def _check_retired_columns(path: Path, header: list[str], records: list[tuple[int, dict]]) -> None:
    """Warn once for each of the original imagingDB's per-row setting columns; refuse rows that differ in one."""
    for column in RETIRED_COLUMNS:
        if column not in header:
            continue
        values: dict[str, int] = {}  # value -> first line giving it
        for line, raw in records:
            value = _optional(next((v for k, v in raw.items() if (k or "").strip() == column), None))
            if value is not None:
                values.setdefault(value, line)
        if len(values) > 1:
            found = ", ".join(f"{value!r} on line {line}" for value, line in list(values.items())[:3])
            raise InputError(
                f"CSV file {str(path)!r}: column {column} differs between rows ({found}), but it is now one "
                f"setting of the config for every row: split the CSV by {column} and remove the column")
        said = f" (this CSV says {next(iter(values))!r})" if values else ""
        logger.warning("%s line 1: column %s is the original imagingDB's per-row setting (its CSVs before "
                       "December 2018) and is ignored: the config's %s applies to every row%s",
                       path, json.dumps(column), column, said)


def read_upload_csv(path: str | Path) -> list[UploadRow]:
    """Read and validate the upload CSV.

    Checks the columns, every dataset id, duplicate ids, parent ids, positions,
    and that every file and meta_schema named exists. It does not open images.
    The original imagingDB's CSVs are read as they are: the columns of its
    last version are all ours, and the per-row settings of its CSVs before
    December 2018 (``RETIRED_COLUMNS``) are ignored with a warning, as long as
    every row agrees, since the config now gives them for every row.

    Raises
    ------
    InputError
        Naming the CSV line and dataset of the first problem found, or the
        lines of rows that give a retired setting different values.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            records = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise InputError(f"CSV file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read CSV file {str(path)!r}: {exc}") from None
    twice = sorted({c for c in header if c and header.count(c) > 1})
    if twice:
        # csv.DictReader would keep only the last of them, silently.
        raise InputError(f"CSV file {str(path)!r} has column(s) {twice} more than once")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"CSV file {str(path)!r} lacks column(s) {missing}; it has {header}")
    unknown = [c for c in header if c and c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS + RETIRED_COLUMNS]
    if unknown:
        raise InputError(
            f"CSV file {str(path)!r} has unknown column(s) {unknown}; "
            f"known columns are {list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
        )
    if not records:
        raise InputError(f"CSV file {str(path)!r} has no dataset rows")
    _check_retired_columns(path, header, records)

    rows: list[UploadRow] = []
    seen: dict[str, int] = {}
    for line, raw in records:
        where = f"CSV {path.name} line {line}"
        if raw.get(None):  # csv.DictReader puts fields beyond the header under the key None
            raise InputError(
                f"{where}: {len(header) + len(raw[None])} fields but the header has {len(header)}; "
                "quote values that contain commas"
            )
        raw = {(k or "").strip(): v for k, v in raw.items()}
        dataset_text = _optional(raw.get("dataset_id"))
        if dataset_text is None:
            raise InputError(f"{where}: dataset_id is empty")
        try:
            dataset_id = parse_dataset_id(dataset_text)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        where = f"dataset {dataset_id}, {where}"
        for column, value in raw.items():
            problem = text_problem(value) if value else None
            if problem:  # neither PostgreSQL text nor a file name can hold it
                raise InputError(f"{where}: column {column} {problem}; remove it")
        if dataset_id.serial in seen:
            raise InputError(f"{where}: dataset_id also on line {seen[dataset_id.serial]}")
        seen[dataset_id.serial] = line

        file_text = _optional(raw.get("file_name"))
        if file_text is None:
            raise InputError(f"{where}: file_name is empty")
        file_name = resolve_input_path(file_text, path.parent)
        if not file_name.exists():
            raise InputError(f"{where}: file_name {file_text!r} does not exist")

        parent = _optional(raw.get("parent_dataset_id"))
        parent_id = None
        if parent is not None:
            try:
                parent_id = parse_dataset_id(parent, registered=True)
            except InputError as exc:
                raise InputError(f"{where}: parent_dataset_id: {exc}") from None
            if parent_id.serial == dataset_id.serial:
                raise InputError(f"{where}: a dataset cannot be its own parent")

        positions_text = _optional(raw.get("positions"))
        positions = _parse_positions(positions_text, where) if positions_text else None

        schema_text = _optional(raw.get("meta_schema"))
        meta_schema = None
        if schema_text is not None:
            meta_schema = resolve_input_path(schema_text, path.parent)
            if not meta_schema.is_file():
                raise InputError(f"{where}: meta_schema {schema_text!r} does not exist")

        rows.append(
            UploadRow(
                line=line,
                dataset_id=dataset_id,
                file_name=file_name,
                description=_optional(raw.get("description")),
                parent_dataset_id=parent_id,
                positions=positions,
                meta_schema=meta_schema,
            )
        )
    return rows
