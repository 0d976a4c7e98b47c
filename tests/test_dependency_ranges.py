"""The package's metadata: version ranges in setup.py (pins only in requirements.txt), a pyproject.toml build
system, and the built wheel installing with the oldest versions its ranges allow, where the core tests pass.

The slow test builds the wheel, installs it in a new virtual environment with every dependency at the lower
bound of its range (pip's resolver must accept that), and runs the core of this test suite there, from a copy of
the tests so that the checkout is not on the path. Wheels come from a folder kept between runs
(``~/.cache/imaging_db/oldest-wheelhouse``, or ``$IMAGING_DB_OLDEST_WHEELHOUSE``), filled by ``pip download``.
"""

import ast
import email.parser
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.test_packaging import _third_party_imports

ROOT = Path(__file__).resolve().parents[1]
# The core of the suite, run against the oldest versions: the database layer on SQLite and PostgreSQL, and, on
# SQLite, every input format, the pipelines through the commands on a folder and on S3 (moto), the query
# command and the Python API.
DATABASE_TESTS = ("tests/database",)
CORE_TESTS = ("tests/images", "tests/metadata", "tests/api/test_stack.py", "tests/api/test_metadata.py",
              "tests/cli/test_end_to_end.py", "tests/cli/test_query_data.py", "tests/pipeline/test_export_formats.py")
# What those tests need besides the package (as requirements-dev.txt pins them).
TEST_TOOLS = ("pytest", "pytest-timeout", "pillow", "moto", "PyYAML", "tensorstore", "ml_dtypes")


def _install_requires() -> list[Requirement]:
    """setup.py's INSTALL_REQUIRES, read without running setup.py."""
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "INSTALL_REQUIRES" for t in node.targets):
            return [Requirement(text) for text in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no INSTALL_REQUIRES")


def _pin_lines(name: str) -> dict[str, str]:
    """{normalized name: the whole line} of a requirements file's pins (``moto[server]==5.2.5``)."""
    return {_normalized(Requirement(line).name): line for line in _lines(name)}


def _lines(name: str) -> list[str]:
    lines = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def _pins(name: str) -> dict[str, str]:
    """{normalized name: version} of a requirements file's ``name==version`` lines (extras dropped)."""
    pins = {}
    for line in _lines(name):
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{name}: {line} is not an exact pin"
        pins[_normalized(requirement.name)] = specifier.version
    return pins


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _lower_bound(requirement: Requirement) -> str:
    bounds = [s.version for s in requirement.specifier if s.operator == ">="]
    assert len(bounds) == 1, f"setup.py: {requirement} needs one lower bound (>=), the oldest version tested"
    return bounds[0]


def test_setup_py_gives_ranges_and_requirements_txt_pins_inside_them():
    ranges = {_normalized(r.name): r for r in _install_requires()}
    pins = _pins("requirements.txt")  # may pin more: what those need, for a reproducible environment
    assert ranges.keys() <= pins.keys(), f"not pinned in requirements.txt: {sorted(ranges.keys() - pins.keys())}"
    for name, requirement in ranges.items():
        _lower_bound(requirement)
        assert not any(s.operator == "==" for s in requirement.specifier), f"setup.py pins {requirement}"
        assert requirement.specifier.contains(pins[name]), f"requirements.txt's {name}=={pins[name]} is outside " \
                                                            f"setup.py's {requirement}"


def test_every_imported_library_has_a_range():
    """A library imported anywhere in imaging_db is a dependency of the package, not only of the environment."""
    ranges = {_normalized(r.name) for r in _install_requires()}
    distributions = importlib.metadata.packages_distributions()
    missing = {module: where for module, where in _third_party_imports().items()
               if not {_normalized(d) for d in distributions.get(module, [])} & ranges}
    assert not missing, f"imported but not in setup.py's INSTALL_REQUIRES: {missing}"


def test_pyproject_declares_the_build_system():
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    assert any(Requirement(r).name == "setuptools" for r in build["requires"])


def _wheelhouse(constraints: str) -> Path:
    """Wheels for the oldest versions, the test tools and the build backend, downloaded once per constraints."""
    wheelhouse = Path(os.environ.get("IMAGING_DB_OLDEST_WHEELHOUSE")
                      or Path.home() / ".cache/imaging_db/oldest-wheelhouse")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    complete = wheelhouse / f".complete-{hashlib.sha256(constraints.encode()).hexdigest()[:16]}"
    with open(wheelhouse / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run filling it at the same time
        if not complete.exists():
            (wheelhouse / "constraints.txt").write_text(constraints)
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheelhouse),
                 "-r", str(wheelhouse / "constraints.txt"), "setuptools", "wheel"],
                capture_output=True, text=True, timeout=900)
            if result.returncode:
                pytest.fail(f"pip download of the oldest versions failed:\n{result.stderr[-3000:]}")
            complete.touch()
    return wheelhouse


