"""Compiled renderer kernels: the same numbers as the NumPy formulations they replaced (issue 3).

The renderer's speed comes from numba kernels that repeat NumPy's operations one for one; these
tests pin that down bit for bit where the reference is plain NumPy (no BLAS kernel involved).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from calibration.camera import CameraModel
from perception.data.classes import class_names
from perception.data.synthetic import SynthConfig, kernels
from perception.data.synthetic.blas import set_blas_threads, single_threaded_blas
from perception.data.synthetic.primitive import (
    Cls,
    Material,
    PrimTable,
    box,
    boxes,
    ellipsoid,
    ellipsoids,
    frame,
    frames,
)
from perception.data.synthetic.renderer import _ground_pass, _pixel_rays, camera_rays
from perception.data.synthetic.vehicle import vehicle_prims
from perception.data.synthetic.world import generate_world

_NAMES = class_names()


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def test_interp_is_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    xp = np.cumsum(rng.uniform(0.1, 1.0, 200))
    fp = rng.normal(0, 10, 200)
    x = np.concatenate([rng.uniform(xp[0] - 5, xp[-1] + 5, 5000), xp, [np.nan, xp[0], xp[-1]]])
    slopes = kernels.interp_slopes(xp, fp)
    got = np.array([kernels.interp(v, xp, fp, slopes) for v in x])
    assert _bits(got) == _bits(np.interp(x, xp, fp))


@pytest.mark.parametrize("D", [[-0.2, 0.05, 0.0, 0.0, 0.0], [-0.45, 0.1, 0.001, -0.002, 0.0],
                               [0.3, -0.4, 0.002, 0.001, 0.05]])  # the last folds over: NaN rays
def test_compiled_undistortion_is_calibrations(D: list[float]) -> None:
    K = np.array([[250.0, 0.0, 191.5], [0.0, 250.0, 95.5], [0.0, 0.0, 1.0]])
    cam = CameraModel(384, 192, K, np.array(D), "plumb_bob")
    v, u = np.mgrid[0:cam.height, 0:cam.width]
    pix = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float64)
    assert _bits(_pixel_rays(cam, pix)) == _bits(cam.pixel_rays(pix))


def _ground_pass_numpy(world, dirs_w: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, ...]:
    """The ground pass as NumPy code (what kernels.ground_hits replaced)."""
    road = world.road
    sec = road.section
    gi = np.flatnonzero(dirs_w[:, 2] < -1e-9)
    dg = dirs_w[gi]
    dz = dg[:, 2]
    er, el = road.edges_m

    def hit(t):
        X = o[0] + t * dg[:, 0]
        Y = o[1] + t * dg[:, 1]
        s, d = road.to_road(X, Y)
        return X, Y, s, d, d / road.scale(s)

    t = -o[2] / dz
    X, Y, s, d, dn = hit(t)
    Z = np.zeros_like(t)
    inside = (dn >= er) & (dn <= el)
    surface = np.where(inside, 0, 2).astype(np.int8)
    hc = sec.curb_height_m
    if hc > 0:
        t1 = (hc - o[2]) / dz
        X1, Y1, s1, d1, dn1 = hit(t1)
        inside1 = (dn1 >= er) & (dn1 <= el)
        top = ~inside1
        curb = inside1 & ~inside
        edge = np.where(dn[curb] > el, el, er)
        frac = np.clip((edge - dn1[curb]) / (dn[curb] - dn1[curb]), 0.0, 1.0)
        tc = t1[curb] + frac * (t[curb] - t1[curb])
        for arr, new in ((t, t1), (X, X1), (Y, Y1), (s, s1), (d, d1), (dn, dn1)):
            arr[top] = new[top]
        Z[top] = hc
        t[curb] = tc
        X[curb] = o[0] + tc * dg[curb, 0]
        Y[curb] = o[1] + tc * dg[curb, 1]
        Z[curb] = o[2] + tc * dz[curb]
        s[curb], d[curb] = road.to_road(X[curb], Y[curb])
        dn[curb] = edge
        surface[curb] = 1
        surface[top] = 2
    cls = np.full(gi.shape, _NAMES.index("road"), np.uint8)
    right, left = dn < er, dn > el
    beyond = np.where(right, er - dn, dn - el)
    walk = np.where(right, sec.sidewalk_m[0], sec.sidewalk_m[1])
    verge = np.where(right, sec.verge_class[0], sec.verge_class[1]).astype(np.uint8)
    off = right | left
    cls[off] = np.where(beyond[off] <= walk[off], _NAMES.index("sidewalk"), verge[off])
    cls[surface == 1] = _NAMES.index("sidewalk")
    painted = np.array([k for k, m in enumerate(road.markings) if m.painted], dtype=np.int64)
    B = road.boundaries_m[painted]
    j = np.clip(np.searchsorted(B, dn), 1, max(B.size - 1, 1))
    lo, hi = np.clip(j - 1, 0, B.size - 1), np.clip(j, 0, B.size - 1)
    m = road.scale(s)
    u_lo, u_hi = d - m * B[lo], d - m * B[hi]
    pick_hi = np.abs(u_hi) < np.abs(u_lo)
    line_k = painted[np.where(pick_hi, hi, lo)]
    line_u = np.where(pick_hi, u_hi, u_lo)
    line_k[surface != 0] = -1
    line_u[surface != 0] = np.inf
    return gi, t, X, Y, Z, s, d, dn, surface, cls, line_k, line_u


@pytest.mark.parametrize("seed", [3, 4, 12])  # curbs + distortion, no curbs, curbs
def test_compiled_ground_pass_is_the_numpy_one(seed: int) -> None:
    world = generate_world(seed, SynthConfig(height=96, width=192))
    rays, _ = camera_rays(world.camera)
    T_wc = world.vehicle_to_world(0.0) @ world.mounting.camera_to_vehicle()
    dirs_w = rays @ T_wc[:3, :3].T.astype(np.float32)
    g = _ground_pass(world, dirs_w, T_wc[:3, 3])
    ref = _ground_pass_numpy(world, dirs_w, T_wc[:3, 3])
    fields = ("index", "t", "X", "Y", "Z", "s", "d", "dn", "surface", "cls", "line_k", "line_u")
    for name, want in zip(fields, ref, strict=True):
        got = getattr(g, name)
        assert got.dtype == want.dtype and _bits(got) == _bits(want), name


def test_single_threaded_blas_restores_the_thread_count() -> None:
    before = set_blas_threads(2)
    try:
        with single_threaded_blas():
            assert set_blas_threads(1) in ([], [1] * len(before))
        assert set_blas_threads(2) in ([], [2] * len(before))
    finally:
        for n in before:
            set_blas_threads(n)



def _table_bits(table: PrimTable) -> list[tuple[str, str, bytes]]:
    return [(f, str(getattr(table, f).dtype), _bits(getattr(table, f))) for f in table.__dataclass_fields__]


def test_batched_primitives_are_the_one_by_one_ones() -> None:
    """``primitive.boxes`` / ``ellipsoids`` (trees, vehicles) give ``box`` / ``ellipsoid``'s numbers."""
    rng = np.random.default_rng(0)
    n = 50
    origin, yaw = rng.normal(0, 50, (n, 3)), rng.uniform(-4, 4, n)
    lo = rng.uniform(-3, 0, (n, 3))
    lo[::2, 2] = 0.0  # -0.0 plane offsets, as trunks have
    hi, color = rng.uniform(0, 3, (n, 3)), rng.uniform(0, 1, (n, 3))
    s, params = rng.uniform(0, 99, n), rng.normal(size=(n, 4))
    T = frames(origin, yaw)
    want = PrimTable.from_prims([box(frame(origin[i], yaw[i]), tuple(lo[i]), tuple(hi[i]), Cls.BUILDING,
                                     Material.FACADE, color[i], params[i], s[i]) for i in range(n)])
    assert _table_bits(boxes(T, lo, hi, Cls.BUILDING, Material.FACADE, color, s, params)) == _table_bits(want)
    want = PrimTable.from_prims([ellipsoid(origin[i], tuple(hi[i]), Cls.VEGETATION, Material.FOLIAGE, color[i],
                                           yaw=yaw[i], s=s[i]) for i in range(n)])
    got = ellipsoids(origin, hi, Cls.VEGETATION, Material.FOLIAGE, color, yaw, s)
    assert _table_bits(got) == _table_bits(want)


