"""The upload config JSON: schema, defaults and command-line overrides."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from imaging_db.errors import InputError
from imaging_db.filestorage import storage_class, storage_names
from imaging_db.images.splitters import AUTO_FORMAT, splitter_names
from imaging_db.json_files import load_json_file
from imaging_db.json_text import text_problem
from imaging_db.metadata.filename_parsers import FILENAME_PARSERS

UPLOAD_TYPES = ("frames", "file")

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
