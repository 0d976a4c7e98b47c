"""Synthetic, deterministic example data in the formats imaging_db reads.

Used by ``make demo``, the tests and the benchmark. Pixels are a pure
function of (seed, channel, slice, time, position), so a reader of the data
can recompute exactly what each frame must hold.
"""

import json
import uuid
from pathlib import Path

import numpy as np
import tifffile

MM_TAG = 51123


def frame_pixels(c: int, z: int, t: int, p: int, shape: tuple[int, ...], dtype="uint16",
                 seed: int = 0, smooth: bool = False) -> np.ndarray:
    """Return the pixels of frame (c, z, t, p).

    Parameters
    ----------
    shape : tuple
        ``(height, width)`` or ``(height, width, 3)``.
    dtype : str
        ``uint8``, ``uint16`` or ``float32`` (whole numbers).
    smooth : bool
        Blurred blobs plus Poisson noise, which compress like fluorescence
        images; else uniform noise over the whole range (the hardest case).
    """
    rng = np.random.default_rng([seed, c, z, t, p])
    dtype = np.dtype(dtype)
    top = 255 if dtype == np.uint8 else 65535
    if not smooth:
        return rng.integers(0, top + 1, size=shape, dtype=np.uint32 if top > 255 else np.uint16).astype(dtype)
    height, width = shape[:2]
    y = np.arange(height, dtype=np.float32)
    x = np.arange(width, dtype=np.float32)
    image = np.full((height, width), 0.08 * top / 16, dtype=np.float32)
    for _ in range(12):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        sigma = rng.uniform(0.02, 0.08) * min(height, width)
        amplitude = rng.uniform(0.1, 0.5) * top / 16
        # A round Gaussian blob is the outer product of two 1D Gaussians: cheap on 2048x2048 frames.
        image += np.outer(amplitude * np.exp(-((y - cy) ** 2) / (2 * sigma**2)),
                          np.exp(-((x - cx) ** 2) / (2 * sigma**2)))
    if top > 255:
        # Photon noise. Every mean here is above 300 counts, where Poisson noise is Gaussian
        # with variance equal to the mean, and sampling it that way is ten times faster.
        image = np.rint(image + np.sqrt(image) * rng.standard_normal(image.shape, dtype=np.float32)).clip(0, top)
    else:
        image = rng.poisson(image).clip(0, top)
    if len(shape) == 3:
        image = np.stack([image, image[::-1], image[:, ::-1]], axis=2)
    return image.astype(dtype)


def mm_frame_metadata(c: int, z: int, t: int, p: int, channel_names: list[str], mm_version: str = "2.0") -> dict:
    """Return a MicroManagerMetadata dict shaped like the ones Micro-Manager writes (100+ keys)."""
    meta = {
        "ChannelIndex": c,
        "SliceIndex": z,
        "FrameIndex": t,
        "PositionIndex": p,
        "Slice": z,
        "Frame": t,
        "Channel": channel_names[c],
        "PositionName": f"Pos{p:03d}",
        "ElapsedTime-ms": 1000.0 * t + 10.0 * z,
        "Exposure-ms": 50.0,
        "ZPositionUm": 1.5 * z,
        "XPositionUm": 100.0 * p,
        "YPositionUm": -50.0 * p,
        "Camera": "Andor",
        "Binning": "1x1",
        "BitDepth": 16,
        "PixelSizeUm": 0.325,
        "MicroManagerVersion": mm_version,
        "UUID": str(uuid.UUID(int=(c << 96) | (z << 64) | (t << 32) | p)),
    }
    if mm_version.startswith("1."):
        del meta["SliceIndex"]
    for i in range(96):  # device property keys, as Micro-Manager records for every device
        meta[f"Device{i // 8}-Property{i % 8}"] = f"value-{i}"
    return meta


def mm_summary(channel_names: list[str], nbr_slices: int, nbr_times: int, nbr_positions: int,
               shape: tuple[int, ...], dtype: str, prefix: str = "X") -> dict:
    """Return a Micro-Manager acquisition summary (the IJMetadata Info / metadata.txt Summary)."""
    return {
        "Prefix": prefix,
        "ChNames": channel_names,
        "Channels": len(channel_names),
        "Slices": nbr_slices,
        "Frames": nbr_times,
        "Positions": nbr_positions,
        "Width": shape[1],
        "Height": shape[0],
        "PixelType": "GRAY8" if np.dtype(dtype) == np.uint8 else "GRAY16",
        "BitDepth": 8 if np.dtype(dtype) == np.uint8 else 16,
        "z-step_um": 1.5,
        "MicroManagerVersion": "2.0.0",
        "StartTime": "2018-11-07 09:35:54.000 -0800",
    }


