"""Dataset identifiers of the form ``<PROJECT>-YYYY-MM-DD-HH-MM-SS-<NNNN>``."""

import datetime
import re
from dataclasses import dataclass

from imaging_db.errors import InputError

_ID_FORM = r"^(?P<project>{project})-(?P<date>\d{{4}}-\d{{2}}-\d{{2}})-(?P<time>\d{{2}}-\d{{2}}-\d{{2}})-(?P<serial>\d{{4}})$"
# re.ASCII: \d would otherwise accept any Unicode digit, e.g. fullwidth "０".
_ID_PATTERN = re.compile(_ID_FORM.format(project="[A-Za-z]+"), re.ASCII)
# Ids already registered may also have digits and underscores in the project: the original imagingDB took
# any project id without a dash, so a lab's adopted database can hold e.g. ISP2-2019-01-02-03-04-05-0001.
_REGISTERED_ID_PATTERN = re.compile(_ID_FORM.format(project="[A-Za-z0-9_]+"), re.ASCII)
# data_set.dataset_serial is VARCHAR(64): PostgreSQL would refuse a longer id only at the commit.
MAX_ID_LENGTH = 64


@dataclass(frozen=True)
class DatasetId:
    """A validated dataset identifier.

    Attributes
    ----------
    serial : str
        The full identifier, e.g. ``ML-2018-11-07-09-35-54-0010``.
    date_time : datetime.datetime
        The acquisition date and time encoded in the identifier.
    """

    serial: str
    date_time: datetime.datetime

    def __str__(self) -> str:
        return self.serial


def parse_dataset_id(text: str, registered: bool = False) -> DatasetId:
    """Validate a dataset identifier and read its date-time.

    Parameters
    ----------
    text : str
        The identifier, e.g. ``ML-2018-11-07-09-35-54-0010``.
    registered : bool
        The id names a dataset to read, not one to upload: its project may
        also hold digits and underscores, as the original imagingDB allowed.

    Returns
    -------
    DatasetId

    Raises
    ------
    InputError
        If the identifier does not have the form
        ``<PROJECT>-YYYY-MM-DD-HH-MM-SS-<NNNN>``, is longer than 64 characters,
        or its date-time does not exist.
    """
    text = (text or "").strip()
    match = (_REGISTERED_ID_PATTERN if registered else _ID_PATTERN).match(text)
    if match is None:
        raise InputError(
            f"invalid dataset id {text!r}: expected <PROJECT>-YYYY-MM-DD-HH-MM-SS-<NNNN>, "
            "e.g. ML-2018-11-07-09-35-54-0010"
        )
    if len(text) > MAX_ID_LENGTH:
        raise InputError(f"invalid dataset id {text!r}: longer than {MAX_ID_LENGTH} characters; "
                         "use a shorter project id")
    try:
        date_time = datetime.datetime.strptime(
            f"{match['date']}-{match['time']}", "%Y-%m-%d-%H-%M-%S"
        )
    except ValueError as exc:
        raise InputError(f"invalid dataset id {text!r}: date-time does not exist ({exc})") from None
    return DatasetId(serial=text, date_time=date_time)
