"""What a storage holds under the imaging_db prefixes, and which committed dataset's rows name a key.

A dataset's orphans are looked for only under its own prefixes
(``raw_frames/<id>/``, ``raw_files/<id>/``); before any key is called an
orphan it is looked up in the rows of every committed dataset (:class:`References`).
"""

from dataclasses import dataclass, field
from typing import Sequence

from imaging_db.database.db_ops import Database
from imaging_db.database.records import DatasetLocation
from imaging_db.filestorage import DataStorage, StoredObject
from imaging_db.pipeline import keys

TOPS = (keys.FRAMES_PREFIX, keys.FILES_PREFIX)


def group_prefix(key: str) -> str:
    """``raw_frames/<X>/`` for a key under it; ``raw_frames/`` for a key directly in ``raw_frames/``."""
    parts = key.split("/")
    return f"{parts[0]}/{parts[1]}/" if len(parts) > 2 else f"{parts[0]}/"


def is_group_prefix(prefix: str) -> bool:
    parts = prefix.split("/")
    return len(parts) == 3 and parts[0] in TOPS and parts[1] != "" and parts[2] == ""


def own_prefixes(serial: str) -> list[str]:
    """The prefixes whose objects belong to dataset ``serial``, and only to it: where its orphans are looked for."""
    return [keys.frames_dir(serial) + "/", keys.files_dir(serial) + "/"]


def storage_dir_of(loc: DatasetLocation) -> str:
    """Where a dataset's rows say its objects are (its own prefix when the row has none), without ``/``."""
    standard = keys.frames_dir(loc.serial) if loc.frames else keys.files_dir(loc.serial)
    return (loc.storage_dir or standard).rstrip("/")


class References:
    """Which keys the rows of committed datasets name: asked before any key is called an orphan.

    Rows name ``<storage_dir>/<file_name>``; a key is looked up under each of
    its parent folders among the datasets' storage_dir values, so only the
    datasets whose storage_dir is a parent of the key are read (normally none
    but the dataset being verified, which the caller has already checked).
    """

    def __init__(self, database: Database, locations: Sequence[DatasetLocation]):
        self.database = database
        self.by_dir: dict[str, list[DatasetLocation]] = {}
        for loc in locations:
            self.by_dir.setdefault(storage_dir_of(loc), []).append(loc)
        self._names: dict[str, set[str]] = {}

    def _names_of(self, loc: DatasetLocation) -> set[str]:
        if loc.serial not in self._names:
            self._names[loc.serial] = set(recorded_checksums(self.database, loc))
        return self._names[loc.serial]

    def owner(self, key: str, known: str | None = None) -> str | None:
        """Return the dataset whose row names ``key``, or None; dataset ``known`` (already checked) is not read."""
        parts = key.split("/")
        for i in range(1, len(parts)):
            folder, name = "/".join(parts[:i]), "/".join(parts[i:])
            for loc in self.by_dir.get(folder, ()):
                if loc.serial != known and name in self._names_of(loc):
                    return loc.serial
        return None


def recorded_checksums(database: Database, loc: DatasetLocation) -> dict[str, str | None]:
    """``{name: sha256}`` of the objects a dataset's rows name, relative to its storage_dir."""
    if loc.frames:
        return database.frame_checksums(loc.serial)
    return {loc.file_name: loc.sha256} if loc.file_name is not None else {}


@dataclass
class Listing:
    """The objects and unfinished writes under one prefix."""

    objects: dict[str, StoredObject] = field(default_factory=dict)
    partials: list[str] = field(default_factory=list)


def list_everything(storage: DataStorage) -> dict[str, Listing]:
    """List ``raw_frames/`` and ``raw_files/`` once each, grouped by ``<top>/<X>/``."""
    groups: dict[str, Listing] = {}
    for top in TOPS:
        for key, stored in storage.list(top + "/").items():
            groups.setdefault(group_prefix(key), Listing()).objects[key] = stored
        for key in storage.partials(top + "/"):
            groups.setdefault(group_prefix(key), Listing()).partials.append(key)
    return groups


def listing_under(storage: DataStorage, listings: dict[str, Listing] | None, prefix: str) -> Listing:
    """What is under ``prefix``: from the listing of everything when it holds it, else listed now."""
    if listings is not None and is_group_prefix(prefix):
        return listings.get(prefix, Listing())
    return Listing(storage.list(prefix), list(storage.partials(prefix)))
