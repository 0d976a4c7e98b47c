"""File-name parsers whose results go into a dataset's global metadata."""

import pytest

from imaging_db.errors import InputError
from imaging_db.metadata.filename_parsers import (
    FILENAME_PARSERS,
    get_filename_parser,
    parse_ml_name,
    parse_sms_name,
)


# --------------------------------------------------------------------------- parse_ml_name
def test_ml_name_gives_plate_stack_protein():
    assert parse_ml_name("A1234_12_GFP-Tubulin_extra_PyProcessed.tif") == {
        "plate_id": "A1234",
        "stack_nbr": 12,
        "protein_name": "GFP-Tubulin",
    }


def test_ml_name_stack_nbr_is_an_int():
    meta = parse_ml_name("plate_007_prot_PyProcessed.tif")
    assert meta["stack_nbr"] == 7
    assert type(meta["stack_nbr"]) is int


def test_ml_name_uses_only_the_base_name():
    assert parse_ml_name("/data/run_1/P9_3_H2B_PyProcessed.ome.tif") == {
        "plate_id": "P9",
        "stack_nbr": 3,
        "protein_name": "H2B",
    }


def test_ml_name_of_a_folder_with_trailing_slash():
    assert parse_ml_name("/data/P9_3_H2B/")["plate_id"] == "P9"


@pytest.mark.parametrize(
    "name",
    [
        "P1_GFP_PyProcessed.tif",  # no stack number
        "P1_x2_GFP_PyProcessed.tif",  # stack number not an integer
        "P1_-2_GFP_PyProcessed.tif",  # negative
        "P1_\u00b2_GFP_PyProcessed.tif",  # superscript two: isdigit() but not int()
        "P1_2.tif",  # only two fields
        "_2_GFP.tif",  # empty plate id
        "P1_2__rest.tif",  # empty protein name
        "plain.tif",
    ],
)
def test_ml_name_mismatch_names_the_file(name):
    with pytest.raises(InputError, match=rf"file name '{name}' does not match parse_ml_name"):
        parse_ml_name(name)


# --------------------------------------------------------------------------- parse_sms_name
def test_sms_name_gives_channel_and_indices():
    assert parse_sms_name("img_GFP_t002_p010_z003.tif") == {
        "channel_name": "GFP",
        "time_idx": 2,
        "pos_idx": 10,
        "slice_idx": 3,
    }


@pytest.mark.parametrize(
    "name, channel",
    [
        ("img_Brightfield_computed_t000_p000_z000.tif", "Brightfield_computed"),
        ("img_FITC_t001_2_t000_p001_z002.tif", "FITC_t001_2"),
        ("img_561 nm_t000_p000_z000.tiff", "561 nm"),
        ("IMG_DAPI_T000_P000_Z000.TIF", "DAPI"),
    ],
)
def test_sms_channel_name_may_contain_underscores(name, channel):
    assert parse_sms_name(name)["channel_name"] == channel


def test_sms_name_uses_only_the_base_name():
    assert parse_sms_name("/tmp/img_x_t001_p002_z003.tif") == {
        "channel_name": "x",
        "time_idx": 1,
        "pos_idx": 2,
        "slice_idx": 3,
    }


@pytest.mark.parametrize(
    "name",
    [
        "img__t000_p000_z000.tif",  # empty channel name
        "img_GFP_t000_p000.tif",  # no slice
        "img_GFP_t000_z000_p000.tif",  # wrong order
        "img_GFP_t000_p000_z000.png",  # not a TIFF
        "image_GFP_t000_p000_z000.tif",  # wrong prefix
        "img_GFP_tx_p000_z000.tif",
    ],
)
def test_sms_name_mismatch_names_the_file(name):
    with pytest.raises(InputError, match=rf"file name '{name}' does not match parse_sms_name"):
        parse_sms_name(name)


# --------------------------------------------------------------------------- lookup
@pytest.mark.parametrize("name", ["parse_ml_name", "parse_sms_name"])
def test_parser_lookup_by_name(name):
    assert get_filename_parser(name) is FILENAME_PARSERS[name]


@pytest.mark.parametrize("name", [None, ""])
def test_no_parser_name_gives_none(name):
    assert get_filename_parser(name) is None


def test_unknown_parser_lists_the_choices():
    with pytest.raises(InputError, match=r"unknown filename_parser 'parse_foo'; choose one of \['parse_ml_name', 'parse_sms_name'\]"):
        get_filename_parser("parse_foo")
