"""Compiling (or loading from numba's cache) every kernel once, e.g. before forking workers."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels.albedo import ground_albedo, object_albedo, track_exponent
from perception.data.synthetic.kernels.camera import scale_rgb, tone_and_noise, undistort_plumb_bob
from perception.data.synthetic.kernels.geometry import (
    ellipsoid_coefs,
    place_convex,
    place_planes,
    place_points,
)
from perception.data.synthetic.kernels.ground import ground_hits
from perception.data.synthetic.kernels.lighting import haze, light
from perception.data.synthetic.kernels.subsample import (
    grid_select,
    lonely2,
    sorted_intersect,
    upsample2,
)
from perception.data.synthetic.kernels.visibility import batched_hits, convex_rect

__all__ = ["warm_up"]


def _readonly(a: np.ndarray) -> np.ndarray:
    """numba compiles read-only arrays separately; the renderer passes its cached arrays so."""
    a.setflags(write=False)
    return a


def warm_up() -> None:
    """Compile (or load from the cache) every kernel the renderer calls, with the argument types it
    calls them with (read-only where it passes cached arrays), e.g. before forking worker processes."""
    rays2 = np.zeros((1, 1, 3), np.float32)
    rays2[..., 2] = 1.0
    rays2 = _readonly(rays2)  # the camera's cached rays
    depth = np.full(1, np.inf, np.float32)
    prim = np.zeros(1, np.int32)
    face = np.zeros(1, np.int8)
    planes = np.zeros((1, 6, 4), np.float32)
    convex_rect(rays2, planes[0], 0, 1, 0, 1, depth.reshape(1, 1), prim.reshape(1, 1), face.reshape(1, 1), 0)
    batched_hits(np.zeros(1, np.int64), np.array([[0, 1, 0, 1]], np.int64), np.zeros(1, np.int8), planes,
                 np.zeros((1, 10)), rays2.reshape(1, 3), 1, depth, prim, face)
    upsample2(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64), 2, 2)
    lonely2(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64), 2, 2)
    grid_select(np.arange(4), 2, 2, 1)
    sorted_intersect(np.arange(4), np.arange(2))
    img = np.zeros((2, 2, 3), np.float32)
    scale_rgb(img, np.float32(1.0), np.ones(3, np.float32))
    tone_and_noise(img, _readonly(np.ones((2, 2), np.float32)), True, np.zeros(16, np.uint8), np.float32(2.0),
                   np.zeros((2, 2), np.float32), True, True, np.float32(1.0),
                   _readonly(np.zeros((4, 4, 3), np.float32)), 1, 1, True, np.ones(3, np.float32))
    undistort_plumb_bob(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros(8), 1, 1e-7)
    v3 = np.ones(3, np.float32)
    v1 = np.ones(1, np.float32)
    rgb = light(v3.reshape(1, 3), v3.reshape(1, 3), v3.reshape(1, 3), v1, np.zeros(1, np.int32), v3, True, True, v3,
                v3, True, v1, v3, True, v1, v3)
    haze(rgb, v1, v3)
    coef = np.zeros((1, 10))
    frame = np.eye(4)[None]
    ellipsoid_coefs(np.zeros(1, np.int64), frame, np.ones((1, 4)), np.eye(3), np.zeros(3), coef)
    place_convex(np.zeros((6, 4)), np.zeros((8, 3)), np.eye(4))
    place_convex(np.zeros((0, 4)), np.zeros((8, 3)), np.eye(4))
    place_points(np.zeros((1, 8, 3)), frame)
    place_planes(np.zeros((1, 6, 4)), frame)
    grid = np.arange(3.0)
    ground_hits(np.zeros(1, np.int64), -rays2.reshape(1, 3), np.ones(3), grid, grid, grid, grid, 0.1, 400.0, 0.0,
                -5.0, 5.0, 0.15, 1.0, 1.0, 6, 6, np.zeros(1, np.int64), np.zeros(1), 0, 1)
    one64, one32 = np.full(1, 0.5), np.full(1, 0.5, np.float32)
    i64 = np.zeros(1, np.int64)
    track_exponent(i64, one64, one64, one32, np.array([-1.0, 0.0, 1.0]), 2)
    f0 = np.float32(0.0)
    ground_albedo(np.zeros(1, np.int8), np.zeros(1, np.uint8), one32, one32, one64, one32, one64, one32, one32,
                  one32, True, one32, np.full(1, -1), one64, v3, f0, f0, f0, i64, np.zeros((1, 6)),
                  np.zeros((1, 3), np.float32), v3, v3, v3, v3, f0, -5.0, 5.0, 0.0, f0)
    v33 = np.ones((1, 3), np.float32)
    object_albedo(i64, np.zeros(1, np.int32), np.zeros(1, np.int8), np.zeros(1, np.int8), np.zeros(1, np.int8),
                  np.zeros((1, 6, 4)), np.eye(3), frame, np.zeros((1, 3)), np.ones((1, 4)), np.zeros((1, 3)), one32,
                  np.zeros((0, 3), np.float32), _readonly(np.zeros((13, 3), np.float32)), True, True, True, 0.5, v33,
                  v33.copy(), v33.copy(), one32.copy())
