"""Storage keys of frames and files, the same in every backend."""

FRAMES_PREFIX = "raw_frames"
FILES_PREFIX = "raw_files"


def frames_dir(dataset_serial: str) -> str:
    """Return the key prefix (without trailing ``/``) of a frames dataset."""
    return f"{FRAMES_PREFIX}/{dataset_serial}"


def files_dir(dataset_serial: str) -> str:
    """Return the key prefix (without trailing ``/``) of a file dataset."""
    return f"{FILES_PREFIX}/{dataset_serial}"


def frame_file_name(channel_idx: int, slice_idx: int, time_idx: int, pos_idx: int) -> str:
    """Return ``im_c000_z000_t000_p000.png`` for the given indices."""
    return f"im_c{channel_idx:03d}_z{slice_idx:03d}_t{time_idx:03d}_p{pos_idx:03d}.png"
