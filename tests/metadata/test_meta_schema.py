"""Per-frame metadata schemas."""

import json
import re

import pytest

from imaging_db.errors import InputError
from imaging_db.metadata.meta_schema import load_meta_schema

SCHEMA = {
    "type": "object",
    "required": ["Exposure-ms", "Summary"],
    "properties": {
        "Exposure-ms": {"type": "number", "minimum": 0},
        "Summary": {"type": "object", "properties": {"Channels": {"type": "integer"}}},
    },
}


def _write(tmp_path, content, name="schema.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_valid_frame_passes(tmp_path):
    check = load_meta_schema(_write(tmp_path, SCHEMA))
    assert check({"Exposure-ms": 10.5, "Summary": {"Channels": 2}, "other": "x"}) is None


def test_missing_required_key_is_described(tmp_path):
    check = load_meta_schema(_write(tmp_path, SCHEMA))
    assert check({"Summary": {}}) == "'Exposure-ms' is a required property"


def test_nested_problem_names_its_path(tmp_path):
    check = load_meta_schema(_write(tmp_path, SCHEMA))
    problem = check({"Exposure-ms": 1, "Summary": {"Channels": "two"}})
    assert problem == "'two' is not of type 'integer' (at Summary/Channels)"


def test_out_of_range_value_is_described(tmp_path):
    check = load_meta_schema(_write(tmp_path, SCHEMA))
    assert check({"Exposure-ms": -1, "Summary": {}}) == "-1 is less than the minimum of 0 (at Exposure-ms)"


def test_declared_draft_is_honoured(tmp_path):
    # Draft 2020-12 knows dependentRequired; Draft 7 would ignore it.
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "dependentRequired": {"Slice": ["SliceIndex"]},
    }
    check = load_meta_schema(_write(tmp_path, schema))
    assert check({"Slice": 1, "SliceIndex": 1}) is None
    assert "'SliceIndex' is a dependency of 'Slice'" in check({"Slice": 1})


def test_invalid_schema_is_refused(tmp_path):
    path = _write(tmp_path, {"type": "nonsense"})
    with pytest.raises(InputError, match=rf"^meta_schema file {re.escape(repr(str(path)))} is not a valid JSON schema: .*nonsense"):
        load_meta_schema(path)


def test_schema_must_be_an_object(tmp_path):
    path = _write(tmp_path, [1, 2])
    with pytest.raises(InputError, match=rf"^meta_schema file {re.escape(repr(str(path)))} must hold a JSON object$"):
        load_meta_schema(path)


def test_missing_schema_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(InputError, match=rf"^meta_schema file {re.escape(repr(str(path)))} does not exist$"):
        load_meta_schema(path)


def test_schema_not_json(tmp_path):
    path = _write(tmp_path, "{type: object}")
    with pytest.raises(InputError, match=rf"^meta_schema file {re.escape(repr(str(path)))} is not valid JSON"):
        load_meta_schema(path)


def test_ref_to_nowhere_is_found_when_applied(tmp_path):
    """jsonschema resolves a $ref only when validating: the error names the schema, not the frame."""
    path = _write(tmp_path, {"$ref": "#/definitions/nowhere"})
    check = load_meta_schema(path)
    with pytest.raises(InputError, match=rf"^meta_schema file {re.escape(repr(str(path)))} cannot be applied "
                                         r"\(.*nowhere"):
        check({"Exposure-ms": 10})
