"""Read queries: a dataset's record, its frames rows, and where every dataset's objects are.

Datasets are named by their id (serial) only; table row ids stay inside this module.
"""

from typing import Sequence

import sqlalchemy as sa

from imaging_db.database import schema
from imaging_db.database.connection import first_line
from imaging_db.database.records import (FRAME_COLUMNS, FRAME_COLUMNS_WITHOUT_METADATA, LAYOUT_COLUMNS, DatasetInfo,
                                         DatasetLocation, FrameRow, FramesLayout, LOCATION_COLUMNS, location_from)
from imaging_db.filestorage import StorageLocation
from imaging_db.errors import DatabaseError, NotFoundError

_data_set = schema.data_set
_frames_global = schema.frames_global
_frames = schema.frames
_file_global = schema.file_global
_settings = schema.imaging_db_settings
# The imaging_db_settings names of the default storage, in the order of LOCATION_COLUMNS.
DEFAULT_STORAGE_SETTINGS = ("default_storage", "default_storage_access", "default_s3_endpoint_url")
INDEX_COLUMNS = ("channel_name", "channel_idx", "slice_idx", "time_idx", "pos_idx")


def _frames_global_id(serial: str) -> sa.ScalarSelect:
    """The frames_global id of dataset ``serial``, as a scalar subquery (NULL for no such frames dataset)."""
    return (
        sa.select(_frames_global.c.id)
        .join(_data_set, _frames_global.c.dataset_id == _data_set.c.id)
        .where(_data_set.c.dataset_serial == serial)
        .scalar_subquery()
    )


def _dataset_info(row: sa.RowMapping, default: StorageLocation | None) -> DatasetInfo:
    frames_dataset = row["frames_global_id"] is not None
    file_dataset = row["file_name"] is not None
    return DatasetInfo(
        serial=row["dataset_serial"],
        frames=bool(row["frames"]),
        date_time=row["date_time"],
        description=row["description"],
        microscope=row["microscope"],
        parent_serial=row["parent_serial"],
        storage_dir=row["frames_storage_dir"] if frames_dataset else row["file_storage_dir"],
        layout=FramesLayout(**{name: row[name] for name in LAYOUT_COLUMNS}) if frames_dataset else None,
        file_name=row["file_name"],
        sha256=row["file_sha256"] if file_dataset else None,
        metadata=row["frames_metadata"] if frames_dataset else row["file_metadata"] if file_dataset else None,
        location=location_from(row) or default,
    )


