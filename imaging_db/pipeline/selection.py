"""Which frames of a dataset a reader asked for, and the rows that answer it.

The downloader and the Python API select frames through :func:`select_frames`,
so a filter means the same everywhere and a value the dataset lacks gets the
same message.
"""

from dataclasses import dataclass
from typing import Collection, Sequence

from imaging_db.database.db_ops import Database
from imaging_db.database.records import FrameRow
from imaging_db.errors import SelectionError


def _is_integer(text: str) -> bool:
    # isdigit() alone accepts '²', which int() rejects: ASCII decimal digits only.
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdecimal()


@dataclass
class FrameSelection:
    """Which frames to fetch; None means all along that axis.

    ``channels`` holds names, or indices when every entry is an integer
    (and none is a channel name: see :meth:`channel_filter`).
    """

    channels: Sequence[str | int] | None = None
    slices: Sequence[int] | None = None
    times: Sequence[int] | None = None
    positions: Sequence[int] | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in (self.channels, self.slices, self.times, self.positions))

    def channel_filter(self, channel_names: Collection[str | None] = ()) -> tuple[list[int] | None, list[str] | None]:
        """Return (channel indices, channel names).

        The channels given are indices when every one is an integer and none
        is one of ``channel_names`` (so a channel named "488" is selected by
        name); else they are names.
        """
        if self.channels is None:
            return None, None
        values = [str(c).strip() for c in self.channels]
        if all(_is_integer(v) for v in values) and not any(v in channel_names for v in values):
            return [int(v) for v in values], None
        return None, values

    def describe(self) -> str:
        parts = []
        for name, values in (("channels", self.channels), ("slices", self.slices),
                             ("times", self.times), ("positions", self.positions)):
            if values is not None:
                parts.append(f"{name} {list(values)}")
        return ", ".join(parts) or "no filter"


def select_frames(database: Database, serial: str, selection: FrameSelection,
                  with_metadata: bool = False) -> list[FrameRow]:
    """Return the frames rows of dataset ``serial`` that ``selection`` asks for, ordered by p, t, c, z.

    Channels given as integers are indices unless one of them is a channel
    name of the dataset (see :meth:`FrameSelection.channel_filter`). Every
    value asked for must be there: a typo must not silently shrink what is read.

    Raises
    ------
    SelectionError
        (both a NotFoundError and an InputError) If a value asked for matches
        no frame, or nothing matches; the message lists the channels and
        indices the dataset has.
    DatabaseError
        If the database cannot be read.
    """
    channel_ids, channel_names = selection.channel_filter()
    if channel_ids is not None:
        # Integers are indices unless one of them is a channel name.
        named = database.get_frames(serial, channel_names=[str(c).strip() for c in selection.channels])
        channel_ids, channel_names = selection.channel_filter({row.channel_name for row in named})
    rows = database.get_frames(
        serial,
        channel_ids=channel_ids,
        channel_names=channel_names,
        slice_ids=selection.slices,
        time_ids=selection.times,
        pos_ids=selection.positions,
        with_metadata=with_metadata,
    )
    wanted = (
        ("channel", "channel_idx", channel_ids),
        ("channel", "channel_name", channel_names),
        ("slice", "slice_idx", selection.slices),
        ("time", "time_idx", selection.times),
        ("position", "pos_idx", selection.positions),
    )

    def absent(present: dict[str, Collection]) -> list[str]:
        return [f"{label} {v!r}" if isinstance(v, str) else f"{label} {v}"
                for label, column, values in wanted if values is not None
                for v in values if v not in present[column]]

    missing = absent({column: {getattr(r, column) for r in rows} for _, column, values in wanted if values is not None})
    if missing or not rows:
        available = database.frame_index_values(serial)
        if not rows:
            # Nothing matched: name the values the dataset lacks altogether, else the combination asked for.
            missing = absent({column: set(found) for column, found in available.items()})
        raise SelectionError(
            f"dataset {serial}: no frames with {', '.join(missing) or selection.describe()}; "
            f"it has channels {available['channel_name']} (indices {available['channel_idx']}), "
            f"slices {available['slice_idx']}, times {available['time_idx']}, positions {available['pos_idx']}"
        )
    return rows
