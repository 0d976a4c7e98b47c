"""The lab-server image (Dockerfile.imagingDB, .dockerignore, docker/) and docker-compose.yml, without a Docker engine.

The static tests read the three files as Docker and Compose would. The slow ones (marked ``slow``; they run in
``make test``) do what the image's build does in a new virtual environment with no access to the checkout: the
files that the Dockerfile copies, filtered by .dockerignore, are laid out in a folder standing for the image's
file system, and the Dockerfile's own ``pip install`` lines run there. Then the console scripts, the entrypoint,
Jupyter Lab with the image's command, and the example notebooks run against that install.

The dependencies come from a wheelhouse kept between runs (``~/.cache/imaging_db/wheelhouse``, or
``$IMAGING_DB_WHEELHOUSE``), filled with ``pip download`` when requirements.txt or requirements-docker.txt change:
pip's own cache does not help when the index's answers are not cacheable.
"""

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.requirements import Requirement

from tests.test_dependency_ranges import _install_requires

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.imagingDB"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DEV_BIN = Path(sys.executable).parent
CONSOLE_SCRIPTS = ("data_uploader", "data_downloader", "data_verify", "imaging_db_migrate", "query_data")
NOTEBOOKS = ("database_queries.ipynb", "jsonb_queries.ipynb")
# Names under which a value would be a credential.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|KEY_ID|CREDENTIAL|ROOT_USER", re.IGNORECASE)
# What a credential may be written as in the compose file: taken from the environment, with no default.
FROM_ENVIRONMENT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?-)?\}")


# --------------------------------------------------------------------------- reading the Dockerfile
def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):  # also inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def _exec_form(arguments: str) -> list[str]:
    """A CMD or ENTRYPOINT in JSON (exec) form, as a list; anything else fails the test."""
    try:
        words = json.loads(arguments)
    except json.JSONDecodeError:
        pytest.fail(f"not in JSON (exec) form, so signals would not reach the program: {arguments}")
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), arguments
    return words


def _variables() -> dict[str, str]:
    """The ARG defaults and ENV values of the image, in the order the Dockerfile sets them."""
    values = {}
    for keyword, arguments in _instructions():
        if keyword == "ARG" and "=" in arguments:
            name, _, default = arguments.partition("=")
            values[name.strip()] = default.strip()
        elif keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                values[name] = _expand(value, values)
    return values


def _expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: values.get(m[1], os.environ.get(m[1], "")), text)


def _copies() -> list[tuple[list[str], list[str], str, str]]:
    """Each COPY as (flags, sources, destination, WORKDIR at that point)."""
    copies, workdir = [], "/"
    for keyword, arguments in _instructions():
        if keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / arguments)
        elif keyword == "COPY":
            words = shlex.split(arguments)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            copies.append((flags, paths[:-1], paths[-1], workdir))
    return copies


# --------------------------------------------------------------------------- .dockerignore, as Docker reads it
def _glob_regex(pattern: str) -> re.Pattern:
    """Docker's pattern syntax (Go's filepath.Match plus ``**``) as a regular expression on the whole path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _ignore_patterns() -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
        patterns.append((negated, _glob_regex(pattern)))
    return patterns


def _ignored(path: str, patterns: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out: the last pattern matching it or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negated, regex in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def _context_files(source: str, patterns) -> list[Path]:
    """The files under ``source`` (a path in the checkout) that reach the build context."""
    path = ROOT / source
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [f for f in files if not _ignored(f.relative_to(ROOT).as_posix(), patterns)]


# --------------------------------------------------------------------------- the compose file
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict) -> dict:
    """A service's environment as a dict; a name without a value (passed on from the host) maps to None."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return environment


def _volumes(service: dict) -> dict[str, tuple[str, str]]:
    """A service's volumes (short syntax) as {target: (source, options)}."""
    volumes = {}
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short syntax, as the rest of the file: {entry}"
        # The source may hold ${VAR:-default}, whose default may hold a colon: split from the right.
        source, target, *options = re.split(r":(?![^{]*\})", entry)
        volumes[target] = (source, ",".join(options))
    return volumes