class DatasetLookups:
    """The read queries of :class:`imaging_db.database.db_ops.Database` (which supplies engine and errors)."""

    engine: sa.Engine
    _default: tuple[StorageLocation | None] | None = None

    def default_location(self) -> StorageLocation | None:
        """Where datasets that record no storage are (``imaging_db_migrate --default-storage``); None if unset.

        Read once per Database.
        """
        if self._default is None:
            with self.errors("reading the default storage"), self.engine.connect() as conn:
                values = dict(conn.execute(sa.select(_settings.c.name, _settings.c.value)
                                           .where(_settings.c.name.in_(DEFAULT_STORAGE_SETTINGS))).all())
            self._default = (location_from({column: values.get(name) for column, name in
                                            zip(LOCATION_COLUMNS, DEFAULT_STORAGE_SETTINGS)}),)
        return self._default[0]

    def get_dataset(self, serial: str) -> DatasetInfo:
        """Return dataset ``serial``'s record, in one query.

        Raises
        ------
        NotFoundError
            If no dataset has that id.
        DatabaseError
            If the database cannot be read.
        """
        parent = _data_set.alias("parent")
        d, fg, fi = _data_set.c, _frames_global.c, _file_global.c
        query = (
            sa.select(
                d.dataset_serial, d.frames, d.date_time, d.description, d.microscope,
                d.storage, d.storage_access, d.s3_endpoint_url,
                parent.c.dataset_serial.label("parent_serial"),
                fg.id.label("frames_global_id"), fg.storage_dir.label("frames_storage_dir"),
                fg.metadata_json.label("frames_metadata"), *(getattr(fg, name) for name in LAYOUT_COLUMNS),
                fi.storage_dir.label("file_storage_dir"), fi.file_name, fi.sha256.label("file_sha256"),
                fi.metadata_json.label("file_metadata"),
            )
            .select_from(
                _data_set.outerjoin(parent, d.parent_id == parent.c.id)
                .outerjoin(_frames_global, fg.dataset_id == d.id)
                .outerjoin(_file_global, fi.dataset_id == d.id)
            )
            .where(d.dataset_serial == serial)
        )
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).mappings().first()
        except sa.exc.SQLAlchemyError as exc:
            failure = DatabaseError(
                f"database {self.describe()}: looking up dataset {serial} failed: {first_line(exc)}")
            # A database that cannot even be inspected reports the lookup's own error, not the inspection's.
            try:
                has_tables = self.has_tables()
            except DatabaseError:
                raise failure from exc
            if not has_tables:
                raise NotFoundError(
                    f"dataset {serial} is not in the database {self.describe()}: it holds no imaging_db tables yet"
                ) from None
            raise failure from exc
        if row is None:
            raise NotFoundError(f"dataset {serial} is not in the database {self.describe()}")
        return _dataset_info(row, self.default_location())

    def get_frames(
        self,
        serial: str,
        channel_ids: Sequence[int] | None = None,
        channel_names: Sequence[str] | None = None,
        slice_ids: Sequence[int] | None = None,
        time_ids: Sequence[int] | None = None,
        pos_ids: Sequence[int] | None = None,
        with_metadata: bool = False,
    ) -> list[FrameRow]:
        """Return the frames of dataset ``serial`` that match every given filter.

        A filter left as None does not restrict; an unknown or file dataset has
        no frames. Rows are ordered by position, then time, channel and slice
        (slice varies fastest). ``metadata_json`` is only read ``with_metadata``:
        it is most of a row's size, and a download does not need it.
        """
        c = _frames.c
        names = FRAME_COLUMNS if with_metadata else FRAME_COLUMNS_WITHOUT_METADATA
        query = sa.select(*(getattr(c, name) for name in names)).where(c.frames_global_id == _frames_global_id(serial))
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
        with self.errors("reading frames"), self.engine.connect() as conn:
            return [FrameRow(*row) for row in conn.execute(query)]

    def frame_index_values(self, serial: str) -> dict[str, list]:
        """Return the distinct channel names and c/z/t/p indices of a dataset, for error messages."""
        c = _frames.c
        values = {}
        with self.errors("reading frame indices"), self.engine.connect() as conn:
            frames_global_id = conn.execute(sa.select(_frames_global_id(serial))).scalar()
            for name in INDEX_COLUMNS:
                column = getattr(c, name)
                found = conn.execute(
                    sa.select(column).distinct().where(c.frames_global_id == frames_global_id).order_by(column)
                )
                values[name] = [row[0] for row in found]
        return values

    def frame_checksums(self, serial: str) -> dict[str, str | None]:
        """Return ``{file_name: sha256}`` for every frames row of a dataset, in row order."""
        c = _frames.c
        query = sa.select(c.file_name, c.sha256).where(c.frames_global_id == _frames_global_id(serial)).order_by(c.id)
        with self.errors("reading frame checksums"), self.engine.connect() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}

    def dataset_locations(self, serials: Sequence[str] | None = None) -> list[DatasetLocation]:
        """Return where the objects of the given datasets (None: all) are and how many rows name them.

        One per registered dataset, ordered by registration. Ids that are not
        registered are left out; a database without the imaging_db tables has no datasets.
        """
        if not self.has_tables():
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
                _data_set.c.storage,
                _data_set.c.storage_access,
                _data_set.c.s3_endpoint_url,
            )
            .select_from(
                _data_set.outerjoin(_frames_global, _frames_global.c.dataset_id == _data_set.c.id)
                .outerjoin(_file_global, _file_global.c.dataset_id == _data_set.c.id)
                .outerjoin(counts, counts.c.frames_global_id == _frames_global.c.id)
            )
            .order_by(_data_set.c.id)
        )
        if serials is not None:
            query = query.where(_data_set.c.dataset_serial.in_(list(serials)))
        with self.errors("listing datasets"), self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        locations = []
        for row in rows:
            if row["frames_global_id"] is not None:
                nbr_rows = row["nbr_rows"] or 0
            else:
                nbr_rows = 1 if row["file_name"] is not None else 0
            locations.append(DatasetLocation(row["dataset_serial"], bool(row["frames"]), row["storage_dir"],
                                             nbr_rows, row["file_name"], row["sha256"],
                                             location_from(row) or self.default_location()))
        return locations
