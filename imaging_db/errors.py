"""Exception hierarchy: every error a user can act on derives from ImagingDBError.

Each subclass also inherits the matching builtin, so callers may catch either.
"""


class ImagingDBError(Exception):
    """Root of all errors raised deliberately by imaging_db."""


class InputError(ImagingDBError, ValueError):
    """Bad user input: CSV, config, login, dataset id, or an unreadable image file."""


class StorageError(ImagingDBError, OSError):
    """A storage backend could not store or return an object."""


class DatabaseError(ImagingDBError, RuntimeError):
    """The database refused a query or a write, or could not be reached."""


class IntegrityError(ImagingDBError, ValueError):
    """Stored bytes do not match the checksum recorded in the database."""


class DatasetExistsError(InputError):
    """A dataset id is already registered in the database."""


class NotFoundError(ImagingDBError, LookupError):
    """A dataset, object or frame that was asked for does not exist."""


class DatasetClaimedError(ImagingDBError, RuntimeError):
    """Another run is uploading this dataset id right now (it holds the id's claim)."""


class ObjectExistsError(StorageError, FileExistsError):
    """A new object was to be stored under a key that already holds one; nothing was replaced."""


class SelectionError(NotFoundError, InputError):
    """A channel, slice, time or position asked for that the dataset does not have.

    Both a NotFoundError (nothing to fetch) and an InputError (the request names what is not there), as
    DESIGN.md says of the Python API's filters; the message lists what the dataset has.
    """