def test_compose_file_has_the_lab_services(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "minio-bucket", "imaging_db"}
    # PostgreSQL and imaging_db always start; MinIO (and the job making its bucket) only with --profile minio.
    assert "profiles" not in services["postgres"] and "profiles" not in services["imaging_db"]
    assert services["minio"]["profiles"] == ["minio"] and services["minio-bucket"]["profiles"] == ["minio"]
    assert "version" not in compose, "the top-level version key is obsolete in Compose v2"
    for name in ("postgres", "minio", "imaging_db"):
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name
    assert set(compose["volumes"]) == {"postgres_data", "minio_data", "imaging_db_home", "imaging_db_work"}


def test_compose_interpolations_are_well_formed():
    text = COMPOSE.read_text().replace("$$", "")
    for match in re.finditer(r"\$(\{[^}]*\}|[A-Za-z_]\w*)?", text):
        assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}", match[0]), \
            f"bad interpolation {match[0]!r}: ${{VAR}}, ${{VAR:-default}}, or $$ for a literal $"
    # ${VAR:?message} would stop `docker compose up` for a variable of a service whose profile is off.
    assert ":?" not in text


def test_postgres_service(compose):
    postgres = compose["services"]["postgres"]
    image, _, tag = postgres["image"].partition(":")
    assert image == "postgres" and re.match(r"\d+(\.\d+)?-", tag), "pin the major version (data format)"
    environment = _environment(postgres)
    assert environment["POSTGRES_DB"] == "imaging_db"
    assert "POSTGRES_PASSWORD" not in environment
    assert environment["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert postgres["secrets"] == ["postgres_password"]
    assert "postgres_password" in compose["secrets"]
    assert "/var/lib/postgresql/data" in _volumes(postgres)
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert postgres["ports"] == ["${POSTGRES_BIND:-127.0.0.1}:${POSTGRES_PORT:-5432}:5432"]


def test_minio_service(compose):
    minio, bucket = compose["services"]["minio"], compose["services"]["minio-bucket"]
    assert re.fullmatch(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", minio["image"])
    assert bucket["image"] == minio["image"]
    assert minio["command"][:2] == ["server", "/data"] and "/data" in _volumes(minio)
    assert minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    # MinIO's root credentials are the S3 credentials imaging_db is given, taken from the environment.
    for service in (minio, bucket):
        environment = _environment(service)
        assert environment["MINIO_ROOT_USER"] == "${AWS_ACCESS_KEY_ID:-}"
        assert environment["MINIO_ROOT_PASSWORD"] == "${AWS_SECRET_ACCESS_KEY:-}"
    assert bucket["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert "mc mb --ignore-existing" in bucket["command"][0]
    assert [p.split(":")[-1] for p in minio["ports"]] == ["9000", "9001"]


def test_imaging_db_service(compose):
    service = compose["services"]["imaging_db"]
    variables = _variables()
    assert service["build"]["context"] == "."
    assert (ROOT / service["build"]["dockerfile"]) == DOCKERFILE
    assert set(service["build"]["args"]) <= {name for keyword, arguments in _instructions() if keyword == "ARG"
                                             for name in [arguments.partition("=")[0]]}
    assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert service["init"] is True, "an init process reaps the kernels' children and passes signals on"
    # The login is a mounted secret; the entrypoint migrates the database with it.
    environment = _environment(service)
    secret = PurePosixPath(environment["IMAGING_DB_LOGIN"])
    assert secret.parent == PurePosixPath("/run/secrets") and service["secrets"] == [secret.name]
    assert compose["secrets"][secret.name]["file"].endswith("/db_login.json")
    # AWS settings and the Jupyter token are passed on from the host only when set there.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "JUPYTER_TOKEN"):
        assert name in environment and environment[name] is None, name
    volumes = _volumes(service)
    assert volumes[variables["IMAGING_DB_HOME"]][0] == "${IMAGING_DB_HOME_DIR:-imaging_db_home}"
    assert volumes["/home/imaging/work"][0] == "imaging_db_work"
    assert volumes["/home/imaging/.aws"] == ("${AWS_CONFIG_DIR:-~/.aws}", "ro")
    assert volumes["/data/acquisitions"][1] == "ro"
    assert service["ports"] == ["${JUPYTER_BIND:-127.0.0.1}:${JUPYTER_PORT:-8888}:8888"]
    assert "8888/api" in " ".join(service["healthcheck"]["test"])
    assert "command" not in service and "entrypoint" not in service, "the image's entrypoint and command run"


def test_no_credentials_in_the_image_or_the_compose_file(compose):
    """Every credential comes from the environment or a mounted file, with no default, not even a placeholder.

    A default password on a lab server is the one that stays. None is needed: PostgreSQL reads its password
    from a secret file, and MinIO refuses to start with empty root credentials.
    """
    for name, service in compose["services"].items():
        settings = {**_environment(service), **(service.get("build", {}).get("args") or {})}
        for key, value in settings.items():
            if not SECRET_NAME.search(key):
                continue
            if key.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), (name, key, value)
            else:
                assert value is None or FROM_ENVIRONMENT.fullmatch(str(value)), \
                    f"{name}: {key} must come from the environment with no default, not {value!r}"
    for keyword, arguments in _instructions():
        if keyword in ("ENV", "ARG"):
            names = [pair.partition("=")[0] for pair in shlex.split(arguments)]
            assert not any(SECRET_NAME.search(n) for n in names), f"a credential in the image: {keyword} {arguments}"
    for path in (DOCKERFILE, COMPOSE, DOCKERIGNORE, ENTRYPOINT, ROOT / "requirements-docker.txt"):
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}", text), f"an AWS key id in {path.name}"
        assert "minioadmin" not in text, f"MinIO's well-known default credentials in {path.name}"
        for match in re.finditer(r"(?i)(password|secret|token)['\"]?[ \t]*[:=][ \t]*['\"]?([^\s'\"]+)", text):
            assert match[2].startswith("$"), f"a literal credential in {path.name}: {match[0]}"
    copied = {source for _, sources, _, _ in _copies() for source in sources}
    assert not copied & {"db_credentials.json", "secrets", ".env", ".aws"}


def test_the_base_image_is_pinned():
    froms = [arguments for keyword, arguments in _instructions() if keyword == "FROM"]
    assert len(froms) == 1
    image, _, tag = froms[0].partition(":")
    assert image == "python" and tag and "latest" not in tag
    # The Python the pins are tested on (setup.py: python_requires >= 3.11), on a named Debian release.
    assert re.fullmatch(r"3\.11(\.\d+)?-slim-bookworm", tag), tag
    assert re.search(r'python_requires=">=3\.11"', (ROOT / "setup.py").read_text())


def test_every_file_the_dockerfile_copies_is_in_the_build_context():
    patterns = _ignore_patterns()
    copies = _copies()
    assert copies
    for flags, sources, _, _ in copies:
        assert not any(f.startswith("--from") for f in flags)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the checkout"
            assert _context_files(source, patterns), f"COPY {source}: .dockerignore leaves it out of the context"
    notebooks = {p.name for p in _context_files("notebooks", patterns)}
    assert {*NOTEBOOKS, "demo_setup.py"} <= notebooks


def test_dockerignore_keeps_the_checkout_s_clutter_out():
    patterns = _ignore_patterns()
    for path in (".venv/bin/python", ".git/HEAD", "demo_data/acquisition.ome.tif", "demo_home/imaging_db.sqlite",
                 "demo_download/x.png", "benchmarks/data/large.ome.tif", "benchmarks/bench.py",
                 ".pytest_cache/v/cache", "imaging_db/__pycache__/defaults.cpython-311.pyc",
                 "imaging_db/cli/__pycache__/x.pyc", "notebooks/.ipynb_checkpoints/x-checkpoint.ipynb",
                 "imaging_db.egg-info/PKG-INFO", "build/lib/imaging_db/__init__.py", "dist/x.whl",
                 "secrets/db_login.json", "secrets/postgres_password", ".env", "db_credentials.json",
                 "tests/conftest.py", "acquisitions/files.csv", "Dockerfile.imagingDB", "docker-compose.yml"):
        assert _ignored(path, patterns), f"{path} would be sent to the builder"
    for path in ("setup.py", "requirements.txt", "imaging_db/__init__.py", "imaging_db/database/migrations/env.py",
                 "notebooks/database_queries.ipynb", "docker/entrypoint.sh"):
        assert not _ignored(path, patterns), path


def test_the_image_runs_as_a_non_root_user():
    variables = _variables()
    users = [_expand(arguments, variables) for keyword, arguments in _instructions() if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid != "0", users[-1]
    useradd = next(arguments for keyword, arguments in _instructions() if keyword == "RUN" and "useradd" in arguments)
    assert '--uid "$IMAGING_DB_UID"' in useradd
    # The folders that volumes are mounted on belong to that user, so that new volumes do too.
    for folder in (variables["IMAGING_DB_HOME"], "/home/imaging/work"):
        assert folder in useradd.split("chown", 1)[1], folder
    assert variables["IMAGING_DB_HOME"] == "/data/imaging_db"


def test_the_image_starts_jupyter_with_a_token():
    instructions = _instructions()
    assert ("EXPOSE", "8888") in instructions
    cmd = _exec_form(next(arguments for keyword, arguments in instructions if keyword == "CMD"))
    assert cmd[:2] == ["jupyter", "lab"]
    assert "--ip=0.0.0.0" in cmd and "--port=8888" in cmd and "--no-browser" in cmd
    # The token is Jupyter's own: $JUPYTER_TOKEN, $JUPYTER_TOKEN_FILE or a random one; nothing may turn it off.
    for word in cmd:
        assert not re.search(r"(?i)token|password|disable_check_xsrf|allow.root|allow_origin", word), word
    entrypoint = _exec_form(next(arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"))
    [(flags, _, destination, _)] = [c for c in _copies() if c[1] == ["docker/entrypoint.sh"]]
    assert "--chmod=0755" in flags and entrypoint == [PurePosixPath(destination).name]
    assert destination.startswith("/usr/local/bin/")


def test_dependencies_are_installed_before_the_code_is_copied():
    """A change to the code or the notebooks rebuilds from the code's COPY on, reusing the dependency layers."""
    instructions = _instructions()
    steps = [(i, arguments) for i, (keyword, arguments) in enumerate(instructions) if keyword in ("COPY", "RUN", "ARG")]
    position = {arguments: i for i, arguments in steps}
    requirements = position["pip install --no-cache-dir -r requirements.txt"]
    docker_extras = position["pip install --no-cache-dir -r requirements-docker.txt"]
    package = position["pip install --no-cache-dir --no-deps ."]
    first_code = min(i for i, arguments in steps if instructions[i][0] == "COPY"
                     and not re.fullmatch(r"requirements(-docker)?\.txt \./", arguments))
    assert requirements < docker_extras < first_code < package
    assert position["IMAGING_DB_UID=1000"] > docker_extras, "an ARG before the installs would invalidate them"
    assert position["imaging_db ./imaging_db"] < package
    assert "-c requirements.txt" in (ROOT / "requirements-docker.txt").read_text()


def test_dockerfile_follows_the_hadolint_rules():
    for keyword, arguments in _instructions():
        assert keyword != "ADD", "COPY, not ADD (DL3020)"
        assert keyword != "MAINTAINER"
        if keyword == "WORKDIR":
            assert arguments.startswith("/"), "absolute WORKDIR (DL3000)"
        if keyword in ("CMD", "ENTRYPOINT"):
            _exec_form(arguments)
        if keyword != "RUN":
            continue
        assert not re.search(r"\bsudo\b|\bcd\b", arguments), "no sudo (DL3004), WORKDIR instead of cd (DL3003)"
        for command in re.split(r"&&|;", arguments):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                assert "--no-cache-dir" in words, f"pip cache in a layer (DL3042): {command}"
                named = [word for previous, word in zip(words[1:], words[2:])
                         if not word.startswith("-") and word != "." and previous not in ("-r", "-c")]
                assert all("==" in word for word in named), f"unpinned pip install (DL3013): {command}"
        if "apt-get install" in arguments:
            assert "apt-get update" in arguments and "--no-install-recommends" in arguments  # DL3009, DL3015
            assert "rm -rf /var/lib/apt/lists/*" in arguments, "apt lists left in the layer (DL3009)"


# --------------------------------------------------------------------------- the entrypoint, on the checkout's install
def _run_entrypoint(tmp_path, *command, **environment) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}",
           "IMAGING_DB_HOME": str(tmp_path / "home"), **environment}
    return subprocess.run(["sh", str(ENTRYPOINT), *command], env=env, capture_output=True, text=True, timeout=60)


def _sqlite_login(tmp_path) -> Path:
    login = tmp_path / "db_login.json"
    login.write_text(json.dumps({"drivername": "sqlite", "dbname": str(tmp_path / "lab.sqlite")}))
    return login


def test_entrypoint_runs_the_command_without_a_login(tmp_path):
    assert os.stat(ENTRYPOINT).st_mode & 0o111, "executable in the checkout too, to run it by hand"
    result = _run_entrypoint(tmp_path, "sh", "-c", 'echo "ran: $0 $1"', "a b", "c", IMAGING_DB_LOGIN="")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran: a b c\n" and result.stderr == ""
    assert not (tmp_path / "home").exists(), "no database is made without a login"


def test_entrypoint_migrates_the_database_of_a_mounted_login_first(tmp_path):
    login = _sqlite_login(tmp_path)
    result = _run_entrypoint(tmp_path, "imaging_db_migrate", "--check", "--login", str(login),
                             IMAGING_DB_LOGIN=str(login))
    assert result.returncode == 0, result.stderr
    # The migration reports on stderr; the command's output is the only thing on stdout.
    assert "schema upgraded from revision empty to" in result.stderr
    assert result.stdout.strip().endswith("up to date") and "upgraded" not in result.stdout
    again = _run_entrypoint(tmp_path, "true", IMAGING_DB_LOGIN=str(login))
    assert again.returncode == 0 and "already up to date" in again.stderr


def test_entrypoint_skips_the_migration_when_asked(tmp_path):
    login = _sqlite_login(tmp_path)
    result = _run_entrypoint(tmp_path, "true", IMAGING_DB_LOGIN=str(login), IMAGING_DB_MIGRATE="0")
    assert result.returncode == 0 and result.stderr == ""
    assert not (tmp_path / "lab.sqlite").exists()


def test_entrypoint_refuses_a_login_that_is_not_there(tmp_path):
    result = _run_entrypoint(tmp_path, "touch", str(tmp_path / "ran"), IMAGING_DB_LOGIN="/run/secrets/db_login")
    assert result.returncode == 2
    assert "IMAGING_DB_LOGIN is /run/secrets/db_login, which is not a file that uid" in result.stderr
    assert not (tmp_path / "ran").exists()


def test_entrypoint_stops_when_the_migration_fails(tmp_path):
    login = tmp_path / "db_login.json"
    login.write_text(json.dumps({"drivername": "oracle", "dbname": "x"}))
    result = _run_entrypoint(tmp_path, "touch", str(tmp_path / "ran"), IMAGING_DB_LOGIN=str(login))
    assert result.returncode != 0 and "unknown drivername 'oracle'" in result.stderr
    assert not (tmp_path / "ran").exists()


# --------------------------------------------------------------------------- the image's install, in a new venv
def _wheelhouse() -> Path:
    """A folder of wheels for requirements.txt, requirements-docker.txt and the build backend, made once."""
    wheelhouse = Path(os.environ.get("IMAGING_DB_WHEELHOUSE") or Path.home() / ".cache/imaging_db/wheelhouse")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(b"".join((ROOT / name).read_bytes() for name in
                                     ("requirements.txt", "requirements-docker.txt"))).hexdigest()[:16]
    complete = wheelhouse / f".complete-{digest}"
    with open(wheelhouse / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run filling it at the same time
        if not complete.exists():
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheelhouse),
                 "-r", "requirements.txt", "-r", "requirements-docker.txt", "setuptools", "wheel"],
                cwd=ROOT, capture_output=True, text=True, timeout=600)
            if result.returncode:
                pytest.fail(f"pip download of the image's requirements failed:\n{result.stderr[-3000:]}")
            complete.touch()
    return wheelhouse


