"""Names from the CSV, the files or the database never write outside the storage root or ``--dest``.

Hostile names (``..``, ``/``, absolute paths, backslashes, NUL, unicode, names
longer than a file system allows) are tried where each kind of name enters:
channel names and file names at upload, rows edited by hand in the database
at download, and keys given to the storages. Each test snapshots the whole
temporary folder and checks that nothing appeared, changed or vanished
outside the places the command may write.
"""

import hashlib
import os
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from imaging_db.errors import InputError, StorageError
from imaging_db.example_data import write_mm_ometiff, write_tif_folder
from imaging_db.filestorage import make_storage
from tests.security.cli_helpers import ID, download, execute, files_under, one_line, upload, write_config, write_csv


def _storage(spec: dict):
    return make_storage(spec["storage"], spec["storage_access"], s3_endpoint_url=spec["s3_endpoint_url"])


def _plant(spec: dict, key: str, data: bytes) -> None:
    """Put ``data`` where ``key`` points, bypassing imaging_db's key checks, as an attacker with storage access could.

    Local: the file that ``<root>/<key>`` resolves to, if that stays inside the test's folder.
    S3: the object under the raw key. Keys that cannot be stored that way are left out.
    """
    if spec["storage"] == "s3":
        if key and "\0" not in key and len(key.encode()) <= 1024:
            boto3.client("s3", endpoint_url=spec["s3_endpoint_url"]).put_object(
                Bucket=spec["storage_access"], Key=key, Body=data)
        return
    root = Path(spec["storage_access"])
    target = Path(os.path.normpath(os.path.join(root, key)))
    if "\0" in key or root.parent not in target.parents or target == root:
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError:  # e.g. a name too long for the file system
        pass


def _new_files(before: dict, after: dict) -> list[str]:
    return sorted(set(after) - set(before))


def _assert_nothing_escaped(tmp_path: Path, before: dict, allowed: tuple[str, ...]) -> None:
    """Everything new or changed under ``tmp_path`` is under a top-level entry starting with an ``allowed`` name.

    (``test.sqlite`` covers the SQLite database and the claims' lock folder beside it.)
    """
    after = files_under(tmp_path)
    changed = [p for p in after if p in before and after[p] != before[p] and not p.endswith(".sqlite")]
    vanished = sorted(set(before) - set(after))
    outside = [p for p in _new_files(before, after) if not p.split(os.sep)[0].startswith(allowed)]
    assert (outside, changed, vanished) == ([], [], []), "written outside the storage root or --dest"


