"""Verify pipeline: re-read every stored object of one or all datasets, compare sha256, find orphans.

    dataset rows + listing of its prefixes ──> missing (row, no object), orphaned (object, no row), partials
                                          ──> workers: DataStorage.get ──> sha256 vs the row ──> corrupt
    listing of raw_frames/ and raw_files/ (--all) ──> prefixes of no registered dataset ──> orphaned

Nothing is removed unless asked, and then only orphans, each prefix under its
dataset id's claim, so that the objects of an upload in progress are never
touched (see :meth:`Verifier.verify`).

A dataset's orphans are looked for only under its own prefixes
(``raw_frames/<id>/``, ``raw_files/<id>/``), whatever ``storage_dir`` its row
records: that value comes from the database, and a wrong one (``raw_frames``,
another dataset's folder) must not turn other datasets' objects into its
orphans. Before any key is called an orphan, and again under the claim before
it is removed, it is looked up in the rows of every committed dataset
(:class:`_References`).
"""

import collections
import concurrent.futures
import hashlib
import logging
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from imaging_db.database.db_ops import Database
from imaging_db.errors import DatasetClaimedError, ImagingDBError, InputError, NotFoundError, StorageError
from imaging_db.filestorage import DataStorage, StoredObject
from imaging_db.filestorage.data_storage import check_key
from imaging_db.metadata.dataset_id import parse_dataset_id
from imaging_db.pipeline import keys
from imaging_db.pipeline.download import open_for_reading
from imaging_db.pipeline.progress import progress_bar

logger = logging.getLogger(__name__)

UPLOAD_IN_PROGRESS = "upload in progress"
REGISTERED_MEANWHILE = "registered while being verified; verify it again"
NO_DATASET_ID = "not under a dataset id; not removed: look at it by hand"
ROWS_ELSEWHERE = "its rows point elsewhere (storage_dir {}); not removed: look at them by hand"
_TOPS = (keys.FRAMES_PREFIX, keys.FILES_PREFIX)


@dataclass
class CorruptObject:
    """An object whose bytes do not match the sha256 its row records."""

    key: str
    recorded_sha256: str
    actual_sha256: str


@dataclass
class UnreadableObject:
    """An object the storage lists but could not return."""

    key: str
    error: str


@dataclass
class DatasetReport:
    """What verifying one registered dataset found.

    Attributes
    ----------
    dataset_serial : str
    frames : bool
        A frames dataset (else a file dataset).
    storage_dir : str
        Its key prefix, without the trailing ``/``.
    nbr_objects : int
        Objects its rows name (frames, or 1 for the file).
    verified : int
        Objects read back whose sha256 matches the row.
    unchecked : int
        Objects whose row records no checksum (rows of the original imagingDB before 2019).
    missing : list of str
        Keys named by a row with no object.
    corrupt : list of CorruptObject
    unreadable : list of UnreadableObject
    orphaned : list of str
        Keys under its prefixes (``raw_frames/<id>/``, ``raw_files/<id>/``) that no row names.
    partials : list of str
        Unfinished writes under its prefixes, left by killed runs.
    removed : list of str
        Orphaned keys and partials removed (``remove_orphans``).
    skipped : str or None
        Why its orphans were not removed, e.g. an upload in progress.
    error : str or None
        Why its objects could not be verified at all (a ``storage_dir`` that is
        no key prefix inside the storage); a problem.
    """

    dataset_serial: str
    frames: bool
    storage_dir: str
    nbr_objects: int = 0
    verified: int = 0
    unchecked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[CorruptObject] = field(default_factory=list)
    unreadable: list[UnreadableObject] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None

    @property
    def nbr_orphaned(self) -> int:
        return len(self.orphaned) + len(self.partials)

    @property
    def remaining_orphans(self) -> list[str]:
        removed = set(self.removed)
        return [k for k in self.orphaned + self.partials if k not in removed]

    @property
    def ok(self) -> bool:
        """Verified, nothing missing, corrupt or unreadable, and no orphan left."""
        return not (self.error or self.missing or self.corrupt or self.unreadable or self.remaining_orphans)

    def summary(self) -> str:
        """``<id>: 80 frames verified, 0 missing, 0 corrupt, 0 orphaned``."""
        what = "frames" if self.frames else ("file" if self.verified == 1 else "files")
        line = (f"{self.dataset_serial}: {self.verified} {what} verified, {len(self.missing)} missing, "
                f"{len(self.corrupt)} corrupt, {self.nbr_orphaned} orphaned")
        if self.unreadable:
            line += f", {len(self.unreadable)} unreadable"
        if self.unchecked:
            line += f", {self.unchecked} without a recorded checksum"
        if self.removed:
            line += f", {len(self.removed)} removed"
        if self.error:
            line += ", NOT VERIFIED"
        return line

    def to_dict(self) -> dict:
        return {
            "dataset_id": self.dataset_serial,
            "kind": "frames" if self.frames else "file",
            "storage_dir": self.storage_dir,
            "ok": self.ok,
            "counts": {
                "objects": self.nbr_objects,
                "verified": self.verified,
                "unchecked": self.unchecked,
                "missing": len(self.missing),
                "corrupt": len(self.corrupt),
                "unreadable": len(self.unreadable),
                "orphaned": self.nbr_orphaned,
                "removed": len(self.removed),
            },
            "missing": self.missing,
            "corrupt": [vars(c) for c in self.corrupt],
            "unreadable": [vars(u) for u in self.unreadable],
            "orphaned": self.orphaned,
            "partials": self.partials,
            "removed": self.removed,
            "skipped": self.skipped,
            "error": self.error,
        }