def write_mm_ometiff(folder: str | Path, channel_names: list[str], nbr_slices: int, nbr_times: int,
                     nbr_positions: int, shape: tuple[int, ...] = (64, 48), dtype: str = "uint16",
                     seed: int = 0, smooth: bool = False, prefix: str = "X", mm_version: str = "2.0",
                     max_pages_per_file: int | None = None, padding: int = 4096) -> list[Path]:
    """Write a Micro-Manager style OME-TIFF acquisition, one or more files per position.

    Files are named ``<prefix>_MMStack_1-Pos_000_<p>.ome.tif`` (``_1``, ``_2``...
    for continuation files). Pages are in time, position, slice, channel
    order with a MicroManagerMetadata tag each; the first page of each file has
    the IJMetadata Info summary, the first file an OME-XML describing the pages
    of every file, and each file ends with pre-allocated zero padding.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = json.dumps(mm_summary(channel_names, nbr_slices, nbr_times, nbr_positions, shape, dtype, prefix))
    files: list[Path] = []
    plan: list[tuple[Path, list[tuple[int, int, int, int]]]] = []
    for p in range(nbr_positions):
        pages = [(c, z, t, p) for t in range(nbr_times) for z in range(nbr_slices) for c in range(len(channel_names))]
        chunk = max_pages_per_file or len(pages)
        for part, start in enumerate(range(0, len(pages), chunk)):
            suffix = f"_{part}" if part else ""
            plan.append((folder / f"{prefix}_MMStack_1-Pos_000_{p:03d}{suffix}.ome.tif", pages[start:start + chunk]))
    ome_xml = _ome_xml(plan, channel_names, nbr_slices, nbr_times, shape, dtype)
    rgb = len(shape) == 3
    for file_nbr, (path, pages) in enumerate(plan):
        with tifffile.TiffWriter(path) as writer:
            for page_nbr, (c, z, t, p) in enumerate(pages):
                extratags = [(MM_TAG, "s", 0, json.dumps(mm_frame_metadata(c, z, t, p, channel_names, mm_version)), True)]
                if page_nbr == 0:
                    extratags += list(tifffile.imagej_metadata_tag({"Info": summary}, "<"))
                writer.write(
                    frame_pixels(c, z, t, p, shape, dtype, seed, smooth),
                    photometric="rgb" if rgb else "minisblack",
                    description=ome_xml if (file_nbr == 0 and page_nbr == 0) else None,
                    metadata=None,
                    contiguous=False,
                    extratags=extratags,
                )
        if padding:
            with open(path, "ab") as handle:
                handle.write(b"\0" * padding)
        files.append(path)
    return files


def _ome_xml(plan, channel_names, nbr_slices, nbr_times, shape, dtype) -> str:
    pixel_type = "uint8" if np.dtype(dtype) == np.uint8 else "uint16"
    tiff_data = []
    for path, pages in plan:
        for ifd, (c, z, t, _p) in enumerate(pages):
            tiff_data.append(
                f'<TiffData FirstC="{c}" FirstZ="{z}" FirstT="{t}" IFD="{ifd}" PlaneCount="1">'
                f'<UUID FileName="{path.name}">urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, path.name)}</UUID></TiffData>'
            )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        f'<Image ID="Image:0"><Pixels DimensionOrder="XYCZT" ID="Pixels:0" SizeC="{len(channel_names)}" '
        f'SizeT="{nbr_times}" SizeX="{shape[1]}" SizeY="{shape[0]}" SizeZ="{nbr_slices}" Type="{pixel_type}">'
        + "".join(tiff_data)
        + "</Pixels></Image></OME>"
    )


def write_tif_folder(folder: str | Path, channel_names: list[str], nbr_slices: int, nbr_times: int = 1,
                     nbr_positions: int = 1, shape: tuple[int, ...] = (64, 48), dtype: str = "uint16",
                     seed: int = 0, mm_tags: bool = True, metadata_txt: bool = True) -> list[Path]:
    """Write a folder of single-frame TIFFs ``img_<channel>_t000_p000_z000.tif``.

    With ``mm_tags`` each file carries a MicroManagerMetadata tag; with
    ``metadata_txt`` the folder has a Micro-Manager ``metadata.txt``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    frame_keys = {}
    for p in range(nbr_positions):
        for t in range(nbr_times):
            for z in range(nbr_slices):
                for c, name in enumerate(channel_names):
                    path = folder / f"img_{name}_t{t:03d}_p{p:03d}_z{z:03d}.tif"
                    meta = mm_frame_metadata(c, z, t, p, channel_names)
                    extratags = [(MM_TAG, "s", 0, json.dumps(meta), True)] if mm_tags else []
                    tifffile.imwrite(path, frame_pixels(c, z, t, p, shape, dtype, seed),
                                     photometric="rgb" if len(shape) == 3 else "minisblack",
                                     metadata=None, extratags=extratags)
                    frame_keys[f"FrameKey-{t}-{c}-{z}"] = {"Channel": name}
                    files.append(path)
    if metadata_txt:
        summary = mm_summary(channel_names, nbr_slices, nbr_times, nbr_positions, shape, dtype)
        (folder / "metadata.txt").write_text(json.dumps({"Summary": summary, **frame_keys}, indent=1))
    return files