def test_fleet_parts_are_vehicle_prims() -> None:
    world = generate_world(5, SynthConfig(height=96, width=192), duration_s=5.0)
    vehicles = world.fleet.vehicles
    assert {v.kind for v in vehicles} >= {"car", "suv"}
    want = PrimTable.from_prims([p for v in vehicles for p in vehicle_prims(v)])
    assert _table_bits(world.fleet.parts) == _table_bits(want)


_RENDER_AFTER_WARM_UP = """
import importlib, pkgutil
from numba.core.registry import CPUDispatcher
from perception.data.synthetic import RandomizationConfig, SynthConfig, generate_world, kernels, render

def compiled():
    return {(m.name, n, str(s)) for m in pkgutil.iter_modules(kernels.__path__)
            for n, f in vars(importlib.import_module(f"{kernels.__name__}.{m.name}")).items()
            if isinstance(f, CPUDispatcher) for s in f.signatures}

kernels.warm_up()
warm = compiled()
for step in (1, 2):
    cfg = SynthConfig(shading_step=step, randomization=RandomizationConfig(distortion_prob=1.0))
    render(generate_world(0, cfg, duration_s=1.0), 0.5, frame_seed=3)
print(sorted(compiled() - warm))
"""


def test_warm_up_compiles_what_a_render_calls() -> None:
    """Workers forked after ``warm_up`` compile nothing: a render adds no kernel signature (read-only
    arrays are their own numba type). A fresh process, as this one may have rendered already."""
    out = subprocess.run([sys.executable, "-c", _RENDER_AFTER_WARM_UP], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