@dataclass
class OrphanPrefix:
    """Objects under ``raw_frames/<X>/`` or ``raw_files/<X>/`` where no dataset X is registered.

    Attributes
    ----------
    prefix : str
        E.g. ``raw_frames/ML-2018-11-07-09-35-54-0012/``; ``raw_frames/`` for keys directly under it.
    dataset_serial : str or None
        X; None for keys directly under ``raw_frames/`` or ``raw_files/``.
    objects, partials : list of str
        The objects and unfinished writes found there.
    removed : list of str
        What was removed (``remove_orphans``).
    skipped : str or None
        Why nothing was removed: an upload of X in progress (not a problem), X
        registered meanwhile (not a problem), or no dataset id to claim.
    """

    prefix: str
    dataset_serial: str | None
    objects: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def nbr_orphaned(self) -> int:
        return len(self.objects) + len(self.partials)

    @property
    def ok(self) -> bool:
        """Not a problem: removed entirely, or not an orphan after all (an upload or a commit in progress)."""
        if self.skipped in (UPLOAD_IN_PROGRESS, REGISTERED_MEANWHILE):
            return True
        removed = set(self.removed)
        return all(k in removed for k in self.objects + self.partials)

    def summary(self) -> str:
        owner = f"no dataset {self.dataset_serial} registered" if self.dataset_serial else "not under a dataset id"
        line = f"{self.prefix}: {len(self.objects)} orphaned object(s), {len(self.partials)} unfinished write(s), {owner}"
        if self.removed:
            line += f", {len(self.removed)} removed"
        if self.skipped:
            line += f" ({self.skipped})"
        return line

    def to_dict(self) -> dict:
        return {"prefix": self.prefix, "dataset_id": self.dataset_serial, "ok": self.ok,
                "objects": self.objects, "partials": self.partials, "removed": self.removed,
                "skipped": self.skipped}