def _lay_out_the_image(image_root: Path) -> None:
    """Copy what each COPY copies from the build context (as .dockerignore filters it) under ``image_root``."""
    patterns = _ignore_patterns()
    for _, sources, destination, workdir in _copies():
        target = image_root / str(PurePosixPath(workdir) / destination).lstrip("/")
        into_folder = destination.endswith("/") or len(sources) > 1
        for source in sources:
            base = ROOT / source
            for file in _context_files(source, patterns):
                if base.is_dir():
                    path = target / file.relative_to(base)
                else:
                    path = target / file.name if into_folder else target
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, path)


def _clean_environment(home: Path, **extra) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not key.startswith(("PIP_", "JUPYTER"))}
    return {**env, "HOME": str(home), "MPLCONFIGDIR": str(home / ".config/matplotlib"), **extra}


@pytest.fixture(scope="module")
def image_install(tmp_path_factory):
    """The image's file system under a temporary folder, with its venv installed by the Dockerfile's pip lines.

    Returns (image_root, venv, home, seconds): seconds is how long the install took.
    """
    started = time.monotonic()
    wheelhouse = _wheelhouse()
    image_root = tmp_path_factory.mktemp("image")
    _lay_out_the_image(image_root)
    variables = _variables()
    venv = image_root / variables["VIRTUAL_ENV"].lstrip("/")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    home = image_root / "home/imaging"
    # Offline, from the wheelhouse only, ignoring this machine's pip configuration; no .pyc (not what is tested).
    env = _clean_environment(home, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse),
                             PIP_NO_COMPILE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    workdir, installs = "/", 0
    for keyword, arguments in _instructions():
        if keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / arguments)
        if keyword != "RUN":
            continue
        for command in arguments.split("&&"):
            words = shlex.split(command)
            if words[:2] != ["pip", "install"]:
                continue  # the venv is made above; users and folders are the image's business
            # This pip, run for the new venv's Python (pip --python), as `pip` is in the image.
            result = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), *words[1:]],
                                    cwd=image_root / workdir.lstrip("/"), env=env, capture_output=True, text=True,
                                    timeout=600)
            assert result.returncode == 0, f"RUN {command.strip()} failed:\n{result.stderr[-3000:]}"
            installs += 1
    assert installs == 3
    return image_root, venv, home, time.monotonic() - started


