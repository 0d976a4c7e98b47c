"""The compatibility layer: the original imagingDB's notebook API, as a thin layer over imaging_db's own.

Notebooks written for the original (czbiohub/imagingDB) run unchanged; they
import it from the original's module paths:

    import imaging_db.database.db_operations as db_ops      # session_scope, Base, DataSet, FramesGlobal,
                                                            # Frames, FileGlobal, get_datasets, DatabaseOperations
    import imaging_db.utils.db_utils as db_utils            # get_connection_str
    import imaging_db.filestorage.local_storage as local_storage   # LocalStorage(storage_dir, nbr_workers, access_point)
    import imaging_db.filestorage.s3_storage as s3_storage         # S3Storage(storage_dir, nbr_workers, access_point)

It is not the recommended API: new code uses :func:`imaging_db.connect`,
whose ``find_datasets``, ``frames_meta`` and ``get_stack`` do the same with
labelled arrays, lazy reading and storage overrides. The layer only reads:
uploads go through ``data_uploader``.

Modules: :mod:`~imaging_db.compat.session` (``session_scope`` and the
databases it opened), :mod:`~imaging_db.compat.db_operations`,
:mod:`~imaging_db.compat.db_utils`, :mod:`~imaging_db.compat.storage`.
Importing this package imports none of them.
"""
