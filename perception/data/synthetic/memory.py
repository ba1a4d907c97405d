"""Keep freed memory in the process while rendering (glibc only).

A frame allocates and frees dozens of arrays of 0.1-4 MB. By default glibc serves each from a fresh
``mmap`` and hands it back on ``free``, so every frame page-faults (and zero-fills) its working set
again: ~4 ms of kernel time per 256x512 frame, ~6 % of the render. Raising the mmap and trim
thresholds keeps that memory in the heap for reuse. Elsewhere (musl, macOS, Windows) this does
nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 256 * 1024 * 1024


@cache
def keep_freed_memory() -> bool:
    """Tune this process's glibc malloc once; True when it took effect (inherited by forks)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
