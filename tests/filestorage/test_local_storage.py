"""What is special about LocalDataStorage: atomic writes through ``.partial`` files, and check()."""

import errno
import os
import shutil
from pathlib import Path

import pytest

from imaging_db.errors import ObjectExistsError, StorageError
from imaging_db.filestorage import local_storage
from imaging_db.filestorage.local_storage import LocalDataStorage


def _all_files(root: Path) -> list[str]:
    return sorted(str(Path(d, f).relative_to(root)) for d, _, files in os.walk(root) for f in files)


@pytest.fixture
def local(tmp_path) -> LocalDataStorage:
    return LocalDataStorage(tmp_path / "storage")


class TestLocalWrites:
    def test_objects_are_plain_files_under_root(self, local):
        local.put("raw_frames/DS-1/im_c000_z000_t000_p000.png", b"png")
        assert (local.root / "raw_frames" / "DS-1" / "im_c000_z000_t000_p000.png").read_bytes() == b"png"

    def test_writes_leave_no_partial_files(self, local, tmp_path):
        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(1 << 20))
        for i in range(5):
            local.put(f"raw_frames/DS-1/im_{i}.png", bytes([i]) * 100)
        local.put_file("raw_files/DS-1/big.bin", source)
        files = _all_files(local.root)
        assert files == sorted(
            [f"raw_frames/DS-1/im_{i}.png" for i in range(5)] + ["raw_files/DS-1/big.bin"]
        )
        assert not any(name.endswith(".partial") for name in files)

    def test_failed_stream_leaves_no_partial_file(self, local):
        def pieces():
            yield b"x" * 1000
            raise RuntimeError("encoder failed")

        local.put("raw_frames/DS-1/kept.png", b"kept")
        with pytest.raises(RuntimeError, match="encoder failed"):
            local.put_stream("raw_frames/DS-1/im.png", pieces())
        assert _all_files(local.root) == ["raw_frames/DS-1/kept.png"]

    def test_stream_is_written_piece_by_piece(self, local, monkeypatch):
        """Each piece reaches the file before the next is produced: no whole object in memory."""
        seen_sizes = []

        def pieces():
            for i in range(3):
                partial = list(local.root.rglob("*.partial"))
                seen_sizes.append(partial[0].stat().st_size if partial else None)
                yield bytes([i]) * 100_000

        assert local.put_stream("raw_frames/DS-1/im.png", pieces()) == 300_000
        assert seen_sizes[0] == 0 and seen_sizes[1] >= 100_000 - 8192 and seen_sizes[2] >= 200_000 - 8192
        assert (local.root / "raw_frames/DS-1/im.png").read_bytes() == b"".join(bytes([i]) * 100_000 for i in range(3))

    def test_partial_files_are_not_listed(self, local):
        local.put("raw_frames/DS-1/a.png", b"x")
        # As left by writers still running (or killed): this version's name, and earlier versions'.
        (local.root / "raw_frames" / "DS-1" / ".0a1b2c3d4e5f6789.partial").write_bytes(b"half")
        (local.root / "raw_frames" / "DS-1" / f".b.png.{'ab' * 16}.partial").write_bytes(b"half")
        # A user's file that happens to end in .partial is an object like any other.
        local.put("raw_frames/DS-1/scan.partial", b"y")
        assert set(local.list("raw_frames/")) == {"raw_frames/DS-1/a.png", "raw_frames/DS-1/scan.partial"}
        assert len(local.partials("raw_frames/DS-1/")) == 2

    def test_partials_are_listed_and_discarded_only_under_their_prefix(self, local):
        local.put("raw_frames/DS-1/a.png", b"x")
        (local.root / "raw_frames" / "DS-1" / ".0123456789abcdef.partial").write_bytes(b"half")
        (local.root / "raw_frames" / "DS-2").mkdir(parents=True)
        (local.root / "raw_frames" / "DS-2" / ".fedcba9876543210.partial").write_bytes(b"other run")
        assert local.partials("raw_frames/DS-1/") == ["raw_frames/DS-1/.0123456789abcdef.partial"]
        assert local.discard_partials("raw_frames/DS-1/") == 1
        assert _all_files(local.root) == ["raw_frames/DS-1/a.png", "raw_frames/DS-2/.fedcba9876543210.partial"]
        assert local.get("raw_frames/DS-1/a.png") == b"x"

    def test_temporary_names_are_short_whatever_the_object_name(self, local, tmp_path):
        """A name of 250 bytes (the file system allows 255) still fits: the temporary name does not grow with it."""
        name = "n" * 246 + ".tif"
        source = tmp_path / name
        source.write_bytes(b"tiff bytes")
        local.put_file(f"raw_files/DS-1/{name}", source)
        assert local.get(f"raw_files/DS-1/{name}") == b"tiff bytes"

    def test_without_hard_links_the_name_is_taken_exclusively(self, local, monkeypatch):
        """On a mount without hard links (some SMB/FAT), a new object still never replaces one."""
        def no_links(src, dst):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(local_storage.os, "link", no_links)
        local.put("raw_frames/DS-1/im.png", b"first")
        with pytest.raises(ObjectExistsError):
            local.put("raw_frames/DS-1/im.png", b"second")
        assert local.get("raw_frames/DS-1/im.png") == b"first"
        assert _all_files(local.root) == ["raw_frames/DS-1/im.png"]

    def test_failed_put_leaves_neither_target_nor_temp(self, local, monkeypatch):
        def write_half_then_fail(self, data):
            with open(self, "wb") as handle:
                handle.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)
        with pytest.raises(StorageError, match="cannot write .*im.png.*No space left on device"):
            local.put("raw_frames/DS-1/im.png", b"0123456789" * 100)
        monkeypatch.undo()
        assert _all_files(local.root) == []

    def test_failed_overwrite_keeps_the_old_object(self, local, monkeypatch):
        local.put("raw_frames/DS-1/im.png", b"old content")

        def write_half_then_fail(self, data):
            with open(self, "wb") as handle:
                handle.write(data[:3])
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)
        with pytest.raises(StorageError, match="Input/output error"):
            local.put("raw_frames/DS-1/im.png", b"new content")
        monkeypatch.undo()
        assert local.get("raw_frames/DS-1/im.png") == b"old content"
        assert _all_files(local.root) == ["raw_frames/DS-1/im.png"]

    def test_failed_put_file_leaves_neither_target_nor_temp(self, local, tmp_path, monkeypatch):
        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(1 << 20))

        def copy_half_then_fail(src, dst):
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                fout.write(fin.read(1 << 19))
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(local_storage.shutil, "copyfile", copy_half_then_fail)
        with pytest.raises(StorageError, match="big.bin"):
            local.put_file("raw_files/DS-1/big.bin", source)
        monkeypatch.setattr(local_storage.shutil, "copyfile", shutil.copyfile)
        assert _all_files(local.root) == []

    def test_interrupted_write_removes_temp_and_propagates(self, local, monkeypatch):
        def interrupted(self, data):
            with open(self, "wb") as handle:
                handle.write(data[:1])
            raise KeyboardInterrupt

        monkeypatch.setattr(Path, "write_bytes", interrupted)
        with pytest.raises(KeyboardInterrupt):
            local.put("raw_frames/DS-1/im.png", b"abc")
        monkeypatch.undo()
        assert _all_files(local.root) == []

    def test_put_where_a_file_blocks_the_folder_raises_storage_error(self, local):
        local.put("raw_frames/DS-1", b"a file, not a folder")
        with pytest.raises(StorageError, match="cannot write"):
            local.put("raw_frames/DS-1/im.png", b"x")


