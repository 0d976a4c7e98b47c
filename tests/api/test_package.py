"""``imaging_db.connect`` without the API's weight on ``import imaging_db`` (the CLIs import the package)."""

import subprocess
import sys


def test_import_imaging_db_loads_none_of_the_api():
    script = (
        "import sys\n"
        "import imaging_db\n"
        "heavy = ('pandas', 'xarray', 'sqlalchemy', 'numpy', 'dask', 'imaging_db.api')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "connect = imaging_db.connect\n"
        "from imaging_db import Connection, connect as again\n"
        "import imaging_db.api.connection as api\n"
        "print(connect is again is api.connect, Connection is api.Connection, 'connect' in dir(imaging_db))\n"
        "print('dask' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "True True True", "False"]


def test_unknown_attributes_are_still_errors():
    import pytest

    import imaging_db

    with pytest.raises(AttributeError, match="module 'imaging_db' has no attribute 'conect'"):
        imaging_db.conect  # noqa: B018