def _refusal(capsys) -> str:
    """An upload's refusal: one line naming the dataset (and the uploader's count of failed datasets), no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("data_uploader: 1 of 1")]
    assert len(lines) == 1 and ID in lines[0] and "Traceback" not in err, err
    return lines[0]


def _registered(db_url) -> list[str]:
    """The dataset ids in the database (none when it holds no tables yet)."""
    try:
        return [r["dataset_serial"] for r in execute(db_url, "SELECT dataset_serial FROM data_set")]
    except sa.exc.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    except sa.exc.ProgrammingError as exc:  # PostgreSQL: relation "data_set" does not exist
        if "does not exist" in str(exc):
            return []
        raise


# --------------------------------------------------------------------------- uploads: channel names
HOSTILE_CHANNELS = ["../../evil", "/abs/evil", "..\\..\\evil", "Kanal ß 日本 🙂", "c" * 300]


def test_hostile_channel_names_never_reach_keys_or_paths(tmp_path, db_url, login_file, storage_spec, capsys):
    """Frame keys come from indices only: channel names are stored as text and select frames, nothing more."""
    write_mm_ometiff(tmp_path / "acq", HOSTILE_CHANNELS, nbr_slices=1, nbr_times=1, nbr_positions=1, shape=(8, 6))
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    before = files_under(tmp_path)

    assert upload(csv_path, config, login_file) == 0, capsys.readouterr().err
    assert sorted(_storage(storage_spec).list("")) == [
        f"raw_frames/{ID}/im_c{c:03d}_z000_t000_p000.png" for c in range(len(HOSTILE_CHANNELS))]
    rows = execute(db_url, "SELECT channel_idx, channel_name, file_name FROM frames ORDER BY channel_idx")
    assert [r["channel_name"] for r in rows] == HOSTILE_CHANNELS
    assert all(r["file_name"] == f"im_c{r['channel_idx']:03d}_z000_t000_p000.png" for r in rows)

    # Selecting by a hostile name fetches that channel's frame into <dest>/<id>/, under its index name.
    assert download(tmp_path / "dl", login_file, storage_spec, "-c", "../../evil", "/abs/evil") == 0
    assert sorted(p.name for p in (tmp_path / "dl" / ID).iterdir()) == [
        "frames_meta.csv", "global_metadata.json", "im_c000_z000_t000_p000.png", "im_c001_z000_t000_p000.png"]
    assert download(tmp_path / "dl2", login_file, storage_spec, "-c", "c" * 300, "Kanal ß 日本 🙂") == 0
    assert sorted(p.name for p in (tmp_path / "dl2" / ID).glob("*.png")) == [
        "im_c003_z000_t000_p000.png", "im_c004_z000_t000_p000.png"]
    _assert_nothing_escaped(tmp_path, before, ("storage", "dl", "dl2", "test.sqlite", "imaging_db_home"))
    assert not Path("/abs/evil").exists()


def test_channel_names_from_tif_folder_file_names(tmp_path, db_url, login_file, storage_spec, capsys):
    """tif_folder takes channel names from file names (``img_<channel>_t000_p000_z000.tif``): ``..`` included."""
    channels = ["..", "..\\..", "ß 日本 🙂"]
    write_tif_folder(tmp_path / "acq", channels, nbr_slices=2, shape=(8, 6), mm_tags=False, metadata_txt=False)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="tif_folder")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    before = files_under(tmp_path)

    assert upload(csv_path, config, login_file) == 0, capsys.readouterr().err
    keys = sorted(_storage(storage_spec).list(""))
    assert len(keys) == 6 and all(k.startswith(f"raw_frames/{ID}/im_c") and ".." not in k for k in keys)
    names = {r["channel_name"] for r in execute(db_url, "SELECT channel_name FROM frames")}
    assert names == set(channels)
    assert download(tmp_path / "dl", login_file, storage_spec, "-c", "..") == 0
    assert len(list((tmp_path / "dl" / ID).glob("im_c*.png"))) == 2
    _assert_nothing_escaped(tmp_path, before, ("storage", "dl", "test.sqlite", "imaging_db_home"))


def test_nul_in_a_channel_name_is_refused_before_any_write(tmp_path, db_url, login_file, storage_spec, capsys):
    """A NUL cannot be stored as text on PostgreSQL: both backends refuse it in the scan, before any frame is stored."""
    write_mm_ometiff(tmp_path / "acq", ["GFP", "evil\x00../../x"], nbr_slices=1, nbr_times=1, nbr_positions=1,
                     shape=(8, 6))
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    before = files_under(tmp_path)

    assert upload(csv_path, config, login_file) == 1
    err = _refusal(capsys)
    assert "NUL" in err
    assert _storage(storage_spec).list("") == {}
    assert _registered(db_url) == []
    _assert_nothing_escaped(tmp_path, before, ("storage", "test.sqlite", "imaging_db_home"))


# --------------------------------------------------------------------------- uploads: file names
ODD_FILE_NAMES = ["Ünïcødé 日本 🙂.tif", "-rf --evil.tif", "...", " spaced .tif", "a" * 251 + ".tif", "scan.partial"]


@pytest.mark.parametrize("name", ODD_FILE_NAMES, ids=["unicode", "dash", "dots", "spaces", "255-bytes", "partial"])
def test_file_dataset_keeps_its_name_inside_the_prefix(name, tmp_path, db_url, login_file, storage_spec, capsys):
    """A file dataset's key is ``raw_files/<id>/<original name>``; it downloads into ``<dest>/<id>/<name>`` intact."""
    source = tmp_path / "src" / name
    source.parent.mkdir()
    source.write_bytes(os.urandom(3000))
    config = write_config(tmp_path, storage_spec, upload_type="file")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    before = files_under(tmp_path)

    assert upload(csv_path, config, login_file) == 0, capsys.readouterr().err
    storage = _storage(storage_spec)
    assert sorted(storage.list("")) == [f"raw_files/{ID}/{name}"]
    assert storage.partials("") == []
    assert download(tmp_path / "dl", login_file, storage_spec) == 0, capsys.readouterr().err
    assert (tmp_path / "dl" / ID / name).read_bytes() == source.read_bytes()
    _assert_nothing_escaped(tmp_path, before, ("storage", "dl", "test.sqlite", "imaging_db_home"))