class TestLocalCheck:
    def test_check_creates_the_root(self, tmp_path):
        root = tmp_path / "not" / "yet" / "there"
        storage = LocalDataStorage(root)
        storage.check()
        assert root.is_dir()

    def test_check_on_existing_root(self, tmp_path):
        LocalDataStorage(tmp_path).check()

    def test_check_fails_clearly_when_root_cannot_be_created(self, tmp_path):
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        # mkdir under a regular file fails even for root, unlike permission bits.
        storage = LocalDataStorage(blocker / "storage")
        with pytest.raises(StorageError, match=r"cannot create storage folder .*a_file/storage.*Not a directory"):
            storage.check()

    def test_check_fails_when_root_is_a_file(self, tmp_path):
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        with pytest.raises(StorageError, match="cannot create storage folder .*a_file"):
            LocalDataStorage(blocker).check()

    def test_check_fails_when_root_is_not_writable(self, tmp_path, monkeypatch):
        root = tmp_path / "storage"
        root.mkdir()
        # Tests run as root, which ignores permission bits: simulate a read-only mount.
        monkeypatch.setattr(local_storage.os, "access", lambda path, mode: False)
        with pytest.raises(StorageError, match="storage folder .*storage.* is not writable"):
            LocalDataStorage(root).check()


class TestLocalReads:
    def test_root_is_absolute(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        storage = LocalDataStorage("relative/store")
        assert storage.root == tmp_path / "relative" / "store"
        storage.put("k", b"v")
        monkeypatch.chdir("/")
        assert storage.get("k") == b"v"

    def test_list_on_missing_root_is_empty(self, tmp_path):
        assert LocalDataStorage(tmp_path / "missing").list("") == {}

    def test_get_of_a_folder_raises_storage_error(self, local):
        local.put("raw_frames/DS-1/a.png", b"x")
        with pytest.raises(StorageError, match="cannot read"):
            local.get("raw_frames/DS-1")
