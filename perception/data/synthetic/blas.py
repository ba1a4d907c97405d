"""Keep NumPy's BLAS (OpenBLAS) to one thread while rendering.

The renderer's matrix products are tiny (``[N, 3] @ [3, 3]``, ``[P, 3] @ [3, K]``): OpenBLAS's
worker threads cost ~10x the arithmetic there, and with one rendering process per core they spin
against each other (measured: 5 ms CPU for one ``[131072, 3] @ [3, 3]`` product with two threads,
0.45 ms with one). The thread count never changes a product's result (the threads split rows and
columns, not the sums), so frames are byte-identical either way.

No dependency: the OpenBLAS library NumPy loaded is found in ``/proc/self/maps`` and its
``*openblas_set_num_threads*`` entry point called through ctypes. Elsewhere (no OpenBLAS, no
``/proc``) everything here is a no-op.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from functools import cache

import numpy as np  # noqa: F401  (loads NumPy's BLAS before it is looked for)

__all__ = ["single_threaded_blas", "set_blas_threads"]

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads")


@cache
def _openblas() -> list[tuple[ctypes._CFuncPtr, ctypes._CFuncPtr]]:
    """(setter, getter) of every OpenBLAS mapped into this process."""
    paths = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(None, 5)
                path = parts[5].strip() if len(parts) == 6 else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        getter = next((getattr(lib, g) for g in _GETTERS if hasattr(lib, g)), None)
        if setter is not None and getter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], None
            getter.argtypes, getter.restype = [], ctypes.c_int
            found.append((setter, getter))
    return found


def set_blas_threads(n: int) -> list[int]:
    """Set NumPy's BLAS thread count; returns the previous counts (one per OpenBLAS found)."""
    previous = []
    for setter, getter in _openblas():
        previous.append(int(getter()))
        if previous[-1] != n:
            setter(int(n))
    return previous


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """One BLAS thread inside the block, the previous count restored after it."""
    previous = set_blas_threads(1)
    try:
        yield
    finally:
        for (setter, getter), n in zip(_openblas(), previous, strict=True):
            if getter() != n:
                setter(n)