@dataclass
class VerifyReport:
    """Everything one verify run found, per dataset and for the prefixes of no dataset."""

    storage: str
    database: str
    all_datasets: bool
    datasets: list[DatasetReport] = field(default_factory=list)
    orphan_prefixes: list[OrphanPrefix] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.datasets) and all(o.ok for o in self.orphan_prefixes)

    def totals(self) -> dict:
        return {
            "datasets": len(self.datasets),
            "objects": sum(d.nbr_objects for d in self.datasets),
            "verified": sum(d.verified for d in self.datasets),
            "unchecked": sum(d.unchecked for d in self.datasets),
            "missing": sum(len(d.missing) for d in self.datasets),
            "corrupt": sum(len(d.corrupt) for d in self.datasets),
            "unreadable": sum(len(d.unreadable) for d in self.datasets),
            "not_verified": sum(1 for d in self.datasets if d.error),
            "orphaned": sum(d.nbr_orphaned for d in self.datasets)
                        + sum(o.nbr_orphaned for o in self.orphan_prefixes
                              if o.skipped not in (UPLOAD_IN_PROGRESS, REGISTERED_MEANWHILE)),
            "orphan_prefixes": sum(1 for o in self.orphan_prefixes
                                   if o.skipped not in (UPLOAD_IN_PROGRESS, REGISTERED_MEANWHILE)),
            "in_progress": sum(1 for o in self.orphan_prefixes if o.skipped == UPLOAD_IN_PROGRESS),
            "removed": sum(len(d.removed) for d in self.datasets) + sum(len(o.removed) for o in self.orphan_prefixes),
        }

    def to_dict(self) -> dict:
        """The ``--json`` document."""
        return {
            "ok": self.ok,
            "storage": self.storage,
            "database": self.database,
            "all": self.all_datasets,
            "seconds": round(self.seconds, 3),
            "datasets": [d.to_dict() for d in self.datasets],
            "orphan_prefixes": [o.to_dict() for o in self.orphan_prefixes],
            "totals": self.totals(),
        }

    def summary_lines(self, max_per_kind: int | None = 20) -> list[str]:
        """The human-readable report: one line per dataset and orphan prefix, the problems, a total.

        ``max_per_kind`` caps the problems listed per dataset and kind (None: all).
        """
        lines = [d.summary() for d in self.datasets] + [o.summary() for o in self.orphan_prefixes]
        problems: list[str] = []

        def add(items: list, render) -> None:
            shown = items if max_per_kind is None else items[:max_per_kind]
            problems.extend("  " + render(item) for item in shown)
            if len(items) > len(shown):
                problems.append(f"  ... and {len(items) - len(shown)} more (--json lists them all)")

        for d in self.datasets:
            if d.error:
                problems.append(f"  not verified: {d.error}")
            add(d.missing, lambda k, d=d: f"missing: {k} (dataset {d.dataset_serial} has a row for it)")
            add(d.corrupt, lambda c: f"corrupt: {c.key}: sha256 {c.actual_sha256} does not match "
                                     f"the recorded {c.recorded_sha256}")
            add(d.unreadable, lambda u: f"unreadable: {u.key}: {u.error}")
            removed = set(d.removed)
            add(d.orphaned, lambda k, d=d: f"orphaned: {k} (no row of dataset {d.dataset_serial} names it)"
                                           + (", removed" if k in removed else ""))
            add(d.partials, lambda k: "orphaned: unfinished write " + k + " (left by a killed run)"
                                      + (", removed" if k in removed else ""))
            if d.skipped and d.nbr_orphaned:
                problems.append(f"  not removed: the orphans of {d.dataset_serial} ({d.skipped})")
        for o in self.orphan_prefixes:
            if o.skipped == UPLOAD_IN_PROGRESS:
                problems.append(f"  {UPLOAD_IN_PROGRESS}: {o.prefix} (dataset {o.dataset_serial} is being "
                                "uploaded; not touched)")
                continue
            if o.skipped == REGISTERED_MEANWHILE:
                problems.append(f"  {o.prefix}: dataset {o.dataset_serial} {REGISTERED_MEANWHILE}")
                continue
            removed = set(o.removed)
            owner = f"no dataset {o.dataset_serial}" if o.dataset_serial else "no dataset id"
            add(o.objects, lambda k, owner=owner: f"orphaned: {k} ({owner})" + (", removed" if k in removed else ""))
            add(o.partials, lambda k, owner=owner: f"orphaned: unfinished write {k} ({owner})"
                                                   + (", removed" if k in removed else ""))
            if o.skipped:
                problems.append(f"  not removed: {o.prefix} ({o.skipped})")
        if problems:
            lines += ["problems:", *problems]
        t = self.totals()
        total = (f"total: {t['datasets']} dataset(s), {t['verified']} of {t['objects']} object(s) verified, "
                 f"{t['missing']} missing, {t['corrupt']} corrupt, {t['orphaned']} orphaned")
        if t["unreadable"]:
            total += f", {t['unreadable']} unreadable"
        if t["not_verified"]:
            total += f", {t['not_verified']} dataset(s) not verified"
        if t["orphan_prefixes"]:
            total += f" ({t['orphan_prefixes']} prefix(es) of no dataset)"
        if t["in_progress"]:
            total += f", {t['in_progress']} upload(s) in progress"
        if t["removed"]:
            total += f", {t['removed']} removed"
        total += f"; {'OK' if self.ok else 'PROBLEMS FOUND'}"
        return lines + [total]