@pytest.mark.parametrize("case", ["backslash", "nul", "not-utf8"])
def test_unstorable_file_names_are_refused_before_any_write(case, tmp_path, db_url, login_file, storage_spec,
                                                            capsys):
    """Names no key may hold are refused with one line, before anything is stored or registered."""
    src = tmp_path / "src"
    src.mkdir()
    config = write_config(tmp_path, storage_spec, upload_type="file")
    if case == "backslash":
        (src / "..\\..\\evil.tif").write_bytes(b"data")
        csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(src / "..\\..\\evil.tif")}])
    elif case == "nul":
        (src / "ok.tif").write_bytes(b"data")
        csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(src / "ok.tif") + "\x00/../../evil"}])
    else:
        name = os.fsdecode(b"raw-\xff\xfe.tif")
        (src / name).write_bytes(b"data")
        csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(src / name)}])
    before = files_under(tmp_path)

    assert upload(csv_path, config, login_file) == 1
    if case == "not-utf8":  # the CSV itself cannot hold such a name as text: it is refused as a whole
        assert "files.csv" in one_line(capsys.readouterr().err)
    else:
        _refusal(capsys)
    assert _storage(storage_spec).list("") == {}
    assert _registered(db_url) == []
    _assert_nothing_escaped(tmp_path, before, ("storage", "test.sqlite", "imaging_db_home"))


@pytest.mark.parametrize("dataset_id", ["../../ML-2018-11-07-09-35-54-0010", "ML-2018-11-07-09-35-54-0010/../../x",
                                        "/tmp/ML-2018-11-07-09-35-54-0010"])
def test_dataset_ids_that_are_paths_are_refused(dataset_id, tmp_path, login_file, storage_spec, capsys):
    (tmp_path / "f.txt").write_bytes(b"data")
    config = write_config(tmp_path, storage_spec, upload_type="file")
    csv_path = write_csv(tmp_path, [{"dataset_id": dataset_id, "file_name": str(tmp_path / "f.txt")}])
    before = files_under(tmp_path)
    assert upload(csv_path, config, login_file) == 1
    assert "dataset" in one_line(capsys.readouterr().err)
    assert download(tmp_path / "dl", login_file, storage_spec, dataset_id=dataset_id) == 1
    one_line(capsys.readouterr().err)
    assert _storage(storage_spec).list("") == {}
    _assert_nothing_escaped(tmp_path, before, ("storage", "test.sqlite", "imaging_db_home"))


# --------------------------------------------------------------------------- downloads: rows edited by hand
def _bad_names(tmp_path: Path, postgres: bool) -> list[str]:
    names = ["../../evil.png", "../evil.png", str(tmp_path / "abs_evil.png"), "sub/evil.png", "..", ".", "",
             "..\\..\\evil.png", "x" * 300 + ".png"]
    if not postgres:  # PostgreSQL text cannot hold a NUL: nobody can insert one there
        names.append("evil\x00.png")
    return names


def _upload_small(tmp_path, storage_spec, login_file, capsys) -> None:
    write_mm_ometiff(tmp_path / "acq", ["GFP"], nbr_slices=2, nbr_times=1, nbr_positions=1, shape=(8, 6))
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    assert upload(csv_path, config, login_file) == 0, capsys.readouterr().err
    capsys.readouterr()


