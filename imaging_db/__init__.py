"""imaging_db: store microscopy image stacks as 2D PNG frames with searchable metadata."""

__version__ = "0.1.0"

# The Python API (imaging_db.api) loads pandas, xarray and SQLAlchemy: it is imported when first
# asked for, so that the command-line tools, which import this package, start without them.
_API_NAMES = ("connect", "Connection")


def __getattr__(name: str):
    if name in _API_NAMES:
        from imaging_db import api

        return getattr(api, name)
    raise AttributeError(f"module 'imaging_db' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API_NAMES])
