"""What the package and the Docker image install: every module, every dependency, both console scripts.

No Docker engine runs here, so the Dockerfile is checked for what it copies and installs.
"""

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[=<>!~\[ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def _third_party_imports() -> dict[str, str]:
    """Top-level modules imported anywhere in imaging_db that are neither stdlib nor imaging_db: module -> file."""
    found = {}
    for path in (ROOT / "imaging_db").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "imaging_db" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_module_is_in_a_package():
    """setup.py's find_packages must see every folder of modules (a missing __init__.py drops it silently)."""
    packages = set(find_packages(where=str(ROOT), include=["imaging_db", "imaging_db.*"]))
    folders = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "imaging_db").rglob("*.py")
               if "__pycache__" not in p.parts and "migrations" not in p.parts}
    assert folders <= packages, sorted(folders - packages)


def test_an_install_ships_the_migrations(tmp_path):
    """Alembic reads the migrations by path: they are package data, copied with the modules on install."""
    subprocess.run([sys.executable, "setup.py", "--quiet", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    built = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "imaging_db/database/migrations").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert "imaging_db/database/migrate.py" in built
    assert shipped and shipped <= built, sorted(shipped - built)


def test_every_imported_library_is_a_pinned_requirement():
    requirements = _requirements()
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module, where in _third_party_imports().items():
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        if not names & requirements:
            missing[module] = (where, sorted(names))
    assert not missing, f"imported but not in requirements.txt: {missing}"
    assert {"isal", "numpy", "tifffile", "sqlalchemy", "opencv-python-headless"} <= requirements
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"not pinned: {line}"


def test_console_scripts_point_at_the_cli_mains():
    text = (ROOT / "setup.py").read_text()
    for script in ("data_uploader", "data_downloader", "data_verify"):
        assert f'"{script}=imaging_db.cli.{script}:main"' in text
        module = __import__(f"imaging_db.cli.{script}", fromlist=["main"])
        assert callable(module.main)


def test_dockerfile_copies_what_setup_py_reads_before_installing():
    dockerfile = (ROOT / "Dockerfile.imagingDB").read_text().splitlines()
    copied, installs = set(), []
    for line in dockerfile:
        words = line.split()
        if words[:1] == ["COPY"]:
            copied.update(Path(w).name for w in words[1:-1])
        elif words[:1] == ["RUN"] and "pip install" in line:
            installs.append((line, set(copied)))
    setup_reads = set(re.findall(r'HERE / "([^"]+)"', (ROOT / "setup.py").read_text()))
    assert setup_reads == {"README.md", "imaging_db"}  # the long description, and the version in __init__.py
    requirements_step = [c for line, c in installs if "-r requirements.txt" in line]
    package_step = [c for line, c in installs if line.rstrip().endswith(" .")]
    assert requirements_step and "requirements.txt" in requirements_step[0]
    assert package_step and setup_reads | {"setup.py", "pyproject.toml", "imaging_db"} <= package_step[0]
