"""Compiled (numba) per-pixel loops of the renderer.

Each kernel computes exactly what the NumPy expression it replaced computed, operation for
operation and in the same precision, so frames stay byte-identical:

* float32 stays float32: scalar constants compared with or combined into float32 values are
  float32 constants here too (NumPy 2 casts a Python float to the array's precision);
* no fast-math and no implicit contraction of ``a * b + c``; where the replaced code went through
  BLAS (``rays @ planes.T``, 3x3 products), whose kernels compute ``fma(z, c, fma(y, b, x * a))``
  from +0, the same fused operations are spelled out with :func:`fma32` / :func:`fma64` (and
  ``+ 0`` turns a -0 sum into +0 as BLAS does). These patterns are OpenBLAS's Haswell kernels
  (what NumPy uses on this machine), checked bit for bit against it;
* reductions keep NumPy's order and tie rules (``argmax`` = first maximum; the nearest hit per
  pixel = the first of equal depths in pair order).

Transcendental float32 functions (``np.exp``), texture look-ups (``cv2.remap``) and OpenCV
filters stay outside: NumPy's SIMD float32 ``exp`` and OpenCV's code paths are not what a compiled
loop would call. Float64 ``sin`` and ``pow`` are libm's on both sides.

One module per pass: ``geometry`` (placing primitives), ``visibility`` (z-buffer), ``ground``
(the ground pass, with ``interp``), ``subsample`` (half-resolution shading), ``albedo`` and
``lighting`` (shading), ``camera`` (lens and sensor effects); ``_jit`` holds the decorators and
the fused multiply-adds.

Kernels are compiled on first use and cached on disk (``cache=True``); :func:`warm_up` compiles
them ahead of forking worker processes. numba's cache is per source file and does not see edits to
another file's functions that a kernel calls (``_jit``'s, ``interp``'s helpers): after changing
those, clear the caches (``kernels/__pycache__/*.nb[ci]``).
"""
from __future__ import annotations

from perception.data.synthetic.kernels._jit import fma32, fma64
from perception.data.synthetic.kernels._warm_up import warm_up
from perception.data.synthetic.kernels.albedo import ground_albedo, object_albedo, track_exponent
from perception.data.synthetic.kernels.camera import scale_rgb, tone_and_noise, undistort_plumb_bob
from perception.data.synthetic.kernels.geometry import (
    ellipsoid_coefs,
    place_convex,
    place_planes,
    place_points,
)
from perception.data.synthetic.kernels.ground import ground_hits
from perception.data.synthetic.kernels.interp import interp, interp_slopes
from perception.data.synthetic.kernels.lighting import haze, light
from perception.data.synthetic.kernels.subsample import (
    grid_select,
    lonely2,
    sorted_intersect,
    upsample2,
)
from perception.data.synthetic.kernels.visibility import batched_hits, convex_rect

__all__ = [
    "fma32", "fma64", "warm_up",
    "place_convex", "place_planes", "place_points", "ellipsoid_coefs",  # geometry
    "convex_rect", "batched_hits",  # visibility
    "ground_hits", "interp", "interp_slopes",  # ground
    "grid_select", "sorted_intersect", "lonely2", "upsample2",  # subsample
    "track_exponent", "ground_albedo", "object_albedo", "light", "haze",  # albedo, lighting
    "undistort_plumb_bob", "scale_rgb", "tone_and_noise",  # camera
]
