"""The upload config JSON: schema, defaults and command-line overrides."""

from dataclasses import dataclass
from pathlib import Path

import jsonschema

from imaging_db.errors import InputError
from imaging_db.metadata.filename_parsers import FILENAME_PARSERS
from imaging_db.json_files import load_json_file
from imaging_db.json_text import text_problem

UPLOAD_TYPES = ("frames", "file")
FRAMES_FORMATS = ("ome_tiff", "tif_folder", "tif_id")
STORAGE_KINDS = ("local", "s3")

CONFIG_SCHEMA = {
    "type": "object",
    "properties": {
        "upload_type": {"enum": list(UPLOAD_TYPES)},
        "format": {"enum": list(UPLOAD_TYPES)},
        "frames_format": {"enum": list(FRAMES_FORMATS)},
        "microscope": {"type": ["string", "null"]},
        "filename_parser": {"enum": ["", None, *FILENAME_PARSERS]},
        "meta_schema": {"type": ["string", "null"]},
        "storage": {"enum": list(STORAGE_KINDS)},
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
        unknown = sorted(set(error.instance) - set(CONFIG_SCHEMA["properties"]))
        return (
            f"config file {path!r}: unknown key(s) {unknown}; "
            f"allowed keys are {sorted(CONFIG_SCHEMA['properties'])}"
        )
    return f"config file {path!r}: key {where!r}: {error.message}"


def parse_upload_config(data: dict, source: str = "<config>", base_dir: Path | None = None) -> UploadConfig:
    """Validate a config dict and turn it into an UploadConfig.

    Parameters
    ----------
    data : dict
        The parsed config JSON.
    source : str
        Where the config came from, for error messages.
    base_dir : Path, optional
        Folder against which a relative ``meta_schema`` path is also tried.

    Raises
    ------
    InputError
        On unknown keys, wrong types or values, or inconsistent settings.
    """
    if not isinstance(data, dict):
        raise InputError(f"config file {source!r} must hold a JSON object")
    errors = sorted(
        jsonschema.Draft7Validator(CONFIG_SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path)
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
    if config.upload_type == "frames" and config.frames_format is None:
        raise InputError(
            f"config file {source!r}: upload_type 'frames' needs frames_format, one of {list(FRAMES_FORMATS)}"
        )
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