def _group_prefix(key: str) -> str:
    """``raw_frames/<X>/`` for a key under it; ``raw_frames/`` for a key directly in ``raw_frames/``."""
    parts = key.split("/")
    return f"{parts[0]}/{parts[1]}/" if len(parts) > 2 else f"{parts[0]}/"


def _is_group_prefix(prefix: str) -> bool:
    parts = prefix.split("/")
    return len(parts) == 3 and parts[0] in _TOPS and parts[1] != "" and parts[2] == ""


def _own_prefixes(serial: str) -> list[str]:
    """The prefixes whose objects belong to dataset ``serial``, and only to it: where its orphans are looked for."""
    return [keys.frames_dir(serial) + "/", keys.files_dir(serial) + "/"]


def _storage_dir(loc: dict) -> str:
    """Where a dataset's rows say its objects are (its own prefix when the row has none), without ``/``."""
    standard = keys.frames_dir(loc["dataset_serial"]) if loc["frames"] else keys.files_dir(loc["dataset_serial"])
    return (loc["storage_dir"] or standard).rstrip("/")


class _References:
    """Which keys the rows of committed datasets name: asked before any key is called an orphan.

    Rows name ``<storage_dir>/<file_name>``; a key is looked up under each of
    its parent folders among the datasets' storage_dir values, so only the
    datasets whose storage_dir is a parent of the key are read (normally none
    but the dataset being verified, which the caller has already checked).
    """

    def __init__(self, database: Database, locations: Sequence[dict]):
        self.database = database
        self.by_dir: dict[str, list[dict]] = {}
        for loc in locations:
            self.by_dir.setdefault(_storage_dir(loc), []).append(loc)
        self._names: dict[str, set[str]] = {}

    def _names_of(self, loc: dict) -> set[str]:
        serial = loc["dataset_serial"]
        if serial not in self._names:
            if loc["frames_global_id"] is not None:
                self._names[serial] = set(self.database.frame_checksums(loc["frames_global_id"]))
            else:
                self._names[serial] = {loc["file_name"]} if loc["file_name"] is not None else set()
        return self._names[serial]

    def owner(self, key: str, known: str | None = None) -> str | None:
        """Return the dataset whose row names ``key``, or None; dataset ``known`` (already checked) is not read."""
        parts = key.split("/")
        for i in range(1, len(parts)):
            folder, name = "/".join(parts[:i]), "/".join(parts[i:])
            for loc in self.by_dir.get(folder, ()):
                if loc["dataset_serial"] != known and name in self._names_of(loc):
                    return loc["dataset_serial"]
        return None


@dataclass
class _Listing:
    objects: dict[str, StoredObject] = field(default_factory=dict)
    partials: list[str] = field(default_factory=list)