def _refused(tmp_path, login_file, storage_spec, capsys, what: str) -> str:
    """Download into an existing ``dl``: it must fail with one line, and nothing anywhere may change."""
    dest = tmp_path / "dl"
    dest.mkdir(exist_ok=True)
    before = files_under(tmp_path)
    code = download(dest, login_file, storage_spec)
    err = capsys.readouterr().err
    assert code == 1, f"{what}: exit {code}, {err}"
    line = one_line(err)
    assert f"dataset {ID}" in line, f"{what}: {line}"
    _assert_nothing_escaped(tmp_path, before, ())
    assert list(dest.iterdir()) == [], f"{what}: left {list(dest.iterdir())}"
    return line


def test_hostile_frame_file_names_in_the_database(tmp_path, db_url, login_file, storage_spec, capsys):
    """A frames row whose file_name was edited to a path is refused, even when an object exists at that key."""
    _upload_small(tmp_path, storage_spec, login_file, capsys)
    for name in _bad_names(tmp_path, db_url.get_backend_name() == "postgresql"):
        data = b"planted by an attacker: " + name.encode("utf-8", "surrogateescape")
        _plant(storage_spec, f"raw_frames/{ID}/{name}", data)
        execute(db_url, "UPDATE frames SET file_name = :n, sha256 = :h WHERE slice_idx = 1",
                n=name, h=hashlib.sha256(data).hexdigest())
        line = _refused(tmp_path, login_file, storage_spec, capsys, f"file_name {name!r}")
        if len(name) < 300:
            assert "not a plain file name" in line, line
    assert not (tmp_path / "abs_evil.png").exists()
    execute(db_url, "UPDATE frames SET file_name = 'im_c000_z001_t000_p000.png', sha256 = :h WHERE slice_idx = 1",
            h=hashlib.sha256(_storage(storage_spec).get(f"raw_frames/{ID}/im_c000_z001_t000_p000.png")).hexdigest())
    assert download(tmp_path / "dl", login_file, storage_spec) == 0  # the dataset itself is fine


def test_hostile_frames_storage_dir_in_the_database(tmp_path, db_url, login_file, storage_spec, capsys):
    """A storage_dir edited to point outside the storage is refused, even where the frames exist there."""
    _upload_small(tmp_path, storage_spec, login_file, capsys)
    storage = _storage(storage_spec)
    frames = {k.rsplit("/", 1)[1]: storage.get(k) for k in storage.list(f"raw_frames/{ID}/")}
    for storage_dir in ["../outside", str(tmp_path / "outside"), f"raw_frames/{ID}/..", "", f"raw_frames\\{ID}",
                        f"raw_frames//{ID}", f"raw_frames/{ID}/"]:
        for name, data in frames.items():  # the same bytes: only the key check can stop the copy
            _plant(storage_spec, f"{storage_dir}/{name}", data)
        execute(db_url, "UPDATE frames_global SET storage_dir = :d", d=storage_dir)
        line = _refused(tmp_path, login_file, storage_spec, capsys, f"storage_dir {storage_dir!r}")
        assert "storage" in line, line
    execute(db_url, "UPDATE frames_global SET storage_dir = :d", d=f"raw_frames/{ID}")
    assert download(tmp_path / "dl", login_file, storage_spec) == 0


