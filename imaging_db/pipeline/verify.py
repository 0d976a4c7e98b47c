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
from pathlib import Path
from typing import Sequence

from imaging_db.database.db_ops import Database
from imaging_db.database.records import DatasetLocation
from imaging_db.errors import DatasetClaimedError, InputError, NotFoundError, StorageError
from imaging_db.filestorage import DataStorage, StorageLocation
from imaging_db.filestorage.data_storage import check_key
from imaging_db.metadata.dataset_id import parse_dataset_id
from imaging_db.pipeline.frame_reader import pixel_checked
from imaging_db.pipeline.progress import progress_bar
from imaging_db.pipeline.storage_index import (Listing, References, is_group_prefix, list_everything, listing_under,
                                               own_prefixes, recorded_checksums, storage_dir_of)
from imaging_db.pipeline.stores import DatasetStorages, open_for_reading
from imaging_db.pipeline.verify_report import (NO_DATASET_ID, REGISTERED_MEANWHILE, ROWS_ELSEWHERE, UPLOAD_IN_PROGRESS,
                                               CorruptObject, DatasetReport, OrphanPrefix, UnreadableObject,
                                               VerifyReport)

logger = logging.getLogger(__name__)

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
        self.threads = max(1, int(nbr_workers), storage.parallel_requests)
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
            serials = list(dict.fromkeys(parse_dataset_id(s, registered=True).serial for s in serials))
            if not serials:
                raise InputError("no dataset id given to verify")
            found = {loc.serial: loc for loc in everything}
            unknown = [s for s in serials if s not in found]
            if unknown:
                raise NotFoundError(f"dataset {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} "
                                    f"not in the database {self.database.describe()}; nothing verified")
            locations = [found[s] for s in serials]
            listings = None
        else:
            locations = everything
            listings = list_everything(self.storage)
        references = References(self.database, everything)
        report = VerifyReport(self.storage.describe(), self.database.describe(), serials is None)
        total = sum(loc.nbr_rows for loc in locations)
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
            owned = {p for loc in everything for p in own_prefixes(loc.serial)}
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

    # ----------------------------------------------------------------------- one dataset
    def _verify_dataset(self, loc: DatasetLocation, listings: dict[str, Listing] | None, references: References,
                        pool: concurrent.futures.ThreadPoolExecutor, bar) -> DatasetReport:
        serial, frames = loc.serial, loc.frames
        storage_dir = storage_dir_of(loc)
        report = DatasetReport(serial, frames, storage_dir, nbr_objects=loc.nbr_rows)
        try:
            check_key(storage_dir)
        except InputError:
            report.error = (f"dataset {serial}: the database gives storage_dir {storage_dir!r}, which is not a "
                            "key prefix inside the storage; its objects and orphans were not checked")
            bar.update(loc.nbr_rows)
            return report
        own = [listing_under(self.storage, listings, prefix) for prefix in own_prefixes(serial)]
        if storage_dir + "/" in own_prefixes(serial):
            objects = {k: v for listing in own for k, v in listing.objects.items()}
        else:  # a storage_dir of its row's own choosing: only to find the objects its rows name
            objects = listing_under(self.storage, listings, storage_dir + "/").objects

        rows = recorded_checksums(self.database, loc)
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
                if actual != recorded and pixel_checked(data, recorded) is not None:
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
    def _orphan_prefixes(listings: dict[str, Listing], owned: set[str],
                         references: References) -> list[OrphanPrefix]:
        """The prefixes of the listing of everything that no registered dataset owns, less what rows name."""
        orphans = []
        for prefix in sorted(set(listings) - owned):
            listing = listings[prefix]
            serial = prefix.split("/")[1] if is_group_prefix(prefix) else None
            objects = sorted(k for k in listing.objects if references.owner(k) is None)
            if objects or listing.partials:
                orphans.append(OrphanPrefix(prefix, serial, objects, sorted(listing.partials)))
        return orphans

    def _unreferenced(self, keys_: Sequence[str], known: str | None = None) -> list[str]:
        """The keys that no row of a dataset committed by now names (asked under the claim, before removing)."""
        references = References(self.database, self.database.dataset_locations())
        return [k for k in keys_ if references.owner(k, known=known) is None]

    def _remove_dataset_orphans(self, report: DatasetReport) -> None:
        """Remove a registered dataset's orphaned objects and unfinished writes, under its claim."""
        if report.storage_dir + "/" not in own_prefixes(report.dataset_serial):
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
                report.partials = self._discard_partials(own_prefixes(report.dataset_serial), report.removed)
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


def verify_datasets(dataset_serials: Sequence[str] | None, login: str | Path | None = None,
                    storage: str | None = None, storage_access: str | None = None,
                    s3_endpoint_url: str | None = None, nbr_workers: int | None = None,
                    remove_orphans: bool = False, progress: bool | None = None) -> VerifyReport:
    """Verify the given datasets, or all (None): the library behind ``data_verify``.

    The storage is the one the datasets' records name, with ``storage``,
    ``storage_access`` and ``s3_endpoint_url`` applied over it; datasets
    recorded in several storages are verified one storage at a time, named by
    the user. See :meth:`Verifier.verify` for what is checked, removed and raised.

    Raises
    ------
    InputError
        If the datasets are in several storages and none is named.
    """
    if dataset_serials is not None:
        for serial in dataset_serials:
            parse_dataset_id(serial, registered=True)
    database, storages, workers = open_for_reading(login, storage, storage_access, s3_endpoint_url,
                                                   nbr_workers, missing="nothing to verify",
                                                   doing="listing datasets")
    try:
        data_storage = storages.open(_one_location(database, storages, dataset_serials))
        return Verifier(database, data_storage, workers, progress).verify(dataset_serials, remove_orphans)
    finally:
        database.dispose()


def _one_location(database: Database, storages: DatasetStorages, serials: Sequence[str] | None) -> StorageLocation:
    """The one storage that the datasets (None: all) are read from.

    Raises
    ------
    InputError
        If their records name several and the user named none.
    """
    wanted = None if serials is None else {parse_dataset_id(s, registered=True).serial for s in serials}
    recorded = {loc.location for loc in database.dataset_locations() if wanted is None or loc.serial in wanted}
    if storages.given():
        return storages.location(None)
    located = sorted({storages.location(r) for r in recorded}, key=str)
    if len(located) > 1:
        names = ", ".join(f"{location.kind} {location.access or '(default)'}" for location in located)
        raise InputError(f"the datasets to verify are in {len(located)} storages ({names}): "
                         "verify one at a time, naming it with --storage and --storage_access")
    return located[0] if located else storages.location(None)
