"""JSON schemas that each frame's metadata must satisfy."""

from pathlib import Path
from typing import Callable

import jsonschema

from imaging_db.errors import InputError
from imaging_db.json_files import load_json_file

FrameValidator = Callable[[dict], str | None]
# The key the original imagingDB's schemas put the frame metadata under.
_ORIGINAL_WRAPPER = "MicroManagerMetadata"


def load_meta_schema(path: Path) -> FrameValidator:
    """Load a JSON schema file and return a function that checks one frame's metadata.

    The returned function gives None when the metadata is valid, else a short
    description of the first problem; it raises InputError naming the file if
    the schema cannot be applied (a ``$ref`` that resolves to nothing).

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a valid JSON schema.
    """
    schema = load_json_file(path, "meta_schema")
    if not isinstance(schema, dict):
        raise InputError(f"meta_schema file {str(path)!r} must hold a JSON object")
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InputError(f"meta_schema file {str(path)!r} is not a valid JSON schema: {exc.message}") from None
    validator = validator_cls(schema)
    # The original imagingDB checked each page's tags by name, so its schemas describe the frame metadata
    # under "MicroManagerMetadata"; such a schema is applied to the metadata wrapped the same way.
    wrapped = isinstance(schema.get("properties"), dict) and isinstance(
        schema["properties"].get(_ORIGINAL_WRAPPER), dict)

    def check(metadata: dict) -> str | None:
        try:
            document = {_ORIGINAL_WRAPPER: metadata} if wrapped else metadata
            error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        except Exception as exc:  # noqa: BLE001 - a $ref to nowhere is found only when validating
            raise InputError(f"meta_schema file {str(path)!r} cannot be applied "
                             f"({type(exc).__name__}: {exc})") from None
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{error.message}" + (f" (at {where})" if where else "")

    return check
