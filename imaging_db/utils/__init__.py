"""The original imagingDB's ``imaging_db.utils`` package path, kept for its notebooks' ``db_utils``.

Only :mod:`imaging_db.utils.db_utils` lives here, a re-export of the
compatibility layer (:mod:`imaging_db.compat`).
"""
