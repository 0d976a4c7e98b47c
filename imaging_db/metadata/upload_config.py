"""The upload config JSON: schema, defaults and command-line overrides."""

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from imaging_db.errors import InputError
from imaging_db.filestorage import storage_class, storage_names
from imaging_db.images.splitters import ALIASES as FORMAT_ALIASES
from imaging_db.images.splitters import AUTO_FORMAT, splitter_names
from imaging_db.json_files import load_json_file
from imaging_db.json_text import text_problem
from imaging_db.metadata.filename_parsers import FILENAME_PARSERS

logger = logging.getLogger(__name__)

UPLOAD_TYPES = ("frames", "file")
# Keys the original imagingDB read under another name: its name -> ours.
LEGACY_KEYS = {"schema_filename": "meta_schema"}

def config_schema() -> dict:
    """The JSON Schema of an upload config; the format and storage names come from their registries."""
    return {
        "type": "object",
        "properties": {
            "upload_type": {"enum": list(UPLOAD_TYPES)},
            "format": {"enum": list(UPLOAD_TYPES)},
            "frames_format": {"enum": [*splitter_names(), AUTO_FORMAT, None]},
            "microscope": {"type": ["string", "null"]},
            "filename_parser": {"enum": ["", None, *FILENAME_PARSERS]},
            "meta_schema": {"type": ["string", "null"]},
            "storage": {"enum": storage_names()},
            "storage_access": {"type": ["string", "null"]},
            "s3_endpoint_url": {"type": ["string", "null"]},
            "nbr_workers": {"type": "integer", "minimum": 1},
            "png_compression": {"type": ["integer", "null"], "minimum": 0, "maximum": 9},
        },
        "additionalProperties": False,
    }


@dataclass
class UploadConfig:
    """Settings that apply to every dataset of one upload run."""

    upload_type: str = "frames"
    # None or "auto": the splitter that can read each dataset's file is chosen.
    frames_format: str | None = None
    microscope: str | None = None
    filename_parser: str | None = None
    meta_schema: Path | None = None
    storage: str = "local"
    storage_access: str | None = None
    s3_endpoint_url: str | None = None
    nbr_workers: int | None = None
    png_compression: int | None = None