class Verifier:
    """Verifies datasets of one database against one storage.

    Parameters
    ----------
    database : Database
    storage : DataStorage
    nbr_workers : int
        Threads reading and hashing objects; at least the storage's
        ``parallel_requests``, as for downloads.
    progress : bool or None
        Show a tqdm progress bar over objects (None: only on a terminal).

    Attributes
    ----------
    threads : int
        Objects read at once: at most this many objects are in memory.
    """

    def __init__(self, database: Database, storage: DataStorage, nbr_workers: int = 1,
                 progress: bool | None = None):
        self.database = database
        self.storage = storage
        self.threads = max(1, int(nbr_workers), getattr(storage, "parallel_requests", 1))
        self.progress = progress
        self._tmp: Path | None = None

    def verify(self, serials: Sequence[str] | None = None, remove_orphans: bool = False) -> VerifyReport:
        """Verify the given datasets (None: every registered dataset, and look for prefixes of none).

        Every object a row names is read back and its sha256 compared with the
        row's (a frame row of the original imagingDB that hashed the pixels
        also matches). Objects under a dataset's own prefixes
        (``raw_frames/<id>/``, ``raw_files/<id>/``) that no row names, and
        unfinished writes there, are orphaned; with ``serials`` None, so are
        prefixes ``raw_frames/<X>/`` and ``raw_files/<X>/`` of no registered X.
        A key that a row of any committed dataset names is never an orphan.

        With ``remove_orphans``, orphaned objects and unfinished writes are
        removed, each prefix only while holding its dataset id's claim (so
        never while an upload of that id runs; such a prefix is skipped as
        "upload in progress"), and for an unregistered id only if it is still
        unregistered under the claim. Under the claim every key is looked up
        again in the committed rows; objects a row names are never removed.

        Raises
        ------
        InputError
            On a malformed dataset id.
        NotFoundError
            If a given dataset id is not registered.
        StorageError, DatabaseError
            If listing the storage or reading the database fails (an object
            that cannot be read is reported as unreadable instead, a dataset
            whose storage_dir is no key prefix as not verified).
        """
        start = time.perf_counter()
        # The database first, then the storage: a dataset committed in between shows as a
        # prefix of no dataset, which the claim check below tells apart from an orphan.
        everything = self.database.dataset_locations()
        if serials is not None:
            serials = list(dict.fromkeys(parse_dataset_id(s).serial for s in serials))
            if not serials:
                raise InputError("no dataset id given to verify")
            found = {loc["dataset_serial"]: loc for loc in everything}
            unknown = [s for s in serials if s not in found]
            if unknown:
                raise NotFoundError(f"dataset {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} "
                                    f"not in the database {self.database.describe()}; nothing verified")
            locations = [found[s] for s in serials]
            listings = None
        else:
            locations = everything
            listings = self._list_everything()
        references = _References(self.database, everything)
        report = VerifyReport(self.storage.describe(), self.database.describe(), serials is None)
        total = sum(loc["nbr_rows"] for loc in locations)
        self._tmp = Path(tempfile.mkdtemp(prefix="imaging_db-verify-"))
        try:
            with concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="imaging_db-verify") as pool, \
                    progress_bar(total, "verify", "object", self.progress) as bar:
                for loc in locations:
                    report.datasets.append(self._verify_dataset(loc, listings, references, pool, bar))
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if listings is not None:
            owned = {p for loc in everything for p in _own_prefixes(loc["dataset_serial"])}
            report.orphan_prefixes = self._orphan_prefixes(listings, owned, references)
        del listings, references
        if remove_orphans:
            for dataset in report.datasets:
                if dataset.nbr_orphaned:
                    self._remove_dataset_orphans(dataset)
            for orphan in report.orphan_prefixes:
                self._remove_prefix(orphan)
        report.seconds = time.perf_counter() - start
        return report

    # ----------------------------------------------------------------------- listing
    def _list_everything(self) -> dict[str, _Listing]:
        """List ``raw_frames/`` and ``raw_files/`` once each, grouped by ``<top>/<X>/``."""
        groups: dict[str, _Listing] = {}
        for top in _TOPS:
            for key, stored in self.storage.list(top + "/").items():
                groups.setdefault(_group_prefix(key), _Listing()).objects[key] = stored
            for key in self.storage.partials(top + "/"):
                groups.setdefault(_group_prefix(key), _Listing()).partials.append(key)
        return groups

    def _under(self, listings: dict[str, _Listing] | None, prefix: str) -> _Listing:
        """What is under ``prefix``: from the listing of everything when it holds it, else listed now."""
        if listings is not None and _is_group_prefix(prefix):
            return listings.get(prefix, _Listing())
        return _Listing(self.storage.list(prefix), list(self.storage.partials(prefix)))

    # ----------------------------------------------------------------------- one dataset
    def _verify_dataset(self, loc: dict, listings: dict[str, _Listing] | None, references: _References,
                        pool: concurrent.futures.ThreadPoolExecutor, bar) -> DatasetReport:
        serial, frames = loc["dataset_serial"], loc["frames"]
        storage_dir = _storage_dir(loc)
        report = DatasetReport(serial, frames, storage_dir, nbr_objects=loc["nbr_rows"])
        try:
            check_key(storage_dir)
        except InputError:
            report.error = (f"dataset {serial}: the database gives storage_dir {storage_dir!r}, which is not a "
                            "key prefix inside the storage; its objects and orphans were not checked")
            bar.update(loc["nbr_rows"])
            return report
        own = [self._under(listings, prefix) for prefix in _own_prefixes(serial)]
        if storage_dir + "/" in _own_prefixes(serial):
            objects = {k: v for listing in own for k, v in listing.objects.items()}
        else:  # a storage_dir of its row's own choosing: only to find the objects its rows name
            objects = self._under(listings, storage_dir + "/").objects

        if loc["frames_global_id"] is not None:
            rows = self.database.frame_checksums(loc["frames_global_id"])
        elif loc["file_name"] is not None:
            rows = {loc["file_name"]: loc["sha256"]}
        else:
            rows = {}
        named = set()
        in_flight: collections.deque = collections.deque()
        try:
            for name, sha256 in rows.items():
                key = f"{storage_dir}/{name}"
                named.add(key)
                if key not in objects:
                    report.missing.append(key)
                    bar.update(1)
                elif not sha256:
                    report.unchecked += 1
                    bar.update(1)
                else:
                    in_flight.append(pool.submit(self._check, key, sha256.lower(), not frames))
                    # A bounded number of objects waits or is read at once, however large the dataset.
                    while len(in_flight) >= 2 * self.threads:
                        self._record(report, in_flight.popleft().result())
                        bar.update(1)
            while in_flight:
                self._record(report, in_flight.popleft().result())
                bar.update(1)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
        del rows, objects
        report.orphaned = sorted(k for listing in own for k in listing.objects
                                 if k not in named and references.owner(k, known=serial) is None)
        report.partials = sorted(k for listing in own for k in listing.partials)
        logger.debug(report.summary())
        return report

    @staticmethod
    def _record(report: DatasetReport, result: tuple) -> None:
        status, key, recorded, actual = result
        if status == "ok":
            report.verified += 1
        elif status == "missing":
            report.missing.append(key)
        elif status == "corrupt":
            report.corrupt.append(CorruptObject(key, recorded, actual))
        else:
            report.unreadable.append(UnreadableObject(key, actual))

    def _check(self, key: str, recorded: str, whole_file: bool) -> tuple[str, str, str, str | None]:
        """Read one object and hash it (in a worker): ``(status, key, recorded sha256, actual sha256 or error)``."""
        try:
            if whole_file:
                actual = self._file_sha256(key)
            else:
                data = self.storage.get(key)
                actual = hashlib.sha256(data).hexdigest()
                if actual != recorded and _pixel_sha256(data) == recorded:
                    actual = recorded  # the original imagingDB's rule: sha256 of the pixels
                del data
        except NotFoundError:  # removed since it was listed
            return "missing", key, recorded, None
        except StorageError as exc:
            return "unreadable", key, recorded, str(exc)
        return ("ok" if actual == recorded else "corrupt"), key, recorded, actual

    def _file_sha256(self, key: str) -> str:
        """A whole file may be larger than memory: it is fetched into a temporary file and hashed from there."""
        path = self._tmp / uuid.uuid4().hex
        try:
            self.storage.get_file(key, path)
            with open(path, "rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"cannot hash {key!r} fetched into {str(path)!r}: {exc.strerror or exc}") from None
        finally:
            path.unlink(missing_ok=True)

    # ----------------------------------------------------------------------- orphans
    @staticmethod
    def _orphan_prefixes(listings: dict[str, _Listing], owned: set[str],
                         references: _References) -> list[OrphanPrefix]:
        """The prefixes of the listing of everything that no registered dataset owns, less what rows name."""
        orphans = []
        for prefix in sorted(set(listings) - owned):
            listing = listings[prefix]
            serial = prefix.split("/")[1] if _is_group_prefix(prefix) else None
            objects = sorted(k for k in listing.objects if references.owner(k) is None)
            if objects or listing.partials:
                orphans.append(OrphanPrefix(prefix, serial, objects, sorted(listing.partials)))
        return orphans

    def _unreferenced(self, keys_: Sequence[str], known: str | None = None) -> list[str]:
        """The keys that no row of a dataset committed by now names (asked under the claim, before removing)."""
        references = _References(self.database, self.database.dataset_locations())
        return [k for k in keys_ if references.owner(k, known=known) is None]

    def _remove_dataset_orphans(self, report: DatasetReport) -> None:
        """Remove a registered dataset's orphaned objects and unfinished writes, under its claim."""
        if report.storage_dir + "/" not in _own_prefixes(report.dataset_serial):
            # Its own folder may hold its real objects, and its row a wrong storage_dir.
            report.skipped = ROWS_ELSEWHERE.format(report.storage_dir)
            return
        try:
            claim = self.database.claim(report.dataset_serial)
        except DatasetClaimedError:
            report.skipped = UPLOAD_IN_PROGRESS
            return
        with claim:
            # Its own rows do not change once committed (report.orphaned excludes them); others' are asked again.
            for key in self._unreferenced(report.orphaned, known=report.dataset_serial):
                self.storage.delete(key)
                report.removed.append(key)
            if report.partials:
                report.partials = self._discard_partials(_own_prefixes(report.dataset_serial), report.removed)
        logger.info("dataset %s: removed %d orphaned object(s) and unfinished write(s)",
                    report.dataset_serial, len(report.removed))

    def _remove_prefix(self, orphan: OrphanPrefix) -> None:
        """Remove everything under the prefix of an unregistered id that no row names, under that id's claim."""
        if orphan.dataset_serial is None:
            orphan.skipped = NO_DATASET_ID
            return
        serial = orphan.dataset_serial
        try:
            claim = self.database.claim(serial)
        except DatasetClaimedError:
            orphan.skipped = UPLOAD_IN_PROGRESS
            return
        with claim:
            # Under the claim nobody uploads this id; it may have been committed since it was listed.
            if self.database.existing_serials([serial]):
                orphan.skipped = REGISTERED_MEANWHILE
                return
            # Listed again: a run that ended without committing may have left more since.
            orphan.objects = self._unreferenced(sorted(self.storage.list(orphan.prefix)))
            for key in orphan.objects:
                self.storage.delete(key)
                orphan.removed.append(key)
            orphan.partials = self._discard_partials([orphan.prefix], orphan.removed)
        logger.info("%s: removed %d orphaned object(s) and unfinished write(s) of no dataset",
                    orphan.prefix, len(orphan.removed))

    def _discard_partials(self, prefixes: list[str], removed: list[str]) -> list[str]:
        """Discard the unfinished writes under ``prefixes`` (claim held); return those found, adding them to ``removed``."""
        found = []
        for prefix in prefixes:
            partials = sorted(self.storage.partials(prefix))
            if partials:
                self.storage.discard_partials(prefix)
                found += partials
                removed += partials
        return found


def _pixel_sha256(data: bytes) -> str | None:
    """sha256 of a PNG's pixel bytes (the original imagingDB's checksum), or None if it does not decode."""
    from imaging_db.images.png import decode_png

    try:
        return hashlib.sha256(decode_png(data).tobytes()).hexdigest()
    except ImagingDBError:
        return None


def verify_datasets(dataset_serials: Sequence[str] | None, login: str | Path | None = None,
                    storage: str = "local", storage_access: str | None = None,
                    s3_endpoint_url: str | None = None, nbr_workers: int | None = None,
                    remove_orphans: bool = False, progress: bool | None = None) -> VerifyReport:
    """Verify the given datasets, or all (None): the library behind ``data_verify``.

    See :meth:`Verifier.verify` for what is checked, removed and raised.
    """
    if dataset_serials is not None:
        for serial in dataset_serials:
            parse_dataset_id(serial)
    database, data_storage, workers = open_for_reading(login, storage, storage_access, s3_endpoint_url,
                                                       nbr_workers, missing="nothing to verify")
    try:
        return Verifier(database, data_storage, workers, progress).verify(dataset_serials, remove_orphans)
    finally:
        database.dispose()