def _wheel_requirements(wheel: Path) -> list[Requirement]:
    """The Requires-Dist of a built wheel: what pip installs it with."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    return [Requirement(text) for text in metadata.get_all("Requires-Dist") or []]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_wheel_installs_with_the_oldest_allowed_versions_and_the_core_tests_pass(tmp_path):
    dev_pins = _pin_lines("requirements-dev.txt")
    # Nothing of this process's environment may point at the checkout or another environment.
    clean = {key: value for key, value in os.environ.items()
             if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not key.startswith("PIP_")}
    offline = {**clean, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_NO_COMPILE": "1"}
    # The wheel, built by the build system pyproject.toml names (an isolated build, from the wheelhouse).
    ranges = _install_requires()
    oldest = [f"{r.name}=={_lower_bound(r)}" for r in ranges]
    tools = [dev_pins[_normalized(name)] for name in TEST_TOOLS]
    wheelhouse = _wheelhouse("\n".join(oldest + tools) + "\n")
    offline["PIP_FIND_LINKS"] = str(wheelhouse)
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist),
                            str(ROOT)], capture_output=True, text=True, env=offline, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("imaging_db-*.whl")
    assert sorted(map(str, _wheel_requirements(wheel))) == sorted(map(str, ranges))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    (tmp_path / "oldest.txt").write_text("\n".join(oldest) + "\n")
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", str(tmp_path / "oldest.txt"),
                              str(wheel), *tools], capture_output=True, text=True, env=offline, timeout=600)
    assert install.returncode == 0, f"pip cannot install the wheel with the oldest versions:\n{install.stderr[-3000:]}"
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, env=offline)
    assert check.returncode == 0, check.stdout
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format", "freeze"], capture_output=True,
                               text=True, check=True).stdout
    versions = {_normalized(line.split("==")[0]): line.split("==")[1] for line in installed.split()}
    assert {_normalized(r.name): Version(versions[_normalized(r.name)]) for r in ranges} == \
        {_normalized(r.name): Version(_lower_bound(r)) for r in ranges}

    # The core tests, from a copy: the package is the installed wheel's, not the checkout's.
    run = tmp_path / "run"
    shutil.copytree(ROOT / "tests", run / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pytest.ini", run)
    env = clean
    where = subprocess.run([str(python), "-c", "import imaging_db; print(imaging_db.__file__)"], cwd=run,
                           capture_output=True, text=True, check=True, env=env).stdout
    assert str(venv) in where
    for paths, markers in ((DATABASE_TESTS, "not slow and not large"),
                           (CORE_TESTS, "not postgresql and not slow and not large")):
        tests = subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", markers,
             # These run the checkout's scripts by path, which a wheel does not have.
             "-k", "not runs_as_a_script and not as_scripts", *paths],
            cwd=run, capture_output=True, text=True, env=env, timeout=1200)
        assert tests.returncode == 0, tests.stdout[-6000:]