def resolve_input_path(value: str, relative_to: Path | None) -> Path:
    """Resolve a path named in an input file: as given if it exists, else beside that file."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists() or relative_to is None:
        return path
    candidate = relative_to / path
    return candidate if candidate.exists() else path


def _schema_error_line(path: str, error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = config_schema()["properties"]
        unknown = sorted(set(error.instance) - set(allowed))
        return (
            f"config file {path!r}: unknown key(s) {unknown}; "
            f"allowed keys are {sorted(allowed)}"
        )
    return f"config file {path!r}: key {where!r}: {error.message}"


def _original_spelling(source: str, old: str, new: str, what: str = "name") -> None:
    logger.warning("%s: %s is the original imagingDB's %s; use %s", source, old, what, new)


def current_spellings(data: dict, source: str = "<config>") -> dict:
    """Return a copy of ``data`` with the original imagingDB's spellings replaced by ours.

    Its key ``schema_filename`` becomes ``meta_schema``, its frames_format
    names (``ome_tif``, ``tiff``, ...: see the splitters' ``ALIASES``) ours,
    and ``upload_type`` and ``storage`` in another letter case (it lower-cased
    them, e.g. ``"S3"``) lower case. Each logs one warning naming ``source``
    and the current spelling. Anything else is left for validation.

    Raises
    ------
    InputError
        If ``schema_filename`` and ``meta_schema`` are both given and differ.
    """
    data = dict(data)
    for old, new in LEGACY_KEYS.items():
        if old not in data:
            continue
        value = data.pop(old)
        if new in data and data[new] != value:
            raise InputError(f"config file {source!r}: {old} {value!r} and {new} {data[new]!r} disagree; "
                             f"keep only {new}")
        data[new] = value
        _original_spelling(source, json.dumps(old), json.dumps(new))
    frames_format = data.get("frames_format")
    if isinstance(frames_format, str) and frames_format in FORMAT_ALIASES and frames_format not in splitter_names():
        data["frames_format"] = FORMAT_ALIASES[frames_format]
        _original_spelling(source, f'"frames_format": {json.dumps(frames_format)}',
                           json.dumps(data["frames_format"]))
    for key, names in (("upload_type", UPLOAD_TYPES), ("storage", storage_names())):
        value = data.get(key)
        if isinstance(value, str) and value not in names and value.lower() in names:
            data[key] = value.lower()
            _original_spelling(source, f"{json.dumps(key)}: {json.dumps(value)}", json.dumps(data[key]),
                               "spelling")
    return data


def parse_upload_config(data: dict, source: str = "<config>", base_dir: Path | None = None) -> UploadConfig:
    """Validate a config dict and turn it into an UploadConfig.

    The original imagingDB's spellings are accepted, each with a warning
    (:func:`current_spellings`).

    Parameters
    ----------
    data : dict
        The parsed config JSON.
    source : str
        Where the config came from, for error and warning messages.
    base_dir : Path, optional
        Folder against which a relative ``meta_schema`` path is also tried.

    Raises
    ------
    InputError
        On unknown keys, wrong types or values, or inconsistent settings.
    """
    if not isinstance(data, dict):
        raise InputError(f"config file {source!r} must hold a JSON object")
    data = current_spellings(data, source)
    errors = sorted(
        jsonschema.Draft7Validator(config_schema()).iter_errors(data), key=lambda e: list(e.absolute_path)
    )
    if errors:
        raise InputError(_schema_error_line(source, errors[0]))
    for key, value in data.items():
        # Only the microscope is stored as text, but a path or bucket with a NUL fails as obscurely.
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            raise InputError(f"config file {source!r}: {key} {value!r} {problem}")
    upload_type = data.get("upload_type")
    alias = data.get("format")
    if upload_type and alias and upload_type != alias:
        raise InputError(
            f"config file {source!r}: upload_type {upload_type!r} and format {alias!r} disagree"
        )
    config = UploadConfig(
        upload_type=upload_type or alias or "frames",
        frames_format=data.get("frames_format"),
        microscope=data.get("microscope") or None,
        filename_parser=data.get("filename_parser") or None,
        storage=data.get("storage") or "local",
        storage_access=data.get("storage_access") or None,
        s3_endpoint_url=data.get("s3_endpoint_url") or None,
        # JSON Schema counts 2.0 as an integer; keep the field an int.
        nbr_workers=None if data.get("nbr_workers") is None else int(data["nbr_workers"]),
        png_compression=None if data.get("png_compression") is None else int(data["png_compression"]),
    )
    if data.get("meta_schema"):
        config.meta_schema = resolve_input_path(data["meta_schema"], base_dir)
    return config


def load_upload_config(path: str | Path | None) -> UploadConfig:
    """Read and validate a config file.

    Raises
    ------
    InputError
        If no path is given, or the file is missing, not JSON, or not a valid config.
    """
    if path is None:
        raise InputError("no config given: pass --config with upload_type and frames_format")
    path = Path(path)
    data = load_json_file(path, "config")
    return parse_upload_config(data, str(path), path.parent)


def apply_overrides(config: UploadConfig, *, storage: str | None = None, storage_access: str | None = None,
                    s3_endpoint_url: str | None = None, nbr_workers: int | None = None) -> UploadConfig:
    """Return ``config`` with the values given on the command line in place of its own.

    Raises
    ------
    InputError
        On an unknown storage or fewer than one worker.
    """
    if storage is not None:
        storage_class(storage)  # an unknown name: the registry's error, which names the choices
    if nbr_workers is not None and nbr_workers < 1:
        raise InputError(f"nbr_workers must be at least 1, not {nbr_workers}")
    given = {"storage": storage, "storage_access": storage_access, "s3_endpoint_url": s3_endpoint_url,
             "nbr_workers": nbr_workers}
    return dataclasses.replace(config, **{key: value for key, value in given.items() if value})
