"""Dataset identifiers: <PROJECT>-YYYY-MM-DD-HH-MM-SS-<NNNN>."""

import datetime

import pytest

from imaging_db.errors import InputError
from imaging_db.metadata.dataset_id import DatasetId, parse_dataset_id


def test_valid_id_gives_its_date_time():
    dataset_id = parse_dataset_id("ML-2018-11-07-09-35-54-0010")
    assert dataset_id == DatasetId(serial="ML-2018-11-07-09-35-54-0010",
                                   date_time=datetime.datetime(2018, 11, 7, 9, 35, 54))
    assert str(dataset_id) == "ML-2018-11-07-09-35-54-0010"


def test_surrounding_whitespace_is_ignored():
    assert parse_dataset_id("  ISP-2020-02-29-23-59-59-9999\n").serial == "ISP-2020-02-29-23-59-59-9999"


def test_project_may_be_any_letters():
    # The contract says "a project id (letters)": case is not restricted.
    assert parse_dataset_id("abcXYZ-2018-11-07-09-35-54-0001").serial == "abcXYZ-2018-11-07-09-35-54-0001"


@pytest.mark.parametrize(
    "text",
    [
        "ML-2018-11-07-09-35-54-010",  # serial too short
        "ML-2018-11-07-09-35-54-00100",  # serial too long
        "ML-2018-11-07-09-35-54-001a",  # serial with a letter
        "ML-2018-11-07-09-35-54",  # no serial
        "ML2-2018-11-07-09-35-54-0010",  # project with a digit
        "M_L-2018-11-07-09-35-54-0010",  # project with punctuation
        "-2018-11-07-09-35-54-0010",  # no project
        "ML-18-11-07-09-35-54-0010",  # two-digit year
        "ML-2018-11-07-09-35-0010",  # no seconds
        "ML-2018-11-07 09-35-54-0010",  # space instead of dash
        "ML-2018-11-07-09-35-54-0010-extra",
        "ML-2018-11-07-09-35-54-\uff10\uff10\uff11\uff10",  # fullwidth digits are not ASCII digits
        "",
    ],
)
def test_malformed_id_is_refused_with_expected_form(text):
    with pytest.raises(InputError, match=r"invalid dataset id .*expected <PROJECT>-YYYY-MM-DD-HH-MM-SS-<NNNN>"):
        parse_dataset_id(text)


def test_none_is_refused_not_crashing():
    with pytest.raises(InputError, match="invalid dataset id ''"):
        parse_dataset_id(None)


@pytest.mark.parametrize(
    "text",
    [
        "ML-2018-02-30-09-35-54-0010",  # February 30
        "ML-2019-02-29-09-35-54-0010",  # not a leap year
        "ML-2018-13-01-09-35-54-0010",  # month 13
        "ML-2018-11-07-24-00-00-0010",  # hour 24
        "ML-2018-11-07-09-60-00-0010",  # minute 60
    ],
)
def test_impossible_date_time_is_refused(text):
    with pytest.raises(InputError, match=rf"invalid dataset id '{text}': date-time does not exist"):
        parse_dataset_id(text)


def test_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        parse_dataset_id("nope")


def test_id_of_64_characters_is_the_longest():
    """data_set.dataset_serial is VARCHAR(64): PostgreSQL would refuse a longer id only at the commit."""
    longest = "M" * 39 + "-2018-11-07-09-35-54-0010"
    assert len(longest) == 64 and parse_dataset_id(longest).serial == longest
    with pytest.raises(InputError, match=r"invalid dataset id 'M{40}-2018-11-07-09-35-54-0010': longer than 64"):
        parse_dataset_id("M" + longest)


@pytest.mark.parametrize("text", ["ISP2-2019-01-02-03-04-05-0001", "M_L-2018-11-07-09-35-54-0010"])
def test_a_registered_id_may_have_the_original_imagingdb_project_ids(text):
    """The original took any project id without a dash: reading its datasets must not refuse their ids."""
    assert parse_dataset_id(text, registered=True).serial == text
    with pytest.raises(InputError, match="expected <PROJECT>-YYYY-MM-DD-HH-MM-SS-<NNNN>"):
        parse_dataset_id(text)  # new uploads keep the contract: letters