def test_hostile_file_global_in_the_database(tmp_path, db_url, login_file, storage_spec, capsys):
    """file_global.file_name and storage_dir edited to paths are refused, even where an object exists there."""
    source = tmp_path / "notes.txt"
    source.write_bytes(b"the original file")
    config = write_config(tmp_path, storage_spec, upload_type="file")
    assert upload(write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}]), config, login_file) == 0
    capsys.readouterr()
    for name in _bad_names(tmp_path, db_url.get_backend_name() == "postgresql"):
        data = b"planted: " + name.encode("utf-8", "surrogateescape")
        _plant(storage_spec, f"raw_files/{ID}/{name}", data)
        execute(db_url, "UPDATE file_global SET file_name = :n, sha256 = :h",
                n=name, h=hashlib.sha256(data).hexdigest())
        line = _refused(tmp_path, login_file, storage_spec, capsys, f"file_name {name!r}")
        if len(name) < 300:
            assert "not a plain file name" in line, line
    execute(db_url, "UPDATE file_global SET file_name = 'notes.txt', sha256 = :h",
            h=hashlib.sha256(source.read_bytes()).hexdigest())
    for storage_dir in ["../outside", str(tmp_path / "outside"), f"raw_files/{ID}/..", "", f"raw_files//{ID}"]:
        _plant(storage_spec, f"{storage_dir}/notes.txt", source.read_bytes())
        execute(db_url, "UPDATE file_global SET storage_dir = :d", d=storage_dir)
        line = _refused(tmp_path, login_file, storage_spec, capsys, f"storage_dir {storage_dir!r}")
        assert "storage" in line, line
    execute(db_url, "UPDATE file_global SET storage_dir = :d", d=f"raw_files/{ID}")
    assert download(tmp_path / "dl", login_file, storage_spec) == 0
    assert (tmp_path / "dl" / ID / "notes.txt").read_bytes() == source.read_bytes()


# --------------------------------------------------------------------------- the storages' own key check
BAD_KEYS = ["", ".", "..", "../x", "a/../../x", "a/./b", "a//b", "a/b/", "/abs", "//abs", "a\\..\\b", "..\\x",
            "a\x00b", "raw/\udcff.png"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=[repr(k) for k in BAD_KEYS])
def test_storages_refuse_keys_that_are_paths(key, storage, tmp_path):
    """Every method of every storage refuses a key that is not a plain relative ``/`` path of UTF-8 names."""
    absolute = f"{tmp_path}/abs_target"
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside")
    before = files_under(tmp_path)
    for bad in (key, key.replace("/abs", absolute)):
        for call in (lambda: storage.put(bad, b"x"), lambda: storage.put_stream(bad, iter([b"x"])),
                     lambda: storage.put_file(bad, outside), lambda: storage.get(bad),
                     lambda: storage.get_file(bad, tmp_path / "got"), lambda: storage.delete(bad)):
            with pytest.raises(InputError, match=r"invalid storage key"):
                call()
    _assert_nothing_escaped(tmp_path, before, ("storage",))
    assert not (tmp_path / "got").exists() and not Path(absolute).exists()


def test_local_storage_never_lists_or_discards_outside_its_root(tmp_path):
    storage = make_storage("local", str(tmp_path / "storage"))
    storage.put("raw_frames/ID/im.png", b"png")
    (tmp_path / ".0123456789abcdef.partial").write_bytes(b"someone else's")
    (tmp_path / "outside.txt").write_bytes(b"outside")
    for prefix in ("../", "..", "../outside", "raw_frames/../../", "/", str(tmp_path) + "/"):
        try:
            listed = storage.list(prefix)
        except InputError:
            listed = {}
        assert listed == {}, prefix
        try:
            storage.discard_partials(prefix)
        except InputError:
            pass
    assert (tmp_path / ".0123456789abcdef.partial").read_bytes() == b"someone else's"
    assert storage.list("") == {"raw_frames/ID/im.png": storage.list("")["raw_frames/ID/im.png"]}


def test_local_storage_name_too_long_is_a_storage_error(tmp_path):
    storage = make_storage("local", str(tmp_path / "storage"))
    with pytest.raises(StorageError, match=r"File name too long"):
        storage.put("raw_files/ID/" + "x" * 300, b"data")
    with pytest.raises(StorageError, match=r"File name too long"):
        storage.get("raw_files/ID/" + "x" * 300)
    assert storage.list("") == {} and storage.partials("") == []


def test_unicode_keys_round_trip(storage):
    key = "raw_files/ID/Kanal ß 日本 🙂 ..tif"
    storage.put(key, b"data")
    assert storage.get(key) == b"data" and list(storage.list("raw_files/")) == [key]
