"""Micro-Manager's metadata in TIFF tags: the JSON tags and the frame indices they give."""

import json

# The TIFF tag in which Micro-Manager writes each image's metadata, as JSON.
MICROMANAGER_TAG = 51123


def parse_json_tag(value, what: str) -> dict | None:
    """Return a TIFF tag's JSON content as a dict, None if absent, or raise ValueError."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            parsed = json.loads(value.strip("\x00 \n"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what} is not valid JSON ({exc.msg})") from None
        if isinstance(parsed, dict):
            return parsed
    raise ValueError(f"{what} does not hold a JSON object")


def read_micromanager_tag(page) -> dict | None:
    """Return a TIFF page's MicroManagerMetadata (tag 51123) as a dict, or None if it has none.

    Raises
    ------
    ValueError
        If the tag is there but does not hold a JSON object.
    """
    tag = page.tags.get(MICROMANAGER_TAG)
    if tag is None:
        return None
    meta = parse_json_tag(tag.value, "MicroManagerMetadata tag (51123)")
    if meta is None:
        # tifffile decodes the tag's JSON itself and gives None when it is corrupt.
        raise ValueError("MicroManagerMetadata tag (51123) is not valid JSON")
    return meta


def _whole_number(value, name: str) -> int:
    """An index as Micro-Manager writes it: an integer, or its decimal text ("3")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().lstrip("-").isdecimal():
        return int(value)
    # 1.5 or true would otherwise become 1 and put the frame in another frame's place.
    raise ValueError(f"MicroManagerMetadata {name} = {value!r} is not an integer")


def micromanager_indices(meta: dict) -> tuple[int, int, int, int]:
    """Return (channel, slice, time, position) from a MicroManagerMetadata dict.

    Micro-Manager 2.0 writes ``SliceIndex``/``FrameIndex``; 1.4 writes ``Slice``/``Frame`` too.

    Raises
    ------
    ValueError
        If a needed key is missing or not an integer.
    """
    def pick(*names, default=None):
        for name in names:
            if name in meta and meta[name] is not None:
                return _whole_number(meta[name], name)
        if default is not None:
            return default
        raise ValueError(f"MicroManagerMetadata lacks {' or '.join(names)}")

    return (
        pick("ChannelIndex"),
        pick("SliceIndex", "Slice"),
        pick("FrameIndex", "Frame"),
        pick("PositionIndex", default=0),
    )
