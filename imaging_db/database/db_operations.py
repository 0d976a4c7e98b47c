"""The original imagingDB's ``db_operations`` module path, kept for its notebooks: the compatibility layer.

    import imaging_db.database.db_operations as db_ops
    with db_ops.session_scope(credentials_str) as session:
        global_meta, frames_meta = db_ops.DatabaseOperations(dataset_id).get_frames_meta(session, channels=0)

Not the recommended API: new code uses :func:`imaging_db.connect`. Defined in
:mod:`imaging_db.compat.db_operations`; importing this loads pandas.
"""

from imaging_db.compat.db_operations import (Base, DatabaseOperations, DataSet, FileGlobal, Frames, FramesGlobal,
                                             get_datasets, session_scope, test_connection)

__all__ = ["Base", "DataSet", "DatabaseOperations", "FileGlobal", "Frames", "FramesGlobal", "get_datasets",
           "session_scope", "test_connection"]
