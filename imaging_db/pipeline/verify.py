"""Verify pipeline: re-read every stored object of one or all datasets, compare sha256, find orphans.

    dataset rows + listing of its prefixes ──> missing (row, no object), orphaned (object, no row), partials
                                          ──> workers: DataStorage.get ──> sha256 vs the row ──> corrupt
    listing of raw_frames/ and raw_files/ (--all) ──> prefixes of no registered dataset ──> orphaned

Nothing is removed unless asked, and then only orphans, each prefix under its
dataset id's claim, so that the objects of an upload in progress are never
touched (see :meth:`Verifier.verify`).
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
from imaging_db.metadata.dataset_id import parse_dataset_id
from imaging_db.pipeline import keys
from imaging_db.pipeline.progress import progress_bar

logger = logging.getLogger(__name__)

UPLOAD_IN_PROGRESS = "upload in progress"
REGISTERED_MEANWHILE = "registered while being verified; verify it again"
NO_DATASET_ID = "not under a dataset id; not removed: look at it by hand"
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

    @property
    def nbr_orphaned(self) -> int:
        return len(self.orphaned) + len(self.partials)

    @property
    def remaining_orphans(self) -> list[str]:
        removed = set(self.removed)
        return [k for k in self.orphaned + self.partials if k not in removed]

    @property
    def ok(self) -> bool:
        """Nothing missing, corrupt or unreadable, and no orphan left."""
        return not (self.missing or self.corrupt or self.unreadable or self.remaining_orphans)

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
        also matches). Objects under a dataset's prefixes that no row names,
        and unfinished writes there, are orphaned; with ``serials`` None, so
        are prefixes ``raw_frames/<X>/`` and ``raw_files/<X>/`` of no
        registered X.

        With ``remove_orphans``, orphaned objects and unfinished writes are
        removed, each prefix only while holding its dataset id's claim (so
        never while an upload of that id runs; such a prefix is skipped as
        "upload in progress"), and for an unregistered id only if it is still
        unregistered under the claim. Objects a row names are never removed.

        Raises
        ------
        InputError
            On a malformed dataset id.
        NotFoundError
            If a given dataset id is not registered.
        StorageError, DatabaseError
            If listing the storage or reading the database fails (an object
            that cannot be read is reported as unreadable instead).
        """
        start = time.perf_counter()
        if serials is not None:
            serials = list(dict.fromkeys(parse_dataset_id(s).serial for s in serials))
            if not serials:
                raise InputError("no dataset id given to verify")
            found = {loc["dataset_serial"]: loc for loc in self.database.dataset_locations(serials)}
            unknown = [s for s in serials if s not in found]
            if unknown:
                raise NotFoundError(f"dataset {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} "
                                    f"not in the database {self.database.describe()}; nothing verified")
            locations = [found[s] for s in serials]
            listings = None
        else:
            # The database first, then the storage: a dataset committed in between shows as a
            # prefix of no dataset, which the claim check below tells apart from an orphan.
            locations = self.database.dataset_locations()
            listings = self._list_everything()
        report = VerifyReport(self.storage.describe(), self.database.describe(), serials is None)
        total = sum(loc["nbr_rows"] for loc in locations)
        self._tmp = Path(tempfile.mkdtemp(prefix="imaging_db-verify-"))
        try:
            with concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="imaging_db-verify") as pool, \
                    progress_bar(total, "verify", "object", self.progress) as bar:
                for loc in locations:
                    report.datasets.append(self._verify_dataset(loc, listings, pool, bar))
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if listings is not None:
            report.orphan_prefixes = self._orphan_prefixes(listings)
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

    def _take(self, listings: dict[str, _Listing] | None, prefix: str) -> _Listing:
        """What is under ``prefix``: from the listing of everything when it holds it, else listed now."""
        if listings is not None and _is_group_prefix(prefix):
            return listings.pop(prefix, _Listing())
        return _Listing(self.storage.list(prefix), list(self.storage.partials(prefix)))

    # ----------------------------------------------------------------------- one dataset
    def _verify_dataset(self, loc: dict, listings: dict[str, _Listing] | None,
                        pool: concurrent.futures.ThreadPoolExecutor, bar) -> DatasetReport:
        serial, frames = loc["dataset_serial"], loc["frames"]
        standard = keys.frames_dir(serial) if frames else keys.files_dir(serial)
        storage_dir = (loc["storage_dir"] or standard).rstrip("/")
        report = DatasetReport(serial, frames, storage_dir, nbr_objects=loc["nbr_rows"])
        prefixes = [storage_dir + "/"]
        for other in (keys.frames_dir(serial) + "/", keys.files_dir(serial) + "/"):
            if other not in prefixes:
                prefixes.append(other)
        listed = [self._take(listings, p) for p in prefixes]
        objects = {k: v for listing in listed for k, v in listing.objects.items()}

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
        del rows
        report.orphaned = sorted(k for k in objects if k not in named)
        report.partials = sorted(k for listing in listed for k in listing.partials)
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
    def _orphan_prefixes(self, listings: dict[str, _Listing]) -> list[OrphanPrefix]:
        """What the datasets did not take from the listing of everything: prefixes of no registered dataset."""
        orphans = []
        for prefix in sorted(listings):
            listing = listings[prefix]
            serial = prefix.split("/")[1] if _is_group_prefix(prefix) else None
            orphans.append(OrphanPrefix(prefix, serial, sorted(listing.objects), sorted(listing.partials)))
        return orphans

    def _remove_dataset_orphans(self, report: DatasetReport) -> None:
        """Remove a registered dataset's orphaned objects and unfinished writes, under its claim."""
        try:
            claim = self.database.claim(report.dataset_serial)
        except DatasetClaimedError:
            report.skipped = UPLOAD_IN_PROGRESS
            return
        with claim:
            for key in report.orphaned:
                self.storage.delete(key)
                report.removed.append(key)
            if report.partials:
                prefixes = sorted({_group_prefix(k) if _is_group_prefix(_group_prefix(k))
                                   else report.storage_dir + "/" for k in report.partials})
                report.partials = self._discard_partials(prefixes, report.removed)
        logger.info("dataset %s: removed %d orphaned object(s) and unfinished write(s)",
                    report.dataset_serial, len(report.removed))

    def _remove_prefix(self, orphan: OrphanPrefix) -> None:
        """Remove everything under the prefix of an unregistered id, under that id's claim."""
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
            orphan.objects = sorted(self.storage.list(orphan.prefix))
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
    from imaging_db.database.connection import load_login
    from imaging_db.defaults import DEFAULT_NBR_WORKERS
    from imaging_db.filestorage import make_storage

    workers = nbr_workers or DEFAULT_NBR_WORKERS
    if workers < 1:
        raise InputError(f"nbr_workers must be at least 1, not {workers}")
    if dataset_serials is not None:
        for serial in dataset_serials:
            parse_dataset_id(serial)
    url = load_login(login)
    data_storage = make_storage(storage, storage_access, s3_endpoint_url=s3_endpoint_url,
                                max_connections=2 * workers)
    try:
        database = Database(url, create=False)
    except NotFoundError as exc:
        raise NotFoundError(f"nothing to verify: {exc}") from None
    try:
        return Verifier(database, data_storage, workers, progress).verify(dataset_serials, remove_orphans)
    finally:
        database.dispose()
