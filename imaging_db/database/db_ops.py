"""The database of one imaging_db: connection, tables, claims, and registering datasets in one transaction.

The read queries are in :mod:`imaging_db.database.lookups`, the bulk insert of
frames rows in :mod:`imaging_db.database.bulk_insert`.
"""

import contextlib
import logging
from typing import Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL

from imaging_db.database import frames_summary, migrate, schema
from imaging_db.database.bulk_insert import insert_frame_rows
from imaging_db.database.claims import Claim, claim_dataset
from imaging_db.database.connection import first_line, make_engine, safe_url
from imaging_db.database.lookups import DEFAULT_STORAGE_SETTINGS, DatasetLookups
from imaging_db.database.records import (FRAME_COLUMNS, FRAME_COLUMNS_WITHOUT_METADATA, DatasetInfo, DatasetLocation,
                                         DatasetRecord, FrameRow, location_values)
from imaging_db.errors import DatabaseError, DatasetExistsError, InputError
from imaging_db.filestorage import StorageLocation

logger = logging.getLogger(__name__)

_data_set = schema.data_set
_frames_global = schema.frames_global
_file_global = schema.file_global


class Database(DatasetLookups):
    """Access to one imaging_db database.

    Parameters
    ----------
    url : sqlalchemy.engine.URL
        Where the database is; see :func:`imaging_db.database.connection.load_login`.
    create : bool
        Whether a missing SQLite file may be created (False for readers: NotFoundError).
    """

    def __init__(self, url: URL, create: bool = True):
        self.url = url
        self.engine = make_engine(url, create=create)

    def __repr__(self) -> str:
        return f"Database({self.describe()})"

    def describe(self) -> str:
        """Return the database URL with the password hidden."""
        return safe_url(self.url)

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(f"database {self.describe()}: {doing} failed: {first_line(exc)}") from exc

    def check_connection(self) -> None:
        """Connect once, so that a bad login fails before any upload starts.

        Raises
        ------
        DatabaseError
            If the database cannot be reached.
        """
        with self.errors("connecting"):
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

    def create_tables(self) -> None:
        """Give an empty database the current schema; refuse one at another schema revision.

        Safe when several processes do it at once on an empty database: they
        take turns under the schema lock, and the later ones find the tables.

        Raises
        ------
        DatabaseError
            If the database is at an older or newer revision (the message says what to run).
        """
        if self.check_schema() is None:
            migrate.upgrade(self.engine, self.describe())

    def check_schema(self, doing: str = "reading the schema revision") -> str | None:
        """Refuse a database whose tables are at another schema revision than this code's.

        ``doing`` names, in a failure to connect, what the caller was about to do.
        Returns the revision: HEAD, or None for a database without tables.

        Raises
        ------
        DatabaseError
            Saying what to run: ``imaging_db_migrate`` for an older one.
        """
        with self.errors(doing), self.engine.connect() as conn:
            revision = migrate.database_revision(conn)
        problem = migrate.schema_problem(revision, self.describe())
        if problem:
            raise DatabaseError(problem)
        return revision

    def set_default_location(self, location: StorageLocation | None) -> None:
        """Record where datasets that record no storage are (None: forget it); see :meth:`default_location`."""
        settings = schema.imaging_db_settings
        values = dict(zip(DEFAULT_STORAGE_SETTINGS, location_values(location).values()))
        with self.errors("recording the default storage"), self.engine.begin() as conn:
            conn.execute(settings.delete().where(settings.c.name.in_(DEFAULT_STORAGE_SETTINGS)))
            rows = [{"name": name, "value": value} for name, value in values.items() if value is not None]
            if rows:
                conn.execute(settings.insert(), rows)
        self._default = None

    def claim(self, serial: str) -> Claim:
        """Claim dataset id ``serial`` for this run until the claim is released (or the process ends).

        Raises
        ------
        DatasetClaimedError
            If another run holds it.
        """
        return claim_dataset(self.engine, serial, self.describe())

    def has_tables(self) -> bool:
        with self.errors("inspecting tables"):
            return sa.inspect(self.engine).has_table(_data_set.name)

    def existing_serials(self, serials: Sequence[str]) -> set[str]:
        """Return which of the given dataset ids are registered."""
        if not serials or not self.has_tables():
            return set()
        with self.errors("looking up dataset ids"), self.engine.connect() as conn:
            found = conn.execute(
                sa.select(_data_set.c.dataset_serial).where(_data_set.c.dataset_serial.in_(list(serials)))
            )
            return {row[0] for row in found}

    def _insert_data_set(self, conn: sa.Connection, dataset: DatasetRecord) -> int:
        parent_id = None
        if dataset.parent_serial:
            parent_id = conn.execute(
                sa.select(_data_set.c.id).where(_data_set.c.dataset_serial == dataset.parent_serial)
            ).scalar()
            if parent_id is None:
                raise InputError(
                    f"dataset {dataset.serial}: parent_dataset_id {dataset.parent_serial} is not in the database"
                )
        result = conn.execute(
            sa.insert(_data_set).values(
                dataset_serial=dataset.serial,
                description=dataset.description,
                microscope=dataset.microscope,
                frames=dataset.frames,
                date_time=dataset.date_time,
                parent_id=parent_id,
                **location_values(dataset.location),
            )
        )
        return result.inserted_primary_key[0]

    @contextlib.contextmanager
    def _register(self, serial: str) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.IntegrityError as exc:
            if self.existing_serials([serial]):
                raise DatasetExistsError(f"dataset {serial} is already in the database") from None
            raise DatabaseError(f"dataset {serial}: database {self.describe()} refused the rows: {first_line(exc)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(f"dataset {serial}: registering in database {self.describe()} failed: {first_line(exc)}") from exc

    def insert_frames_dataset(self, dataset: DatasetRecord, frames_global: dict, frames: Iterable[dict],
                              summary: frames_summary.SummaryBuilder | None = None) -> None:
        """Register a frames dataset: data_set, frames_global, all frames rows and their summary, in one transaction.

        Parameters
        ----------
        dataset : DatasetRecord
        frames_global : dict
            Values of the frames_global columns other than id and dataset_id.
        frames : iterable of dict
            One dict per frame with the keys of ``FRAME_COLUMNS``; read once, as the rows are sent.
        summary : SummaryBuilder, optional
            The summary of exactly these frames' metadata, made as they were
            (the upload's workers do); without it, it is made from the rows
            here (metadata given as JSON text is parsed again).

        Raises
        ------
        DatasetExistsError
            If the id is already registered (nothing is changed).
        InputError
            If the parent dataset is not registered.
        DatabaseError
            On any other database failure (nothing is changed).
        """
        with self._register(dataset.serial) as conn:
            dataset_id = self._insert_data_set(conn, dataset)
            frames_global_id = conn.execute(
                sa.insert(_frames_global).values(dataset_id=dataset_id, **frames_global)
            ).inserted_primary_key[0]
            if summary is None:
                summary = frames_summary.SummaryBuilder()
                frames = summary.counting(frames)
            insert_frame_rows(conn, frames_global_id, iter(frames))
            # Searches read it instead of every frame.
            frames_summary.write(conn, summary.rows(frames_global_id))

    def insert_file_dataset(self, dataset: DatasetRecord, file_global: dict) -> None:
        """Register a file dataset: data_set and file_global rows, in one transaction.

        Raises
        ------
        DatasetExistsError, InputError, DatabaseError
            As :meth:`insert_frames_dataset`.
        """
        with self._register(dataset.serial) as conn:
            dataset_id = self._insert_data_set(conn, dataset)
            conn.execute(sa.insert(_file_global).values(dataset_id=dataset_id, **file_global))


__all__ = ["FRAME_COLUMNS", "FRAME_COLUMNS_WITHOUT_METADATA", "Database", "DatasetInfo", "DatasetLocation",
           "DatasetRecord", "FrameRow"]
