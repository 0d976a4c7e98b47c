"""Text and JSON that every database stores: NUL, lone surrogates, NaN."""

import json

import pytest

from imaging_db.json_text import clean_text, json_compatible, text_problem, to_json_text


@pytest.mark.parametrize("value, problem", [
    ("GFP", None),
    ("café 😀", None),
    ("G\x00FP", "holds a NUL character"),
    ("G\udc80FP", r"is not valid Unicode (lone surrogate '\udc80' at character 1)"),
    ("\ud83d", r"is not valid Unicode (lone surrogate '\ud83d' at character 0)"),
])
def test_text_problem(value, problem):
    assert text_problem(value) == problem


def test_clean_text():
    assert clean_text("a\x00b\udcffc😀") == "ab\ufffdc😀"


def test_metadata_is_cleaned_the_same_for_every_backend():
    meta = {"Note\x00": "x\udc80", "Exposure": float("nan"), "list": ["\x00", 1.5, "😀"], "Emoji": "😀"}
    text = to_json_text(meta)
    assert json.loads(text) == {"Note": "x\ufffd", "Exposure": None, "list": ["", 1.5, "😀"], "Emoji": "😀"}
    assert json_compatible(meta) == json.loads(text)
    text.encode("utf-8")  # no surrogate left, escaped or not


def test_clean_metadata_is_serialized_as_it_is():
    meta = {"ChannelIndex": 0, "Channel": "GFP", "Exposure-ms": 10.5, "Emoji": "😀"}
    assert json.loads(to_json_text(meta)) == meta
