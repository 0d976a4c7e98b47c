"""One frame of an upload: encode it as PNG, hash it, store it, and make its database row."""

import hashlib
from dataclasses import dataclass

from imaging_db.database.frames_summary import SummaryBuilder
from imaging_db.errors import ImagingDBError
from imaging_db.faults import fault_point
from imaging_db.filestorage import DataStorage, ObjectWriter, StoredObject
from imaging_db.images.png import encode_png, png_pieces
from imaging_db.images.splitters import Frame
from imaging_db.json_text import to_json_text
from imaging_db.pipeline import keys


@dataclass
class StoredFrame:
    """What storing one frame gave: its frames row, raw and stored sizes, and whether it was already stored."""

    row: dict
    raw_bytes: int
    stored_bytes: int
    skipped: bool


def _already_stored(storage: DataStorage, key: str, data: bytes, sha256: str,
                    existing: dict[str, StoredObject]) -> bool:
    """Whether ``key`` already holds ``data`` (a resumed upload keeps it), judged by the listing where it can."""
    stored = existing.get(key)
    if stored is None or stored.size != len(data):
        return False
    if stored.md5 is not None:
        return stored.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    try:
        return hashlib.sha256(storage.get(key)).hexdigest() == sha256
    except ImagingDBError:
        return False

def store_frame(frame: Frame, prefix: str, storage: DataStorage, writer: ObjectWriter,
                existing: dict[str, StoredObject], compression: int | None, summary: SummaryBuilder) -> StoredFrame:
    """Encode one frame as PNG, hash it and store it under ``prefix`` (in an encoding worker).

    Its metadata is counted in the dataset's ``summary`` too.

    With ``existing`` (a resumed upload) an object already stored with the
    same content is kept, and one of other content, left by an earlier run
    of this dataset id, is replaced. Otherwise the PNG streams to the writer
    piece by piece as it is encoded.

    Returns
    -------
    StoredFrame
        The frame's database row and its sizes.
    """
    pixels = frame.pixels
    file_name = keys.frame_file_name(*frame.indices)
    key = f"{prefix}/{file_name}"
    skipped = False
    if existing:
        # Resuming: the whole PNG is needed to compare it with what is already stored.
        png = encode_png(pixels, compression)
        sha256 = hashlib.sha256(png).hexdigest()
        stored_bytes = len(png)
        skipped = _already_stored(storage, key, png, sha256, existing)
        if not skipped:
            if key in existing:
                # Left by an earlier run of this id with other content (another source file or
                # setting): ours to replace, as this run holds the id's claim.
                storage.delete(key)
            writer.put(key, png)
        del png
    else:
        hasher = hashlib.sha256()

        def hashed(pieces):
            for piece in pieces:
                hasher.update(piece)
                fault_point("upload.encoded_piece")
                yield piece

        stored_bytes = writer.put_stream(key, hashed(png_pieces(pixels, compression)))
        sha256 = hasher.hexdigest()
    row = {
        "channel_idx": frame.channel_idx,
        "slice_idx": frame.slice_idx,
        "time_idx": frame.time_idx,
        "pos_idx": frame.pos_idx,
        "channel_name": frame.channel_name,
        "file_name": file_name,
        "sha256": sha256,
        # Serialized here, in parallel with the encoding, so the commit only sends text.
        "metadata_json": to_json_text(frame.metadata),
    }
    summary.add(frame.metadata)
    return StoredFrame(row, pixels.nbytes, stored_bytes, skipped)
