"""A database as the original imagingDB (czbiohub/imagingDB, last revision 8e0d2514fd1f) left it, for tests.

The tables are what its declarative models gave through ``Base.metadata.create_all``
on PostgreSQL: every column nullable, no unique constraint, no index but the
primary keys, VARCHAR without a length, JSONB metadata, foreign keys. Rows are
written as the original wrote them: one data_set row, one frames_global or
file_global row, frames rows whose sha256 is the hash of the frame's pixel
bytes (or NULL, before 2019), stored PNGs as OpenCV encoded them.
"""

import datetime
import hashlib
import json

import cv2
import numpy as np
import sqlalchemy as sa

ORIGINAL_DDL = [
    "CREATE TABLE data_set (id SERIAL NOT NULL, dataset_serial VARCHAR, description VARCHAR, microscope VARCHAR, "
    "frames BOOLEAN, date_time TIMESTAMP WITHOUT TIME ZONE, parent_id INTEGER, PRIMARY KEY (id), "
    "FOREIGN KEY(parent_id) REFERENCES data_set (id))",
    "CREATE TABLE file_global (id SERIAL NOT NULL, storage_dir VARCHAR, file_name VARCHAR, metadata_json JSONB, "
    "dataset_id INTEGER, sha256 VARCHAR, PRIMARY KEY (id), FOREIGN KEY(dataset_id) REFERENCES data_set (id))",
    "CREATE TABLE frames_global (id SERIAL NOT NULL, nbr_frames INTEGER, im_width INTEGER, im_height INTEGER, "
    "nbr_slices INTEGER, nbr_channels INTEGER, im_colors INTEGER, nbr_timepoints INTEGER, nbr_positions INTEGER, "
    "bit_depth VARCHAR, storage_dir VARCHAR, metadata_json JSONB, dataset_id INTEGER, PRIMARY KEY (id), "
    "FOREIGN KEY(dataset_id) REFERENCES data_set (id))",
    "CREATE TABLE frames (id SERIAL NOT NULL, channel_idx INTEGER, slice_idx INTEGER, time_idx INTEGER, "
    "pos_idx INTEGER, channel_name VARCHAR, file_name VARCHAR, sha256 VARCHAR, metadata_json JSONB, "
    "frames_global_id INTEGER, PRIMARY KEY (id), FOREIGN KEY(frames_global_id) REFERENCES frames_global (id))",
]
TABLES = ("data_set", "frames_global", "frames", "file_global")


def create_original_tables(engine: sa.Engine, stamped: bool) -> None:
    """The original's tables; ``stamped``: with alembic_version at 8e0d2514fd1f, as its alembic left them."""
    with engine.begin() as conn:
        for statement in ORIGINAL_DDL:
            conn.exec_driver_sql(statement)
        if stamped:
            conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                                 "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
            conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('8e0d2514fd1f')")


def serial_date_time(serial: str) -> datetime.datetime:
    """The date_time the original derived from a dataset id."""
    return datetime.datetime(*(int(part) for part in serial.split("-")[1:7]))


def encode_as_original(pixels: np.ndarray) -> bytes:
    """The PNG the original stored: cv2.imencode of the array as it held it (colour in the array's order)."""
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def pixel_sha256(pixels: np.ndarray) -> str:
    """The original's checksum: sha256 of the frame's pixel bytes."""
    return hashlib.sha256(pixels.tobytes()).hexdigest()


def insert_data_set(conn: sa.Connection, serial: str, frames: bool, description: str | None = None,
                    microscope: str | None = None, parent_id: int | None = None) -> int:
    return conn.execute(sa.text(
        "INSERT INTO data_set (dataset_serial, description, microscope, frames, date_time, parent_id) "
        "VALUES (:s, :d, :m, :f, :t, :p) RETURNING id"),
        {"s": serial, "d": description, "m": microscope, "f": frames, "t": serial_date_time(serial),
         "p": parent_id}).scalar()


def insert_frames_dataset(conn: sa.Connection, serial: str, frames: dict, channel_names: list[str],
                          metadata: dict | None = None, checksums: str = "pixels", description: str | None = None,
                          parent_id: int | None = None, store=None) -> int:
    """Register ``frames`` {(c, z, t, p): pixels} as the original did; ``store(key, png bytes)`` stores each.

    ``checksums``: "pixels" (the original from 2019) or "none" (before: NULL).
    Returns the data_set id.
    """
    dataset_id = insert_data_set(conn, serial, True, description, "scope A", parent_id)
    first = next(iter(frames.values()))
    storage_dir = f"raw_frames/{serial}"
    counts = [len({key[i] for key in frames}) for i in range(4)]
    frames_global_id = conn.execute(sa.text(
        "INSERT INTO frames_global (nbr_frames, im_width, im_height, nbr_slices, nbr_channels, im_colors, "
        "nbr_timepoints, nbr_positions, bit_depth, storage_dir, metadata_json, dataset_id) "
        "VALUES (:n, :w, :h, :z, :c, :colors, :t, :p, :depth, :dir, CAST(:meta AS JSONB), :ds) RETURNING id"),
        {"n": len(frames), "w": first.shape[1], "h": first.shape[0], "z": counts[1], "c": counts[0],
         "colors": first.shape[2] if first.ndim == 3 else 1, "t": counts[2], "p": counts[3],
         "depth": str(first.dtype), "dir": storage_dir, "meta": json.dumps(metadata or {}), "ds": dataset_id},
    ).scalar()
    for (c, z, t, p), pixels in frames.items():
        file_name = f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png"
        if store is not None:
            store(f"{storage_dir}/{file_name}", encode_as_original(pixels))
        conn.execute(sa.text(
            "INSERT INTO frames (channel_idx, slice_idx, time_idx, pos_idx, channel_name, file_name, sha256, "
            "metadata_json, frames_global_id) VALUES (:c, :z, :t, :p, :name, :file, :sha, CAST(:meta AS JSONB), :fg)"),
            {"c": c, "z": z, "t": t, "p": p, "name": channel_names[c], "file": file_name,
             "sha": pixel_sha256(pixels) if checksums == "pixels" else None,
             "meta": json.dumps({"ChannelIndex": c, "SliceIndex": z, "Exposure-ms": 10 + c}), "fg": frames_global_id})
    return dataset_id


def insert_file_dataset(conn: sa.Connection, serial: str, name: str, data: bytes, store=None,
                        checksum: bool = True) -> int:
    """A file uploaded as is: file_global with the file's sha256 (the original's gen_sha256 of the file)."""
    dataset_id = insert_data_set(conn, serial, False, "a file")
    storage_dir = f"raw_files/{serial}"
    if store is not None:
        store(f"{storage_dir}/{name}", data)
    conn.execute(sa.text(
        "INSERT INTO file_global (storage_dir, file_name, metadata_json, dataset_id, sha256) "
        "VALUES (:dir, :name, CAST(:meta AS JSONB), :ds, :sha)"),
        {"dir": storage_dir, "name": name, "meta": json.dumps({"file_origin": name}), "ds": dataset_id,
         "sha": hashlib.sha256(data).hexdigest() if checksum else None})
    return dataset_id


def dump(engine: sa.Engine) -> dict[str, list[dict]]:
    """Every row of the original's tables, by table, ordered by id, as plain values."""
    tables = {}
    with engine.connect() as conn:
        for table in TABLES:
            rows = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")).mappings()
            tables[table] = [{k: v for k, v in row.items() if k not in ("storage", "storage_access",
                                                                          "s3_endpoint_url")} for row in rows]
    return tables