def _run(venv: Path, home: Path, *command, cwd=None, **environment) -> subprocess.CompletedProcess:
    env = _clean_environment(home, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", **environment)
    return subprocess.run(command, cwd=cwd or home, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_image_s_install_steps_succeed_in_a_new_venv(image_install, record_property):
    _, venv, home, seconds = image_install
    record_property("install_seconds", round(seconds, 1))
    print(f"the image's install steps took {seconds:.0f} s")
    result = _run(venv, home, "python", "-c", "import sys, imaging_db; print(sys.prefix, imaging_db.__file__)")
    prefix, module = result.stdout.split()
    assert result.returncode == 0 and Path(prefix) == venv
    # The installed package, not the checkout nor the copied source.
    assert Path(module).is_relative_to(venv / "lib") and not Path(module).is_relative_to(ROOT)
    listing = _run(venv, home, "python", "-c", "import importlib.metadata as m, json; "
                   "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))").stdout
    installed = {name.lower().replace("_", "-"): version for name, version in json.loads(listing).items()}
    for line in (ROOT / "requirements.txt").read_text().splitlines() + \
            (ROOT / "requirements-docker.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            assert installed.get(name.lower().replace("_", "-")) == version, line
    assert installed["imaging-db"] == "0.1.0"


@pytest.mark.slow
def test_the_installed_console_scripts_run(image_install):
    _, venv, home, _ = image_install
    processes = {script: subprocess.Popen([venv / "bin" / script, "--help"], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, cwd=home, env=_clean_environment(home))
                 for script in CONSOLE_SCRIPTS}
    for script, process in processes.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{script} --help: {err}"
        assert out.startswith(f"usage: {script}"), out


@pytest.mark.slow
def test_the_installed_migrations_run_on_an_empty_home(image_install, tmp_path):
    _, venv, home, _ = image_install
    empty = tmp_path / "empty_home"
    check = _run(venv, home, "imaging_db_migrate", "--check", IMAGING_DB_HOME=str(empty))
    # Nothing there yet: --check says so and makes nothing.
    assert check.returncode == 1 and "does not exist: nothing has been uploaded" in check.stderr
    assert not empty.exists()
    migrate = _run(venv, home, "imaging_db_migrate", IMAGING_DB_HOME=str(empty))
    assert migrate.returncode == 0 and "schema upgraded from revision empty to" in migrate.stdout, migrate.stderr
    check = _run(venv, home, "imaging_db_migrate", "--check", IMAGING_DB_HOME=str(empty))
    assert check.returncode == 0 and check.stdout.strip().endswith("up to date"), check.stderr


@pytest.mark.slow
def test_the_image_s_entrypoint_migrates_with_the_installed_package(image_install, tmp_path):
    image_root, venv, home, _ = image_install
    entrypoint = image_root / "usr/local/bin/imaging_db-entrypoint"
    login = _sqlite_login(tmp_path)
    result = _run(venv, home, "sh", str(entrypoint), "query_data", "--login", str(login), "--format", "json",
                  IMAGING_DB_LOGIN=str(login))
    assert result.returncode == 0, result.stderr
    assert "schema upgraded from revision empty to" in result.stderr
    assert json.loads(result.stdout) == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except (urllib.error.URLError, ConnectionError):  # not listening yet
        return 0, b""


@pytest.mark.slow
def test_jupyter_lab_starts_with_the_image_s_command_and_wants_the_token(image_install):
    _, venv, home, _ = image_install
    cmd = _exec_form(next(arguments for keyword, arguments in _instructions() if keyword == "CMD"))
    port = _free_port()
    command = [f"--port={port}" if word == "--port=8888" else word for word in cmd]
    if os.geteuid() == 0:  # the image runs it as its own user; this test may run as root
        command.append("--allow-root")
    env = _clean_environment(home, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", JUPYTER_TOKEN="lab-token")
    server = subprocess.Popen(command, cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while _get(f"{base}/api")[0] != 200:
            assert server.poll() is None, f"jupyter lab exited: {server.stderr.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, "jupyter lab did not answer within 60 s"
            time.sleep(0.3)
        assert _get(f"{base}/api/contents/notebooks")[0] == 403
        assert _get(f"{base}/api/contents/notebooks", token="wrong")[0] == 403
        status, body = _get(f"{base}/api/contents/notebooks", token="lab-token")
        assert status == 200
        assert set(NOTEBOOKS) <= {item["name"] for item in json.loads(body)["content"]}
        status, body = _get(f"{base}/api/kernelspecs", token="lab-token")
        assert status == 200 and "python3" in json.loads(body)["kernelspecs"]
        assert _get(f"{base}/lab", token="lab-token")[0] == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


NOTEBOOK_RUNNER = """
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

path = Path(sys.argv[1])
notebook = nbformat.read(path, as_version=4)
# First, in the kernel: imaging_db is the installed package.
notebook.cells.insert(0, nbformat.v4.new_code_cell(
    "import sys, imaging_db\\n"
    "assert imaging_db.__file__.startswith(sys.prefix + '/lib/'), imaging_db.__file__"))
NotebookClient(notebook, timeout=120, kernel_name="python3",
               resources={"metadata": {"path": str(path.parent)}}).execute()
"""


@pytest.mark.slow
def test_the_notebooks_run_against_the_installed_package(image_install, tmp_path):
    _, venv, home, _ = image_install
    folder = home / "notebooks"
    processes = {}
    for name in NOTEBOOKS:
        env = _clean_environment(home, IMAGING_DB_NOTEBOOK_HOME=str(tmp_path / name))
        processes[name] = subprocess.Popen([venv / "bin/python", "-c", NOTEBOOK_RUNNER, folder / name], cwd=folder,
                                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, process in processes.items():
        try:
            _, err = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"{name} did not finish in 300 s")
        assert process.returncode == 0, f"{name} failed against the installed package:\n{err[-5000:]}"


@pytest.mark.slow
def test_the_wheel_holds_the_package_its_data_and_its_scripts(tmp_path):
    """``pip wheel --no-deps`` on what the image copies: the migrations, the five commands, the ranges."""
    source = tmp_path / "context"
    patterns = _ignore_patterns()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE.md", "requirements.txt", "imaging_db"):
        for file in _context_files(name, patterns):
            path = source / file.relative_to(ROOT)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, path)
    # The build backend comes from the wheelhouse, in pip's isolated build environment, as in the image's build.
    env = _clean_environment(tmp_path, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(_wheelhouse()))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                             "--wheel-dir", str(tmp_path / "dist"), str(source)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "dist").glob("imaging_db-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    migrations = {p.relative_to(ROOT).as_posix() for p in (ROOT / "imaging_db/database/migrations").rglob("*.py")
                  if "__pycache__" not in p.parts}
    assert migrations and migrations <= names
    assert not any("__pycache__" in n or n.startswith(("tests/", "notebooks/")) for n in names)
    for script in CONSOLE_SCRIPTS:
        assert re.search(rf"^{script} = imaging_db\.cli\.{script}:main$", entry_points, re.MULTILINE), script
    # The ranges of setup.py (the image installs the pins of requirements.txt before, and the wheel --no-deps).
    ranges = {str(requirement) for requirement in _install_requires()}
    assert ranges == {str(Requirement(text)) for text in re.findall(r"^Requires-Dist: (.+)$", metadata, re.MULTILINE)}