def write_imagej_stack(path: str | Path, nbr_channels: int, nbr_slices: int, nbr_times: int = 1,
                       shape: tuple[int, ...] = (64, 48), dtype: str = "uint16", seed: int = 0,
                       channel_names: list[str] | None = None) -> Path:
    """Write an ImageJ hyperstack (pages channel fastest, then slice, then time).

    ``dtype="float32"`` writes whole numbers as 32-bit floats, as ImageJ does
    after some operations. With ``channel_names`` the Info holds a summary with ``ChNames``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = len(shape) == 3
    pixel_dtype = "uint16" if dtype == "float32" else dtype
    stack = np.stack([
        frame_pixels(c, z, t, 0, shape, pixel_dtype, seed)
        for t in range(nbr_times) for z in range(nbr_slices) for c in range(nbr_channels)
    ]).astype(dtype)
    stack = stack.reshape((nbr_times, nbr_slices, nbr_channels, *shape))
    metadata = {"axes": "TZCYXS" if rgb else "TZCYX"}
    if channel_names:
        metadata["Info"] = json.dumps({"ChNames": channel_names})
    tifffile.imwrite(path, stack, imagej=True, photometric="rgb" if rgb else "minisblack", metadata=metadata)
    return path


class _CheapFrames:
    """Compressible uint16 frames that cost one addition each: a gradient, a fixed noise tile, a per-frame offset.

    Every frame differs from every other (its offset) and they compress
    roughly like a smooth image with a little noise, so a multi-GB file is
    written at disk speed and uploads at the PNG encoder's speed.
    """

    def __init__(self, shape: tuple[int, int], seed: int = 0):
        height, width = shape
        gradient = np.add.outer(np.arange(height, dtype=np.uint32) // 8, np.arange(width, dtype=np.uint32) // 8)
        noise = np.random.default_rng(seed).integers(0, 32, size=shape, dtype=np.uint32)
        self.base = (1000 + gradient % 2000 + noise).astype(np.uint16)
        self.out = np.empty(shape, dtype=np.uint16)

    def frame(self, number: int) -> np.ndarray:
        """The pixels of frame ``number``; the returned array is reused by the next call."""
        np.add(self.base, np.uint16((number * 37) % 30000), out=self.out)
        return self.out


def write_large_mm_ometiff(path: str | Path, channel_names: list[str], nbr_slices: int, nbr_times: int,
                           nbr_positions: int, shape: tuple[int, int] = (1024, 1024), seed: int = 0) -> Path:
    """Write one Micro-Manager style BigTIFF OME-TIFF, page by page, of any size (e.g. several GB).

    Pages are uint16, in time, position, slice, channel order, each with its
    MicroManagerMetadata tag (51123); the first page carries the IJMetadata
    Info summary and an OME-XML describing every page. Only one frame is in
    memory at a time. Pixels are cheap and compressible (see ``_CheapFrames``);
    read them back from the file to compare with what a download returns.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pages = [(c, z, t, p) for t in range(nbr_times) for p in range(nbr_positions) for z in range(nbr_slices)
             for c in range(len(channel_names))]
    summary = json.dumps(mm_summary(channel_names, nbr_slices, nbr_times, nbr_positions, shape, "uint16"))
    ome_xml = _ome_xml([(path, pages)], channel_names, nbr_slices, nbr_times, shape, "uint16")
    frames = _CheapFrames(shape, seed)
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for number, (c, z, t, p) in enumerate(pages):
            extratags = [(MM_TAG, "s", 0, json.dumps(mm_frame_metadata(c, z, t, p, channel_names)), True)]
            if number == 0:
                extratags += list(tifffile.imagej_metadata_tag({"Info": summary}, "<"))
            writer.write(frames.frame(number), photometric="minisblack", metadata=None, contiguous=False,
                         description=ome_xml if number == 0 else None, extratags=extratags)
    return path
