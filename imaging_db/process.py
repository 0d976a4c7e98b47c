"""How the process of a console script is set up, in one place: every command enters through
:func:`imaging_db.cli.cli_common.console_script`, which calls :func:`prepare` first and
:func:`imports_done` once the library is loaded.

- OpenBLAS: one thread. imaging_db does no linear algebra, and OpenBLAS's idle
  threads otherwise spin on the cores that encode frames. Set before numpy loads.
- The cyclic garbage collector is paused while the library is imported (the
  collections that importing SQLAlchemy and numpy trigger cost about a tenth
  of the start-up), then the loaded modules are frozen out of its walks.
- glibc's allocator keeps freed frame buffers for reuse (below).

Frames that are not streamed from file to file (compressed TIFF pages, whole
PNGs queued for S3, downloaded objects) allocate buffers of a few MB. By
default glibc hands such blocks back to the kernel when they are freed, so the
next frame page-faults fresh zeroed pages: on a 2-core VM that cost a third of
a core. Raising the mmap and trim thresholds makes freed frame buffers reusable;
memory stays bounded because the pipeline bounds the frames in flight.
"""

import ctypes
import gc
import logging
import os
import sys

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_tuned = False


def reuse_freed_buffers(mmap_threshold: int = 64 * 2**20, trim_threshold: int = 128 * 2**20) -> bool:
    """Keep freed blocks below ``mmap_threshold`` bytes for reuse (glibc only; elsewhere a no-op).

    Returns
    -------
    bool
        Whether the allocator was tuned (now or by an earlier call).
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The process's own symbols include the C library's: no ctypes.util search (a subprocess).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _tuned = bool(
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        and mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        and mallopt(_M_TOP_PAD, 16 * 2**20)
    )
    logger.debug("glibc allocator tuned for frame buffers: %s", _tuned)
    return _tuned


def limit_blas_threads() -> None:
    """Keep OpenBLAS to one thread unless the user chose otherwise (before numpy is imported)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def prepare() -> None:
    """Set up the process of a command before it parses arguments and loads the library."""
    limit_blas_threads()
    reuse_freed_buffers()
    gc.disable()


def imports_done() -> None:
    """The library is loaded: its objects live as long as the process, so the collector stops walking them."""
    gc.freeze()
    gc.enable()


def finished() -> None:
    """The command is over (or failed before loading the library): the collector runs again."""
    gc.enable()
