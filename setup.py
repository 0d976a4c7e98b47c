"""Packaging for imaging_db."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="imaging_db",
    version="0.1.0",
    description="Data management for microscopy images: 2D PNG frames in S3 or a folder, metadata in SQL",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["imaging_db", "imaging_db.*"]),
    # The migrations folder is not a package: alembic reads its files by path.
    package_data={"imaging_db.database": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"]},
    python_requires=">=3.11",
    install_requires=requirements(),
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
