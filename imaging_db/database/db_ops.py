"""Row-level database operations: register datasets in one transaction, look them up."""

import contextlib
import datetime
import io
import logging
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL

from imaging_db.database.claims import Claim, claim_dataset, schema_lock
from imaging_db.database.connection import make_engine, safe_url
from imaging_db.database import schema
from imaging_db.errors import DatabaseError, DatasetExistsError, InputError, NotFoundError
from imaging_db.faults import fault_point
from imaging_db.json_text import to_json_text

logger = logging.getLogger(__name__)

_data_set = schema.data_set
_frames_global = schema.frames_global
_frames = schema.frames
_file_global = schema.file_global

FRAME_COLUMNS = (
    "channel_idx",
    "slice_idx",
    "time_idx",
    "pos_idx",
    "channel_name",
    "file_name",
    "sha256",
    "metadata_json",
)
# What identifies and locates a frame: everything but its (large) metadata.
FRAME_COLUMNS_WITHOUT_METADATA = tuple(c for c in FRAME_COLUMNS if c != "metadata_json")
# The frames columns written when a dataset is registered (COPY or INSERT), in this order.
_COPY_COLUMNS = ("frames_global_id", *FRAME_COLUMNS_WITHOUT_METADATA, "metadata_json")
# Frames rows are written in batches of this many rows, so the text sent stays bounded.
_BATCH_ROWS = 5000
# A batch also ends once its rows' metadata reaches this many characters, so that the
# rows in flight stay a few MB however much metadata each frame carries.
_BATCH_METADATA_CHARS = 2 * 2**20
_COPY_CHUNK = 2**20  # characters handed to libpq per read
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy_field(value) -> str:
    """One field of PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)


class _CopyReader(io.TextIOBase):
    """A file-like object that formats frames rows in COPY text format as psycopg2 reads them.

    Rows are taken from an iterator and formatted a batch at a time (see
    ``_batches``), so neither the rows nor the text are held all at once.
    """

    def __init__(self, frames_global_id: int, frames: Iterator[dict]):
        self.batches = _batches(frames, frames_global_id)
        self.text = ""
        self.offset = 0

    def readable(self) -> bool:
        return True

    def _format_batch(self) -> str:
        batch = next(self.batches, [])
        if batch:
            fault_point("db.frames_batch")
        lines = ["\t".join(map(_copy_field, (row[c] for c in _COPY_COLUMNS))) for row in batch]
        return "\n".join(lines) + "\n" if lines else ""

    def read(self, size: int = -1) -> str:
        if self.offset >= len(self.text):
            self.text, self.offset = self._format_batch(), 0
            if not self.text:
                return ""
        end = len(self.text) if size is None or size < 0 else self.offset + size
        chunk = self.text[self.offset:end]
        self.offset += len(chunk)
        return chunk


def _batches(frames: Iterator[dict], frames_global_id: int) -> Iterator[list[dict]]:
    """Group rows for the database: at most _BATCH_ROWS rows or _BATCH_METADATA_CHARS of metadata.

    Each row is given its ``frames_global_id`` and its metadata as JSON text.
    """
    batch, chars = [], 0
    for row in frames:
        metadata = _json_column(row["metadata_json"])
        batch.append({**row, "frames_global_id": frames_global_id, "metadata_json": metadata})
        chars += len(metadata) if metadata else 0
        if len(batch) >= _BATCH_ROWS or chars >= _BATCH_METADATA_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _json_column(value) -> str | None:
    """Rows may carry metadata as a dict or as JSON text made by :func:`to_json_text`."""
    if value is None or isinstance(value, str):
        return value
    return to_json_text(value)


@dataclass
class DatasetRecord:
    """The data_set row of a dataset about to be registered."""

    serial: str
    date_time: datetime.datetime
    frames: bool
    description: str | None = None
    microscope: str | None = None
    parent_serial: str | None = None


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


class Database:
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
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(f"database {self.describe()}: {doing} failed: {_first_line(exc)}") from exc

    def check_connection(self) -> None:
        """Connect once, so that a bad login fails before any upload starts.

        Raises
        ------
        DatabaseError
            If the database cannot be reached.
        """
        with self._errors("connecting"):
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

    def create_tables(self) -> None:
        """Create the imaging_db tables that do not exist yet.

        Safe when several processes do it at once on an empty database: they
        take turns under the schema lock, and the later ones find the tables.
        """
        with schema_lock(self.engine, self.describe()) as conn, self._errors("creating tables"):
            schema.metadata.create_all(conn if conn is not None else self.engine, checkfirst=True)

    def claim(self, serial: str) -> Claim:
        """Claim dataset id ``serial`` for this run until the claim is released (or the process ends).

        Raises
        ------
        DatasetClaimedError
            If another run holds it.
        """
        return claim_dataset(self.engine, serial, self.describe())

    def _has_tables(self) -> bool:
        with self._errors("inspecting tables"):
            return sa.inspect(self.engine).has_table(_data_set.name)

    def existing_serials(self, serials: Sequence[str]) -> set[str]:
        """Return which of the given dataset ids are registered."""
        if not serials or not self._has_tables():
            return set()
        with self._errors("looking up dataset ids"), self.engine.connect() as conn:
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
            raise DatabaseError(f"dataset {serial}: database {self.describe()} refused the rows: {_first_line(exc)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(f"dataset {serial}: registering in database {self.describe()} failed: {_first_line(exc)}") from exc

    def insert_frames_dataset(self, dataset: DatasetRecord, frames_global: dict, frames: Iterable[dict]) -> None:
        """Register a frames dataset: data_set, frames_global and all frames rows, in one transaction.

        Parameters
        ----------
        dataset : DatasetRecord
        frames_global : dict
            Values of the frames_global columns other than id and data_set_id.
        frames : iterable of dict
            One dict per frame with the keys of ``FRAME_COLUMNS``; read once, as the rows are sent.

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
            data_set_id = self._insert_data_set(conn, dataset)
            frames_global_id = conn.execute(
                sa.insert(_frames_global).values(data_set_id=data_set_id, **frames_global)
            ).inserted_primary_key[0]
            self._insert_frames(conn, frames_global_id, iter(frames))

    def _insert_frames(self, conn: sa.Connection, frames_global_id: int, frames: Iterator[dict]) -> None:
        """Bulk-insert frames rows: one streamed COPY on PostgreSQL, executemany by batch elsewhere."""
        if conn.dialect.name == "postgresql":
            cursor = conn.connection.driver_connection.cursor()
            sql = f"COPY frames ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
            try:
                # Frame metadata is mostly toasted (compressed) JSONB: lz4 compresses it several
                # times faster than the default pglz. For this transaction only; readers need nothing.
                cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
                row = cursor.fetchone()
                if row and row[0]:
                    cursor.execute("SET LOCAL default_toast_compression = 'lz4'")
                # One streamed COPY: the server parses rows while the next ones are formatted here.
                cursor.copy_expert(sql, _CopyReader(frames_global_id, frames), size=_COPY_CHUNK)
            except conn.dialect.loaded_dbapi.Error as exc:
                # Raw DBAPI errors become SQLAlchemy's, so callers see one kind of error.
                raise sa.exc.DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from exc
            finally:
                cursor.close()
            return
        statement = sa.text(
            f"INSERT INTO frames ({', '.join(_COPY_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COPY_COLUMNS)})"
        )
        for batch in _batches(frames, frames_global_id):
            fault_point("db.frames_batch")
            conn.execute(statement, batch)

    def insert_file_dataset(self, dataset: DatasetRecord, file_global: dict) -> None:
        """Register a file dataset: data_set and file_global rows, in one transaction.

        Raises
        ------
        DatasetExistsError, InputError, DatabaseError
            As :meth:`insert_frames_dataset`.
        """
        with self._register(dataset.serial) as conn:
            data_set_id = self._insert_data_set(conn, dataset)
            conn.execute(sa.insert(_file_global).values(data_set_id=data_set_id, **file_global))

    def get_dataset(self, serial: str) -> dict:
        """Return a dataset's data_set row and its frames_global or file_global row, in one query.

        Returns
        -------
        dict
            ``{"data_set": {...}, "frames_global": {...} or None, "file_global": {...} or None}``,
            with ``data_set["parent_dataset_id"]`` the parent's id string.

        Raises
        ------
        NotFoundError
            If no dataset has that id.
        """
        parent = _data_set.alias("parent")
        parts = {"data_set": _data_set, "frames_global": _frames_global, "file_global": _file_global}
        columns = [c.label(f"{name}.{c.name}") for name, table in parts.items() for c in table.c]
        query = (
            sa.select(*columns, parent.c.dataset_serial.label("data_set.parent_dataset_id"))
            .select_from(
                _data_set.outerjoin(parent, _data_set.c.parent_id == parent.c.id)
                .outerjoin(_frames_global, _frames_global.c.data_set_id == _data_set.c.id)
                .outerjoin(_file_global, _file_global.c.data_set_id == _data_set.c.id)
            )
            .where(_data_set.c.dataset_serial == serial)
        )
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).mappings().first()
        except sa.exc.SQLAlchemyError as exc:
            failure = DatabaseError(
                f"database {self.describe()}: looking up dataset {serial} failed: {_first_line(exc)}")
            # A database that cannot even be inspected reports the lookup's own error, not the inspection's.
            try:
                has_tables = self._has_tables()
            except DatabaseError:
                raise failure from exc
            if not has_tables:
                raise NotFoundError(
                    f"dataset {serial} is not in the database {self.describe()}: it holds no imaging_db tables yet"
                ) from None
            raise failure from exc
        if row is None:
            raise NotFoundError(f"dataset {serial} is not in the database {self.describe()}")
        info: dict = {name: {} for name in parts}
        for key, value in row.items():
            name, column = key.split(".", 1)
            info[name][column] = value
        for name in ("frames_global", "file_global"):
            if info[name]["id"] is None:
                info[name] = None
        return info

    def get_frames(
        self,
        frames_global_id: int,
        channel_ids: Sequence[int] | None = None,
        channel_names: Sequence[str] | None = None,
        slice_ids: Sequence[int] | None = None,
        time_ids: Sequence[int] | None = None,
        pos_ids: Sequence[int] | None = None,
        with_metadata: bool = False,
    ) -> list[dict]:
        """Return the frames rows of a dataset that match every given filter.

        A filter left as None does not restrict. Rows are ordered by position,
        then time, channel and slice (slice varies fastest). ``metadata_json``
        is only read ``with_metadata``: it is most of a row's size, and a
        download does not need it.
        """
        c = _frames.c
        names = FRAME_COLUMNS if with_metadata else FRAME_COLUMNS_WITHOUT_METADATA
        query = sa.select(*(getattr(c, name) for name in names)).where(
            c.frames_global_id == frames_global_id
        )
        for column, values in (
            (c.channel_idx, channel_ids),
            (c.channel_name, channel_names),
            (c.slice_idx, slice_ids),
            (c.time_idx, time_ids),
            (c.pos_idx, pos_ids),
        ):
            if values is not None:
                query = query.where(column.in_(list(values)))
        query = query.order_by(c.pos_idx, c.time_idx, c.channel_idx, c.slice_idx)
        with self._errors("reading frames"), self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def frame_index_values(self, frames_global_id: int) -> dict[str, list]:
        """Return the distinct channel names and c/z/t/p indices of a dataset, for error messages."""
        c = _frames.c
        values = {}
        with self._errors("reading frame indices"), self.engine.connect() as conn:
            for name in ("channel_name", "channel_idx", "slice_idx", "time_idx", "pos_idx"):
                column = getattr(c, name)
                found = conn.execute(
                    sa.select(column).distinct().where(c.frames_global_id == frames_global_id).order_by(column)
                )
                values[name] = [row[0] for row in found]
        return values

    def dataset_locations(self, serials: Sequence[str] | None = None) -> list[dict]:
        """Return where the objects of the given datasets (None: all) are and how many rows name them.

        Returns
        -------
        list of dict
            One per registered dataset, ordered by id, with ``dataset_serial``,
            ``frames`` (bool), ``frames_global_id`` (None for a file dataset),
            ``storage_dir`` (None if the dataset has neither a frames_global
            nor a file_global row), ``nbr_rows`` (its frames rows, or 1 for
            its file), and for a file dataset ``file_name`` and ``sha256``.
            Ids that are not registered are left out; a database without the
            imaging_db tables has no datasets.
        """
        if not self._has_tables():
            return []
        counts = (
            sa.select(_frames.c.frames_global_id, sa.func.count().label("nbr_rows"))
            .group_by(_frames.c.frames_global_id)
            .subquery()
        )
        query = (
            sa.select(
                _data_set.c.dataset_serial,
                _data_set.c.frames,
                _frames_global.c.id.label("frames_global_id"),
                sa.func.coalesce(_frames_global.c.storage_dir, _file_global.c.storage_dir).label("storage_dir"),
                counts.c.nbr_rows,
                _file_global.c.file_name,
                _file_global.c.sha256,
            )
            .select_from(
                _data_set.outerjoin(_frames_global, _frames_global.c.data_set_id == _data_set.c.id)
                .outerjoin(_file_global, _file_global.c.data_set_id == _data_set.c.id)
                .outerjoin(counts, counts.c.frames_global_id == _frames_global.c.id)
            )
            .order_by(_data_set.c.id)
        )
        if serials is not None:
            query = query.where(_data_set.c.dataset_serial.in_(list(serials)))
        with self._errors("listing datasets"), self.engine.connect() as conn:
            rows = [dict(row) for row in conn.execute(query).mappings()]
        for row in rows:
            row["frames"] = bool(row["frames"])
            if row["frames_global_id"] is not None:
                row["nbr_rows"] = row["nbr_rows"] or 0
            else:
                row["nbr_rows"] = 1 if row["file_name"] is not None else 0
        return rows

    def frame_checksums(self, frames_global_id: int) -> dict[str, str | None]:
        """Return ``{file_name: sha256}`` for every frames row of a dataset, in row order."""
        c = _frames.c
        query = sa.select(c.file_name, c.sha256).where(c.frames_global_id == frames_global_id).order_by(c.id)
        with self._errors("reading frame checksums"), self.engine.connect() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}
