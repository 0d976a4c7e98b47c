"""Packaging for imaging_db."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


# What the package needs, as ranges, so that it installs next to napari, Jupyter and the lab's other tools.
# The lower bounds are tested: tests/test_dependency_ranges.py installs the built wheel with exactly these oldest
# versions and runs the core of the test suite there. requirements.txt pins the versions `make` installs
# (each inside its range here; a test checks), for a reproducible environment.
INSTALL_REQUIRES = [
    "numpy>=2.0,<3",
    "tifffile>=2024.8.10",
    "opencv-python-headless>=4.10.0.84",
    "SQLAlchemy>=2.0.30,<3",
    "psycopg2-binary>=2.9.9,<3",
    "boto3>=1.35.2",  # S3 conditional writes (If-None-Match), which storage relies on, came in 1.35.2
    "botocore>=1.35.2",
    "tqdm>=4.66,<5",
    "jsonschema>=4.21,<5",
    "isal>=1.7,<2",
    "alembic>=1.13,<2",
    "pandas>=2.2.2,<4",  # the first pandas built for numpy 2
    "xarray>=2024.7.0",
    "dask>=2024.8.0",
    # Any OME-TIFF: the OME-XML read with the OME data model (0.x: its API may change); lxml converts the
    # OME-XML of older schemas.
    "ome-types>=0.6.0,<0.8",
    "lxml>=5.0,<7",
    # OME-Zarr export: zarr-python writes the arrays, yaozarrs (0.x: its API may change) the NGFF metadata.
    "zarr>=3.1.6,<4",
    "yaozarrs>=0.3.4,<0.4",
]


setup(
    name="imaging_db",
    # One version, imaging_db.__version__, which --version prints (read here without importing the package).
    version=re.search(r'^__version__ = "([^"]+)"', (HERE / "imaging_db" / "__init__.py").read_text(), re.M)[1],
    description="Data management for microscopy images: 2D PNG frames in S3 or a folder, metadata in SQL",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["imaging_db", "imaging_db.*"]),
    # The migrations folder is not a package: alembic reads its files by path.
    package_data={"imaging_db.database": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"]},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    entry_points={
        "console_scripts": [
            "data_uploader=imaging_db.cli.data_uploader:main",
            "data_downloader=imaging_db.cli.data_downloader:main",
            "data_verify=imaging_db.cli.data_verify:main",
            "imaging_db_migrate=imaging_db.cli.imaging_db_migrate:main",
            "query_data=imaging_db.cli.query_data:main",
        ]
    },
)
