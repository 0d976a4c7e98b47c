"""The extension points, used exactly as README's "Extending imaging_db" says: a toy splitter and a toy storage.

The two modules are taken from the README's code blocks, so the README cannot
drift from what works. Registered as it shows, they carry a dataset through
the real commands: upload (format chosen by can_read), download, verify.
"""

import csv
import importlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from imaging_db import filestorage
from imaging_db.cli import data_downloader, data_uploader, data_verify
from imaging_db.errors import InputError
from imaging_db.filestorage import make_storage, storage_names
from imaging_db.images import splitters
from imaging_db.images.png import decode_png

README = Path(__file__).resolve().parents[1] / "README.md"
ID = "ML-2018-11-07-09-35-54-0010"


def _readme_modules() -> dict[str, str]:
    """``{path: source}`` of the Python blocks of the Extending section that start with a ``# <path>`` line."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Extending imaging_db"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return {block.splitlines()[0][2:].strip(): block for block in blocks if block.startswith("# imaging_db/")}


@pytest.fixture
def extended(tmp_path, monkeypatch):
    """The README's two modules importable as a package of one's own, and registered as the README shows."""
    modules = _readme_modules()
    assert sorted(modules) == ["imaging_db/filestorage/memory_storage.py",
                               "imaging_db/images/splitters/npy_splitter.py"]
    package = tmp_path / "lab_extensions"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for path, source in modules.items():
        (package / Path(path).name).write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    npy = importlib.import_module("lab_extensions.npy_splitter")
    memory = importlib.import_module("lab_extensions.memory_storage")
    monkeypatch.setitem(splitters.SPLITTERS, "npy_stack", npy.NpyStackSplitter)
    monkeypatch.setitem(filestorage.STORAGES, "memory", memory.MemoryStorage)
    monkeypatch.setattr(memory, "_STORES", {})
    monkeypatch.setenv("IMAGING_DB_HOME", str(tmp_path / "home"))
    yield memory
    for name in ("lab_extensions.npy_splitter", "lab_extensions.memory_storage", "lab_extensions"):
        sys.modules.pop(name, None)


def _stack(shape=(2, 3, 24, 32), dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(7).integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


def _inputs(tmp_path, stack, config: dict) -> tuple[Path, Path]:
    np.save(tmp_path / "stack.npy", stack)
    csv_path = tmp_path / "files.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["dataset_id", "file_name"], [ID, str(tmp_path / "stack.npy")]])
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    return csv_path, config_path


@pytest.mark.parametrize("frames_format", [None, "npy_stack"])
def test_a_toy_format_and_storage_carry_a_dataset_through_the_commands(tmp_path, extended, frames_format, capsys):
    stack = _stack()
    config = {"upload_type": "frames", "storage": "memory", "storage_access": "lab"}
    if frames_format:
        config["frames_format"] = frames_format  # else chosen by can_read: only npy_stack reads a .npy file
    csv_path, config_path = _inputs(tmp_path, stack, config)
    assert "memory" in storage_names() and "npy_stack" in splitters.splitter_names()

    assert data_uploader.main(["--csv", str(csv_path), "--config", str(config_path), "--no-progress"]) == 0
    stored = extended._STORES["lab"]
    assert sorted(stored) == [f"raw_frames/{ID}/im_c{c:03d}_z{z:03d}_t000_p000.png"
                              for c in range(2) for z in range(3)]

    dest = tmp_path / "dl"
    assert data_downloader.main(["--id", ID, "--dest", str(dest), "--storage", "memory",
                                 "--storage_access", "lab", "--no-progress"]) == 0
    for c in range(2):
        for z in range(3):
            png = (dest / ID / f"im_c{c:03d}_z{z:03d}_t000_p000.png").read_bytes()
            got = decode_png(png)
            assert got.dtype == stack.dtype and np.array_equal(got, stack[c, z])
    with open(dest / ID / "frames_meta.csv", newline="") as handle:
        names = {row["channel_name"] for row in csv.DictReader(handle)}
    assert names == {"channel 0", "channel 1"}
    meta = json.loads((dest / ID / "global_metadata.json").read_text())
    assert meta["metadata_json"] == {"file_origin": str(tmp_path / "stack.npy")} and meta["nbr_frames"] == 6

    capsys.readouterr()
    assert data_verify.main(["--id", ID, "--storage", "memory", "--storage_access", "lab", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{ID}: 6 frames verified, 0 missing, 0 corrupt, 0 orphaned",
        "total: 1 dataset(s), 6 of 6 object(s) verified, 0 missing, 0 corrupt, 0 orphaned; OK"]


def test_the_toy_splitter_refuses_what_png_cannot_store(tmp_path, extended, capsys):
    csv_path, config_path = _inputs(tmp_path, _stack().astype(np.float32) + 0.5,
                                    {"upload_type": "frames", "storage": "memory", "storage_access": "lab"})
    assert data_uploader.main(["--csv", str(csv_path), "--config", str(config_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"dataset {ID}: {tmp_path / 'stack.npy'}: page 0: float32 pixels are not whole numbers" in err
    assert extended._STORES.get("lab", {}) == {}


def test_registered_names_reach_the_choices_and_errors(extended):
    with pytest.raises(InputError, match=r"unknown storage 'ftp'; use 'local', 's3' or 'memory'"):
        make_storage("ftp")
    with pytest.raises(InputError, match=r"unknown frames_format 'czi'; choose one of \[.*'npy_stack'.*\]"):
        splitters.make_splitter("czi", Path("x"), ID)
    assert data_uploader.build_parser().parse_args(["--csv", "c", "--config", "k", "--storage", "memory"]).storage \
        == "memory"
